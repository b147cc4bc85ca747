"""The PMO's Python task handlers, one module per operator prefix, registered with ``@handler``.

A BPMN service task names its handler with ``<spiffworkflow:serviceTaskOperator id="gate.load_checklist">``: the
function ``load_checklist`` of ``gate.py``. The engine looks the id up in :data:`HANDLERS` and calls the function
with the evaluated parameters as keyword arguments. Handlers are plain functions: no database, no engine imports;
policy they apply (checklists, ladders, day offsets) is read from ``data/*.json``.
"""

from importlib import resources
from pathlib import Path

from pmoflow.engine.handlers import collect
from pmoflow.engine.library import Library

from . import audit, capa, closure, deprecated, gate, initiation, notifications, pip

#: Every ``@handler`` of the library's modules by operator id (``gate.load_checklist`` is ``gate.py``'s
#: ``load_checklist``); ``deprecated`` keeps the ids of earlier releases that deployed versions still call.
HANDLERS = collect(audit, capa, closure, gate, initiation, notifications, pip, deprecated)



def library() -> Library:
    """The PMO process library as the engine finds it (entry point `pmoflow.libraries`: `pmo`)."""
    from .demo import run_demo

    return Library(name="pmo", handlers=HANDLERS, process_dirs=(_packaged("pmoflow.bpmn"),),
                   form_dirs=(_packaged("pmoflow.forms"),),
                   organisation=_packaged("pmoflow.workflows") / "demo-organisation.toml", demo=run_demo)


def _packaged(package: str) -> Path:
    return Path(str(resources.files(package)))


__all__ = ["HANDLERS", "library"]
