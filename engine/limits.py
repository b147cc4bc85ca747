"""What text pmoflow accepts from outside, so that SQLite and PostgreSQL store the same things.

SQLite stores any string of any length; PostgreSQL refuses a NUL character, text that is not valid Unicode
(a lone surrogate, which Python makes of undecodable command-line bytes) and a string longer than its
`String(n)` column, with a multi-line `DataError` at save. Input is checked here first, with the field named.
"""

from __future__ import annotations

from typing import Any

from pmoflow.engine.errors import InvalidInput


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored alike on both databases, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\x00), which cannot be stored"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains {text[exc.start]!r}, which is not valid Unicode text (a lone surrogate)"
    return None


def column_length(column: Any) -> int | None:
    """The length of a model's `String(n)` column (`User.name`), so that limits follow the schema."""
    return getattr(column.property.columns[0].type, "length", None)


def string_length(column: Any) -> int:
    """`column_length` of a column the model declares as `String(n)`: a length there is, so no None to handle."""
    length = column_length(column)
    assert length is not None, f"{column} is not a String(n) column"
    return length


def check_text(value: str | None, what: str, column: Any = None, *, limit: int | None = None,
               required: bool = False) -> str | None:
    """Refuse text that could not be stored in `column` (or be longer than `limit` characters), naming `what`.
    None passes unless `required`; so does an empty string unless `required`."""
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{what} must not be empty")
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    limit = limit if limit is not None else column_length(column) if column is not None else None
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"{what} is {len(value)} characters long; at most {limit} fit")
    return value


def shown(text: str, width: int = 60) -> str:
    """`text` quoted for an error message: control characters and surrogates escaped, long text cut."""
    cut = text if len(text) <= width else text[:width] + "..."
    return repr(cut)
