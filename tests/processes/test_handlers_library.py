"""The PMO library's handler table (workflows/__init__.py HANDLERS = collect(...)): operator prefixes equal module
names, the ids of earlier releases still answer with the record they made, one notification operator, policy read
from data files, and the initiation's escalation ladder that used to be a script."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import pmoflow.workflows as library
from pmoflow.engine.handlers import collect
from pmoflow.workflows import deprecated, initiation, notifications, policy

OLD_IDS = frozenset(collect(deprecated))


def test_every_operator_is_named_after_its_module_except_the_deprecated_ids():
    assert sorted(OLD_IDS) == ["audit.notify", "capa.escalate", "closure.notify", "initiation.notify", "pip.notify"]
    for operator, fn in library.HANDLERS.items():
        if operator in OLD_IDS:
            assert fn.__module__.endswith(".deprecated")
            continue
        prefix = fn.__module__.rpartition(".")[2]
        assert operator.partition(".")[0] == prefix, operator
    assert library.HANDLERS["capa.open"].__name__ == "open_capa"  # the one explicit id: `open` is a builtin


def test_the_ids_every_release_deployed_are_still_registered():
    before_the_kit = {
        "initiation.register_request", "initiation.search_lessons", "initiation.create_project", "initiation.notify",
        "audit.register_audit", "audit.check_independence", "audit.notify", "audit.send_report", "audit.close_audit",
        "capa.open", "capa.escalate", "gate.load_checklist", "gate.check_baseline", "gate.metrics_snapshot",
        "gate.open_next_stage", "closure.archive_baseline", "closure.release_staff", "closure.notify",
        "closure.publish_lessons", "closure.close_project", "pip.register", "pip.notify", "pip.request_baseline",
        "pip.close"}
    assert before_the_kit <= set(library.HANDLERS)


@pytest.mark.parametrize(("operator", "old_call", "expected"), [
    ("initiation.notify", {"recipients_role": "SQA", "subject": "S", "task": "t", "users": ["a", " a "]},
     {"recipientsRole": ["SQA"], "recipientsUsers": ["a"], "task": "t", "level": "notice"}),
    ("audit.notify", {"subject": "S", "task": "t", "users": ["olga"]},
     {"recipientsRole": [], "recipientsUsers": ["olga"], "task": "t"}),
    ("closure.notify", {"level": "reminder", "project_id": "PRJ-1", "subject": "S", "task": "t", "roles": ["KM"]},
     {"projectId": "PRJ-1", "level": "reminder", "recipientsRole": ["KM"]}),
    ("pip.notify", {"level": "outcome", "pip_id": "PIP-1", "subject": "S", "users": ["u"]},
     {"pipId": "PIP-1", "level": "outcome", "task": ""}),
    ("capa.escalate", {"level": "management-review", "capa_id": "CAPA-1", "subject": "S", "users": ["u"],
                       "roles": ["Project Director"]},
     {"capaId": "CAPA-1", "flaggedForManagementReview": True, "level": "management-review"}),
])
def test_a_deprecated_id_takes_its_old_parameters_and_makes_the_outbox_record(operator, old_call, expected):
    record = library.HANDLERS[operator](**old_call)
    assert {k: record[k] for k in expected} == expected
    assert record["subject"] == "S" and record["notificationId"].startswith("NTF-")


def test_one_notification_operator_with_the_kits_signature():
    from pmoflow.engine import handlers as kit

    assert library.HANDLERS["notifications.notify"] is notifications.notify
    assert inspect.signature(notifications.notify).parameters.keys() == inspect.signature(kit.notify).parameters.keys()
    record = notifications.notify("Overdue", users=["u"], level="overdue", about={"capaId": "C-1"})
    assert (record["capaId"], record["level"], record["recipientsUsers"]) == ("C-1", "overdue", ["u"])


@pytest.mark.parametrize(("queue", "index", "to", "queue_after"), [
    (["Senior Project Manager"], 0, ["Assistant Project Director"], ["Assistant Project Director"]),
    (["Project Director", "Steering Committee"], 0, ["Steering Committee", "Steering Committee"],
     ["Steering Committee"]),
    (["Assistant Project Director", "Project Director"], 1, ["Steering Committee"],
     ["Assistant Project Director", "Steering Committee"]),
    (["Quality Director"], 0, ["Steering Committee"], ["Steering Committee"]),
])
def test_waiting_approvers_climb_the_charter_ladder(queue, index, to, queue_after):
    escalated = initiation.escalate_approvers(queue, index)
    assert escalated == {"lastEscalation": {"approvalStep": index + 1, "from": queue[index:], "to": to},
                         "approvalQueue": queue_after}


def test_an_escalation_needs_someone_waiting():
    with pytest.raises(ValueError, match="no approver is waiting at step 2"):
        initiation.escalate_approvers(["Project Director"], 1)


def test_ladders_and_gate_profiles_are_data():
    assert policy.next_level("charterApproval", "Project Director") == "Steering Committee"
    assert policy.next_level("gateDecision", "Project Director") == "Project Director"
    profiles = policy.load("gate_profiles")
    assert {p: (v["gatesPlanned"], v["gate1DaysAfterKickoff"]) for p, v in profiles.items()} == {
        "Full": (5, 30), "Standard": (3, 30), "Lite": (1, 45)}
    project = initiation.create_project("REQ-1", "Portal", "Standard", authorised_on="2027-01-01")
    assert (project["kickoffDue"], project["gate1Due"], project["gatesPlanned"]) == ("2027-01-15", "2027-02-14", 3)


def test_handler_modules_import_without_the_engine():
    code = ("import sys, pmoflow.workflows.gate, pmoflow.workflows.pip, pmoflow.workflows.closure\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'SpiffWorkflow', 'sqlalchemy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
