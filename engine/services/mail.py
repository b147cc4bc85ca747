"""Notifications by e-mail: the worker's pass over the outbox (`send_outbox`), after its timers.

Configured by the environment: `PMOFLOW_SMTP_URL` (`smtp://host:port`, `smtp+starttls://user:password@host:587`
or `smtps://user:password@host:465`; unset: no e-mail is sent and the outbox is not touched), `PMOFLOW_MAIL_FROM`
(the sender, default `pmoflow@localhost`) and `PMOFLOW_BASE_URL` (where the web workspace is, for the link to
the task; without it the message names the task and its instance only). Addresses are the organisation file's
`email`; a recipient without one gets no e-mail (the web inbox still shows the notification).

Each message goes out once, however many workers run: a pass first claims a batch of pending rows in one short
transaction (an UPDATE that only takes rows nobody holds: on PostgreSQL a concurrent claimer waits for the row
and then sees it taken; SQLite serialises writers), sends them outside any transaction, then records each
outcome only where its claim still stands. A worker that dies mid-send leaves its claim to lapse after LEASE, so
a message is sent twice only when a worker dies between the server's acceptance and its record (SMTP offers no
more; the Message-ID is stable, so a receiving system can drop the copy).

Failures: a refused recipient or another permanent (5xx) answer marks the row failed at once; anything else (the
server unreachable, a 4xx) holds it for a backoff doubling from BACKOFF_FIRST to BACKOFF_LIMIT, for at most
MAX_ATTEMPTS tries. Notifications older than MAX_AGE when first seen are not mailed (turning e-mail on later
does not send the whole history). Delivery in the web inbox (`delivered_at`) is separate and unchanged.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import or_, select, update

from pmoflow.engine import clock
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import Notification, User
from pmoflow.engine.services.context import Context

URL_ENV, FROM_ENV, BASE_ENV = "PMOFLOW_SMTP_URL", "PMOFLOW_MAIL_FROM", "PMOFLOW_BASE_URL"
BATCH = 50
LEASE = timedelta(minutes=5)  # a claim older than this is a dead worker's: the row may be claimed again
BACKOFF_FIRST, BACKOFF_LIMIT = timedelta(minutes=1), timedelta(hours=1)
MAX_ATTEMPTS = 8
MAX_AGE = timedelta(days=3)
TIMEOUT = 30.0  # seconds for the SMTP conversation


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "none", "starttls" or "tls"
    user: str | None
    password: str | None
    sender: str
    base_url: str | None

    def __repr__(self) -> str:  # no password in any log or traceback
        return f"SmtpSettings({self.security}://{self.host}:{self.port}, from {self.sender})"


def settings_from_env(url: str | None = None) -> SmtpSettings | None:
    """The SMTP settings of the environment (or of `url`), None when e-mail is off."""
    url = url if url is not None else os.environ.get(URL_ENV, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    schemes = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidInput(f"{URL_ENV}: give smtp://host:port, smtp+starttls://user:password@host:587 or "
                           f"smtps://user:password@host:465 (got scheme '{parts.scheme}')")
    security, default_port = schemes[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise InvalidInput(f"{URL_ENV}: the port is not a number from 1 to 65535") from None
    base = os.environ.get(BASE_ENV, "").strip().rstrip("/") or None
    return SmtpSettings(parts.hostname, port, security, unquote(parts.username) if parts.username else None,
                        unquote(parts.password) if parts.password else None,
                        os.environ.get(FROM_ENV, "").strip() or "pmoflow@localhost", base)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try."""
    return min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_LIMIT)


def send_outbox(ctx: Context, now: datetime | None = None, url: str | None = None) -> dict[str, Any]:
    """Send the pending notifications of recipients with an e-mail address, a batch per call; what happened:
    `sent`, `retrying` and `failed` (outbox row ids), or `configured: False` when e-mail is off."""
    settings = settings_from_env(url)
    if settings is None:
        return {"configured": False, "sent": [], "retrying": [], "failed": []}
    now = clock.as_db(now) if now is not None else clock.db_now()
    token = secrets.token_hex(16)
    ctx.db.check_schema()
    claimed = _claim(ctx, token, now)
    result: dict[str, Any] = {"configured": True, "sent": [], "retrying": [], "failed": []}
    if not claimed:
        return result
    try:
        connection = _connect(settings)
    except (OSError, smtplib.SMTPException) as exc:
        for row in claimed:
            _record(ctx, row, token, now, exc, result)
        return result
    try:
        for row in claimed:
            try:
                connection.send_message(message(row, settings))
            except (OSError, smtplib.SMTPException) as exc:
                _record(ctx, row, token, now, exc, result)
                if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
                    connection = _reconnect(settings, connection)
            else:
                _record(ctx, row, token, now, None, result)
    finally:
        _quit(connection)
    return result


