"""The form renderer (engine/web/form_render.py) and the instructions (engine/web/instructions.py), without a
database: every form of the PMO library and the modeler's examples draws; what a browser posts back from a drawn
form parses to the data it showed; the UI schema's settings, choices from task data, rows added and removed, and
the service's errors placed beside their fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from page_helpers import fields_of
from starlette.datastructures import FormData

from conftest import FIXTURES
from pmoflow.engine import forms
from pmoflow.engine.errors import InvalidForm, InvalidInput
from pmoflow.engine.web import form_render, instructions
from pmoflow.engine.web.form_render import Field, Form, apply_action, build, parse, resolve
from pmoflow.workflows.demo import CHARTER, REQUEST

FORMS = Path(forms.__file__).parent.parent / "forms"
MODELER = FIXTURES / "modeler" / "leave-request"


def schema_of(name: str) -> dict:
    return json.loads((FORMS / name).read_text())


def walk(fields: list[Field]):
    for f in fields:
        yield f
        yield from walk(f.children)


def posted(form: Form) -> FormData:
    """What a browser sends for the drawn form as it stands (no field changed)."""
    return FormData(fields_of(form))


def field(form: Form, path: str) -> Field:
    return next(f for f in walk(form.fields) if f.path == path)


@pytest.mark.parametrize("path", sorted(FORMS.glob("*.json")) + sorted(MODELER.glob("*-schema.json")),
                         ids=lambda p: p.name)
def test_every_form_of_the_library_and_the_modeler_draws_and_an_empty_post_parses(path):
    schema = json.loads(path.read_text())
    form = build(schema, None, {})
    assert form.fields and all(f.label for f in walk(form.fields))
    assert isinstance(parse(schema, None, posted(form)), dict)


def test_a_drawn_form_posts_back_the_data_it_showed():
    """The charter of the demo walk: strings, a number, enums, arrays of strings and of objects with dates."""
    schema = schema_of("project-charter.schema.json")
    assert parse(schema, None, posted(build(schema, None, CHARTER))) == CHARTER
    request = schema_of("project-request.schema.json")
    assert parse(request, None, posted(build(request, None, REQUEST))) == REQUEST


def test_fields_are_named_as_the_service_names_their_errors():
    form = build(schema_of("project-charter.schema.json"), None, CHARTER)
    paths = {f.path for f in walk(form.fields)}
    assert {"purpose", "objectives[0].objective", "milestones[1].date", "highLevelRequirements[1]",
            "stakeholders[1].influence"} <= paths
    milestone = field(form, "milestones[1].date")
    assert (milestone.widget, milestone.value, milestone.required) == ("date", "2027-11-15", True)
    assert field(form, "preApprovedBudget").attrs["step"] == "any"
    assert field(form, "overallRisk").widget == "select"
    assert [o.value for o in field(form, "overallRisk").options] == ["Low", "Med", "High"]


def test_the_service_errors_land_beside_their_fields_and_the_rest_above_the_form():
    schema = schema_of("project-charter.schema.json")
    data = {**CHARTER, "purpose": "short"}
    with pytest.raises(InvalidForm) as refused:
        forms.validate(schema, {**data, "objectives": [{"objective": "x"}]}, "project-charter.schema.json")
    form = build(schema, None, data, refused.value.details + ["(form): the whole form is odd"])
    assert field(form, "purpose").errors == ["Too short: at least 20 characters."]  # jsonschema: 'short' is too short
    assert field(form, "objectives[0].successCriterion").errors == ["Required: fill this in."]
    assert form.unplaced == ["the whole form is odd"]
    assert [(label, message) for label, message, _ in form.errors][-1] == ("The form", "the whole form is odd")
    assert field(form, "purpose").described_by == "f-purpose-help f-purpose-error"


def test_a_number_that_does_not_parse_is_kept_as_typed_for_the_service_to_refuse():
    schema = json.loads((FIXTURES / "simple-start.schema.json").read_text())
    data = parse(schema, None, FormData([("title", "Laptops"), ("amount", "twelve")]))
    assert data == {"title": "Laptops", "amount": "twelve"}
    with pytest.raises(InvalidForm) as refused:
        forms.validate(schema, data, "simple-start.schema.json")
    assert refused.value.details == ["amount: 'twelve' is not of type 'integer'"]
    assert field(build(schema, None, data, refused.value.details), "amount").errors == ["Not a whole number."]
    assert field(build(schema, None, data), "amount").value == "twelve"
    assert parse(schema, None, FormData([("title", ""), ("amount", " 7 ")])) == {"amount": 7}


def test_rows_are_added_and_removed_with_what_was_typed_kept_and_blank_rows_dropped_on_submit():
    schema = schema_of("project-charter.schema.json")
    form = build(schema, None, {"purpose": "A purpose long enough to pass"})
    assert len(field(form, "objectives").children) == 1  # an empty list shows one blank row to type into
    typed = FormData([("purpose", "A purpose long enough to pass"), ("objectives#rows", "1"),
                      ("objectives[0].objective", "Replace the portal"), ("objectives[0].successCriterion", "")])
    data = parse(schema, None, typed, keep_blank=True)
    assert apply_action(data, "add:objectives")
    again = build(schema, None, data)
    rows = field(again, "objectives").children
    assert len(rows) == 2 and field(again, "objectives[0].objective").value == "Replace the portal"
    assert field(again, "objectives[1].objective").value == ""
    data = parse(schema, None, posted(again), keep_blank=True)
    assert apply_action(data, "remove:objectives[0]")
    assert field(build(schema, None, data), "objectives[0].objective").value == ""
    submitted = parse(schema, None, posted(again))  # the blank second row is dropped
    assert submitted["objectives"] == [{"objective": "Replace the portal"}]
    assert not apply_action(data, "submit")
    assert parse(schema, None, FormData([("highLevelRequirements#rows", "2")]))["highLevelRequirements"] == []


def test_a_required_list_left_empty_is_sent_empty_and_reads_as_such():
    schema = schema_of("project-charter.schema.json")
    data = parse(schema, None, FormData([("objectives#rows", "1"), ("objectives[0].objective", "")]))
    assert data["objectives"] == []
    with pytest.raises(InvalidForm) as refused:
        forms.validate(schema, data, "charter")
    assert field(build(schema, None, data, refused.value.details), "objectives").errors[0].startswith("Required")


def test_the_ui_schema_orders_fields_and_sets_widgets_help_and_read_only_fields():
    schema = {"type": "object", "required": ["kind"], "properties": {
        "note": {"type": "string", "title": "Note"},
        "kind": {"type": "string", "enum": ["a", "b"], "title": "Kind"},
        "ref": {"type": "string", "title": "Reference"},
        "secret": {"type": "string"},
        "ok": {"type": "boolean", "title": "Agreed"},
        "when": {"type": "string", "title": "When"},
        "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string", "enum": ["x", "y", "z"]}},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "hidden": {"type": "string"}}}
    ui = {"ui:order": ["kind", "*", "note"], "note": {"ui:widget": "textarea", "ui:options": {"rows": 6}},
          "kind": {"ui:widget": "radio", "ui:enumNames": ["Alpha", "Beta"], "ui:help": "Pick one"},
          "ref": {"ui:readonly": True}, "secret": {"ui:widget": "password", "ui:placeholder": "shh"},
          "ok": {"ui:widget": "radio"}, "when": {"ui:widget": "date-range"}, "hidden": {"ui:widget": "hidden"}}
    task_data = {"ref": "REQ-1", "hidden": "kept", "when": "2027-01-01:::2027-01-31", "tags": ["y"]}
    form = build(schema, ui, task_data)
    assert [f.path for f in form.fields][0] == "kind" and [f.path for f in form.fields][-1] == "note"
    kind = field(form, "kind")
    assert (kind.widget, [o.label for o in kind.options], kind.help, kind.required) == (
        "radio", ["Alpha", "Beta"], ["Pick one"], True)
    assert (field(form, "note").widget, field(form, "note").attrs["rows"]) == ("textarea", 6)
    assert (field(form, "ref").widget, field(form, "ref").value) == ("readonly", "REQ-1")
    assert (field(form, "secret").widget, field(form, "secret").attrs["placeholder"]) == ("password", "shh")
    assert [o.label for o in field(form, "ok").options] == ["Yes", "No"]
    assert field(form, "when").value == ("2027-01-01", "2027-01-31")
    assert (field(form, "tags").widget, field(form, "tags").value) == ("checkboxes", ["y"])
    assert (field(form, "count").attrs["min"], field(form, "count").attrs["max"]) == (1, 5)
    assert field(form, "count").hint == "A whole number, at least 1 and at most 5."
    tampered = FormData([("kind", "b"), ("ref", "REQ-999"), ("hidden", "changed"), ("ok", "false"),
                         ("when.start", "2027-02-01"), ("when.end", "2027-02-03"), ("tags", "x"), ("tags", "z"),
                         ("count", "3")])
    assert parse(schema, ui, tampered, task_data) == {
        "kind": "b", "ref": "REQ-1", "hidden": "kept", "ok": False, "when": "2027-02-01:::2027-02-03",
        "tags": ["x", "z"], "count": 3}  # read-only and hidden fields keep the task data's value


def test_choices_come_from_task_data_as_the_modeler_names_them():
    schema = json.loads((FIXTURES / "fidelity" / "choose.schema.json").read_text())
    ui = json.loads((FIXTURES / "fidelity" / "choose-uischema.json").read_text())
    task_data = {"fruits": [{"value": "apple", "label": "Apple"}, {"value": "pear", "label": "Pear"}],
                 "basket_fields": [{"type": "string", "title": "First"}, {"type": "integer", "title": "Count"}]}
    form = build(resolve(schema, task_data, "choose"), ui, task_data)
    fruit = field(form, "fruit")
    assert (fruit.widget, [(o.value, o.label) for o in fruit.options]) == ("select", [("apple", "Apple"),
                                                                                      ("pear", "Pear")])
    assert [f.label for f in field(form, "basket").children] == ["First", "Count"]
    assert field(form, "description").widget == "textarea" and field(form, "description").help == ["Optional"]
    data = parse(resolve(schema, task_data, "choose"), ui, FormData([("fruit", "pear"), ("basket[0]", "a"),
                                                                      ("basket[1]", "2")]))
    assert data == {"fruit": "pear", "basket": ["a", 2]}
    with pytest.raises(InvalidInput, match="fruits"):
        resolve(schema, {}, "choose")


def test_a_required_boolean_and_const_true_are_checkboxes_sent_as_true_or_false():
    schema = schema_of("closure-audit.schema.json")
    form = build(schema, None, {})
    assert field(form, "recordsComplete").widget == "checkbox"
    assert parse(schema, None, FormData([]))["recordsComplete"] is False
    assert parse(schema, None, FormData([("recordsComplete", "true")]))["recordsComplete"] is True


def test_instructions_fill_placeholders_as_literal_text_and_never_pass_html():
    text = ("# {{ title }}\n\nBudget **{{ request.budget }}**, first risk {{ risks[0].desc }}; {{ missing }}."
            "\n\n<b>x</b>")
    data = {"title": "Portal <script>alert(1)</script>", "request": {"budget": 45000},
            "risks": [{"desc": "[a link](http://evil.example) *bold*"}]}
    html = str(instructions.render(text, data))
    assert "<h1>Portal &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in html
    assert "<strong>45000</strong>" in html
    assert "[a link](http://evil.example) *bold*" in html and "<a " not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<script" not in html
    assert str(instructions.render("[x](javascript:alert(1))", {})).count("<a ") == 0
    assert instructions.render("", {}) == "" and instructions.render(None, {}) == ""


def test_the_modeler_example_instructions_and_ui_order():
    schema = json.loads((MODELER / "request-schema.json").read_text())
    ui = json.loads((MODELER / "request-uischema.json").read_text())
    form = build(schema, ui, {})
    assert [f.path for f in form.fields] == ["start_date", "end_date", "reason"]
    assert [f.widget for f in form.fields] == ["date", "date", "textarea"]
    html = str(instructions.render("{{ days }} days in {{ month }}: {{ reason }}",
                                   {"days": 3, "month": "May", "reason": "rest"}))
    assert html.strip() == "<p>3 days in May: rest</p>"


def test_form_render_reads_the_rows_count_defensively():
    schema = schema_of("project-charter.schema.json")
    assert parse(schema, None, FormData([("objectives#rows", "many")]))["objectives"] == []
    assert form_render.leaf("1e400", "number", None) == "1e400"  # not a finite number: left for the service
    assert form_render.tokens("a[1].b") == ["a", 1, "b"]
