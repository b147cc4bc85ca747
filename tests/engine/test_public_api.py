"""The Python API's public surface is deliberate: a name that appears or disappears fails here first (the idea of
httpx's test_exported_members). The façade stays thin: each method hands its arguments to one service."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pmoflow.engine.api as api
from pmoflow.engine.api import Pmoflow

PUBLIC = [
    "acting_as", "archive", "audit_events", "checkpoint", "claim", "close", "complete", "create_token", "db",
    "delegate", "deploy", "diagram", "diff", "edit_data", "expecting", "handlers", "history", "init", "instances",
    "message",
    "messages", "migrate", "migrate_all", "notifications", "process_report", "processes", "report", "resume",
    "retry", "revoke_token", "run_due", "schedules", "send_mail", "session_user", "set_password", "show", "sign_in",
    "sign_out",
    "skip", "start", "suspend", "task", "tasks", "terminate", "test", "token_user", "tokens", "unclaim", "user",
    "users", "validate", "verify", "verify_archive", "verify_record", "versions", "whoami",
]


def test_the_module_exports_only_the_facade():
    assert api.__all__ == ["Pmoflow"]


def test_the_facade_has_exactly_the_public_members():
    assert sorted(name for name in dir(Pmoflow) if not name.startswith("_")) == PUBLIC


def test_every_command_method_is_one_call_into_a_service():
    """A method of the façade returns one call of a function in `pmoflow.engine.services`, passing its context:
    the logic lives in the service layer, where the CLI and any other entry point reach the same rules."""
    for name in PUBLIC:
        member = inspect.getattr_static(Pmoflow, name)
        if isinstance(member, property) or name in ("close", "acting_as", "expecting"):  # views, no service call
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(member)))
        body = [node for node in tree.body[0].body if not isinstance(node, ast.Expr)]  # docstrings aside
        assert len(body) == 1 and isinstance(body[0], ast.Return), name
        call = body[0].value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), name
        module = getattr(api, call.func.value.id)
        assert module.__name__.startswith("pmoflow.engine.services."), name
        assert isinstance(call.args[0], ast.Attribute) and call.args[0].attr == "_ctx", name
