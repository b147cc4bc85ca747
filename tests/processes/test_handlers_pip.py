"""Process improvement's handlers that used to be scripts (workflows/pip.py): reading a proposal another process
sent, the plan check and the pilot decision; and the standard process set, which is data the forms offer."""

from __future__ import annotations

from pmoflow.workflows import pip, policy

MESSAGE = {"source": "OFI", "reference": " AUD-2027-03/F-4 ", "title": "Automate SPI", "problem": "Copied by hand",
           "proposal": "Fill it from the dashboard", "processArea": "Measurement and analysis",
           "submitter": " olga.owner "}


def test_a_complete_message_goes_to_its_submitter_to_complete():
    read = pip.read_message(MESSAGE)
    assert read == {"pipSource": "OFI", "pipReference": "AUD-2027-03/F-4", "title": "Automate SPI",
                    "problem": "Copied by hand", "proposal": "Fill it from the dashboard",
                    "processArea": "Measurement and analysis", "submitter": "olga.owner", "affectedAssets": [],
                    "isoControlled": False, "toolChange": False, "evidence": "", "needsDetails": True,
                    "lane_owners": {"Submitter": ["olga.owner"]}}


def test_an_incomplete_message_or_one_from_staff_is_left_to_registration():
    assert pip.read_message({**MESSAGE, "title": "  "})["needsDetails"] is False
    assert pip.read_message({**MESSAGE, "source": "STAFF"})["needsDetails"] is False
    nobody = pip.read_message({k: v for k, v in MESSAGE.items() if k != "submitter"})
    assert (nobody["needsDetails"], nobody["lane_owners"], nobody["submitter"]) == (False, {}, "")


def test_a_pilot_the_rules_ask_for_needs_projects_and_criteria():
    project, criterion = {"projectId": "PRJ-1"}, {"criterion": "Time saved", "target": "30 %"}
    assert pip.check_plan(True, [], [criterion]) == "The PIPApproval rules ask for a pilot: name 1 or 2 pilot projects."
    assert pip.check_plan(True, [project], []) == (
        "The PIPApproval rules ask for a pilot: give the success criteria it is judged by.")
    assert pip.check_plan(True, [project, {"projectId": " PRJ-1 "}], [criterion]) == "A pilot project is listed twice."
    assert pip.check_plan(True, [project], [criterion]) == ""
    assert pip.check_plan(False, [], []) == ""


def test_deploy_only_when_every_criterion_was_met():
    projects, earlier = [{"projectId": "PRJ-1"}], [{"round": 1, "decision": "Revise"}]
    refused = pip.check_pilot("Deploy", ["Time saved"], projects, "", earlier)
    assert refused == {"problem": "Not every success criterion was met (Time saved): revise the plan or abandon the "
                                  "proposal.", "pilots": earlier}
    revised = pip.check_pilot("Revise", ["Time saved"], projects, " try again ", earlier)
    assert revised == {"problem": "", "pilots": [*earlier, {"round": 2, "projects": ["PRJ-1"],
                                                            "criteriaUnmet": ["Time saved"], "decision": "Revise",
                                                            "comment": "try again"}]}
    deployed = pip.check_pilot("Deploy", [], projects, "ignored", [])
    assert deployed["pilots"][0]["comment"] == "" and deployed["problem"] == ""


def test_the_standard_process_set_is_data_with_iso_control():
    assets = pip.standard_process_set()
    assert assets["QM-00 Quality manual"] is True and assets["TPL-02 Status report template"] is False
    assert list(assets) == [a["asset"] for a in policy.load("standard_process_set")]
