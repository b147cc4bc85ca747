"""The service layer: everything pmoflow does, one module per noun, each function taking a `Context`.

The Python façade (`pmoflow.engine.api.Pmoflow`), the CLI and any later entry point call these functions and
nothing below them, so every rule (roles, duties, forms, locking, audit) has one code path.
"""
