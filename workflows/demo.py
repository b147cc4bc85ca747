"""`pmoflow demo`: one project through initiation on a fresh embedded database, narrated."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pmoflow.engine.api import Pmoflow

REQUEST = {
    "title": "Customer portal replacement",
    "businessNeed": "The customer portal runs on an unsupported platform; outages cost us renewals and support "
                    "calls. Customers need self-service for invoices and tickets.",
    "objectives": [{"objective": "Replace the portal", "successCriterion": "Old portal switched off by Q4"}],
    "scopeIn": "Portal, single sign-on, invoice and ticket self-service",
    "scopeOut": "Mobile app",
    "estBudget": 450000,
    "budgetSource": "Capital budget",
    "targetStart": "2027-01-04",
    "targetEnd": "2027-12-17",
    "milestones": [{"name": "Design approved", "date": "2027-03-01"}, {"name": "Go-live", "date": "2027-11-15"}],
    "risks": [{"desc": "Single sign-on integration is late", "probability": 2, "impact": 3}],
    "stakeholders": [{"name": "sean.sponsor", "role": "Sponsor", "influence": "H"},
                     {"name": "lee.ops", "role": "Operations lead", "influence": "M"}],
    "contractType": "internal",
    "strategicObjective": "Improve customer experience",
}
INTAKE = {"hasMeasurableObjectives": True, "hasClearScope": True, "hasRealisticSchedule": True,
          "hasBudgetJustification": True, "hasRiskAssessment": True, "hasStakeholders": True,
          "projectType": "Software development", "lifecycle": "Hybrid", "intakeDecision": "Accept"}
CHARTER = {
    "purpose": "Replace the unsupported customer portal and move customers to self-service.",
    "objectives": [{"objective": "Replace the portal", "successCriterion": "Old portal off by 2027-12-01"}],
    "highLevelRequirements": ["Single sign-on with the corporate IdP", "WCAG 2.1 AA"],
    "deliverables": ["New portal in production", "Migrated customer accounts"],
    "overallRisk": "Med",
    "milestones": [{"name": "Design approved", "date": "2027-03-01"}, {"name": "Go-live", "date": "2027-11-15"}],
    "preApprovedBudget": 120000,
    "stakeholders": [{"name": "sean.sponsor", "role": "Sponsor", "influence": "H"},
                     {"name": "lee.ops", "role": "Operations lead", "influence": "M"}],
    "exitCriteria": "Portal accepted by operations; old portal decommissioned.",
    "pmAuthority": "Moderate",
    "sponsor": "Sean Sponsor",
    "pmName": "pete.pm",
}
STEPS = [
    ("sara.spm", "intake_review", INTAKE, "The Senior PM reviews the request for completeness and accepts it."),
    ("pete.pm", "draft_charter", CHARTER, "The PM-designate drafts the charter."),
    ("cora.cm", "confirm_cm_plan", {"cmPlanConfirmed": True, "repositoryUrl": "https://git.example.org/portal"},
     "In parallel, the Configuration Manager confirms the CM plan and repository..."),
    ("quinn.qd", "assign_sqa", {"sqaUser": "sam.sqa"},
     "...and the Quality Director assigns an SQA who is not on the project team."),
    ("alex.apd", "approve_charter", {
        "approvalDecision": "Approve-with-conditions", "signature": "Alex Assistant-Director",
        "conditions": [{"text": "Security review of the SSO design", "owner": "pete.pm", "due": "2027-02-15"}]},
     "The approver the CharterApproval rules chose (Assistant Project Director for 450k, low risk) approves "
     "with a condition tracked to Gate 1."),
]


def run_demo(out: Console, keep: str | None = None) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="pmoflow-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'demo.db'}"
    out.rule("pmoflow demo: project initiation")
    out.print(f"A fresh embedded database: {db}")
    setup = Pmoflow(db, user="pmo.admin").init()
    out.print(f"Loaded the demo PMO ({setup['users']} people) and deployed "
              + ", ".join(f"{p['process_id']} v{p['version']}" for p in setup["processes"]))

    sponsor = Pmoflow(db, user="sean.sponsor")
    out.print("\n[bold]1. sean.sponsor (Sponsor) submits a project request[/bold]")
    started = sponsor.start("project_initiation", REQUEST)
    instance_id = started["instance_id"]
    out.print(f"   instance {instance_id} started; status {started['status']}")
    for n, (user, bpmn_id, data, story) in enumerate(STEPS, 2):
        app = Pmoflow(db, user=user)
        show_inbox(out, app, user)
        task = next(t for t in app.tasks() if t["bpmn_id"] == bpmn_id and t["instance_id"] == instance_id)
        out.print(f"\n[bold]{n}. {user}: {task['name']}[/bold]  {story}")
        result = app.complete(task["id"], data)
        out.print(f"   completed task {task['id']}; instance is {result['status']}")
        app.close()

    final = sponsor.show(instance_id)
    out.print(f"\n[bold]Outcome:[/bold] {final['data'].get('outcome')} "
              f"(project {final['data'].get('projectId')}, gate profile {final['data'].get('gateProfile')})")
    show_history(out, sponsor.history(instance_id))
    out.print(f"\nThe database is kept at {folder / 'demo.db'}: try "
              f"'pmoflow --db {db} history {instance_id}' or 'show {instance_id}'.")
    sponsor.close()


def show_inbox(out: Console, app: Pmoflow, user: str) -> None:
    tasks = app.tasks()
    names = ", ".join(f"#{t['id']} {t['name']}" for t in tasks) or "empty"
    out.print(f"\n   inbox of {user}: {names}")


def show_history(out: Console, events: list[dict[str, Any]]) -> None:
    grid = Table(title="History (the audit log, hash-chained)", title_justify="left")
    for column in ("seq", "actor", "event", "task", "details"):
        grid.add_column(column)
    for e in events:
        grid.add_row(str(e["seq"]), e["actor"], e["type"], e["task_name"] or e["task"] or "", _summary(e))
    out.print(grid)


def _summary(event: dict[str, Any]) -> str:
    p = event["payload"]
    if event["type"] == "decision":
        return f"{p['decision']}: {json.dumps(p['inputs'])} -> {json.dumps(p['outputs'])}"
    if event["type"] == "task_ready":
        return "for " + ", ".join(p.get("candidates", []))
    if event["type"] == "gateway":
        return "took " + ", ".join(p.get("taken", []))
    if event["type"] == "service_called":
        return f"{p['operator']} -> {p['result_variable']}"
    if event["type"] == "task_completed":
        return ", ".join(sorted(p.get("data", {})))[:80]
    return ""