@dataclass(frozen=True)
class Outgoing:
    """What one message is made of (read in the claiming transaction)."""

    id: int
    notification_id: str
    address: str
    full_name: str
    subject: str
    kind: str
    process_id: str
    instance_id: int
    task_name: str | None
    human_task_id: int | None
    via_role: str | None
    attempts: int


def _claim(ctx: Context, token: str, now: datetime) -> list[Outgoing]:
    """Claim up to BATCH pending rows whose recipient has an address; the claimed ones, as messages to make."""
    free = or_(Notification.email_hold_until.is_(None), Notification.email_hold_until <= now)
    with ctx.tx() as session:
        candidates = select(Notification.id).join(User, User.name == Notification.recipient_user).where(
            Notification.email_status.is_(None), Notification.created_at >= now - MAX_AGE, free,
            User.email != "").order_by(Notification.id).limit(BATCH)
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        taken = set(session.scalars(update(Notification).where(
            Notification.id.in_(ids), Notification.email_status.is_(None), free)
            .values(email_claim=token, email_hold_until=now + LEASE)
            .returning(Notification.id).execution_options(synchronize_session=False)))
        rows = session.execute(select(Notification, User.email, User.full_name)
                               .join(User, User.name == Notification.recipient_user)
                               .where(Notification.id.in_(taken)).order_by(Notification.id)).all()
        return [Outgoing(n.id, n.notification_id, email, full_name or "", n.subject, n.kind, n.process_id,
                         n.instance_id, n.task_name, n.human_task_id, n.via_role, n.email_attempts)
                for n, email, full_name in rows]


def _record(ctx: Context, row: Outgoing, token: str, now: datetime, error: BaseException | None,
            result: dict[str, Any]) -> None:
    """Write one outcome, only if the claim is still this pass's (a lapsed claim is another worker's now)."""
    attempts = row.attempts + 1
    if error is None:
        values: dict[str, Any] = {"email_status": "sent", "email_at": now, "email_error": None}
        outcome = "sent"
    elif _permanent(error) or attempts >= MAX_ATTEMPTS:
        values, outcome = {"email_status": "failed", "email_at": now, "email_error": _describe(error)}, "failed"
    else:
        values = {"email_hold_until": now + backoff(attempts), "email_error": _describe(error)}
        outcome = "retrying"
    values.update(email_attempts=attempts, email_claim=None)
    if error is None or outcome == "failed":
        values["email_hold_until"] = None
    with ctx.tx() as session:
        done = session.execute(update(Notification).where(Notification.id == row.id,
                                                          Notification.email_claim == token).values(**values)
                               .execution_options(synchronize_session=False))
    if done.rowcount:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult; Session.execute is typed Result
        result[outcome].append(row.id)


def _permanent(error: BaseException) -> bool:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and code >= 500


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "tls":
        connection: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT)
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
        if settings.security == "starttls":
            connection.starttls()
    if settings.user:
        connection.login(settings.user, settings.password or "")
    return connection


def _reconnect(settings: SmtpSettings, old: smtplib.SMTP) -> smtplib.SMTP:
    _quit(old)
    try:
        return _connect(settings)
    except (OSError, smtplib.SMTPException):
        return old  # the next message fails too and is held for its backoff


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def link(row: Outgoing, base_url: str | None) -> str | None:
    """Where the message points: the open task when there is one, else the instance."""
    if not base_url:
        return None
    return f"{base_url}/tasks/{row.human_task_id}" if row.human_task_id else f"{base_url}/instances/{row.instance_id}"


def message(row: Outgoing, settings: SmtpSettings) -> EmailMessage:
    """The e-mail of one outbox row: plain text, the subject, the task or instance it is about, and the link."""
    mail = EmailMessage()
    subject = " ".join((row.subject or row.kind).split())[:200] or "A notification"
    mail["Subject"] = f"[pmoflow] {subject}"
    mail["From"] = settings.sender
    mail["To"] = f"{row.full_name} <{row.address}>" if row.full_name else row.address
    mail["Date"] = format_datetime(clock.now())
    mail["Message-ID"] = make_msgid(f"pmoflow.{row.notification_id}.{row.id}", domain=_domain(settings.sender))
    mail["Auto-Submitted"] = "auto-generated"
    about = f"'{row.task_name}' in" if row.task_name else "Instance"
    lines = [row.subject or row.kind, "", f"{about} {row.process_id}, instance {row.instance_id} ({row.kind})."]
    target = link(row, settings.base_url)
    if target:
        lines += ["", f"Open it: {target}"]
    reason = f"you hold the role {row.via_role}" if row.via_role else "you were named in it"
    lines += ["", f"You receive this because {reason}.", "-- pmoflow"]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >")
    return domain or socket.getfqdn()
