"""The PMO's Python task handlers, one module per process, registered by service-operator name.

A BPMN service task names its handler with ``<spiffworkflow:serviceTaskOperator id="...">``; the engine
looks the id up in :data:`HANDLERS` and calls the function with the evaluated parameters as keyword
arguments. Handlers are plain functions: no database, no engine imports.
"""

from . import capa, internal_audit, process_improvement, project_closure, quality_gate
from .project_initiation import create_project, notify, register_request, search_lessons

HANDLERS = {
    "initiation.register_request": register_request,
    "initiation.search_lessons": search_lessons,
    "initiation.create_project": create_project,
    "initiation.notify": notify,
    "audit.register_audit": internal_audit.register_audit,
    "audit.check_independence": internal_audit.check_independence,
    "audit.notify": internal_audit.notify,
    "audit.send_report": internal_audit.send_report,
    "audit.close_audit": internal_audit.close_audit,
    "capa.open": capa.open_capa,
    "capa.escalate": capa.escalate,
    "gate.load_checklist": quality_gate.load_checklist,
    "gate.check_baseline": quality_gate.check_baseline,
    "gate.metrics_snapshot": quality_gate.metrics_snapshot,
    "gate.open_next_stage": quality_gate.open_next_stage,
    "closure.archive_baseline": project_closure.archive_baseline,
    "closure.release_staff": project_closure.release_staff,
    "closure.notify": project_closure.notify,
    "closure.publish_lessons": project_closure.publish_lessons,
    "closure.close_project": project_closure.close_project,
    "pip.register": process_improvement.register,
    "pip.notify": process_improvement.notify,
    "pip.request_baseline": process_improvement.request_baseline,
    "pip.close": process_improvement.close,
}

__all__ = ["HANDLERS"]
