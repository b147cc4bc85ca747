"""The Python API: everything pmoflow does, one method per command, each a call into the service layer.

    from pmoflow.engine.api import Pmoflow

    pmo = Pmoflow("sqlite:///pmo.db", user="sean.sponsor")
    started = pmo.start("project_initiation", request_data)

The CLI is a thin layer over this class; the logic lives in `pmoflow.engine.services`, one module per noun.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pmoflow.engine.library import Library
from pmoflow.engine.scripting import Handler
from pmoflow.engine.services import (
    admin,
    auditing,
    designer,
    identity,
    installation,
    instances,
    mail,
    messages,
    notifications,
    reports,
    tasks,
    timers,
)
from pmoflow.engine.services.context import Context

__all__ = ["Pmoflow"]


class Pmoflow:
    """A pmoflow installation as one user sees it: a database, the acting user, the installed process libraries
    (or the given ones), and `handlers` when a caller wants other service handlers than the libraries'."""

    def __init__(self, db: str | None = None, user: str | None = None,
                 handlers: Mapping[str, Handler] | None = None, libraries: list[Library] | None = None) -> None:
        self._ctx = Context(db, user, handlers, libraries)

    @property
    def db(self):
        return self._ctx.db

    @property
    def user(self) -> str | None:
        return self._ctx.user

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return self._ctx.handlers

    def close(self) -> None:
        self._ctx.close()

    def acting_as(self, user: str | None) -> Pmoflow:
        """This installation as another user sees it, sharing the database and libraries (closing it closes
        nothing): what the web server makes for each request's signed-in user."""
        view = object.__new__(Pmoflow)
        view._ctx = self._ctx.for_user(user)
        return view

    def expecting(self, versions: frozenset[tuple[int, int]] | None) -> Pmoflow:
        """This view for one command that may act only on an instance still at one of `versions`, pairs of
        (instance id, lock version) read before (`show()["lock_version"]`): otherwise PreconditionFailed and
        nothing changes. What the web server makes of an `If-Match` header."""
        view = object.__new__(Pmoflow)
        view._ctx = self._ctx.expecting(versions)
        return view

    # -- set-up and identity
    def init(self, org: str | Path | None = None) -> dict[str, Any]:
        return installation.init(self._ctx, org)

    def users(self) -> list[dict[str, Any]]:
        return installation.users(self._ctx)

    def whoami(self) -> dict[str, Any]:
        return installation.whoami(self._ctx)

    # -- web sign-in: passwords and personal API tokens
    def set_password(self, user: str, password: str) -> dict[str, Any]:
        return identity.set_password(self._ctx, user, password)

    def create_token(self, name: str) -> dict[str, Any]:
        return identity.create_token(self._ctx, name)

    def tokens(self, all_users: bool = False) -> list[dict[str, Any]]:
        return identity.list_tokens(self._ctx, all_users)

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return identity.revoke_token(self._ctx, token_id)

    def token_user(self, token: str) -> str | None:
        return identity.user_for_token(self._ctx, token)

    def sign_in(self, name: str, password: str, client: str | None = None,
                session_max_age: timedelta | None = None) -> dict[str, Any]:
        return identity.sign_in(self._ctx, name, password, client, session_max_age)

    def session_user(self, session_id: str) -> str | None:
        return identity.session_user(self._ctx, session_id)

    def sign_out(self, session_id: str) -> str | None:
        return identity.sign_out(self._ctx, session_id)

    # -- designer's tools
    def validate(self, paths: list[str | Path]) -> list[dict[str, Any]]:
        return designer.validate(self._ctx, paths)

    def deploy(self, paths: list[str | Path]) -> list[dict[str, Any]]:
        return designer.deploy(self._ctx, paths)

    def test(self, paths: list[str | Path]) -> list[dict[str, Any]]:
        return designer.test(self._ctx, paths)

    def diagram(self, process_id: str, version: int | None = None) -> str:
        return designer.diagram(self._ctx, process_id, version)

    def processes(self) -> list[dict[str, Any]]:
        return designer.processes(self._ctx)

    def versions(self, process_id: str) -> list[dict[str, Any]]:
        return designer.versions(self._ctx, process_id)

    def diff(self, process_id: str, from_version: int | str, to_version: int | str) -> dict[str, Any]:
        return designer.diff(self._ctx, process_id, from_version, to_version)

    def migrate(self, instance_id: int | str, to_version: int | str, dry_run: bool = False,
                reason: str | None = None) -> dict[str, Any]:
        return designer.migrate(self._ctx, instance_id, to_version, dry_run, reason)

    def migrate_all(self, process_id: str, from_version: int | str, to_version: int | str, dry_run: bool = False,
                    progress: Callable[[int, int], None] | None = None, reason: str | None = None) -> dict[str, Any]:
        return designer.migrate_all(self._ctx, process_id, from_version, to_version, dry_run, progress, reason)

    # -- instances
    def start(self, process_id: str, data: dict[str, Any] | None = None,
              business_key: str | None = None) -> dict[str, Any]:
        return instances.start(self._ctx, process_id, data, business_key)

    def instances(self, status: str | None = None, process: str | None = None, limit: int | None = None,
                  after: int | None = None) -> list[dict[str, Any]]:
        return instances.instances(self._ctx, status, process, limit, after)

    def show(self, instance_id: int | str) -> dict[str, Any]:
        return instances.show(self._ctx, instance_id)

    def history(self, instance_id: int | str) -> list[dict[str, Any]]:
        return instances.history(self._ctx, instance_id)

    # -- human tasks and notifications
    def tasks(self, all_tasks: bool = False, process: str | None = None, limit: int | None = None,
              after: int | None = None) -> list[dict[str, Any]]:
        return tasks.inbox(self._ctx, all_tasks, process, limit, after)

    def task(self, task_id: int | str) -> dict[str, Any]:
        return tasks.show(self._ctx, task_id)

    def claim(self, task_id: int | str) -> dict[str, Any]:
        return tasks.claim(self._ctx, task_id)

    def unclaim(self, task_id: int | str) -> dict[str, Any]:
        return tasks.unclaim(self._ctx, task_id)

    def delegate(self, task_id: int | str, to_user: str) -> dict[str, Any]:
        return tasks.delegate(self._ctx, task_id, to_user)

    def complete(self, task_id: int | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return tasks.complete(self._ctx, task_id, data)

    def notifications(self, user: str | None = None, undelivered_only: bool = False,
                      instance: int | str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
        return notifications.listing(self._ctx, user, undelivered_only, instance, all_users)

    # -- messages
    def message(self, name: str, data: Any = None, correlate: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return messages.send(self._ctx, name, data, correlate)

    def messages(self) -> list[dict[str, Any]]:
        return messages.waits(self._ctx)

    # -- administrative acts (PMO Administrators)
    def suspend(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        return admin.suspend(self._ctx, instance_id, reason)

    def resume(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        return admin.resume(self._ctx, instance_id, reason)

    def terminate(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        return admin.terminate(self._ctx, instance_id, reason)

    def skip(self, instance_id: int | str, data: dict[str, Any] | None = None,
             reason: str | None = None) -> dict[str, Any]:
        return admin.skip(self._ctx, instance_id, data, reason)

    def edit_data(self, instance_id: int | str, values: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return admin.edit_data(self._ctx, instance_id, values, reason)

    def retry(self, instance_id: int | str, data: dict[str, Any] | None = None,
              reason: str | None = None) -> dict[str, Any]:
        return admin.retry(self._ctx, instance_id, data, reason)

    # -- timers
    def run_due(self, now: datetime | None = None, should_stop: Callable[[], bool] | None = None,
                dry_run: bool = False) -> dict[str, Any]:
        return timers.run_due(self._ctx, now, should_stop, dry_run)

    def schedules(self) -> list[dict[str, Any]]:
        return timers.schedules(self._ctx)

    def send_mail(self, now: datetime | None = None) -> dict[str, Any]:
        return mail.send_outbox(self._ctx, now)

    # -- the audit record
    def verify(self, instance_id: int | str | None = None) -> dict[str, Any]:
        return auditing.verify_instance(self._ctx, instance_id)

    def verify_record(self, instance_id: int | str | None = None, checkpoint: str | Path | None = None,
                      archives: str | Path | None = None) -> dict[str, Any]:
        return auditing.verify_record(self._ctx, instance_id, checkpoint, archives)

    def checkpoint(self, path: str | Path) -> dict[str, Any]:
        return auditing.checkpoint(self._ctx, path)

    def verify_archive(self, path: str | Path) -> dict[str, Any]:
        return auditing.verify_archive(self._ctx, path)

    def audit_events(self, process: str | None = None, version: int | str | None = None,
                     instance: int | str | None = None, actor: str | None = None, role: str | None = None,
                     types: tuple[str, ...] | list[str] = (), task: str | None = None,
                     since: str | datetime | None = None, until: str | datetime | None = None,
                     period: str | None = None, where: tuple[str, ...] | list[str] = (), late: bool = False,
                     by_starter: bool = False, override: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        return auditing.events(self._ctx, process, version, instance, actor, role, types, task, since, until,
                               period, where, late, by_starter, override, limit)

    def archive(self, before: str | datetime, path: str | Path) -> dict[str, Any]:
        return auditing.archive(self._ctx, before, path)

    def report(self, instance_id: int | str) -> dict[str, Any]:
        return reports.instance_report(self._ctx, instance_id)

    def process_report(self, process_id: str, since: str | datetime | None = None,
                       until: str | datetime | None = None, period: str | None = None,
                       override: str | None = None) -> dict[str, Any]:
        return reports.process_report(self._ctx, process_id, since, until, period, override)
