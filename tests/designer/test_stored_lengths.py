"""A designer's ids, names, lanes, messages, forms and timer start expressions are stored in columns of a fixed
length: `validate` and `deploy` refuse longer ones with the element and line, on SQLite as on PostgreSQL
(where they once failed with a `DataError` at deploy, or when the task became ready)."""

from __future__ import annotations

import shutil

import pytest

from conftest import FIXTURES
from pmoflow.engine import parser
from pmoflow.engine.errors import InvalidProcess

SIMPLE = (FIXTURES / "simple.bpmn").read_text()


def variant(tmp_path, *edits: tuple[str, str]):
    text = SIMPLE
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "simple.bpmn"
    path.write_text(text)
    for form in ("simple-start.schema.json", "review.schema.json"):
        shutil.copy(FIXTURES / form, tmp_path / form)
    return path


@pytest.mark.parametrize(("edit", "finding"), [
    (('name="Simple approval"', 'name="' + "P" * 301 + '"'), "3:3: error: simple: the process name is 301 characters"),
    (('name="Review the request"', 'name="' + "R" * 301 + '"'), "review: the userTask name is 301 characters long; "
                                                                 "pmoflow stores at most 300"),
    (('id="review"', 'id="' + "r" * 201 + '"'), "the id is 201 characters long; pmoflow stores at most 200"),
    (('value="review.schema.json"', 'value="' + "f" * 301 + '.json"'), "the form file name is 306 characters long"),
])
def test_validate_refuses_what_a_column_cannot_hold(tmp_path, edit, finding):
    findings = [str(f) for f in parser.lint([variant(tmp_path, edit)], handlers={"test.echo"})]
    assert any(finding in f for f in findings), findings


def test_lanes_messages_and_timer_starts_are_held_to_their_columns(tmp_path):
    lane = "L" * 121
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:message id="m" name="{'M' * 201}" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:laneSet id="ls"><bpmn:lane id="lane1" name="{lane}"><bpmn:flowNodeRef>s</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="s"><bpmn:outgoing>f</bpmn:outgoing>
      <bpmn:timerEventDefinition id="t"><bpmn:timeCycle>"R/P1Y" {'#' * 200}</bpmn:timeCycle></bpmn:timerEventDefinition>
    </bpmn:startEvent>
    <bpmn:endEvent id="e"><bpmn:incoming>f</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f" sourceRef="s" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"""
    path = tmp_path / "p.bpmn"
    path.write_text(text)
    messages = [f.message for f in parser.lint([path], handlers=set(), roles={lane})]
    assert "the lane name is 121 characters long; pmoflow stores at most 120" in messages
    assert "the message name is 201 characters long; pmoflow stores at most 200" in messages
    assert any(m.startswith("the timer start expression is") for m in messages), messages


def test_deploy_refuses_and_stores_nothing(pmo, tmp_path):
    before = pmo.processes()
    with pytest.raises(InvalidProcess):
        pmo.deploy([variant(tmp_path, ('id="simple" name="Simple approval"', 'id="simple" name="' + "P" * 400 + '"'))])
    assert pmo.processes() == before
