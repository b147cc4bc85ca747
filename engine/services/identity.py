"""Who someone is on the web: passwords, sign-in with throttling, browser sessions and personal API tokens.

Passwords are Argon2id hashes (argon2-cffi); API tokens and session ids are random and stored only as SHA-256
hashes, so a copy of the database signs nobody in. Every sign-in, refusal, password set and token made or
revoked is an event of the `identity` audit chain (`audit.add_identity_event`): never with the secret itself.

A name with five failed sign-ins in fifteen minutes (since its last successful one) is refused unchecked until
the oldest of them is fifteen minutes old: `Throttled` carries how long that is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock, limits
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound, PmoflowError
from pmoflow.engine.models import ApiToken, Event, User, UserCredential, WebSession
from pmoflow.engine.services.context import ADMINISTRATOR, Context, authorised

PASSWORD_MIN, PASSWORD_MAX = 12, 1024
MAX_FAILURES = 5
THROTTLE_WINDOW = timedelta(minutes=15)
TOKEN_PREFIX = "pmo_"
REFUSED = "wrong user name or password"  # the same words whatever was wrong: nobody learns which names exist

# Argon2id with argon2-cffi's defaults (RFC 9106's second recommendation). Tests may swap in a cheaper hasher:
# the parameters travel inside each hash, so verification follows whatever made it.
hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the name is unknown or has no password, so a refusal takes as long either way."""
    return hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(PmoflowError):
    """No valid credentials: a wrong name or password, an unknown, revoked or expired token or session."""

    exit_code = 4


class Throttled(SignInRefused):
    """Too many failed sign-ins for this name lately; `retry_after` says in how many seconds to try again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


T = TypeVar("T")


def _retrying(work: Callable[[], T], tries: int = 10) -> T:
    """Identity events share one chain: two sign-ins at once may collide on its next link; the loser tries again."""
    for attempt in range(tries):
        try:
            return work()
        except Conflict:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- passwords ---------------------------------------------------------------------------------------------------

def password_problem(user: str, password: str) -> str | None:
    """Why a password is not acceptable, or None: the policy is length (12 to 1024 characters), not the name."""
    if limits.text_problem(password):
        return "the password contains a character that cannot be stored (a NUL or a lone surrogate)"
    if password.strip().casefold() == user.casefold():
        return "the password may not be the user name"
    if len(password) < PASSWORD_MIN:
        return f"the password is too short: use at least {PASSWORD_MIN} characters (a few words make a good one)"
    if len(password) > PASSWORD_MAX:
        return f"the password is too long: at most {PASSWORD_MAX} characters"
    return None


def set_password(ctx: Context, user: str, password: str) -> dict[str, Any]:
    """Set `user`'s web password: the acting user their own, a PMO Administrator anyone's. Ends the user's
    browser sessions (a changed password signs out everywhere)."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = ctx.actor(session)
        if actor.name != user:
            authorised(ctx, session, "setting another user's password", ADMINISTRATOR)
        target = None if limits.text_problem(user) else session.get(User, user)
        if target is None:
            raise NotFound(f"no user {limits.shown(user)} in the organisation")
        problem = password_problem(user, password)
        if problem:
            raise InvalidInput(problem)
        now = clock.db_now()
        credential = session.get(UserCredential, user) or UserCredential(user_name=user)
        credential.password_hash, credential.set_at, credential.set_by = hasher.hash(password), now, actor.name
        session.add(credential)
        session.execute(delete(WebSession).where(WebSession.user_name == user))
        audit.add_identity_event(session, actor.name, "password_set", user=user)
        return {"user": user, "set_by": actor.name, "set_at": now.isoformat()}


# -- sign-in -----------------------------------------------------------------------------------------------------

def _recorded_name(name: str) -> str:
    """The name a refusal is recorded under: what was typed, unless no database could store it."""
    if limits.text_problem(name) or not name:
        return "(unreadable name)"
    return name[:120]


def _throttle(session: Session, name: str, now: datetime) -> int:
    """Seconds until `name` may try again (0: now): failures since its last sign-in, within the window."""
    recent = select(Event.at).where(Event.stream == audit.IDENTITY_STREAM, Event.actor == name)
    last_ok = session.scalar(select(func.max(Event.at)).where(
        Event.stream == audit.IDENTITY_STREAM, Event.actor == name, Event.type == "signed_in"))
    since = max(now - THROTTLE_WINDOW, last_ok) if last_ok else now - THROTTLE_WINDOW
    failures = list(session.scalars(recent.where(Event.type == "sign_in_failed", Event.at > since)
                                    .order_by(Event.at.desc()).limit(MAX_FAILURES)))
    if len(failures) < MAX_FAILURES:
        return 0
    return max(1, int((failures[-1] + THROTTLE_WINDOW - now).total_seconds()) + 1)


