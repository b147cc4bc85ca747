"""Notifications by e-mail (engine/services/mail.py) against a real SMTP server the test starts (aiosmtpd), on
SQLite and PostgreSQL: each message once with a link to its task, also with two workers sending at once; a
temporary refusal retried after its backoff, a permanent one failed; a server that is down holds everything;
nothing happens without PMOFLOW_SMTP_URL.

The notifications are the fixture `package_approval`'s 2-day reminder (to the Quality Directors alice and carol,
and to the starter bob, who has no address) on a copy of the test organisation with e-mail addresses."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from conftest import FIXTURES
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import Notification
from pmoflow.engine.services import mail

ORG = FIXTURES / "mail" / "org.toml"
BASE = "https://pmo.example/workspace"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler keeping what it accepts; `refuse` maps an address to the reply its RCPT gets."""

    def __init__(self) -> None:
        self.received: list = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        return [m for rcpts, m in self.received if address in rcpts]


@pytest.fixture
def smtp(monkeypatch) -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1, and the environment pointing the worker at it."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(mail.URL_ENV, f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv(mail.BASE_ENV, BASE + "/")
    monkeypatch.setenv(mail.FROM_ENV, "pmo@pmo.example")
    yield box
    controller.stop()


@pytest.fixture
def office(initialised, make_pmo) -> Callable[[int], list[int]]:
    """`office(n)`: n package approvals started by bob and reminded (run_due three days on); their ids."""
    alice = initialised("alice", ORG, FIXTURES / "notifications")

    def remind(count: int) -> list[int]:
        bob = make_pmo("bob")
        started = [bob.start("package_approval")["instance_id"] for _ in range(count)]
        alice.run_due(datetime.now(UTC) + timedelta(days=3))  # alice: a PMO Administrator, who may run it as of then
        return started

    return remind


def rows(pmo: Pmoflow) -> list[Notification]:
    with pmo.db.transaction() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_each_notification_is_mailed_once_to_its_recipients_address_with_a_link_to_the_task(office, make_pmo, smtp):
    [instance] = office(1)
    alice = make_pmo("alice")
    [approve] = [t for t in make_pmo("carol").tasks() if t["instance_id"] == instance]
    first = alice.send_mail()
    assert first["configured"] and len(first["sent"]) == 2 and first["retrying"] == first["failed"] == []
    [to_carol] = smtp.to("carol@pmo.example")
    assert to_carol["Subject"] == "[pmoflow] Reminder: the package is waiting for your approval"
    assert to_carol["From"] == "pmo@pmo.example" and to_carol["Auto-Submitted"] == "auto-generated"
    body = to_carol.get_content()
    assert f"Open it: {BASE}/tasks/{approve['id']}" in body and "instance" in body
    assert "you hold the role Quality Director" in body
    assert smtp.to("alice@pmo.example")[0]["To"] == "Alice Admin <alice@pmo.example>"
    again = alice.send_mail()
    assert again["sent"] == [] and len(smtp.received) == 2  # each once
    outcome = {(r.recipient_user, r.email_status, r.email_attempts) for r in rows(alice)}
    assert outcome == {("alice", "sent", 1), ("carol", "sent", 1), ("bob", None, 0)}  # bob has no address
    assert all(r.delivered_at is None for r in rows(alice))  # the web inbox's delivery is its own


