"""What every service needs: the database, the acting user, the installed process libraries, and lookups."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import limits, runtime
from pmoflow.engine.database import Database
from pmoflow.engine.errors import NotFound, PermissionDenied, PreconditionFailed
from pmoflow.engine.library import Library, handlers_of, installed
from pmoflow.engine.models import HumanTask, ProcessDefinition, ProcessInstance, User
from pmoflow.engine.scripting import Handler

WORKER = "worker"
EXPECTED = "pmoflow.expected_versions"  # session.info key: the (instance id, lock version) pairs a command expects


class Context:
    """One installation as seen by one user: a database, who acts, and the libraries whose handlers run."""

    def __init__(self, db: str | None = None, user: str | None = None,
                 handlers: Mapping[str, Handler] | None = None,
                 libraries: list[Library] | None = None) -> None:
        self.db = Database(db)
        self.user = user or os.environ.get("PMOFLOW_USER")
        self.libraries = installed() if libraries is None else libraries
        self.handlers: Mapping[str, Handler] = handlers if handlers is not None else handlers_of(self.libraries)
        self.form_dirs: list[Path] = [folder for library in self.libraries for folder in library.form_dirs]
        self.expected: frozenset[tuple[int, int]] | None = None
        self._owns_db = True

    def for_user(self, name: str | None) -> Context:
        """The same installation acting as `name`: sharing this context's database (its engine and pool) and
        libraries, so a web server makes one view per request, never an engine. Closing a view closes nothing."""
        view = copy.copy(self)
        view.user, view._owns_db = name, False
        return view

    def expecting(self, versions: frozenset[tuple[int, int]] | None) -> Context:
        """This view for one command that may act only on an instance still at one of `versions`, pairs of
        (instance id, lock version) a client read before (HTTP `If-Match`): any other is PreconditionFailed,
        checked where the command looks its instance up (`instance_row`), in the command's own transaction."""
        view = copy.copy(self)
        view.expected, view._owns_db = versions, False
        return view

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One command, one transaction; workflows cached in this process follow its commit or rollback."""
        session_ref: list[Session] = []
        try:
            with self.db.transaction() as session:
                session_ref.append(session)
                if self.expected is not None:
                    session.info[EXPECTED] = self.expected
                yield session
        except BaseException:
            if session_ref:
                runtime.after_rollback(session_ref[0])
            raise
        runtime.after_commit(session_ref[0])

    def actor(self, session: Session) -> User:
        """The acting user, who must be in the organisation."""
        if not self.user:
            raise PermissionDenied("no user given: pass --user NAME or set PMOFLOW_USER")
        # a name no database can look up (a NUL character, a lone surrogate) is nobody's, on both databases
        user = None if limits.text_problem(self.user) else session.get(User, self.user)
        if user is None:
            raise PermissionDenied(f"unknown user {self.user!r:.80}: not in the organisation file")
        return user

    def close(self) -> None:
        if self._owns_db:
            self.db.dispose()


def instance_row(session: Session, instance_id: int | str) -> ProcessInstance:
    instance = session.get(ProcessInstance, int_id(instance_id, "instance"))
    if instance is None:
        raise NotFound(f"no instance {instance_id}")
    expected = session.info.get(EXPECTED)
    if expected is not None and (instance.id, instance.lock_version) not in expected:
        raise PreconditionFailed(f"instance {instance.id} changed since you read it (it is at version "
                                 f"{instance.lock_version} now, If-Match named another): read it again")
    return instance


def task_row(session: Session, task_id: int | str) -> HumanTask:
    task = session.get(HumanTask, int_id(task_id, "task"))
    if task is None:
        raise NotFound(f"no task {task_id}")
    return task


def definition_row(session: Session, process_id: str, version: int | None = None) -> ProcessDefinition:
    """A deployed version of a process, the newest when `version` is None."""
    query = select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
    query = query.where(ProcessDefinition.version == version) if version else query.order_by(
        ProcessDefinition.version.desc()).limit(1)
    definition = session.scalar(query)
    if definition is None:
        which = f" version {version}" if version else ""
        raise NotFound(f"no process '{process_id}'{which} is deployed (see 'pmoflow processes')")
    return definition


def load_run(ctx: Context, session: Session, instance: ProcessInstance, actor: str) -> runtime.Run:
    """The instance's workflow, loaded (or taken from this process's cache) to act on as `actor`."""
    definition = session.get_one(ProcessDefinition, instance.definition_id)
    return runtime.Run(session, instance, definition, actor, ctx.handlers)


def final_data(workflow: Any) -> dict[str, Any]:
    """The data an instance holds now: its End task's once completed, else its last task's."""
    task = workflow.last_task
    if workflow.is_completed():
        ends = [t for t in workflow.tasks.values() if t.task_spec.name == "End"]
        task = ends[0] if ends else task
    return dict(task.data) if task is not None else {}


def int_id(value: int | str, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise NotFound(f"no {what} {value!r}: {what} ids are numbers") from None
    if not 0 < number < 2**31:
        raise NotFound(f"no {what} {value}")
    return number


ADMINISTRATOR = "PMO Administrator"
DESIGNER = "Process Designer"


def authorised(ctx: Context, session: Session, act: str, *roles: str) -> User:
    """The acting user, who must hold one of `roles` to do `act` (administrative acts, deployment)."""
    user = ctx.actor(session)
    if not set(roles) & set(user.role_names):
        held = ", ".join(user.role_names) or "no role"
        raise PermissionDenied(f"{act} needs the role {' or '.join(roles)}; {user.name} holds {held}")
    return user


def check_may_start(session: Session, definition: ProcessDefinition, user: User) -> None:
    """A process whose start event sits in a lane is started only by holders of that lane's role."""
    lane = runtime.start_lane(session, definition)
    if lane is not None and lane not in user.role_names:
        raise PermissionDenied(f"{definition.process_id} is started from the {lane} lane; {user.name} does not "
                               f"hold the role {lane}")
