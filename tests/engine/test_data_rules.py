"""The same data rules on SQLite and PostgreSQL (issue #10, item 7): what `serialization.check_data` refuses, the
text rules of `engine/limits.py`, what a form prompt accepts, and, on both databases, that refused data leaves
nothing behind while accepted data at the edges of the rules is stored and read back alike."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from pmoflow.engine import forms, limits
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import ProcessInstance
from pmoflow.engine.serialization import SERIALIZED_TYPES, check_data


def refusal(data, path: str = "", **kwargs) -> str:
    with pytest.raises(InvalidInput) as refused:
        check_data(data, path, **kwargs)
    return refused.value.message


def nested(depth: int) -> dict:
    data: dict = {}
    inner = data
    for _ in range(depth - 1):
        inner["a"] = {}
        inner = inner["a"]
    return data


@pytest.mark.parametrize(("data", "message"), [
    ({"team": [{}, {}, {"name": "a\x00b"}]}, "team[2].name: the text contains a NUL character (\\x00)"),
    ({"title": "ab\ud800"}, "title: the text contains '\\ud800', which is not valid Unicode text"),
    ({"a\x00": 1}, "['a\\x00']: the key contains a NUL character"),
    ({"first name": [float("inf")]}, "['first name'][0]: inf is not a finite number"),
    ({"n": float("nan")}, "n: nan is not a finite number"),
    ({"n": 2**63}, "n: 9223372036854775808 is beyond the 64-bit integer range"),
    ({"n": -(2**63) - 1}, "n: -9223372036854775809 is beyond the 64-bit integer range"),
    ({"n": 10**5000}, "n: an integer of 16610 bits is beyond the 64-bit integer range"),
    ({"x": {"typename": 1}}, "x.typename: the key 'typename' is reserved"),
    ({1: "one"}, "the data: keys must be strings, not int"),
    ({"when": date(2027, 1, 1)}, "when: a date is not JSON data"),
    ({"b": b"bytes"}, "b: a bytes is not JSON data"),
    ({"t": (1, 2)}, "t: a tuple is not JSON data"),
])
def test_check_data_refuses_naming_the_key_path(data, message):
    assert refusal(data).startswith(message)


def test_nesting_and_data_that_contains_itself():
    check_data(nested(100))
    assert "nested more than 100 levels deep" in refusal(nested(101))
    loop: list = []
    loop.append(loop)
    assert refusal({"l": loop}) == "l[0]: the value contains itself, which cannot be stored"
    shared = [1]
    check_data({"a": shared, "b": shared})  # the same list twice is not a cycle


def test_a_long_path_keeps_its_two_ends():
    message = refusal(nested(101))
    assert len(message) < 200 and message.startswith("a.a.a") and "..." in message


def test_the_limits_themselves_are_accepted():
    check_data({"min": -(2**63), "max": 2**63 - 1, "f": 1.5e308, "text": "é" * 10_000, "none": None, "b": True,
                "emoji": "\U0001f600", "empty": {}, "list": []})


def test_script_results_may_hold_what_the_serializer_stores_within_the_same_rules():
    value = {"d": date(2027, 1, 1), "t": datetime(2027, 1, 1, 9), "p": timedelta(days=5), "m": Decimal("1.50"),
             "u": uuid4()}
    check_data(value, "result", allow=SERIALIZED_TYPES)
    assert refusal({"m": Decimal("NaN")}, "result", allow=SERIALIZED_TYPES) == "result.m: NaN is not a finite number"
    assert refusal({"s": "a\x00"}, "result", allow=SERIALIZED_TYPES).startswith("result.s: the text contains a NUL")


def test_check_text_follows_the_column_length():
    assert limits.column_length(ProcessInstance.business_key) == 200
    assert limits.check_text("k" * 200, "the business key", ProcessInstance.business_key) == "k" * 200
    with pytest.raises(InvalidInput, match="the business key is 201 characters long; at most 200 fit"):
        limits.check_text("k" * 201, "the business key", ProcessInstance.business_key)
    with pytest.raises(InvalidInput, match="--reason contains a NUL character"):
        limits.check_text("a\x00", "--reason")
    with pytest.raises(InvalidInput, match="a name must not be empty"):
        limits.check_text("", "a name", required=True)
    assert limits.check_text(None, "anything") is None


@pytest.mark.parametrize(("answer", "kind", "message"), [
    ("1e999", "number", "answer: inf is not a finite number"),
    ("nan", "number", "answer: nan is not a finite number"),
    ("9" * 30, "integer", "beyond the 64-bit integer range"),
    ("a\x00", "string", "the answer contains a NUL character"),
    ("[" * 5000, "array", "nested too deeply"),
    ('{"typename": 1}', "object", "answer.typename: the key 'typename' is reserved"),
])
def test_a_prompt_answer_that_breaks_the_rules_is_asked_again(answer, kind, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        forms.convert_answer(answer, {"type": kind})
    assert forms.convert_answer("12", {"type": "integer"}) == 12


def test_refused_and_edge_data_alike_on_both_databases(pmo):
    """Data at the edges of the rules is stored and read back the same on SQLite and PostgreSQL; data beyond them
    is refused before anything is written."""
    edge = {"title": "é" * 300 + "\U0001f600", "amount": 2**63 - 1}
    started = pmo.start("simple", edge, business_key="k" * 200)
    assert pmo.show(started["instance_id"])["data"]["title"] == edge["title"]
    assert pmo.show(started["instance_id"])["data"]["amount"] == 2**63 - 1
    before = len(pmo.instances())
    for data, key in (({"title": "a\x00bc", "amount": 2}, None), ({"title": "abc", "amount": 2**64}, None),
                      ({"title": "ab\udcffc", "amount": 2}, None), ({"title": "abc", "amount": 2}, "k" * 201)):
        with pytest.raises(InvalidInput):
            pmo.start("simple", data, business_key=key)
    assert len(pmo.instances()) == before
