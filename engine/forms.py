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
    completed task's form would pay it again."""
    try:
        Draft202012Validator.check_schema(json.loads(text))
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path).lstrip(".") or "the top level"
        return tuple(exc.path), f"the form is not a valid JSON Schema (draft 2020-12) at {where}: {exc.message}"
    except RecursionError:
        return (), "the form is not a usable JSON Schema: nested too deeply"
    return None


def _field(error) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}.{missing}".lstrip(".")
    return path or "(form)"


def validate(schema: dict[str, Any], data: dict[str, Any], name: str) -> None:
    """Raise InvalidInput listing every field error, or return quietly."""
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        details = [f"{_field(e)}: {e.message}" for e in errors]
        raise InvalidForm(f"the data does not fit form {name} ({len(details)} error(s))", details)


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
