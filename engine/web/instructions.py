"""A task's instructions (the modeler's `instructionsForEndUser`) as safe HTML: Markdown with `{{ placeholders }}`
filled from the task's data.

A placeholder is a path into the data: `{{ title }}`, `{{ request.budget }}`, `{{ risks[0].desc }}` (no
expressions, filters or loops: instructions come from designers and data from users, and neither runs here).
A value is inserted as literal text: its Markdown punctuation is escaped, so data cannot add a link or an
image; a missing value is left empty, as Jinja leaves an undefined one. The Markdown is CommonMark with tables;
raw HTML in it is shown as text, never passed through, and links other than http(s), mailto and relative ones
are dropped by markdown-it's link check.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*|\[\d+\])*)\s*\}\}")
PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


def lookup(data: Any, path: str) -> Any:
    """The value at `path` (`a.b[0].c`) in `data`, or None."""
    for name, index in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", path):
        if index:
            data = data[int(index)] if isinstance(data, list) and int(index) < len(data) else None
        else:
            data = data.get(name) if isinstance(data, dict) else None
        if data is None:
            return None
    return data


def _literal(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return PUNCTUATION.sub(r"\\\1", text)


def fill(text: str, data: dict[str, Any]) -> str:
    """The instructions' Markdown with each placeholder replaced by its value, as literal text."""
    return PLACEHOLDER.sub(lambda m: _literal(lookup(data, m.group(1))), text)


def render(text: str | None, data: dict[str, Any] | None) -> Markup:
    """Safe HTML of the instructions (empty when there are none)."""
    if not text or not text.strip():
        return Markup("")
    return Markup(_markdown().render(fill(text, data or {})))
