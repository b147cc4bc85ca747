"""The internal audit handlers that used to be scripts (workflows/audit.py): the programme's plan and coverage check
(rules from workflows/data/audit_programme.json), an audit's request, the findings check and their sorting into
corrective actions and improvement suggestions."""

from __future__ import annotations

import pytest

from pmoflow.workflows import audit, policy


def entry(process, month, clauses, **more):
    return {"process": process, "department": "Ops", "auditee": "olga", "auditeeManager": "max", "clauses": clauses,
            "criteria": "ISO 9001", "method": "On-site", "plannedMonth": month, **more}


def frequency(times, interval, name="1/year"):
    return {"auditsThisCycle": times, "intervalMonths": interval, "frequency": name, "basis": "b"}


def test_each_audit_is_planned_as_often_as_its_frequency_says_and_starts_30_days_before():
    audits = [entry("Sales", "2027-11", ["4", "5.1", "6"]), entry("Design", "2027-03", ["7", "8", "9", "10"])]
    plan = audit.plan_programme(audits, [frequency(2, 6, "2/year"), frequency(1, 12)], "AP-2027", 2027)
    assert [(p["auditNo"], p["process"], p["occurrence"], p["plannedDate"], p["startAt"])
            for p in plan["plannedAudits"]] == [
        ("AP-2027-01", "Sales", 1, "2027-11-01", "2027-10-02T08:00:00+00:00"),
        ("AP-2027-02", "Sales", 2, "2028-05-01", "2028-04-01T08:00:00+00:00"),
        ("AP-2027-03", "Design", 1, "2027-03-01", "2027-01-30T08:00:00+00:00"),
    ]
    first = plan["plannedAudits"][0]
    assert (first["frequency"], first["basis"], first["auditee"], first["clauses"]) == (
        "2/year", "b", "olga", ["4", "5.1", "6"])
    assert (plan["coveredClauses"], plan["missingClauses"], plan["error"]) == ([4, 5, 6, 7, 8, 9, 10], [], "")


def test_uncovered_clauses_and_audits_outside_the_year_are_refused():
    plan = audit.plan_programme([entry("Sales", "2028-01", ["4", "5"])], [frequency(1, 12)], "AP-2027", 2027)
    assert plan["missingClauses"] == [6, 7, 8, 9, 10]
    assert plan["error"] == ("ISO 9001 clause(s) 6, 7, 8, 9, 10 not covered by any audit: every clause of 4, 5, 6, 7, "
                             "8, 9, 10 must be audited within the cycle. Planned outside 2027: Sales (2028-01).")
    with pytest.raises(ValueError, match="1 audit"):
        audit.plan_programme([entry("Sales", "2027-01", ["4"])], [], "AP-2027", 2027)


def test_the_programme_rules_are_data():
    rules = policy.load("audit_programme")
    assert (rules["requiredClauses"], rules["startDaysBefore"], rules["startTime"]) == (
        [4, 5, 6, 7, 8, 9, 10], 30, "08:00:00+00:00")


def test_an_audit_request_states_objective_and_scope():
    planned = {**entry("Purchasing", "2027-05", ["8.4", "7.5"]), "auditNo": "AP-2027-02"}
    assert audit.audit_request(planned, "AP-2027") == {
        "objective": "Determine whether Purchasing conforms to ISO 9001 and is effectively implemented and "
                     "maintained (ISO 9001 9.2.1).",
        "scope": "Purchasing (Ops), ISO 9001 clauses 8.4, 7.5; audit AP-2027-02 of programme AP-2027."}


def finding(clause, grade, **more):
    return {"clause": clause, "grade": grade, "requirement": "r", "evidence": "e", "description": "d", **more}


def test_findings_are_numbered_and_checked_against_evidence_and_scope():
    checked = audit.check_findings([finding("8.4.1", "Minor"), finding("7.1", "OFI", id="old")],
                                   [{"clause": "8.4.1", "result": "NC"}, {"clause": "8.5", "result": "C"}],
                                   ["8.4", "8.5"], "AUD-2027-1A2B3C")
    assert [f["id"] for f in checked["findings"]] == ["AUD-2027-1A2B3C-F01", "AUD-2027-1A2B3C-F02"]
    assert checked["error"] == "Finding AUD-2027-1A2B3C-F02 (clause 7.1) is outside the audit scope."
    unexplained = audit.check_findings([], [{"clause": "8.5", "result": "NC"}], ["8"], "A")
    assert unexplained == {"findings": [], "error": "Evidence on clause 8.5 is marked NC but no Major or Minor "
                                                   "finding is recorded on that clause."}
    assert audit.check_findings([finding("8.5", "Major")], [{"clause": "8.5", "result": "NC"}], ["8"], "A")[
        "error"] == ""


def test_major_and_minor_findings_get_corrective_actions_and_ofis_go_to_improvement():
    findings = [finding("8.4", "Major", id="A-F01"), finding("9.1", "OFI", id="A-F02"),
                finding("7.5", "Minor", id="A-F03", extra="kept out")]
    sorted_ = audit.sort_findings(findings, "A")
    assert [(f["id"], f["grade"], f["source"], f["sourceRef"]) for f in sorted_["toCorrect"]] == [
        ("A-F01", "Major", "audit", "A"), ("A-F03", "Minor", "audit", "A")]
    assert "extra" not in sorted_["toCorrect"][1]
    assert sorted_["improvements"] == [{"id": "A-F02", "clause": "9.1", "description": "d", "sourceRef": "A"}]
