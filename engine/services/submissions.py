"""What submitted data must be: a storable JSON object, with only the fields its form asks for."""

from __future__ import annotations

from typing import Any

from pmoflow.engine import forms, serialization
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import ProcessDefinition
from pmoflow.engine.scripting import SCRIPT_HELPERS

ROUTING_KEYS = {"lane_owners", "lane_roles"}


def require_object(data: Any) -> dict[str, Any]:
    """Every piece of submitted data: a JSON object SpiffWorkflow can store and load back, whose keys
    neither hide the script helpers nor start with an underscore (scripts could not see them)."""
    if not isinstance(data, dict):
        raise InvalidInput("the data must be a JSON object, like {\"field\": \"value\"}")
    serialization.check_data(data)
    bad = sorted(k for k in data if k.startswith("_") or k in SCRIPT_HELPERS)
    if bad:
        raise InvalidInput(f"these field names are reserved (script helpers, or a leading underscore): "
                           f"{', '.join(bad)}; rename them")
    return data


def refuse_routing(values: dict[str, Any]) -> None:
    """Routing keys decide who gets a task as it becomes ready: an administrator changing them on a running
    instance would not re-route its open tasks, and could redirect later ones unseen."""
    routing = sorted(set(values) & ROUTING_KEYS)
    if routing:
        raise InvalidInput(f"{', '.join(routing)} route tasks as they become ready; changing them now would not "
                           "re-route the open tasks: delegate the task instead")


def validate_form(definition: ProcessDefinition, form: str | None, data: dict[str, Any],
                  task_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check data against the form stored with the definition (or, with no form, refuse routing keys); return
    what the submission stores (forms.submission: echoed task data is dropped, choices come from `task_data`)."""
    if form is None:
        only_declared(data)
        return data
    text = definition.sources.get(f"forms/{form}")
    if text is None:
        raise InvalidInput(f"form {form} is missing from {definition.process_id} v{definition.version}")
    return forms.submission(forms.load_schema(text, form), data, form, task_data)


def only_declared(data: dict[str, Any]) -> None:
    """A task without a form takes any data but the routing keys: they could redirect who gets the next tasks.
    (With a form, only what it asks for: forms.submission.)"""
    extra = sorted(set(data) & ROUTING_KEYS)
    if extra:
        raise InvalidInput(f"a task without a form does not ask for: {', '.join(extra)}; remove these fields")
