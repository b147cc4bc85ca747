"""The README's REST API section names only routes the API has, and lists every one of them."""

from __future__ import annotations

import re
from pathlib import Path

from pmoflow.engine.web.app import create_app, openapi_document

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_lists_the_routes_the_api_has(tmp_path):
    section = README.read_text().split("### The REST API", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    named = {(method, path) for line in table for method, path in re.findall(r"`(GET|POST) (/[a-z{}/_]*)`", line)}
    app = create_app(f"sqlite:///{tmp_path / 'x.db'}", secret_key="k" * 40)
    paths = {(method.upper(), re.sub(r"\{[a-z_]+\}", "{id}", path.removeprefix("/api/v1")))
             for path, operations in openapi_document(app)["paths"].items() for method in operations}
    assert named == paths
