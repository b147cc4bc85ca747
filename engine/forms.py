"""JSON Schema forms: validation of submitted data, and turning typed-in text into values."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pmoflow.engine.errors import InvalidInput, InvalidProcess

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


def load_schema(text: str, name: str) -> dict[str, Any]:
    """Parse and check a form file; a broken form is the designer's error, reported as such."""
    try:
        schema = json.loads(text)
        _check_schema(text)
    except json.JSONDecodeError as exc:
        raise InvalidProcess(f"form {name} is not valid JSON: {exc}") from exc
    except SchemaError as exc:
        raise InvalidProcess(f"form {name} is not a valid JSON Schema: {exc.message}") from exc
    return schema


@lru_cache(maxsize=1024)
def _check_schema(text: str) -> None:
    """Checking a schema against the meta-schema costs ~15 ms, paid on every deploy and every completed form
    before this cache: a form's text is now checked once per process (a failed check is not cached)."""
    Draft202012Validator.check_schema(json.loads(text))


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
        raise InvalidInput(f"the data does not fit form {name} ({len(details)} error(s))", details)


def convert_answer(text: str, prop: dict[str, Any]) -> Any:
    """Turn what someone typed at a prompt into the value the schema expects."""
    kind = prop.get("type", "string")
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in {"y", "yes", "true", "1"}:
            return True
        if lowered in {"n", "no", "false", "0"}:
            return False
        raise ValueError("answer yes or no")
    if kind == "integer":
        return int(text)
    if kind == "number":
        value = float(text)
        return int(value) if value.is_integer() else value
    if kind in ("array", "object"):
        return json.loads(text)
    return text
