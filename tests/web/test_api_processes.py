"""The designer's REST API over HTTP, on SQLite and PostgreSQL: processes and versions, diagrams and diffs, and an
uploaded bundle validated and deployed (findings with the file's name and line, the designer's role checked,
size-limited, zips unpacked within bounds, external entities never read); and the OpenAPI document describing
every route."""

from __future__ import annotations

import io
import zipfile

import pytest
from api_helpers import *  # noqa: F403 (the fixtures)
from api_helpers import UserClient, documented, problem
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import SECRET

from conftest import FIXTURES, TEST_LIBRARY
from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web.app import create_app
from pmoflow.engine.web.settings import Settings

WEB = FIXTURES / "web"
MIGRATION = FIXTURES / "migration"
BUNDLE = ["ui_review.bpmn", "ui-review.schema.json", "ui-review-uischema.json"]


def files(folder, *names: str, rename: dict[str, str] | None = None) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart parts for these files, as a browser or `curl -F files=@...` sends them."""
    return [("files", ((rename or {}).get(name, name), (folder / name).read_bytes())) for name in names]


def zipped(entries: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return [("files", ("bundle.zip", buffer.getvalue()))]


def test_processes_versions_diagram_and_diff(pmo, api):
    listed = api("erin").get("/processes")
    documented(list[schema.Definition], listed.json())
    assert listed.json() == pmo.processes() and {"simple", "sla"} <= {p["process_id"] for p in listed.json()}
    pmo.deploy([MIGRATION / "mig_v1.bpmn"])
    pmo.deploy([MIGRATION / "mig_v2.bpmn"])
    versions = api("erin").get("/processes/mig/versions")
    documented(list[schema.Definition], versions.json())
    assert [v["version"] for v in versions.json()] == [1, 2]
    problem(api("erin").get("/processes/nope/versions"), 404, "not-found")
    diff = api("erin").get("/processes/mig/diff", params={"from": 1, "to": 2})
    documented(schema.Diff, diff.json())
    assert diff.json() == pmo.diff("mig", 1, 2) and diff.json()["summary"]["added"] == 2
    problem(api("erin").get("/processes/mig/diff", params={"from": 1, "to": 9}), 404)
    problem(api("erin").get("/processes/mig/diff", params={"from": 1}), 400, "invalid-input")
    pmo.deploy([WEB])
    svg = api("erin").get("/processes/ui_review/diagram")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.lstrip().startswith("<svg") and "Review the document" in svg.text
    assert api("erin").get("/processes/ui_review/diagram", params={"version": 1}).text == svg.text
    problem(api("erin").get("/processes/ui_review/diagram", params={"version": 2}), 404)
    problem(api("erin").get("/processes/simple/diagram"), 400)  # drawn without BPMNDI: a plain error


def test_a_designer_deploys_an_uploaded_bundle_and_others_may_not(pmo, api):
    refused = problem(api("erin").post("/processes", files=files(WEB, *BUNDLE)), 403, "permission-denied")
    assert "deploying processes needs the role Process Designer or PMO Administrator" in refused["detail"]
    assert "ui_review" not in {p["process_id"] for p in pmo.processes()}
    deployed = api("bob").post("/processes", files=files(WEB, *BUNDLE))
    assert deployed.status_code == 200, deployed.text
    documented(schema.Deployment, deployed.json())
    [made] = deployed.json()["deployed"]
    assert (made["process_id"], made["version"], made["created"], made["deployed_by"]) == ("ui_review", 1, True, "bob")
    assert sorted(deployed.json()["files"]) == sorted(BUNDLE) and deployed.json()["findings"] == []
    again = api("bob").post("/processes", files=files(WEB, *BUNDLE)).json()
    assert again["deployed"][0]["created"] is False  # the same files: no new version
    [task_form] = [t for t in api("erin").get("/tasks").json() if t["process_id"] == "ui_review"] or [None]
    assert task_form is None  # deploying starts nothing


def test_a_zip_deploys_with_its_folders_and_what_is_not_a_model_is_left_out(pmo, api):
    entries = {"pmo/bpmn/mig_v1.bpmn": (MIGRATION / "mig_v1.bpmn").read_bytes(),  # the library's layout
               "pmo/forms/mig-start.schema.json": (MIGRATION / "mig-start.schema.json").read_bytes(),
               "pmo/forms/mig-review.schema.json": (MIGRATION / "mig-review.schema.json").read_bytes(),
               "pmo/README.md": b"notes", "__MACOSX/._mig_v1.bpmn": b"junk", "pmo/.hidden.bpmn": b"junk"}
    deployed = api("alice").post("/processes", files=zipped(entries))
    assert deployed.status_code == 200, deployed.text
    assert [d["process_id"] for d in deployed.json()["deployed"]] == ["mig"]
    assert deployed.json()["ignored"] == ["pmo/README.md"]
    assert sorted(deployed.json()["files"]) == sorted(n for n in entries if n.endswith((".bpmn", ".json"))
                                                      and "MACOSX" not in n and ".hidden" not in n)


def test_findings_name_the_uploaded_file_and_line(pmo, api):
    broken = (FIXTURES / "bad" / "not_well_formed.bpmn").read_bytes()
    refused = problem(api("alice").post("/processes/validate", files=[("files", ("mine.bpmn", broken))]), 422,
                      "invalid-process")
    [finding] = [f for f in refused["findings"] if f["severity"] == "error"]
    assert finding["file"] == "mine.bpmn" and finding["line"] > 1 and "not well-formed" in finding["message"]
    assert refused["details"][0].startswith(f"mine.bpmn:{finding['line']}:")
    assert "pmoflow-upload-" not in str(refused)  # the server's folder never shows
    deploy = problem(api("alice").post("/processes", files=[("files", ("mine.bpmn", broken))]), 422)
    assert deploy["findings"] == refused["findings"]
    ok = api("erin").post("/processes/validate", files=files(WEB, *BUNDLE))  # validating needs no role
    assert ok.status_code == 200 and ok.json()["findings"] == []
    documented(schema.Validation, ok.json())
    missing_form = problem(api("alice").post("/processes/validate", files=files(WEB, "ui_review.bpmn")), 422)
    assert any("ui-review.schema.json" in f["message"] and f["file"] == "ui_review.bpmn"
               for f in missing_form["findings"])


def test_an_external_entity_is_refused_without_being_read(pmo, api, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    source = (WEB / "ui_review.bpmn").read_text().replace(
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE bpmn:definitions [<!ENTITY xxe SYSTEM "file://{secret}">]>')
    source = source.replace("Read the document and say what you think.", "&xxe;")
    parts = [("files", ("ui_review.bpmn", source.encode()))] + files(WEB, *BUNDLE[1:])
    refused = api("alice").post("/processes", files=parts)
    body = problem(refused, 422, "invalid-process")
    assert any("xxe" in f["message"] for f in body["findings"])
    assert "TOP-SECRET" not in refused.text
    assert "ui_review" not in {p["process_id"] for p in pmo.processes()}


def test_uploads_are_bounded(pmo, db_url, tokens):
    small = create_app(db_url, settings=Settings(secret_key=SECRET, max_upload_bytes=20_000),
                       libraries=[TEST_LIBRARY])
    with TestClient(small) as client:
        alice = UserClient(client, tokens("alice"))
        too_big = alice.post("/processes", files=[("files", ("big.bpmn", b" " * 25_000))])
        assert too_big.status_code == 413 and too_big.json()["status"] == 413
        bomb = alice.post("/processes", files=zipped({"big.bpmn": b" " * 500_000}))  # ~1 KB compressed
        assert len(zipped({"big.bpmn": b" " * 500_000})[0][1][1]) < 20_000
        body = problem(bomb, 413)
        assert "over 20000 bytes once unpacked" in body["detail"]
        for entry in ("../evil.bpmn", "/etc/evil.bpmn", "a/../../evil.bpmn"):
            escaped = problem(alice.post("/processes", files=zipped({entry: b"<x/>"})), 400)
            assert "points outside the bundle" in escaped["detail"]
        problem(alice.post("/processes", files=[("files", ("notes.txt", b"hello"))]), 400, "invalid-input")
        problem(alice.post("/processes", files=[("files", ("a.zip", b"not a zip"))]), 400)
        problem(alice.post("/processes", files=zipped({"README.md": b"x"})), 400)
        problem(alice.post("/processes", data={"nothing": "here"}), 400)
    assert "evil" not in str(pmo.processes())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_openapi_document_describes_every_route(app, api):
    document = api("erin").get("/openapi.json").json()
    routes = {(method, route.path_format) for route in iter_route_contexts(app.routes)
              if route.methods and route.path_format.startswith("/api/v1/")
              and route.path_format not in ("/api/v1/openapi.json", "/api/v1/docs") for method in route.methods}
    described = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert routes == described
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary") and operation.get("tags"), where
            ok = [status for status in operation["responses"] if status.startswith("2")]
            assert ok and operation["responses"][ok[0]].get("content"), where
            assert operation["responses"]["401"]["content"]["application/problem+json"], where
            assert "422" not in operation["responses"] or path.endswith(("/complete", "/instances", "/processes",
                                                                         "/validate")), where
            if method == "post" and ("/tasks/" in path or "/instances/" in path):
                assert "If-Match" in {p["name"] for p in operation.get("parameters", [])}, where
    paging = {p["name"] for p in document["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert {"limit", "after", "all", "process"} <= paging
    assert document["components"]["schemas"]["Problem"]["properties"]["rule"]
    assert document["components"]["schemas"]["TaskDetail"]["properties"]["ui_schema"]


def test_the_readmes_upload_of_the_whole_library_validates(pmo, db_url, tokens):
    """`zip -r library.zip bpmn forms` and `POST /processes/validate`, as the README shows, with the installed
    process library's handlers (the app the fixtures make has only the test library's)."""
    root = FIXTURES.parents[1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in ("bpmn", "forms"):
            for path in sorted((root / folder).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(root).as_posix())
    with TestClient(create_app(db_url, secret_key=SECRET)) as client:
        checked = UserClient(client, tokens("erin")).post(
            "/processes/validate", files=[("files", ("library.zip", buffer.getvalue()))])
    assert checked.status_code == 200, checked.text
    assert not [f for f in checked.json()["findings"] if f["severity"] == "error"]
    assert "bpmn/quality_gate.bpmn" in checked.json()["files"] and "forms/__init__.py" in checked.json()["ignored"]


def test_the_organisation_and_the_start_schedules(pmo, api):
    people = api("erin").get("/users")
    documented(list[schema.User], people.json())
    assert people.json() == pmo.users() and {"alice", "erin"} <= {p["name"] for p in people.json()}
    assert api("erin").get("/schedules").json() == []
    pmo.deploy([FIXTURES / "schedules" / "after_a_week.bpmn"])
    schedules = api("erin").get("/schedules")
    documented(list[schema.Schedule], schedules.json())
    assert [s["process_id"] for s in schedules.json()] == ["after_a_week"] and schedules.json() == pmo.schedules()
