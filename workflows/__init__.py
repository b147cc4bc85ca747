"""The PMO's Python task handlers, one module per process, registered by service-operator name.

A BPMN service task names its handler with ``<spiffworkflow:serviceTaskOperator id="...">``; the engine
looks the id up in :data:`HANDLERS` and calls the function with the evaluated parameters as keyword
arguments. Handlers are plain functions: no database, no engine imports.
"""

from .project_initiation import create_project, notify, register_request, search_lessons

HANDLERS = {
    "initiation.register_request": register_request,
    "initiation.search_lessons": search_lessons,
    "initiation.create_project": create_project,
    "initiation.notify": notify,
}

__all__ = ["HANDLERS"]
