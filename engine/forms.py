"""JSON Schema forms: validation of submitted data, and turning typed-in text into values."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pmoflow.engine import limits
from pmoflow.engine.errors import InvalidForm, InvalidInput, InvalidProcess

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


OPTIONS_PREFIX = "options_from_task_data_var:"  # the SpiffWorkflow modeler's choices taken from task data
OPTION_KEYWORDS = ("anyOf", "oneOf", "enum", "items")


def load_schema(text: str, name: str) -> dict[str, Any]:
    """Parse and check a form file; a broken form is the designer's error, reported as such."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidProcess(f"form {name} is not valid JSON: {exc}") from exc
    problem = schema_problem(text)
    if problem is not None:
        raise InvalidProcess(f"form {name}: {problem[1]}")
    return schema


@lru_cache(maxsize=1024)
def schema_problem(text: str) -> tuple[tuple, str] | None:
    """Why a form's JSON text is not a JSON Schema, with the key path of the fault, or None. Cached per text:
    checking against the meta-schema costs ~15 ms, more than everything else a deploy checks, and every
    completed task's form would pay it again. A modeler's `["options_from_task_data_var:NAME"]` (choices
    filled in from task data when the task is shown) is checked as any choice."""
    try:
        Draft202012Validator.check_schema(_with_options(json.loads(text), None, ""))
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path).lstrip(".") or "the top level"
        return tuple(exc.path), f"the form is not a valid JSON Schema (draft 2020-12) at {where}: {exc.message}"
    except RecursionError:
        return (), "the form is not a usable JSON Schema: nested too deeply"
    return None


def option_source(value: Any) -> str | None:
    """NAME when `value` is the modeler's `["options_from_task_data_var:NAME"]`, else None."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) \
            and value[0].startswith(OPTIONS_PREFIX):
        return value[0][len(OPTIONS_PREFIX):].strip()
    return None


def _with_options(schema: Any, task_data: dict[str, Any] | None, name: str) -> Any:
    """The schema with each `options_from_task_data_var:NAME` filled in from task data as spiff-arena fills it
    (each `{"value", "label"}` item becomes `{"type": "string", "enum": [value], "title": label}`; under `items`
    the variable holds the item schemas). Without task data (checking the form itself) any value passes."""
    if isinstance(schema, list):
        return [_with_options(item, task_data, name) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        source = option_source(value) if key in OPTION_KEYWORDS else None
        if source is None:
            result[key] = _with_options(value, task_data, name)
        elif key == "items":  # item schemas by position: draft 2020-12 spells rjsf's array-valued items so
            result["prefixItems"] = _options(key, source, task_data, name)
        else:
            result[key] = _options(key, source, task_data, name)
    return result


def _options(keyword: str, source: str, task_data: dict[str, Any] | None, name: str) -> Any:
    if task_data is None:
        return [source] if keyword == "enum" else [True]
    options = task_data.get(source)
    if not isinstance(options, list):
        raise InvalidInput(f"form {name} takes its choices from the task data '{source}', which is "
                           f"{'missing' if source not in task_data else 'not a list'}")
    if keyword == "items":
        return options
    values = [o.get("value") if isinstance(o, dict) else o for o in options]
    if keyword == "enum":
        return values
    return [{"type": "string", "enum": [o.get("value")], "title": str(o.get("label", o.get("value")))}
            if isinstance(o, dict) else {"const": o} for o in options] or [False]


def _field(error) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}.{missing}".lstrip(".")
    return path or "(form)"


def validate(schema: dict[str, Any], data: dict[str, Any], name: str,
             task_data: dict[str, Any] | None = None) -> None:
    """Raise InvalidInput listing every field error, or return quietly. `task_data` fills in choices the form
    takes from it (`options_from_task_data_var`)."""
    validator = Draft202012Validator(_with_options(schema, task_data, name), format_checker=FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        details = [f"{_field(e)}: {e.message}" for e in errors]
        raise InvalidForm(f"the data does not fit form {name} ({len(details)} error(s))", details)


def submission(schema: dict[str, Any], data: dict[str, Any], name: str,
               task_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a form submission and return what it stores: the fields the form declares.

    As the SpiffWorkflow modeler's web form sends (and its recorded test data holds) the task's data back with
    the form, a field the form does not declare is accepted when it repeats the task data unchanged, and then
    dropped: only a field that would *change* undeclared data is refused (that rule keeps the routing keys, and
    any other data a process decides with, out of a form's reach). `null` for an optional field the person left
    unanswered passes the form's rules and is stored as null."""
    current = task_data or {}
    declared = schema.get("properties", {}) if isinstance(schema, dict) else {}
    changed = sorted(k for k in data if k not in declared and (k not in current or _json(current[k]) != data[k]))
    if changed:
        raise InvalidInput(f"form {name} does not ask for: {', '.join(changed)}; remove these fields")
    kept = {k: v for k, v in data.items() if k in declared}
    required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
    validate(schema, {k: v for k, v in kept.items() if v is not None or k in required}, name, task_data)
    return kept


def _json(value: Any) -> Any:
    """Task data as JSON shows it (dates as ISO text), to compare with a submitted value."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


def landing(task_spec: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Where a submitted form lands in task data: under the user task's `spiffworkflow:variableName` when it
    has one (SpiffWorkflow's UserTask.add_data_from_form, as spiff-arena applies it), else field by field."""
    variable = getattr(task_spec, "variable", None)
    return {variable: data} if variable else data


def convert_answer(text: str, prop: dict[str, Any]) -> Any:
    """Turn what someone typed at a prompt into the value the schema expects; a ValueError says why it cannot
    be one (the prompt asks again). The answer meets the rules of all submitted data (serialization.check_data)."""
    problem = limits.text_problem(text)
    if problem:
        raise ValueError(f"the answer {problem}")
    kind = prop.get("type", "string")
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in {"y", "yes", "true", "1"}:
            return True
        if lowered in {"n", "no", "false", "0"}:
            return False
        raise ValueError("answer yes or no")
    value: Any
    if kind == "integer":
        value = _integer(text)
    elif kind == "number":
        number = float(text)
        value = int(number) if number.is_integer() else number
    elif kind in ("array", "object"):
        try:
            value = json.loads(text)
        except RecursionError:
            raise ValueError("the value is nested too deeply") from None
    else:
        return text
    from pmoflow.engine.serialization import check_data  # SpiffWorkflow's serializer: only when prompting

    try:
        check_data(value, "answer")
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


def _integer(text: str) -> int:
    digits = text.strip().lstrip("+-")
    if len(digits) > 19:  # int() of thousands of digits is slow, then refused: say so at once
        raise ValueError("the number is beyond the 64-bit integer range")
    return int(text)
