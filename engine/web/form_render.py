"""Forms as HTML without JavaScript: a JSON Schema (draft 2020-12) and the modeler's UI schema (rjsf's `ui:*`
keys, as the SpiffWorkflow modeler writes `*-uischema.json`) become a tree of `Field`s that
templates/_form.html draws; a posted form becomes the JSON the service layer validates.

Names and errors share one spelling: an input's name is its field's path as `forms.validate` names it in an
error (`title`, `objectives[0].objective`, `openRisks.high`), so the service's per-field errors land beside
their fields. What the user typed is kept: the form is drawn again from the parsed submission, in which a value
that is not what its field expects (a word in a number) stays the text it was, for the service to refuse.

Arrays work without script: each row is a set of inputs named `path[i]...`, `path#rows` says how many rows the
page drew, the buttons "Add a row" (`_action=add:PATH`) and "Remove" (`_action=remove:PATH[i]`) post the form
back and it is drawn again with one row more or less, nothing typed lost. On submit a row left wholly blank is
dropped. Read-only and hidden fields take their value from the task data, never from the post.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pmoflow.engine import forms

ROWS_SUFFIX = "#rows"
ACTION = "_action"
RANGE_SEPARATOR = ":::"  # spiff-arena's date-range widget joins start and end with it
TEXT_WIDGETS = {"password": "password", "email": "email", "uri": "url", "url": "url", "tel": "tel",
                "color": "text", "text": "text"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a field left empty: not sent to the service at all


@dataclass
class Option:
    value: str  # as the HTML form sends it
    label: str
    data: Any  # the JSON value it stands for


@dataclass
class Field:
    """One field, fieldset or array of a form as the template draws it."""

    path: str
    label: str
    widget: str  # text, textarea, number, date, date-range, checkbox, radio, select, checkboxes, hidden,
    #              readonly, object, array, tuple (and the HTML input types in TEXT_WIDGETS)
    required: bool = False
    help: list[str] = field(default_factory=list)
    hint: str | None = None  # the bounds, in words
    value: Any = ""
    options: list[Option] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)  # min, max, step, minlength, placeholder, rows ...
    children: list[Field] = field(default_factory=list)  # object properties, or array rows
    addable: bool = False
    removable: bool = False

    @property
    def id(self) -> str:
        return "f-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.path).strip("-")

    @property
    def rows_name(self) -> str:
        return self.path + ROWS_SUFFIX

    @property
    def described_by(self) -> str:
        parts = [f"{self.id}-help"] if self.help or self.hint else []
        return " ".join(parts + ([f"{self.id}-error"] if self.errors else []))


@dataclass
class Form:
    title: str
    description: str
    fields: list[Field]
    errors: list[tuple[str, str, str]]  # (label, message, field id) of every error, for the summary at the top
    unplaced: list[str]  # errors of no field (the form as a whole)


# -- reading the schemas -------------------------------------------------------------------------------------------

def resolve(schema: dict[str, Any], task_data: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The schema with the modeler's `options_from_task_data_var:NAME` choices filled in from task data, as the
    service layer fills them when it validates (InvalidInput when the task data lacks them)."""
    return forms._with_options(schema, dict(task_data or {}), name)


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(kind, str):
        return kind
    values = schema.get("enum") or ([schema["const"]] if "const" in schema else [])
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    if "properties" in schema:
        return "object"
    return "string"


def _ui(ui: Any, key: str) -> dict[str, Any]:
    value = ui.get(key) if isinstance(ui, dict) else None
    return value if isinstance(value, dict) else {}


