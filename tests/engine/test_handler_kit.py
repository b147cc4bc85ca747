"""The kit for handler authors (engine/handlers.py): registration by decorator, the operator table, and the shared
helpers (today by the engine clock, readable ids, one notification record the outbox reads)."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pmoflow.engine import clock
from pmoflow.engine import notifications as outbox
from pmoflow.engine.handlers import collect, handler, new_id, notify, operators_of, today


def module(name: str, source: str) -> types.ModuleType:
    """A module built from source, as if it were a handler file of a library."""
    made = types.ModuleType(name)
    exec(compile(source, name, "exec"), made.__dict__)
    return made


def test_bare_handler_is_named_by_the_last_part_of_its_module_and_comes_back_unchanged():
    gate = module("acme.workflows.gate", "def load(gate_id):\n    return {'gate': gate_id}\n")
    marked = handler(gate.load)
    assert marked is gate.load
    assert operators_of(marked) == ("gate.load",)
    assert marked(gate_id="G1") == {"gate": "G1"}


def test_explicit_ids_and_stacked_aliases():
    @handler("closure.notify")
    @handler
    def remind(subject):
        return subject

    assert operators_of(remind) == (f"{__name__.rpartition('.')[2]}.remind", "closure.notify")
    assert operators_of(len) == ()


@pytest.mark.parametrize("bad", ["", "  ", "gate load"])
def test_an_operator_id_is_one_word(bad):
    with pytest.raises(ValueError, match="one word"):
        handler(bad)


def test_handler_refuses_what_is_not_a_function():
    with pytest.raises(TypeError):
        handler(3)
    with pytest.raises(TypeError):
        handler("gate.x")(3)


def test_collect_takes_the_marked_functions_defined_in_each_module():
    source = (
        "from pmoflow.engine.handlers import handler\n"
        "@handler\n"
        "def load_checklist(gate_id):\n    return gate_id\n"
        "@handler('gate.snapshot')\n"
        "def metrics(spi):\n    return spi\n"
        "def helper():\n    return None\n"
    )
    gate = module("lib.gate", source)
    other = module("lib.other", "")
    other.load_checklist = gate.load_checklist  # imported, not defined here: not collected twice
    table = collect(gate, other)
    assert table == {"gate.load_checklist": gate.load_checklist, "gate.snapshot": gate.metrics}


def test_collect_refuses_one_id_claimed_by_two_functions():
    first = module("lib.gate", "from pmoflow.engine.handlers import handler\n@handler\ndef load(x):\n    return x\n")
    second = module("lib.two", "from pmoflow.engine.handlers import handler\n"
                               "@handler('gate.load')\ndef other(x):\n    return x\n")
    with pytest.raises(ValueError, match=r"'gate\.load' is claimed twice: by lib\.gate\.load and by lib\.two\.other"):
        collect(first, second)


def test_today_follows_the_engine_clock_and_reads_given_dates():
    with clock.frozen(datetime(2031, 5, 17, 23, 30, tzinfo=UTC)):
        assert today() == date(2031, 5, 17)
    assert today("2027-01-31") == date(2027, 1, 31)
    assert today(date(2027, 2, 1)) == date(2027, 2, 1)
    assert today(datetime(2027, 2, 2, 10, 0)) == date(2027, 2, 2)
    with pytest.raises(ValueError):
        today("31/01/2027")


def test_new_id_keeps_the_handlers_format():
    assert re.fullmatch(r"REQ-20270131-[0-9A-F]{6}", new_id("REQ-20270131"))
    assert re.fullmatch(r"ARC-[0-9A-F]{8}", new_id("ARC", 8))
    assert new_id("X") != new_id("X")
    with pytest.raises(ValueError):
        new_id("", 6)
    with pytest.raises(ValueError):
        new_id("X", 40)


def test_notify_builds_the_record_the_outbox_reads():
    with clock.frozen(datetime(2031, 5, 17, 9, 0, tzinfo=UTC)):
        record = notify(" Reminder: plan due ", users=["ann", " ann ", "", None, "bob"], roles="SEPG",
                        task="triage", level="reminder", about={"pipId": "PIP-1", "subject": "not this"})
    assert re.fullmatch(r"NTF-[0-9a-f]{12}", record["notificationId"])
    assert record == {"notificationId": record["notificationId"], "pipId": "PIP-1", "level": "reminder",
                      "subject": "Reminder: plan due", "task": "triage", "recipientsUsers": ["ann", "bob"],
                      "recipientsRole": ["SEPG"], "channel": "inbox", "status": "queued",
                      "createdAt": "2031-05-17T09:00:00+00:00"}
    assert outbox.records_in([record, {"no": "id"}]) == [record]
    assert notify("Hello", roles=["PMO"])["level"] == "notice"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"subject": "Hi", "users": ["", " "], "roles": []}, "at least one recipient"),
    ({"subject": " ", "users": ["ann"]}, "needs a subject"),
    ({"subject": "Hi", "users": ["ann"], "level": ""}, "level"),
])
def test_notify_refuses_a_record_that_reaches_nobody_or_says_nothing(kwargs, message):
    with pytest.raises(ValueError, match=message):
        notify(**kwargs)


def test_the_kit_is_light_to_import():
    code = ("import sys, pmoflow.engine.handlers\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'SpiffWorkflow', 'sqlalchemy', 'jsonschema'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_designer_guides_handler_example_runs():
    guide = Path(__file__).resolve().parents[2] / "docs" / "designing-processes.md"
    [example] = re.findall(r"```python\n(from pmoflow\.engine\.handlers import .*?)```", guide.read_text(), re.S)
    review = module("acme.workflows.review", example)
    assert collect(review) == {"review.register": review.register}
    with clock.frozen(datetime(2031, 5, 17, 9, 0, tzinfo=UTC)):
        made = review.register(" Annual review ")
    assert re.fullmatch(r"REV-2031-[0-9A-F]{6}", made["reviewId"]) and made["title"] == "Annual review"
