"""The persisted state: definitions, instances, the human-task projection, candidates, events, users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    department: Mapped[str] = mapped_column(String(120), default="")
    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(120), primary_key=True, index=True)


class ProcessDefinition(Base):
    """One deployed version of a process: its sources and parsed, serialized specs."""

    __tablename__ = "process_definitions"
    __table_args__ = (UniqueConstraint("process_id", "version"), UniqueConstraint("process_id", "content_hash"))

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)  # file name -> text
    spec: Mapped[str] = mapped_column(Text)  # serialized spec + subprocess specs (JSON)
    start_form: Mapped[str | None] = mapped_column(String(300), nullable=True)
    deployed_by: Mapped[str] = mapped_column(String(120))
    deployed_at: Mapped[datetime] = mapped_column()


class ProcessInstance(Base):
    __tablename__ = "process_instances"
    __table_args__ = (Index("ix_instances_due", "status", "next_due"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definitions.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    business_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_by: Mapped[str] = mapped_column(String(120))
    started_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(Text)  # serialized workflow without its spec
    next_due: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """The inbox projection of READY manual tasks, kept in step with the workflow at every save."""

    __tablename__ = "human_tasks"
    __table_args__ = (Index("ix_human_tasks_open", "state", "instance_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    spiff_task_id: Mapped[str] = mapped_column(String(36), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    lane: Mapped[str | None] = mapped_column(String(200), nullable=True)
    form: Mapped[str | None] = mapped_column(String(300), nullable=True)
    instructions: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True)
    due: Mapped[datetime | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(20))  # ready, completed, cancelled
    created_at: Mapped[datetime] = mapped_column()
    completed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    candidates: Mapped[list[TaskCandidate]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class TaskCandidate(Base):
    """Who may take a task: rows of ('role', name) or ('user', name), so inboxes are an indexed join."""

    __tablename__ = "task_candidates"
    __table_args__ = (Index("ix_candidates_lookup", "kind", "name"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), primary_key=True)


class MessageWait(Base):
    """A message an instance waits for, with the correlation values it expects, kept in step at every save:
    delivery finds its receiver with one indexed lookup instead of loading waiting workflows."""

    __tablename__ = "message_waits"
    __table_args__ = (Index("ix_message_waits_lookup", "message_name", "correlation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    message_name: Mapped[str] = mapped_column(String(200))
    bpmn_id: Mapped[str] = mapped_column(String(200))
    properties: Mapped[str] = mapped_column(String(500))  # the correlation properties it reads, comma-separated
    correlation: Mapped[str] = mapped_column(String(500))  # canonical JSON of the values it expects ({} = any)


class ProcessSchedule(Base):
    """A timer start event of a deployed process: when the worker next starts an instance of it."""

    __tablename__ = "process_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definitions.id"))
    bpmn_id: Mapped[str] = mapped_column(String(200))
    expression: Mapped[str] = mapped_column(String(200))
    next_due: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)  # cycles left; None: unbounded
    owner: Mapped[str] = mapped_column(String(120))  # who the started instances belong to
    fired: Mapped[int] = mapped_column(Integer, default=0)


class Event(Base):
    """The audit log. Each stream (an instance, or a process's deployments) is a hash chain."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("stream", "seq"),
        Index("ix_events_type_at", "type", "at"),
        Index("ix_events_actor", "actor"),
        # Auditors' queries across instances (pmoflow audit events, reports) filter on these.
        Index("ix_events_at", "at"),
        Index("ix_events_instance_seq", "instance_id", "seq"),
        Index("ix_events_process_at", "process_id", "at"),
        Index("ix_events_task_at", "task_bpmn_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(String(220))
    seq: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    process_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(120))
    type: Mapped[str] = mapped_column(String(40))
    task_bpmn_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    task_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class EventFact(Base):
    """An index of what auditors filter on, written with each event: one row per (key, value).

    Keys are payload paths (`data.gateDecision`, `outputs.recommendation`, `taken`, ...) and derived facts
    starting with `@` (`@role`, `@late`, `@by_starter`); see `pmoflow.engine.audit.facts_of`. The payload
    stays the record (and what the hash covers); these rows only let a query find events by their content
    through the (key, value) index instead of reading every payload.
    """

    __tablename__ = "event_facts"
    __table_args__ = (Index("ix_event_facts_lookup", "key", "value", "event_id"),)

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    event: Mapped[Event] = relationship()


class Notification(Base):
    """The outbox: one row per recipient of a reminder, escalation or notice a handler queued.

    Roles are expanded to the users holding them when the notification is queued (`via_role` keeps which role
    brought each one in; None when named directly). Inbox delivery: `delivered_at` is set when the recipient
    lists their own notifications (see `pmoflow.engine.notifications`).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("notification_id", "recipient_user"),
        Index("ix_notifications_recipient", "recipient_user", "delivered_at"),
        Index("ix_notifications_email", "email_status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[str] = mapped_column(String(40))  # the record's NTF-... id
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    task_bpmn_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the task it is about, if said
    task_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_tasks.id", ondelete="SET NULL"),
                                                      nullable=True)
    kind: Mapped[str] = mapped_column(String(40))  # the record's level (reminder, overdue, ...) or "notice"
    subject: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(20))
    recipient_user: Mapped[str] = mapped_column(String(120))
    via_role: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # e-mail (pmoflow.engine.services.mail): NULL status while pending, then 'sent' or 'failed' at email_at;
    # a worker's claim (token, held until email_hold_until) keeps another from sending it too
    email_status: Mapped[str | None] = mapped_column(String(10), nullable=True)
    email_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    email_claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    email_hold_until: Mapped[datetime | None] = mapped_column(nullable=True)
    email_at: Mapped[datetime | None] = mapped_column(nullable=True)
    email_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditSeal(Base):
    """The head of one audit stream as last sealed with the audit key (kept outside the database), so that a
    record re-hashed with database access alone no longer matches; see `pmoflow.engine.anchor`.

    `digest` binds what else decides behaviour to the head: an instance's state, status and definition, or a
    process's stored specs. Rows under `anchor/` are the anchor's own: `anchor/key` (which key, since when) and
    `anchor/register` (how many instance streams were ever sealed, so a deleted instance shows)."""

    __tablename__ = "audit_seals"

    stream: Mapped[str] = mapped_column(String(220), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class UserCredential(Base):
    """A user's password for the web workspace, as an Argon2id hash (never the password); see
    `pmoflow.engine.services.identity`."""

    __tablename__ = "user_credentials"

    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column()
    set_by: Mapped[str] = mapped_column(String(120))


class ApiToken(Base):
    """A personal API token: `id` is the public prefix shown in listings, `token_hash` the SHA-256 of the whole
    token (which is shown once, at creation, and stored nowhere). It acts with its user's roles."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebSession(Base):
    """A signed-in browser session: the SHA-256 of its id (the id itself lives only in the signed cookie), so
    sign-out and a password change end it on every server, and a database dump holds no usable session."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
