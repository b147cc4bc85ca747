"""Audit reports: an instance's report (HTML, Markdown, JSON) with its diagram marked on the right elements, and a
process's report over a period. The HTML is parsed with lxml: the path taken, the current task and the element in
error carry their classes on the `<g data-bpmn-id>` of the right elements, and nothing is fetched from outside."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from lxml import etree
from lxml import html as lxml_html
from sqlalchemy import text

from conftest import FIXTURES
from pmoflow.engine import clock, runtime
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.report import render

SVG = "http://www.w3.org/2000/svg"
GATE = FIXTURES / "audit_trail"
GO_PATH = {"start_gate", "compute_index", "recommend", "gate_decision", "go_gw", "close_go", "end_go"}
GO_FLOWS = {"g1", "g2", "g3", "g4", "g_go", "g5"}
ALL_FLOWS = GO_FLOWS | {"g_stop", "g_remind"}


pytestmark = pytest.mark.usefixtures("cli_handlers")


@pytest.fixture
def gate(pmo, make_pmo):
    pmo.deploy([GATE])
    return make_pmo("bob"), make_pmo("carol")


def decide(bob, carol, instance_id: int, decision: str, at: datetime | None = None) -> None:
    [task] = [t for t in bob.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    with clock.frozen(at):
        carol.complete(task["id"], {"gateDecision": decision, "comment": "see minutes"})


def marks(page: str) -> dict[str, set[str]]:
    """The classes of every drawn BPMN element of the report's SVG, by BPMN id."""
    doc = lxml_html.document_fromstring(page)
    [svg] = [el for el in doc.iter() if isinstance(el.tag, str) and el.tag.endswith("svg")]
    return {g.get("data-bpmn-id"): set(g.get("class", "").split()) for g in svg.iter()
            if isinstance(g.tag, str) and g.get("data-bpmn-id")}


def having(classes: dict[str, set[str]], state: str) -> set[str]:
    return {element for element, names in classes.items() if state in names}


def test_a_completed_instance_marks_the_path_it_took(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    report = bob.report(instance_id)
    classes = marks(render(report, "html"))
    assert having(classes, "completed") == GO_PATH
    assert having(classes, "taken") == GO_FLOWS
    assert having(classes, "current") == set() and having(classes, "error") == set()
    assert "sequence-flow" in classes["g_stop"] and "taken" not in classes["g_stop"]
    assert report["diagram"]["completed"] == sorted(GO_PATH)


def test_the_other_branch_marks_the_other_flow(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    decide(bob, carol, instance_id, "Stop")
    classes = marks(render(bob.report(instance_id), "html"))
    assert having(classes, "taken") == {"g1", "g2", "g3", "g4", "g_stop"}
    assert having(classes, "completed") == {"start_gate", "compute_index", "recommend", "gate_decision", "go_gw",
                                            "end_stop"}


def test_an_open_instance_marks_its_current_task_and_a_fired_reminder(gate):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    # the non-interrupting reminder fires
    bob.acting_as("pmo.admin").run_due(datetime.now().astimezone() + timedelta(days=6))
    classes = marks(render(bob.report(instance_id), "html"))
    assert having(classes, "current") == {"gate_decision"}
    assert "completed" not in classes["gate_decision"]
    assert having(classes, "taken") == {"g1", "g2", "g3", "g_remind"}
    assert {"gate_reminder", "remind_end"} <= having(classes, "completed")


def test_an_instance_in_error_marks_the_failed_element(gate):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 13})["instance_id"]
    report = bob.report(instance_id)
    classes = marks(render(report, "html"))
    assert having(classes, "error") == {"compute_index"}
    assert having(classes, "completed") == {"start_gate"} and having(classes, "taken") == {"g1"}
    assert report["errors"][0]["message"].startswith("ZeroDivisionError")


