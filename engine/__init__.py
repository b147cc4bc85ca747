"""pmoflow engine: persistence, identity, forms, timers and audit around SpiffWorkflow."""
