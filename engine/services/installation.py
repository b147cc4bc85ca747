"""Setting an installation up: the schema, the organisation, and the libraries' processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import anchor, audit, organisation
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.library import default_organisation
from pmoflow.engine.models import User, UserRole
from pmoflow.engine.services import designer
from pmoflow.engine.services.context import ADMINISTRATOR, Context, authorised

INSTALLER = "pmoflow-init"


def init(ctx: Context, org: str | Path | None = None) -> dict[str, Any]:
    """Create or upgrade the schema, load the organisation, deploy the libraries' processes. Idempotent.

    On a database that has an organisation already, only a PMO Administrator of it may do this (it can replace
    everyone's roles); the first `init` of an empty database is the installer's."""
    people = organisation.load(org or default_organisation(ctx.libraries))  # read it before touching the database
    if not any(ADMINISTRATOR in person.roles for person in people.people):
        raise InvalidInput(f"{people.source}: nobody holds the role {ADMINISTRATOR}: name at least "
                           "one, or nobody could deploy, repair or reload the organisation")
    audit_key = anchor.prepare_key(ctx.db.url)  # the key file first: beside the database, or where configured
    ctx.db.upgrade()
    with ctx.tx() as session:
        actor = INSTALLER
        if session.scalar(select(User.name).limit(1)) is not None:
            actor = authorised(ctx, session, "loading the organisation", ADMINISTRATOR).name
        audit_key["sealed"] = anchor.seal(session)  # a record not sealed yet is sealed from now on
        with audit.organisation_change(session, actor, people.source):
            load_people(session, people)
    folders = [folder for library in ctx.libraries for folder in library.process_dirs]
    deployed = designer.deploy_as(ctx, folders, actor) if folders else []
    return {"database": ctx.db.safe_url, "users": len(people.people), "organisation": people.source,
            "processes": deployed, "audit_key": audit_key}


def load_people(session: Session, org: organisation.Organisation) -> None:
    """Make the users and roles in the database those of the organisation file."""
    existing = {u.name: u for u in session.scalars(select(User))}
    for person in org.people:
        user = existing.pop(person.name, None) or User(name=person.name)
        user.full_name, user.email, user.department = person.full_name, person.email, person.department
        user.roles = [UserRole(user_name=person.name, role=r) for r in dict.fromkeys(person.roles)]
        session.add(user)
        session.flush()
    for gone in existing.values():
        session.delete(gone)


def users(ctx: Context) -> list[dict[str, Any]]:
    ctx.db.check_schema()
    with ctx.tx() as session:
        return [{"name": u.name, "roles": u.role_names, "full_name": u.full_name, "department": u.department}
                for u in session.scalars(select(User).order_by(User.name))]


def whoami(ctx: Context) -> dict[str, Any]:
    """The acting user as the organisation knows them, or PermissionDenied (exit 4) when no user is given or the
    organisation has no such user: what the CLI asks first for every command run as a user."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        user = ctx.actor(session)
        return {"name": user.name, "roles": user.role_names, "full_name": user.full_name, "email": user.email,
                "department": user.department}