def _object_at(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """schema[key] when it is an object, else {}: a hand-written form may put anything there."""
    value = schema.get(key)
    return value if isinstance(value, dict) else {}


def _int_at(schema: dict[str, Any], key: str) -> int | None:
    """schema[key] when it is an integer, else None."""
    value = schema.get(key)
    return value if isinstance(value, int) else None


def _ui_option(ui: dict[str, Any], key: str, default: Any = None) -> Any:
    """A `ui:KEY` setting, also accepted under `ui:options` (rjsf takes both)."""
    if f"ui:{key}" in ui:
        return ui[f"ui:{key}"]
    options = ui.get("ui:options")
    return options.get(key, default) if isinstance(options, dict) else default


def option_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def options_of(schema: dict[str, Any], ui: dict[str, Any]) -> list[Option] | None:
    """The choices of an enum, or of rjsf's `oneOf`/`anyOf` list of `{const|enum, title}`; None when free."""
    if isinstance(schema.get("enum"), list):
        names = _ui_option(ui, "enumNames") or []
        return [Option(option_text(v), str(names[i]) if i < len(names) else _show(v), v)
                for i, v in enumerate(schema["enum"])]
    for key in ("oneOf", "anyOf"):
        items = schema.get(key)
        if isinstance(items, list) and items and all(isinstance(i, dict) and ("const" in i or (
                isinstance(i.get("enum"), list) and len(i["enum"]) == 1)) for i in items):
            result = []
            for item in items:
                value = item["const"] if "const" in item else item["enum"][0]
                result.append(Option(option_text(value), str(item.get("title", _show(value))), value))
            return result
    return None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return value if isinstance(value, str) else json.dumps(value)


def _label(schema: dict[str, Any], ui: dict[str, Any], key: str) -> str:
    title = ui.get("ui:title") or schema.get("title")
    if isinstance(title, str) and title.strip():
        return title
    return re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", key).strip().capitalize() or key


def _help(schema: dict[str, Any], ui: dict[str, Any]) -> list[str]:
    texts = [ui.get("ui:description") or schema.get("description"), ui.get("ui:help")]
    return [t for t in texts if isinstance(t, str) and t.strip()]


def ordered(properties: dict[str, Any], ui: dict[str, Any]) -> list[str]:
    """Property names in the UI schema's `ui:order` (its `*` standing for the rest), else as declared."""
    order = ui.get("ui:order") if isinstance(ui, dict) else None
    names = list(properties)
    if not isinstance(order, list):
        return names
    listed = [n for n in order if n in properties]
    rest = [n for n in names if n not in listed]
    if "*" not in order:
        return listed + rest
    star = order.index("*")
    before = [n for n in order[:star] if n in properties]
    return before + rest + [n for n in order[star + 1:] if n in properties]


def _hint(schema: dict[str, Any], kind: str) -> str | None:
    """The bounds a field is checked against, in words (the service checks them; this says them first)."""
    if kind in ("integer", "number"):
        low = schema.get("minimum")
        high = schema.get("maximum")
        over = schema.get("exclusiveMinimum")
        under = schema.get("exclusiveMaximum")
        parts = []
        if low is not None:
            parts.append(f"at least {_show(low)}")
        if over is not None:
            parts.append(f"more than {_show(over)}")
        if high is not None:
            parts.append(f"at most {_show(high)}")
        if under is not None:
            parts.append(f"less than {_show(under)}")
        words = " and ".join(parts)
        return (("A whole number" if kind == "integer" else "A number") + (f", {words}" if words else "") + ".")
    if kind == "string":
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(low, int) and low > 1 and isinstance(high, int):
            return f"{low} to {high} characters."
        if isinstance(low, int) and low > 1:
            return f"At least {low} characters."
        if isinstance(high, int):
            return f"At most {high} characters."
    if kind == "array":
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and low > 0 and isinstance(high, int):
            return f"{low} to {high} rows."
        if isinstance(low, int) and low > 0:
            return f"At least {low} row{'s' if low > 1 else ''}."
        if isinstance(high, int):
            return f"At most {high} rows."
    return None


def _readonly(schema: dict[str, Any], ui: dict[str, Any]) -> bool:
    return bool(ui.get("ui:readonly") or ui.get("ui:disabled") or schema.get("readOnly"))


def _widget(schema: dict[str, Any], ui: dict[str, Any], kind: str, options: list[Option] | None) -> str:
    named = ui.get("ui:widget")
    named = named if isinstance(named, str) else ""
    if named == "hidden":
        return "hidden"
    if _readonly(schema, ui):
        return "readonly"
    if kind == "object":
        return "object"
    if kind == "array":
        items = _object_at(schema, "items")
        if options_of(items, {}) is not None and (schema.get("uniqueItems") or named == "checkboxes"):
            return "checkboxes"
        return "tuple" if isinstance(schema.get("prefixItems"), list) and not items else "array"
    if kind == "boolean":
        return named if named in ("radio", "select") else "checkbox"
    if options is not None:
        return "radio" if named == "radio" else "select"
    if kind in ("integer", "number"):
        return "number"
    if named in ("textarea", "markdown"):
        return "textarea"
    if named == "date-range":
        return "date-range"
    if named == "date" or schema.get("format") == "date":
        return "date"
    input_type = _ui_option(ui, "inputType")
    return TEXT_WIDGETS.get(named or input_type or schema.get("format") or "text", "text")


# -- drawing -------------------------------------------------------------------------------------------------------

def build(schema: dict[str, Any], ui: dict[str, Any] | None, data: Mapping[str, Any] | None,
          errors: list[str] | None = None) -> Form:
    """The form to draw: `schema` (choices already `resolve`d), `ui` the UI schema, `data` the values to show
    (the task data at first, the parsed submission after), `errors` the service's `field: message` lines."""
    ui = ui if isinstance(ui, dict) else {}
    data = data if isinstance(data, Mapping) else {}
    by_path: dict[str, list[str]] = {}
    for line in errors or []:
        path, sep, message = line.partition(": ")
        by_path.setdefault(path if sep else "(form)", []).append(message if sep else line)
    fields = _object_fields(schema, ui, data, "")
    placed = _place(fields, by_path)
    summary = [(f.label, message, f.id) for f in _walk(fields) for message in f.errors]
    unplaced = [m for path, messages in by_path.items() if path not in placed for m in messages]
    return Form(title=str(schema.get("title") or ""), description=str(schema.get("description") or ""),
                fields=fields, errors=summary + [("The form", m, "") for m in unplaced], unplaced=unplaced)


def _object_fields(schema: dict[str, Any], ui: dict[str, Any], data: Mapping[str, Any], prefix: str) -> list[Field]:
    properties = _object_at(schema, "properties")
    required = set(schema.get("required") or [])
    result = []
    for name in ordered(properties, ui):
        path = f"{prefix}.{name}" if prefix else name
        sub = properties[name] if isinstance(properties[name], dict) else {}
        value = data.get(name, sub.get("default", MISSING)) if isinstance(data, Mapping) else MISSING
        result.append(_field(sub, _ui(ui, name), value, path, _label(sub, _ui(ui, name), name), name in required))
    return result


def _field(schema: dict[str, Any], ui: dict[str, Any], value: Any, path: str, label: str, required: bool) -> Field:
    kind = _type(schema)
    options = options_of(schema, ui)
    widget = _widget(schema, ui, kind, options)
    if kind == "boolean" and widget in ("radio", "select") and not options:
        options = [Option("true", "Yes", True), Option("false", "No", False)]
    f = Field(path=path, label=label, widget=widget, required=required, help=_help(schema, ui),
              hint=_hint(schema, kind), options=options or [])
    if ui.get("ui:autofocus"):
        f.attrs["autofocus"] = True
    placeholder = ui.get("ui:placeholder")
    if isinstance(placeholder, str):
        f.attrs["placeholder"] = placeholder
    if widget == "object":
        f.children = _object_fields(schema, ui, value if isinstance(value, Mapping) else {}, path)
    elif widget in ("array", "tuple"):
        _rows(f, schema, ui, value)
    elif widget == "checkboxes":
        items = _object_at(schema, "items")
        f.options = options_of(items, _ui(ui, "items")) or []
        chosen = value if isinstance(value, list) else []
        f.value = [option_text(v) for v in chosen]
    else:
        _leaf_value(f, schema, ui, kind, value)
    return f


def _leaf_value(f: Field, schema: dict[str, Any], ui: dict[str, Any], kind: str, value: Any) -> None:
    present = value is not MISSING and value is not None
    if f.widget == "checkbox":
        f.value = value is True
    elif f.widget == "date-range":
        start, _, end = (value if isinstance(value, str) else "").partition(RANGE_SEPARATOR)
        f.value = (start, end)
    elif f.widget == "readonly":
        f.value = _show(value) if present else ""
    else:
        f.value = option_text(value) if present else ""
    if f.widget == "number":
        f.attrs["step"] = "1" if kind == "integer" else "any"
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(schema.get(key), int | float):
                f.attrs[attr] = schema[key]
        f.attrs["inputmode"] = "numeric" if kind == "integer" else "decimal"
    if f.widget == "textarea":
        rows = _ui_option(ui, "rows")
        f.attrs["rows"] = rows if isinstance(rows, int) and 1 <= rows <= 40 else 4
    if f.widget not in ("select", "radio", "readonly", "checkbox", "number", "date", "date-range"):
        for key, attr in (("maxLength", "maxlength"), ("minLength", "minlength")):
            if isinstance(schema.get(key), int) and schema[key] > 0:
                f.attrs[attr] = schema[key]


def _rows(f: Field, schema: dict[str, Any], ui: dict[str, Any], value: Any) -> None:
    items = value if isinstance(value, list) else []
    item_ui = _ui(ui, "items")
    if f.widget == "tuple":  # a fixed list of item schemas (the modeler's items from task data)
        schemas = [s if isinstance(s, dict) else {} for s in schema["prefixItems"]]
        f.children = [_row(s, item_ui, items[i] if i < len(items) else MISSING, f"{f.path}[{i}]",
                           _label(s, {}, f"{f.label} {i + 1}")) for i, s in enumerate(schemas)]
        return
    item = _object_at(schema, "items")
    least = _int_at(schema, "minItems") or 0
    if least:
        f.attrs["min_rows"] = least
    count = max(len(items), least, 1)
    f.children = [_row(item, item_ui, items[i] if i < len(items) else MISSING, f"{f.path}[{i}]",
                       f"{f.label}: row {i + 1}") for i in range(min(count, 200))]
    most = _int_at(schema, "maxItems")
    f.addable = _ui_option(ui, "addable", True) is not False and (most is None or count < most)
    f.removable = _ui_option(ui, "removable", True) is not False


def _row(schema: dict[str, Any], ui: dict[str, Any], value: Any, path: str, label: str) -> Field:
    row = _field(schema, ui, value, path, label, required=False)
    if row.widget == "object":
        row.label = label
    return row


def _walk(fields: list[Field]):
    for f in fields:
        yield f
        yield from _walk(f.children)


def _place(fields: list[Field], by_path: dict[str, list[str]]) -> set[str]:
    """Put each error on its field, or on the nearest field above its path (an error inside a list of choices
    goes on the list); the paths placed."""
    drawn = {f.path: f for f in _walk(fields)}
    placed = set()
    for path, messages in by_path.items():
        target = path
        while target and target not in drawn:
            target = re.sub(r"(\[\d+\]|\.[^.\[]+|^[^.\[]+)$", "", target)
        if target in drawn:
            drawn[target].errors.extend(_human(m, drawn[target]) for m in messages)
            placed.add(path)
    return placed


HUMAN: list[tuple[re.Pattern[str], str]] = [  # jsonschema's wording -> a person's ({0}: the bound it names)
    (re.compile(r"is less than the minimum of (\S+)$"), "Must be at least {0}."),
    (re.compile(r"is less than or equal to the minimum of (\S+)$"), "Must be more than {0}."),
    (re.compile(r"is greater than the maximum of (\S+)$"), "Must be at most {0}."),
    (re.compile(r"is greater than or equal to the maximum of (\S+)$"), "Must be less than {0}."),
    (re.compile(r"is not of type 'integer'$"), "Not a whole number."),
    (re.compile(r"is not of type 'number'$"), "Not a number."),
    (re.compile(r"is not a 'date'$"), "Not a date: use YYYY-MM-DD."),
    (re.compile(r"is not one of \["), "Choose one of the options."),
]


def _human(message: str, f: Field) -> str:
    """The service's message, said for a person where jsonschema's wording reads oddly (else unchanged)."""
    if message.endswith("is a required property"):
        return "Required: fill this in."
    rows = f.widget in ("array", "tuple", "checkboxes")
    if rows and (message.endswith("should be non-empty") or message.startswith("[]")):
        return "Required: add at least one row."
    if message.endswith("is too short"):
        least = f.attrs.get("min_rows" if rows else "minlength")
        if least:
            unit = "row" if rows else "character"
            return f"Too {'few' if rows else 'short'}: at least {least} {unit}{'s' if least != 1 else ''}."
    if message.endswith("is too long") and f.attrs.get("maxlength"):
        return f"Too long: at most {f.attrs['maxlength']} characters."
    for pattern, text in HUMAN:
        found = pattern.search(message)
        if found:
            return text.format(*found.groups())
    return message


# -- reading a posted form -------------------------------------------------------------------------------------------

def parse(schema: dict[str, Any], ui: dict[str, Any] | None, posted: Any, prefill: Mapping[str, Any] | None = None,
          keep_blank: bool = False) -> dict[str, Any]:
    """The JSON a posted form stands for (`posted`: a multidict with `get` and `getlist`). Empty fields are left
    out; rows left blank are dropped unless `keep_blank` (re-drawing the form for "Add a row"/"Remove")."""
    ui = ui if isinstance(ui, dict) else {}
    value = _parse_object(schema, ui, posted, "", prefill if isinstance(prefill, Mapping) else {}, keep_blank)
    return value if isinstance(value, dict) else {}


def _parse_object(schema: dict[str, Any], ui: dict[str, Any], posted: Any, prefix: str, prefill: Mapping[str, Any],
                  keep_blank: bool) -> dict[str, Any]:
    properties = _object_at(schema, "properties")
    required = set(schema.get("required") or [])
    result = {}
    for name, sub in properties.items():
        sub = sub if isinstance(sub, dict) else {}
        path = f"{prefix}.{name}" if prefix else name
        value = _parse_field(sub, _ui(ui, name), posted, path, prefill.get(name, MISSING) if isinstance(
            prefill, Mapping) else MISSING, keep_blank)
        if value is MISSING and name in required and _type(sub) in ("array", "object"):
            value = [] if _type(sub) == "array" else {}
        if value is not MISSING:
            result[name] = value
    return result


def _parse_field(schema: dict[str, Any], ui: dict[str, Any], posted: Any, path: str, prefill: Any,
                 keep_blank: bool) -> Any:
    kind = _type(schema)
    options = options_of(schema, ui)
    widget = _widget(schema, ui, kind, options)
    if widget in ("hidden", "readonly"):
        return prefill  # never what the post says
    if widget == "object":
        value = _parse_object(schema, ui, posted, path, prefill if isinstance(prefill, Mapping) else {}, keep_blank)
        return value if value or keep_blank else MISSING
    if widget == "checkboxes":
        items = _object_at(schema, "items")
        by_text = {o.value: o.data for o in options_of(items, _ui(ui, "items")) or []}
        chosen = [by_text.get(t, t) for t in posted.getlist(path)]
        return chosen if chosen else MISSING
    if widget in ("array", "tuple"):
        return _parse_rows(schema, ui, posted, path, prefill, keep_blank, widget)
    if widget == "checkbox":
        return posted.get(path) is not None
    if widget == "date-range":
        start, end = (posted.get(f"{path}.start") or "").strip(), (posted.get(f"{path}.end") or "").strip()
        return f"{start}{RANGE_SEPARATOR}{end}" if start or end else MISSING
    text = posted.get(path)
    return MISSING if text is None else leaf(text, kind, options)


def _parse_rows(schema: dict[str, Any], ui: dict[str, Any], posted: Any, path: str, prefill: Any,
                keep_blank: bool, widget: str) -> Any:
    item_ui = _ui(ui, "items")
    if widget == "tuple":
        schemas = [s if isinstance(s, dict) else {} for s in schema["prefixItems"]]
    else:
        try:
            count = min(int(posted.get(path + ROWS_SUFFIX) or 0), 200)
        except ValueError:
            count = 0
        item = _object_at(schema, "items")
        schemas = [item] * max(count, 0)
    old = prefill if isinstance(prefill, list) else []
    rows: list[Any] = []
    for i, item_schema in enumerate(schemas):
        value = _parse_field(item_schema, item_ui, posted, f"{path}[{i}]", old[i] if i < len(old) else MISSING,
                             keep_blank)
        if _blank(value):
            if keep_blank:
                rows.append(None)
            continue
        rows.append(value)
    if not keep_blank and not rows:
        return MISSING
    return rows


def _blank(value: Any) -> bool:
    if value is MISSING or value is None or value is False:
        return True
    if isinstance(value, dict):
        return all(_blank(v) for v in value.values())
    if isinstance(value, list):
        return all(_blank(v) for v in value)
    return False


def leaf(text: str, kind: str, options: list[Option] | None) -> Any:
    """One typed-in or chosen value as JSON: empty is MISSING; a number that does not parse stays its text."""
    text = text.replace("\r\n", "\n")
    if options is not None:
        if text == "":
            return MISSING
        return next((o.data for o in options if o.value == text), text)
    if kind == "string":
        return text if text != "" else MISSING
    stripped = text.strip()
    if stripped == "":
        return MISSING
    if kind == "boolean":
        return {"true": True, "false": False}.get(stripped, stripped)
    if kind in ("integer", "number"):
        if re.fullmatch(r"[+-]?\d+", stripped):
            return int(stripped)
        try:
            number = float(stripped)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
        return int(number) if kind == "integer" and number.is_integer() else number
    return text


# -- the row buttons -------------------------------------------------------------------------------------------

def tokens(path: str) -> list[str | int]:
    """`objectives[1].objective` as ["objectives", 1, "objective"]."""
    found: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        found.append(int(index) if index else name)
    return found


def apply_action(data: dict[str, Any], action: str) -> bool:
    """Do a row button's action (`add:PATH` or `remove:PATH[i]`) on `data` parsed with blank rows kept; False
    when `action` is no row action (the submit button)."""
    verb, _, path = action.partition(":")
    if verb not in ("add", "remove") or not path:
        return False
    steps = tokens(path)
    if verb == "remove":
        if not steps or not isinstance(steps[-1], int):
            return True
        holder = _at(data, steps[:-1])
        if isinstance(holder, list) and 0 <= steps[-1] < len(holder):
            del holder[steps[-1]]
            if not holder:
                _set(data, steps[:-1], [None])  # the last row removed: one blank row stays to type into
        return True
    holder = _at(data, steps)
    if isinstance(holder, list):
        holder.append(None)
    else:
        _set(data, steps, [None, None] if holder is None else [holder, None])
    return True


def _at(data: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(data, list) and 0 <= step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict):
            data = data.get(step)
        else:
            return None
    return data


def _set(data: Any, steps: list[str | int], value: Any) -> None:
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, str) and isinstance(data, dict):
            if last:
                data[step] = value
                return
            data = data.setdefault(step, {} if isinstance(steps[i + 1], str) else [])
        elif isinstance(step, int) and isinstance(data, list):
            while len(data) <= step:
                data.append(None)
            if last:
                data[step] = value
                return
            if data[step] is None:
                data[step] = {} if isinstance(steps[i + 1], str) else []
            data = data[step]
        else:
            return
