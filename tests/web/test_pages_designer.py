"""The designer's pages over HTTP (SQLite, and PostgreSQL when configured): processes, versions, a version's
diagram and the diff of two; an uploaded bundle checked (findings as file:line, the server's folder never shown)
and deployed by a Process Designer, refused to a Project Manager; the upload bounded."""

from __future__ import annotations

from pathlib import Path

from page_helpers import *  # noqa: F403 (the fixtures)
from page_helpers import HTML, text_of
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import SECRET, csrf_of, sign_in

from conftest import FIXTURES, TEST_LIBRARY
from pmoflow.engine.web.app import create_app
from pmoflow.engine.web.settings import Settings

WEB = FIXTURES / "web"
BUNDLE = ("ui_review.bpmn", "ui-review.schema.json", "ui-review-uischema.json")
BROKEN = (FIXTURES / "validate" / "not_well_formed.bpmn").read_bytes()


def upload(client, files: list[tuple[str, bytes]], action: str = "check"):
    token = csrf_of(client.get("/designer", headers=HTML).text)
    return client.post("/designer/upload", data={"csrf_token": token, "action": action},
                       files=[("files", (name, content)) for name, content in files], headers=HTML)


def bundle(folder: Path = WEB, *names: str) -> list[tuple[str, bytes]]:
    return [(name, (folder / name).read_bytes()) for name in names or BUNDLE]


def test_processes_versions_diagram_and_diff(browser):
    dina = browser("dina.designer")
    listing = dina.get("/designer").text
    assert 'href="/designer/project_initiation"' in listing and 'type="file"' in listing
    page = dina.get("/designer/project_initiation?from_version=1&to_version=1")
    assert page.status_code == 200
    assert "<svg" in page.text and 'data-bpmn-id="draft_charter"' in page.text
    assert "No differences between v1 and v1" in page.text
    assert dina.get("/designer/no_such_process").status_code == 404
    assert 'href="/designer"' not in browser("pete.pm").get("/").text  # not in a PM's navigation


def test_a_broken_bpmn_shows_its_findings_with_file_and_line(pmo, client, passwords):
    passwords("alice")
    sign_in(client, "alice")
    refused = upload(client, [("mine.bpmn", BROKEN)])
    assert refused.status_code == 422
    text = text_of(refused.text)
    assert "The bundle has errors" in text and "mine.bpmn:" in text and "not well-formed" in text
    assert "pmoflow-upload-" not in refused.text  # the server's folder never shows
    deploy = upload(client, [("mine.bpmn", BROKEN)], "deploy")
    assert deploy.status_code == 422 and "Deploy refused" in deploy.text


def test_a_designer_checks_then_deploys_a_bundle_and_a_project_manager_may_not(pmo, client, passwords):
    passwords("alice", "erin")
    sign_in(client, "erin")
    checked = upload(client, bundle())
    assert checked.status_code == 200 and "The bundle checks out" in checked.text  # checking needs no role
    refused = upload(client, bundle(), "deploy")
    assert refused.status_code == 403 and "needs the role Process Designer or PMO Administrator" in refused.text
    assert "ui_review" not in {p["process_id"] for p in pmo.processes()}
    sign_in(client, "alice")
    deployed = upload(client, bundle(), "deploy")
    assert deployed.status_code == 200 and 'href="/designer/ui_review">ui_review</a> version 1' in deployed.text
    assert [p["version"] for p in pmo.versions("ui_review")] == [1]
    again = upload(client, bundle(), "deploy")
    assert "unchanged: the same files as before" in again.text


def test_an_upload_without_files_or_of_another_kind_is_refused_plainly(pmo, client, passwords):
    passwords("alice")
    sign_in(client, "alice")
    odd = upload(client, [("notes.txt", b"hello")])
    assert odd.status_code == 400 and "notes.txt: upload .bpmn, .dmn or .json files" in odd.text
    token = csrf_of(client.get("/designer", headers=HTML).text)
    none = client.post("/designer/upload", data={"csrf_token": token, "action": "check"}, headers=HTML)
    assert none.status_code == 400 and "upload one or more" in none.text


def test_uploads_are_bounded(pmo, db_url, passwords):
    passwords("alice")
    small = create_app(db_url, settings=Settings(secret_key=SECRET, max_upload_bytes=2000), libraries=[TEST_LIBRARY])
    from fastapi.testclient import TestClient

    with TestClient(small, follow_redirects=False) as client:
        sign_in(client, "alice")
        refused = upload(client, [("big.bpmn", b"<x>" + b" " * 5000 + b"</x>")])
        assert refused.status_code == 413