def sign_in(ctx: Context, name: str, password: str, client: str | None = None,
            session_max_age: timedelta | None = None) -> dict[str, Any]:
    """Check a name and password. Refused: `SignInRefused` (the same words for any reason) or `Throttled`;
    each outcome is recorded. With `session_max_age`, also opens a browser session and returns its id (under
    `session`): a new id at every sign-in, so an id planted before sign-in is never the signed-in one.

    The hash is verified between two transactions, not inside one: Argon2 takes tens of milliseconds, and a
    SQLite writer would hold everyone else's writes for that long. The throttle is checked again when the outcome
    is written, so attempts made in parallel cannot slip past it."""
    ctx.db.check_schema()
    recorded = _recorded_name(name)
    with ctx.tx() as session:
        if _throttle(session, recorded, clock.db_now()):
            stored = None  # refused below, unchecked
        else:
            user = None if recorded != name else session.get(User, name)
            credential = session.get(UserCredential, name) if user is not None else None
            stored = (user is not None, credential.password_hash if credential else None)
    reason = None
    if stored is not None:
        known, password_hash = stored
        reason = "unknown user" if not known else "no password set" if password_hash is None else None
        try:
            hasher.verify(password_hash or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            reason = reason or "wrong password"

    def record() -> dict[str, Any]:
        with ctx.tx() as session:
            now = clock.db_now()
            wait = _throttle(session, recorded, now)
            if wait or stored is None:
                wait = wait or 1  # held back when checked; free again just now
                audit.add_identity_event(session, recorded, "sign_in_throttled", user=recorded, client=client,
                                         retry_after=wait)
                return {"refused": "throttled", "retry_after": wait}
            if reason:
                audit.add_identity_event(session, recorded, "sign_in_failed", user=recorded, reason=reason,
                                         client=client)
                return {"refused": reason}
            user = session.get(User, name)
            if user is None:  # removed from the organisation meanwhile
                return {"refused": "unknown user"}
            audit.add_identity_event(session, name, "signed_in", user=name, client=client)
            result: dict[str, Any] = {"user": name, "roles": user.role_names}
            if session_max_age is not None:
                result["session"] = _open_session(session, name, now, session_max_age)
            return result

    outcome = _retrying(record)
    if outcome.get("refused") == "throttled":
        raise Throttled(f"too many failed sign-ins for this name: try again in {outcome['retry_after']} seconds",
                        outcome["retry_after"])
    if "refused" in outcome:
        raise SignInRefused(REFUSED)
    return outcome


# -- browser sessions --------------------------------------------------------------------------------------------

def _open_session(session: Session, user: str, now: datetime, max_age: timedelta) -> str:
    session.execute(delete(WebSession).where(WebSession.user_name == user, WebSession.expires_at <= now))
    session_id = secrets.token_urlsafe(32)
    session.add(WebSession(id_hash=digest(session_id), user_name=user, created_at=now, expires_at=now + max_age))
    return session_id


def session_user(ctx: Context, session_id: str) -> str | None:
    """The user a live browser session belongs to, or None (unknown, ended or expired)."""
    with ctx.tx() as session:
        row = session.get(WebSession, digest(session_id))
        if row is None or row.expires_at <= clock.db_now():
            return None
        return row.user_name


def sign_out(ctx: Context, session_id: str) -> str | None:
    """End a browser session (on every server: the row goes); the user it belonged to, or None."""
    def work() -> str | None:
        with ctx.tx() as session:
            row = session.get(WebSession, digest(session_id))
            if row is None:
                return None
            session.delete(row)
            audit.add_identity_event(session, row.user_name, "signed_out", user=row.user_name)
            return row.user_name

    return _retrying(work)


# -- personal API tokens -----------------------------------------------------------------------------------------

def create_token(ctx: Context, name: str) -> dict[str, Any]:
    """A new API token of the acting user, named `name` (where it is used: "laptop", "reporting job"). The
    token is in the answer once; only its hash is kept. It acts with its user's roles, whatever they are then."""
    ctx.db.check_schema()
    problem = limits.text_problem(name)
    if problem or not name.strip() or len(name) > 120:
        raise InvalidInput(f"the token name {problem or 'must be 1 to 120 characters'}")
    with ctx.tx() as session:
        user = ctx.actor(session)
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = clock.db_now()
        session.add(ApiToken(id=token_id, user_name=user.name, name=name.strip(), token_hash=digest(token),
                             created_at=now))
        audit.add_identity_event(session, user.name, "token_created", token_id=token_id, name=name.strip(),
                                 user=user.name)
        return {"id": token_id, "name": name.strip(), "user": user.name, "created_at": now.isoformat(),
                "token": token}


def _token_view(row: ApiToken) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "user": row.user_name, "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


def list_tokens(ctx: Context, all_users: bool = False) -> list[dict[str, Any]]:
    """The acting user's tokens (every user's for a PMO Administrator with `all_users`), never the secrets."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
        if all_users:
            authorised(ctx, session, "listing everyone's API tokens", ADMINISTRATOR)
        else:
            query = query.where(ApiToken.user_name == ctx.actor(session).name)
        return [_token_view(row) for row in session.scalars(query)]


def revoke_token(ctx: Context, token_id: str) -> dict[str, Any]:
    """Revoke a token by its id: the acting user's own, or anyone's for a PMO Administrator."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        user = ctx.actor(session)
        row = None if limits.text_problem(token_id) else session.get(ApiToken, token_id)
        if row is None or (row.user_name != user.name and ADMINISTRATOR not in user.role_names):
            raise NotFound(f"no API token {limits.shown(token_id)} of yours (see 'pmoflow token list')")
        if row.revoked_at is None:
            row.revoked_at = clock.db_now()
            audit.add_identity_event(session, user.name, "token_revoked", token_id=row.id, user=row.user_name)
        return _token_view(row)


def user_for_token(ctx: Context, token: str) -> str | None:
    """The user a presented API token acts for, or None (malformed, unknown or revoked)."""
    token_id, _, rest = token.removeprefix(TOKEN_PREFIX).partition("_")
    if not token.startswith(TOKEN_PREFIX) or not rest or len(token_id) != 12 or limits.text_problem(token):
        return None
    with ctx.tx() as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest(token)):
            return None
        return row.user_name
