"""Upgrading keeps deployed versions running: a version deployed by the release before the handler kit names the
old per-process notification operators with their old parameters (tests/fixtures/previous_release), and its
instances still queue the same notifications through workflows/deprecated.py."""

from __future__ import annotations

from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release" / "old_notify_operators.bpmn"


def test_a_version_deployed_by_the_previous_release_still_notifies(people):
    people("dina.designer").deploy([FIXTURE])
    pete = people("pete.pm")
    started = pete.start("old_notify_operators", {"title": "Billing replacement", "auditee": "olga.owner",
                                                  "approver_role": "Quality Director"})
    assert (started["status"], started["error"]) == ("completed", None)
    history = pete.history(started["instance_id"])
    assert [e["payload"]["operator"] for e in history if e["type"] == "service_called"] == [
        "initiation.notify", "audit.notify", "closure.notify", "pip.notify", "capa.escalate"]
    queued = [(e["task"], e["payload"]["kind"], sorted(r["user"] for r in e["payload"]["recipients"]))
              for e in history if e["type"] == "notification_queued"]
    assert queued == [
        ("initiation_notify", "notice", ["quinn.qd"]),
        ("audit_notify", "notice", ["olga.owner"]),
        ("closure_notify", "reminder", ["kim.km"]),
        ("pip_notify", "accepted", ["olga.owner"]),
        ("capa_escalate", "management-review", ["olga.owner", "pat.director", "quinn.qd"]),
    ]
    data = pete.show(started["instance_id"])["data"]
    assert (data["reminderC"]["projectId"], data["noticeD"]["pipId"], data["noticeE"]["capaId"]) == (
        "PRJ-2026-0A1B2C", "PIP-2026-1A2B3C", "CAPA-NC-1-1A2B3C")
    assert data["noticeE"]["flaggedForManagementReview"] is True