def test_several_workers_at_once_send_each_message_once(office, db_url, smtp, monkeypatch):
    office(8)  # 16 messages, claimed 3 at a time by three workers racing each other
    monkeypatch.setattr(mail, "BATCH", 3)
    workers = [Pmoflow(db_url, user="alice", libraries=[]) for _ in range(3)]
    start, results = threading.Barrier(len(workers)), []

    def work(pmo: Pmoflow) -> None:
        start.wait()
        while True:
            result = pmo.send_mail()
            results.append(result)
            if not result["sent"]:
                return

    threads = [threading.Thread(target=work, args=(pmo,)) for pmo in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for pmo in workers:
        pmo.close()
    sent = [row_id for result in results for row_id in result["sent"]]
    assert len(sent) == len(set(sent)) == 16
    ids = [m["Message-ID"] for _, m in smtp.received]
    assert len(ids) == len(set(ids)) == 16


def test_a_temporary_refusal_is_retried_after_its_backoff_and_a_permanent_one_fails_at_once(office, make_pmo,
                                                                                            smtp):
    office(1)
    alice = make_pmo("alice")
    smtp.refuse = {"carol@pmo.example": "451 4.3.0 mailbox busy, try later"}
    now = datetime.now(UTC)
    first = alice.send_mail(now)
    assert len(first["sent"]) == 1 and len(first["retrying"]) == 1
    [carol] = [r for r in rows(alice) if r.recipient_user == "carol"]
    assert (carol.email_status, carol.email_attempts, carol.email_claim) == (None, 1, None)
    assert "451" in carol.email_error
    assert alice.send_mail(now + timedelta(seconds=30))["retrying"] == []  # held for its backoff (1 minute)
    smtp.refuse = {}
    assert alice.send_mail(now + mail.backoff(1) + timedelta(seconds=1))["sent"] == [carol.id]
    assert len(smtp.to("carol@pmo.example")) == 1
    office(1)
    smtp.refuse = {"carol@pmo.example": "550 5.1.1 no such mailbox"}
    refused = alice.send_mail()
    assert len(refused["failed"]) == 1 and len(refused["sent"]) == 1
    failed = [r for r in rows(alice) if r.email_status == "failed"]
    assert [(r.recipient_user, r.email_attempts) for r in failed] == [("carol", 1)] and "550" in failed[0].email_error
    assert alice.send_mail(datetime.now(UTC) + timedelta(days=1))["sent"] == []  # never again


def test_a_server_that_is_down_holds_every_message_and_gives_up_after_the_last_attempt(office, make_pmo,
                                                                                      monkeypatch):
    office(1)
    monkeypatch.setenv(mail.URL_ENV, f"smtp://127.0.0.1:{free_port()}")  # nobody listens there
    alice = make_pmo("alice")
    now = datetime.now(UTC)
    for attempt in range(1, mail.MAX_ATTEMPTS):
        assert len(alice.send_mail(now)["retrying"]) == 2, attempt
        now += mail.backoff(attempt) + timedelta(seconds=1)
    assert len(alice.send_mail(now)["failed"]) == 2
    assert {(r.email_status, r.email_attempts) for r in rows(alice) if r.recipient_user != "bob"} == {
        ("failed", mail.MAX_ATTEMPTS)}


def test_without_an_smtp_url_nothing_is_sent_or_claimed(office, make_pmo, monkeypatch):
    office(1)
    monkeypatch.delenv(mail.URL_ENV, raising=False)
    alice = make_pmo("alice")
    assert alice.send_mail() == {"configured": False, "sent": [], "retrying": [], "failed": []}
    assert {(r.email_status, r.email_claim, r.email_attempts) for r in rows(alice)} == {(None, None, 0)}


def test_notifications_older_than_the_window_are_not_mailed(office, make_pmo, smtp):
    office(1)
    assert make_pmo("alice").send_mail(datetime.now(UTC) + mail.MAX_AGE + timedelta(hours=1))["sent"] == []
    assert smtp.received == []


def test_a_bad_smtp_url_is_a_plain_error():
    for url in ("http://mail.example", "smtp://", "smtp://host:99999"):
        with pytest.raises(InvalidInput, match="PMOFLOW_SMTP_URL"):
            mail.settings_from_env(url)
    settings = mail.settings_from_env("smtp+starttls://me%40pmo:s3cret@mail.example")
    assert (settings.port, settings.security, settings.user, settings.password) == (587, "starttls", "me@pmo",
                                                                                   "s3cret")
    assert "s3cret" not in repr(settings)
    assert mail.backoff(1) == mail.BACKOFF_FIRST and mail.backoff(30) == mail.BACKOFF_LIMIT


def test_the_worker_command_sends_the_outbox_after_its_timers(office, db_url, smtp, cli_handlers):
    from test_cli import run_json

    office(1)
    result = run_json(db_url, "worker", "--once")
    assert result["fired"] == [] and len(result["mail"]["sent"]) == 2
    assert sorted(r for rcpts, _ in smtp.received for r in rcpts) == ["alice@pmo.example", "carol@pmo.example"]