def test_the_html_is_one_self_contained_file(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "<script>alert(1)</script>", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    page = render(bob.report(instance_id), "html")
    doc = lxml_html.document_fromstring(page)
    assert doc.xpath("//script") == [] and doc.xpath("//link") == [] and doc.xpath("//img") == []
    assert doc.xpath("//iframe|//object|//embed") == []
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if name.split("}")[-1] in ("href", "src", "xlink:href", "srcset", "action"):
                assert value.startswith("#"), (element.tag, name, value)
    for style in doc.xpath("//style"):
        assert "@import" not in style.text and "url(" not in style.text
    without_namespaces = page.replace(f'xmlns="{SVG}"', "")
    assert "http://" not in without_namespaces and "https://" not in without_namespaces
    assert "<script>alert(1)</script>" not in page  # data is escaped, never markup
    [svg] = [el for el in doc.iter() if isinstance(el.tag, str) and el.tag.endswith("svg")]
    assert svg.get("width") is None and svg.get("height") is None and svg.get("viewbox") or svg.get("viewBox")


def test_the_report_holds_the_timeline_steps_decisions_and_duties(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    report = bob.report(instance_id)
    doc = lxml_html.document_fromstring(render(report, "html"))

    def rows(section: str) -> list[list[str]]:
        return [[td.text_content() for td in tr.xpath("td")]
                for tr in doc.xpath(f"//section[@id='{section}']//tbody/tr")]

    assert len(rows("timeline")) == len(bob.history(instance_id)) == report["verification"]["events"]
    [decision] = rows("decisions")
    assert "Rule_hold (row 2)" in decision[-1] and "recommendation=Hold" in decision[-2]
    [duty] = rows("duties")
    assert duty[3:6] == ["carol", "performer differs from starter", "passed"]
    [step] = rows("steps")
    assert step[0] == "Decide the gate" and step[4] == "completed" and step[5] == "carol"
    assert doc.xpath("//section[@id='verification']/p[@class='ok']")
    summary = {tr.xpath("th")[0].text_content(): tr.xpath("td")[0].text_content()
               for tr in doc.xpath("//section[@id='summary']//tr")}
    assert summary["Status"] == "completed" and summary["Started"].endswith("by bob")
    assert report["summary"]["content_hash"] in summary["Version"]


def test_markdown_and_json_carry_the_same_report(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    report = bob.report(instance_id)
    markdown = render(report, "md")
    assert markdown.startswith(f"# Audit report: instance {instance_id} of Project gate review")
    for heading in ("## Summary", "## Verification", "## Diagram", "## Timeline", "## Time in each step",
                    "## Decisions and their rules", "## Segregation of duties", "## Administrative acts"):
        assert heading in markdown
    assert "<svg" not in markdown and "Path taken (sequence flows): g1, g2, g3, g4, g5, g_go" in markdown
    data = json.loads(render(report, "json"))
    assert data["kind"] == "instance" and data["diagram"]["taken_flows"] == sorted(GO_FLOWS)
    assert [e["type"] for e in data["timeline"]] == [e["type"] for e in bob.history(instance_id)]


def test_a_tampered_record_shows_in_the_report(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    with bob.db.engine.begin() as conn:
        conn.execute(text("UPDATE events SET actor = 'mallory' WHERE instance_id = :i AND seq = 4"), {"i": instance_id})
    report = bob.report(instance_id)
    assert not report["verification"]["ok"]
    doc = lxml_html.document_fromstring(render(report, "html"))
    [warning] = doc.xpath("//section[@id='verification']/p[@class='bad']")
    assert "does NOT verify" in warning.text_content()
    assert "event 4 was altered" in doc.xpath("//section[@id='verification']//li")[0].text_content()


def test_a_process_without_a_diagram_still_reports(pmo):
    instance_id = pmo.start("simple", {"title": "abc", "amount": 2})["instance_id"]
    report = pmo.report(instance_id)
    assert report["diagram"]["svg"] is None and "no diagram (BPMNDI)" in report["diagram"]["note"]
    assert "No diagram: " in render(report, "html") and "No diagram: " in render(report, "md")
    assert report["diagram"]["current"] == ["review"]


def test_the_process_report_over_a_period(gate):
    bob, carol = gate
    on_time = bob.start("audit_gate", {"project": "Ares", "score": 9})["instance_id"]
    decide(bob, carol, on_time, "Go")  # as recommended
    overridden = bob.start("audit_gate", {"project": "Bora", "score": 6})["instance_id"]
    [task] = [t for t in bob.tasks(all_tasks=True) if t["instance_id"] == overridden]
    task_due = datetime.fromisoformat(task["due"])
    decide(bob, carol, overridden, "Go", at=task_due + timedelta(days=1))  # Hold recommended, and late
    failed = bob.start("audit_gate", {"project": "Ceto", "score": 13})["instance_id"]
    held = bob.start("audit_gate", {"project": "Dion", "score": 9})["instance_id"]
    bob.suspend(held, "waiting for the sponsor")
    report = bob.process_report("audit_gate", since="2000-01-01", until="2100-01-01",  # the late one is ahead
                                override="data.gateDecision=outputs.recommendation")
    assert report["counts"]["started"] == 4 and report["counts"]["completed"] == 2
    assert report["counts"]["error"] == 1 and report["counts"]["suspended"] == 1
    assert report["cycle_times"]["count"] == 2
    assert [(o["instance_id"], o["submitted"], o["recommended"]) for o in report["overrides"]] == [
        (overridden, "data.gateDecision=Go", "outputs.recommendation=Hold")]
    assert [(t["instance_id"], t["completed_by"]) for t in report["late_tasks"]] == [(overridden, "carol")]
    assert report["late_tasks"][0]["late_seconds"] == pytest.approx(86400, abs=5)
    kinds = {(f["instance_id"], f["kind"]) for f in report["open_findings"]}
    assert kinds == {(failed, "error"), (held, "suspended")}
    assert [a["type"] for a in report["admin"]] == ["suspend"]
    [step] = report["steps"]
    assert (step["bpmn_id"], step["count"], step["late"], step["open"]) == ("gate_decision", 2, 1, 1)
    page = render(report, "html")
    doc = lxml_html.document_fromstring(page)
    assert len(doc.xpath("//section[@id='overrides']//tbody/tr")) == 1
    assert len(doc.xpath("//section[@id='late']//tbody/tr")) == 1
    assert len(doc.xpath("//section[@id='findings']//tbody/tr")) == 2
    markdown = render(report, "md")
    assert "## Overrides (data.gateDecision=outputs.recommendation)" in markdown and "## Open findings" in markdown
    quiet = bob.process_report("audit_gate", period="2001")
    assert quiet["counts"]["started"] == 0 and quiet["overrides"] is None
    assert "Give --override" in render(quiet, "md")


def test_the_process_report_shows_overdue_open_tasks(gate):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Ares", "score": 9})["instance_id"]
    with clock.frozen(clock.now() + timedelta(days=7)):
        report = bob.process_report("audit_gate", since="2000-01-01")
    assert [(t["instance_id"], t["completed_at"]) for t in report["late_tasks"]] == [(instance_id, None)]
    assert {f["kind"] for f in report["open_findings"]} == {"overdue task"}


def test_report_errors_are_plain(gate):
    bob, _ = gate
    with pytest.raises(NotFound):
        bob.report(4242)
    with pytest.raises(InvalidInput, match="give the period"):
        bob.process_report("audit_gate")
    with pytest.raises(NotFound, match="no process 'nope'"):
        bob.process_report("nope", since="2027-01-01")
    with pytest.raises(InvalidInput, match="is not a date"):
        bob.process_report("audit_gate", since="01/02/2027")
    with pytest.raises(InvalidInput, match="is not a field"):
        bob.process_report("audit_gate", since="2020-01-01", override="data.x=outputs.y")
    with pytest.raises(InvalidInput, match="the period is empty"):
        bob.process_report("audit_gate", since="2999-01-01")


def cli(db_url: str, *args):
    for cache in (runtime._CACHE, runtime._SPECS):
        cache.clear()
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(
        main, ["--db", db_url, *[str(a) for a in args]])


def test_report_on_the_command_line(gate, db_url, tmp_path):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    decide(bob, carol, instance_id, "Go")
    out = tmp_path / "gate.html"
    written = cli(db_url, "report", instance_id, "--format", "html", "--output", out)
    assert written.exit_code == 0 and f"written to {out}" in written.stderr
    assert having(marks(out.read_text(encoding="utf-8")), "taken") == GO_FLOWS
    etree.fromstring(out.read_bytes(), etree.HTMLParser())
    md = cli(db_url, "report", instance_id)
    assert md.exit_code == 0 and md.stdout.startswith("# Audit report")
    as_json = cli(db_url, "report", instance_id, "--json")
    assert json.loads(as_json.stdout)["summary"]["instance_id"] == instance_id
    period = cli(db_url, "report", "--process", "audit_gate", "--period", "2026", "--format", "md",
                 "--override", "data.gateDecision=outputs.recommendation")
    assert period.exit_code == 0 and "## Overrides" in period.stdout
    for args, code, fragment in [
        (["report", "999"], 1, "no instance 999"),
        (["report", "x"], 1, "ids are numbers"),
        (["report", "--process", "audit_gate", "--since", "2027-99-01"], 1, "is not a date"),
        (["report", "--process", "audit_gate"], 1, "give the period"),
        (["report", "--process", "audit_gate", "--period", "Q1"], 1, "is not a period"),
        (["report"], 2, "give an INSTANCE"),
        (["report", instance_id, "--process", "audit_gate"], 2, "not both"),
        (["report", instance_id, "--since", "2027-01-01"], 2, "go with --process"),
        (["report", instance_id, "--format", "pdf"], 2, ""),
    ]:
        result = cli(db_url, *args)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr
