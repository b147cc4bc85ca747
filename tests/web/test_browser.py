"""The web workspace in a real Chromium (Playwright for Python driving Debian's /usr/bin/chromium), against a real
Uvicorn this module starts on a free port of 127.0.0.1 over a demo database (the demo organisation and library):

- a Project Manager signs in, sees the inbox, claims by keyboard, submits an invalid charter and sees the field
  errors with the input kept, submits it valid, signs out; the next task shows in the Quality Director's inbox;
- an auditor downloads the events as CSV and opens an instance's report with its diagram;
- a designer uploads a broken BPMN file and sees the line of its error;
- pages fit a phone's width and show where the keyboard focus is.

Without chromium (or Playwright) the tests skip, saying why; with PMOFLOW_REQUIRE_BROWSER=1 (as .ci/run sets it)
they fail instead. With PMOFLOW_SCREENSHOTS=DIR they save the screenshots the README shows (docs/images).
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles

from conftest import FIXTURES
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.services import identity
from pmoflow.workflows.demo import INTAKE, REQUEST

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("PMOFLOW_REQUIRE_BROWSER") == "1"
SHOTS = os.environ.get("PMOFLOW_SCREENSHOTS")
PASSWORD = "a demo password for the browser"
PEOPLE = ("sean.sponsor", "sara.spm", "pete.pm", "quinn.qd", "ian.auditor", "dina.designer", "pmo.admin")
BROKEN = FIXTURES / "validate" / "not_well_formed.bpmn"


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install chromium (never 'playwright install')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Pmoflow]]:
    """A demo database and a real Uvicorn serving it on a free port: (base URL, the installation)."""
    problem = browser_problem()
    if problem:
        if REQUIRED:
            pytest.fail(f"PMOFLOW_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    import uvicorn

    from pmoflow.engine.web.app import create_app

    cheapest, identity.hasher = identity.hasher, PasswordHasher.from_parameters(profiles.CHEAPEST)
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'demo.db'}"
    pmo = Pmoflow(url, user="pmo.admin")
    pmo.init()
    for person in PEOPLE:
        pmo.set_password(person, PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uvicorn_server = uvicorn.Server(uvicorn.Config(create_app(url, secret_key="browser-test-key-" + "x" * 32),
                                                   host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", pmo
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)
        pmo.close()
        identity.hasher = cheapest


@pytest.fixture(scope="module")
def chromium(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def open_as(server, chromium):
    """`open_as("pete.pm")`: a new browser context (its own cookies) signed in through the sign-in form."""
    base, _ = server
    contexts = []

    def sign_in(user: str, width: int = 1280, height: int = 900):
        context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(base + "/")
        assert page.locator("h1").inner_text() == "Sign in"  # not signed in: the sign-in form, nothing else
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/")
        return page

    yield sign_in
    for context in contexts:
        context.close()


def shot(page, name: str, full_page: bool = False) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


def charter_waiting(pmo: Pmoflow) -> tuple[int, int]:
    """A request accepted at intake: (instance, the id of its 'Draft project charter' task)."""
    instance = pmo.acting_as("sean.sponsor").start("project_initiation", REQUEST, "PORTAL-7")["instance_id"]
    [intake] = [t for t in pmo.tasks(all_tasks=True) if t["instance_id"] == instance]
    pmo.acting_as("sara.spm").complete(intake["id"], INTAKE)
    [charter] = [t for t in pmo.tasks(all_tasks=True) if t["instance_id"] == instance]
    return instance, charter["id"]


def test_a_project_manager_fixes_an_invalid_form_and_the_next_task_reaches_the_quality_director(server, open_as):
    base, pmo = server
    instance, task = charter_waiting(pmo)
    page = open_as("pete.pm")
    row = page.get_by_role("row").filter(has_text=f"#{task}")
    assert "Draft project charter" in row.inner_text()
    shot(page, "inbox")
    row.get_by_role("button", name=f"Claim task {task}").focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus shows
    page.keyboard.press("Enter")  # operable by keyboard
    page.wait_for_url(f"{base}/?claimed={task}")
    assert pmo.task(task)["assignee"] == "pete.pm"

    page.get_by_role("link", name="Draft project charter").click()
    page.get_by_label("Purpose").fill("Too short")
    page.get_by_label("High-level requirements: row 1").fill("Single sign-on with the corporate IdP")
    page.get_by_label("Deliverables: row 1").fill("New portal in production")
    page.get_by_label("Overall risk").select_option("Med")
    page.get_by_label("Pre-approved budget").fill("-5")
    page.get_by_label("Exit criteria").fill("Portal accepted by operations")
    page.get_by_role("textbox", name="Sponsor", exact=True).fill("Sean Sponsor")
    page.get_by_label("Project manager", exact=True).fill("pete.pm")
    page.get_by_role("button", name="Submit", exact=True).click()

    summary = page.locator("#form-errors")
    assert "The form has 3 problems" in summary.inner_text()
    assert page.locator("#f-purpose-error").inner_text() == "Too short: at least 20 characters."
    assert page.locator("#f-pmAuthority-error").inner_text() == "Required: fill this in."
    assert page.locator("#f-preApprovedBudget-error").inner_text() == "Must be more than 0."
    assert page.get_by_label("Purpose").input_value() == "Too short"  # nothing typed is lost
    assert page.get_by_label("Exit criteria").input_value() == "Portal accepted by operations"
    assert page.get_by_label("Overall risk").input_value() == "Med"
    assert page.locator("#f-purpose").get_attribute("aria-invalid") == "true"
    assert pmo.task(task)["state"] == "ready"
    page.evaluate("document.getElementById('form-errors').scrollIntoView()")
    shot(page, "task-form-errors")

    page.get_by_label("Purpose").fill("Replace the unsupported customer portal and move customers to self-service.")
    page.get_by_label("Pre-approved budget").fill("120000")
    page.get_by_label("PM authority level").select_option("Moderate")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_url(f"{base}/?completed={task}&instance={instance}&status=running")
    assert f"Task {task} completed" in page.get_by_role("status").inner_text()
    assert pmo.task(task)["completed_by"] == "pete.pm"

    page.goto(f"{base}/instances/{instance}")
    assert page.locator("svg .current").count() >= 2  # the two tasks open now, marked on the diagram
    shot(page, "instance")
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("h1").inner_text() == "Sign in"
    page.goto(base + "/")
    assert page.locator("h1").inner_text() == "Sign in"  # the session is over

    quinn = open_as("quinn.qd")
    assert quinn.get_by_role("link", name="Assign SQA").count() >= 1


def test_an_auditor_downloads_the_events_as_csv_and_opens_a_report_with_the_diagram(server, open_as):
    base, pmo = server
    instance, _ = charter_waiting(pmo)
    page = open_as("ian.auditor")
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Instance", exact=True).fill(str(instance))
    page.get_by_role("button", name="Search").click()
    assert page.locator("table.events tbody tr").count() >= 3
    page.evaluate("document.getElementById('search').scrollIntoView()")
    shot(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][:3] == ["instance_id", "stream", "seq"] and len(rows) > 3
    assert {row[0] for row in rows[1:]} == {str(instance)}
    page.get_by_label("Instance report: instance").fill(str(instance))
    page.get_by_role("button", name="Open the report").click()
    page.wait_for_url(f"{base}/audit/report/{instance}?format=html")
    assert page.locator("h1").inner_text().startswith("Audit report")
    assert page.locator("#diagram svg").is_visible()
    assert page.locator("#diagram svg .completed").count() >= 1


def test_a_designer_uploads_a_broken_bpmn_and_sees_the_line_of_its_error(server, open_as):
    base, _ = server
    page = open_as("dina.designer")
    page.get_by_role("link", name="Designer").click()
    page.get_by_label("Files").set_input_files(str(BROKEN))
    page.get_by_role("button", name="Check").click()
    findings = page.locator(".findings li.finding-error")
    assert findings.count() >= 1
    where = findings.first.locator(".where").inner_text()
    name, line, _column = where.split(":")
    assert name == BROKEN.name and int(line) > 1 and "not well-formed" in findings.first.inner_text()
    shot(page, "designer")


def test_pages_fit_a_phone_and_show_the_keyboard_focus(server, open_as):
    base, pmo = server
    _, task = charter_waiting(pmo)
    page = open_as("pete.pm", width=375, height=760)
    for path in ("/", f"/tasks/{task}", "/instances", "/start"):
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    page.goto(base + "/")
    shot(page, "inbox-phone")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") != ""
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
