"""The BPMN diagram renderer (engine/diagram.py): what it draws, how it marks an instance's state, what it refuses.

Plain pytest, no database: every test renders a BPMN file to SVG and reads the SVG back with lxml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from pmoflow.engine.diagram import render_svg
from pmoflow.engine.svg import wrap

HERE = Path(__file__).parents[1]
INITIATION = HERE.parent / "bpmn" / "project_initiation.bpmn"
TWO_POOLS = HERE / "fixtures" / "diagram" / "two_pools.bpmn"
NO_DIAGRAM = sorted(p for p in (HERE / "fixtures").glob("*.bpmn") if b"BPMNDiagram" not in p.read_bytes())

SVG = "http://www.w3.org/2000/svg"
MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
NS = {"s": SVG}
STATES = {"completed", "taken", "current", "error"}


def parse_svg(svg: str) -> etree._Element:
    root = etree.fromstring(svg.encode())
    assert root.tag == f"{{{SVG}}}svg"
    return root


def groups(root: etree._Element) -> dict[str, etree._Element]:
    """Drawn BPMN elements by id (asserting each id is drawn once)."""
    found = root.xpath("//s:g[@data-bpmn-id]", namespaces=NS)
    counts = Counter(g.get("data-bpmn-id") for g in found)
    assert [element_id for element_id, count in counts.items() if count > 1] == []
    return {g.get("data-bpmn-id"): g for g in found}


def classes(g: etree._Element) -> set[str]:
    return set(g.get("class", "").split())


def text_of(g: etree._Element) -> str:
    """The visible text of a group (its <text> elements, not its <title>), lines joined by spaces."""
    return " ".join(" ".join(t.itertext()) for t in g.iter(f"{{{SVG}}}text"))


def di_ids(path: Path, tag: str) -> list[str]:
    doc = etree.parse(str(path))
    return [el.get("bpmnElement") for el in doc.iter(f"{{{BPMNDI}}}{tag}")]


def model(path: Path) -> dict[str, etree._Element]:
    doc = etree.parse(str(path))
    return {el.get("id"): el for el in doc.iter(f"{{{MODEL}}}*") if el.get("id")}


@pytest.fixture(scope="module")
def initiation_svg() -> str:
    return render_svg(INITIATION.read_bytes(), "project_initiation")


# ------------------------------------------------------------------------------------- the real model


def test_initiation_draws_every_shape_and_edge_exactly_once(initiation_svg):
    drawn = groups(parse_svg(initiation_svg))
    shapes, edges = di_ids(INITIATION, "BPMNShape"), di_ids(INITIATION, "BPMNEdge")
    assert len(shapes) > 50 and len(edges) > 50
    assert sorted(drawn) == sorted(shapes + edges)
    elements = model(INITIATION)
    for element_id, g in drawn.items():
        kind = etree.QName(elements[element_id]).localname
        expected = {"participant": "pool", "sequenceFlow": "sequence-flow"}.get(
            kind, re.sub(r"(?<!^)(?=[A-Z])", "-", kind).lower())
        assert expected in classes(g), (element_id, g.get("class"))
        assert not classes(g) & STATES


def test_initiation_kinds_and_markers(initiation_svg):
    drawn = groups(parse_svg(initiation_svg))
    assert {"task", "user-task"} <= classes(drawn["intake_review"])
    assert {"task", "service-task"} <= classes(drawn["search_lessons"])
    assert {"task", "script-task"} <= classes(drawn["prepare_request"])
    assert {"task", "business-rule-task"} <= classes(drawn["decide_approval"])
    assert {"event", "start-event"} <= classes(drawn["start_request"])
    assert {"event", "end-event"} <= classes(drawn["end_withdrawn"])
    assert {"event", "boundary-event", "timer-event"} <= classes(drawn["tmr_revision_timeout"])
    assert {"gateway", "exclusive-gateway"} <= classes(drawn["gw_intake_decision"])
    assert {"gateway", "parallel-gateway"} <= classes(drawn["gw_prep_split"])
    assert {"sequence-flow", "default-flow"} <= classes(drawn["flow_intake_return"])
    assert "default-flow" not in classes(drawn["flow_intake_accept"])
    # the default flow has its slash: a <line> next to the polyline
    assert len(drawn["flow_intake_return"].findall(f"{{{SVG}}}line")) == 1
    assert drawn["flow_intake_accept"].findall(f"{{{SVG}}}line") == []
    # every sequence flow ends with an arrowhead; the end event is a thick circle
    for g in drawn.values():
        if "sequence-flow" in classes(g):
            assert g.find(f"{{{SVG}}}polyline").get("marker-end", "").startswith("url(#")
    assert float(drawn["end_withdrawn"].find(f"{{{SVG}}}circle").get("stroke-width")) >= 3


def test_initiation_writes_names_titles_and_condition_labels(initiation_svg):
    drawn = groups(parse_svg(initiation_svg))
    elements = model(INITIATION)
    lanes = [el for el in elements.values() if etree.QName(el).localname == "lane"]
    assert len(lanes) == 6
    for lane in lanes:
        assert text_of(drawn[lane.get("id")]) == lane.get("name")
    assert text_of(drawn["Participant_project_initiation"]) == "Project initiation"
    for element_id, g in drawn.items():
        name = elements[element_id].get("name")
        if name:
            assert g.findtext(f"{{{SVG}}}title").startswith(name)
            assert re.sub(r"\s+", "", text_of(g)) == re.sub(r"\s+", "", name), element_id
    assert text_of(drawn["flow_intake_accept"]) == "Accept"
    assert "Accept" in drawn["flow_intake_accept"].findtext(f"{{{SVG}}}title")


def test_initiation_view_box_contains_every_shape(initiation_svg):
    root = parse_svg(initiation_svg)
    x, y, w, h = (float(v) for v in root.get("viewBox").split())
    assert (float(root.get("width")), float(root.get("height"))) == (w, h)
    doc = etree.parse(str(INITIATION))
    bounds = list(doc.iter(f"{{{DC}}}Bounds"))
    assert bounds
    for b in bounds:
        bx, by = float(b.get("x")), float(b.get("y"))
        assert x < bx and y < by, b.getparent().getparent().get("id")
        assert bx + float(b.get("width")) < x + w and by + float(b.get("height")) < y + h


def test_svg_is_self_contained(initiation_svg):
    root = parse_svg(initiation_svg)
    local = {etree.QName(el).localname for el in root.iter() if isinstance(el.tag, str)}
    assert not local & {"script", "image", "foreignObject", "a", "use", "style"}
    assert "@import" not in initiation_svg and "http://" not in initiation_svg.replace(SVG, "")
    for el in root.iter():
        for attr, value in el.attrib.items():
            assert not attr.startswith("on"), attr
            if "url(" in value:
                assert value.startswith("url(#")
    assert root.findtext(f"{{{SVG}}}title") == "Project initiation"


def test_readable_without_css_in_a_real_renderer(tmp_path, initiation_svg):
    if shutil.which("rsvg-convert") is None:
        pytest.skip("rsvg-convert (librsvg2-bin) is not installed")
    svg = tmp_path / "initiation.svg"
    svg.write_text(initiation_svg)
    subprocess.run(["rsvg-convert", str(svg), "-o", str(tmp_path / "initiation.png")], check=True, timeout=60)
    assert (tmp_path / "initiation.png").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------- marking


def test_marking_puts_state_classes_exactly_where_asked():
    completed = {"start_request", "prepare_request", "register_request", "assess_request", "intake_review",
                 "gw_intake_decision"}
    taken = {"flow_start_prepare", "flow_prepare_register", "flow_register_assess", "flow_assess_intake",
             "flow_intake_gateway", "flow_intake_accept"}
    current = {"search_lessons"}
    errored = {"tmr_revision_timeout"}
    svg = render_svg(INITIATION.read_text(), "project_initiation", completed=iter(completed), taken_flows=taken,
                     current=list(current), errored=tuple(errored), title="Instance 7")
    root = parse_svg(svg)
    expected = {**{i: {"completed"} for i in completed}, **{i: {"taken"} for i in taken},
                **{i: {"current"} for i in current}, **{i: {"error"} for i in errored}}
    for element_id, g in groups(root).items():
        assert classes(g) & STATES == expected.get(element_id, set()), element_id
    # the states are drawn, not only named: green, blue and red strokes
    drawn = groups(root)
    assert drawn["intake_review"].find(f"{{{SVG}}}rect").get("stroke") == "#2e7d32"
    assert drawn["flow_intake_accept"].find(f"{{{SVG}}}polyline").get("stroke") == "#2e7d32"
    assert drawn["search_lessons"].find(f"{{{SVG}}}rect").get("stroke") == "#1565c0"
    assert drawn["tmr_revision_timeout"].find(f"{{{SVG}}}circle").get("stroke") == "#c62828"
    assert drawn["flow_intake_reject"].find(f"{{{SVG}}}polyline").get("stroke") != "#2e7d32"
    legend = root.xpath("//s:g[contains(concat(' ', @class, ' '), ' legend ')]", namespaces=NS)
    assert len(legend) == 1
    assert {"Completed", "Path taken", "Current (open)", "Error"} <= set(legend[0].xpath(".//s:tspan/text()",
                                                                                          namespaces=NS))
    assert "Instance 7" in root.xpath("//s:g[@class='header']//s:tspan/text()", namespaces=NS)


def test_legend_only_when_states_are_given(initiation_svg):
    for svg in (initiation_svg, render_svg(INITIATION.read_bytes(), completed=[], taken_flows=(), current=set())):
        root = parse_svg(svg)
        assert root.xpath("//s:g[contains(@class, 'legend')]", namespaces=NS) == []
        assert not any(classes(g) & STATES for g in groups(root).values())
    root = parse_svg(render_svg(INITIATION.read_bytes(), current="search_lessons"))  # a lone id, not characters
    assert root.xpath("//s:g[@class='legend']", namespaces=NS)
    assert [i for i, g in groups(root).items() if "current" in classes(g)] == ["search_lessons"]


def test_unknown_state_ids_are_ignored():
    svg = render_svg(INITIATION.read_bytes(), completed=["no_such_task"], taken_flows=["no_such_flow"])
    assert not any(classes(g) & STATES for g in groups(parse_svg(svg)).values())


# --------------------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("path", NO_DIAGRAM, ids=lambda p: p.name)
def test_files_without_bpmndi_are_refused_plainly(path):
    assert NO_DIAGRAM
    with pytest.raises(ValueError, match=r"has no diagram \(BPMNDI\)"):
        render_svg(path.read_bytes())
    process_id = next(i for i, el in model(path).items() if etree.QName(el).localname == "process")
    with pytest.raises(ValueError, match=rf"process '{process_id}' has no diagram \(BPMNDI\)"):
        render_svg(path.read_text(), process_id)


def test_not_well_formed_and_unknown_process_are_value_errors():
    with pytest.raises(ValueError, match="not well-formed"):
        render_svg((HERE / "fixtures" / "bad" / "not_well_formed.bpmn").read_bytes())
    with pytest.raises(ValueError, match="no process 'nope'"):
        render_svg(INITIATION.read_bytes(), "nope")


def test_entities_are_not_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doctype = f'<!DOCTYPE definitions [<!ENTITY xxe SYSTEM "file://{secret}">]>\n<definitions '
    text = TWO_POOLS.read_text().replace("<definitions ", doctype, 1)
    in_text = text.replace("Grades come from the DMN table", "Grades &xxe;")
    svg = render_svg(in_text)
    assert "TOP-SECRET" not in svg and "Grades" in svg
    with pytest.raises(ValueError, match="not well-formed"):  # libxml2 refuses it in an attribute
        render_svg(text.replace('name="Customer"', 'name="&xxe;"'))


def test_str_and_bytes_and_odd_prefixes_give_the_same_drawing(initiation_svg):
    text = INITIATION.read_text()
    assert render_svg(text, "project_initiation") == initiation_svg
    odd = (text.replace("bpmn:", "semantic:").replace("xmlns:bpmn=", "xmlns:semantic=")
           .replace("bpmndi:", "bpmn-di:").replace("xmlns:bpmndi=", "xmlns:bpmn-di=")
           .replace("dc:", "omgdc:").replace("xmlns:dc=", "xmlns:omgdc=")
           .replace("di:waypoint", "omgdi:waypoint").replace("xmlns:di=", "xmlns:omgdi="))
    assert "bpmn:" not in odd and "<omgdc:Bounds" in odd
    assert render_svg(odd.encode(), "project_initiation") == initiation_svg


# ----------------------------------------------------------------------------------- the small fixture


@pytest.fixture(scope="module")
def two_pools() -> dict[str, etree._Element]:
    return groups(parse_svg(render_svg(TWO_POOLS.read_bytes())))


def test_fixture_boundary_timer_gateways_and_default_flow(two_pools):
    timer = two_pools["tmr_review"]
    assert {"event", "boundary-event", "timer-event"} <= classes(timer)
    assert len(timer.findall(f"{{{SVG}}}circle")) == 3  # double ring and the clock face
    assert len(timer.findall(f"{{{SVG}}}line")) == 12  # the clock's ticks
    assert {"gateway", "parallel-gateway"} <= classes(two_pools["gw_split"])
    assert {"gateway", "exclusive-gateway"} <= classes(two_pools["gw_score_ok"])
    assert {"sequence-flow", "default-flow"} <= classes(two_pools["flow_score_low"])
    assert {"sequence-flow", "conditional-flow"} <= classes(two_pools["flow_score_ok"])
    assert text_of(two_pools["flow_score_low"]) == "No"  # no label bounds: written beside the line
    assert "score >= 3" in two_pools["flow_score_ok"].findtext(f"{{{SVG}}}title")
    assert {"activity", "call-activity"} <= classes(two_pools["archive"])
    assert {"sub-process", "expanded"} <= classes(two_pools["cleanup"])
    assert {"task", "send-task"} <= classes(two_pools["send_notice"])
    assert {"task", "manual-task"} <= classes(two_pools["chase_reviewer"])
    assert {"end-event", "error-event"} <= classes(two_pools["end_fixed"])
    assert {"intermediate-event", "message-event"} <= classes(two_pools["catch_reply"])
    assert {"artifact", "text-annotation"} <= classes(two_pools["note_grades"])
    assert "association" in classes(two_pools["assoc_grades"])


def test_fixture_message_flows_between_two_pools(two_pools):
    assert "pool" in classes(two_pools["pool_main"]) and "pool" in classes(two_pools["pool_customer"])
    assert text_of(two_pools["pool_customer"]) == "Customer"
    for flow in ("mf_notify", "mf_reply"):
        assert {"flow", "message-flow"} <= classes(two_pools[flow])
        line = two_pools[flow].find(f"{{{SVG}}}polyline")
        assert line.get("stroke-dasharray") and line.get("marker-start") and line.get("marker-end")
    assert text_of(two_pools["mf_notify"]) == "Notice"


def test_fixture_xml_special_names_are_escaped():
    svg = render_svg(TWO_POOLS.read_text(), "two_pools", current=["review"])
    assert "R&amp;D &lt;review&gt;" in svg and "<review>" not in svg
    drawn = groups(parse_svg(svg))
    assert text_of(drawn["lane_rd"]) == "R&D <review>"
    assert drawn["review"].findtext(f"{{{SVG}}}title") == 'R&D <review> "first" pass'
    assert re.sub(r"\s+", " ", text_of(drawn["review"])) == 'R&D <review> "first" pass'


def test_fixture_missing_and_broken_di_is_skipped(two_pools):
    for missing in ("ghost", "ghost_no_bounds", "nothing_here", "flow_ghost", "two_pools", "laneset_main"):
        assert missing not in two_pools
    end_ok = two_pools["end_ok"].find(f"{{{SVG}}}circle")  # zero-size bounds: an event of the default size
    assert (float(end_ok.get("cx")), float(end_ok.get("r"))) == (1238.0, 18.0)
    assert set(two_pools) == set(di_ids(TWO_POOLS, "BPMNShape") + di_ids(TWO_POOLS, "BPMNEdge")) - {
        "ghost_no_bounds", "nothing_here", "flow_ghost"}


def test_fixture_process_selection():
    text = TWO_POOLS.read_bytes()
    assert render_svg(text, "two_pools") == render_svg(text)  # the process is drawn through its collaboration
    with pytest.raises(ValueError, match="no process 'archiving'"):
        render_svg(text, "archiving")


# ------------------------------------------------------------------------------------------ wrapping


def test_wrap_fits_the_width_and_keeps_every_word():
    from pmoflow.engine.svg import text_width

    name = "Confirm the configuration management plan and repository"
    lines = wrap(name, 90, 12)
    assert len(lines) > 2 and " ".join(lines) == name
    assert all(text_width(line, 12) <= 90 for line in lines)
    long_word = wrap("See Antidisestablishmentarianism", 60, 12)
    assert long_word[0] == "See" and "".join(long_word[1:]) == "Antidisestablishmentarianism"
    assert all(text_width(line, 12) <= 60 for line in long_word)
    short = wrap(name, 90, 12, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("…")
    assert wrap("Line one\nLine two", 200, 12) == ["Line one", "Line two"]
    assert wrap("", 90, 12) == []


# ------------------------------------------------------------------------------------------- gallery

GALLERY = HERE / "fixtures" / "diagram" / "gallery.bpmn"  # one of every kind (generated, no semantics)


def test_gallery_gives_every_kind_its_class_and_marker():
    drawn = groups(parse_svg(render_svg(GALLERY.read_bytes())))
    expected = {
        "t_call": {"activity", "call-activity"}, "t_sub": {"sub-process", "collapsed"},
        "t_tx": {"sub-process", "transaction"}, "t_adhoc": {"sub-process", "ad-hoc-sub-process"},
        "t_receive": {"task", "receive-task"}, "s_msg": {"start-event", "message-event"},
        "s_multi": {"start-event", "message-event", "signal-event"},
        "i_link": {"intermediate-event", "intermediate-catch-event", "link-event"},
        "o_msg": {"intermediate-event", "intermediate-throw-event", "message-event"},
        "e_term": {"end-event", "terminate-event"}, "e_cancel": {"end-event", "cancel-event"},
        "g_or": {"gateway", "inclusive-gateway"}, "g_complex": {"gateway", "complex-gateway"},
        "g_event": {"gateway", "event-based-gateway"}, "b_timer": {"boundary-event", "timer-event", "non-interrupting"},
        "b_error": {"boundary-event", "error-event"}, "evt_sub": {"sub-process", "expanded", "event-sub-process"},
        "evt_start": {"start-event", "escalation-event", "non-interrupting"},
        "data_ref": {"data", "data-object"}, "store_ref": {"data", "data-store"}, "group_1": {"artifact", "group"},
        "assoc_out": {"association", "data-association", "data-output-association"},
        "flow_cond": {"sequence-flow", "conditional-flow"},
    }
    for element_id, kinds in expected.items():
        assert kinds <= classes(drawn[element_id]), (element_id, drawn[element_id].get("class"))
    assert "non-interrupting" not in classes(drawn["b_error"])
    # throwing events have filled markers, catching ones hollow
    assert drawn["o_msg"].find(f"{{{SVG}}}rect").get("fill") != "#ffffff"
    assert drawn["i_msg"].find(f"{{{SVG}}}rect").get("fill") == "#ffffff"
    # the X is drawn unless the DI hides it; a conditional flow from a task starts with a diamond
    assert len(drawn["g_xor"].findall(f"{{{SVG}}}line")) == 2 and drawn["g_xor_blank"].findall(f"{{{SVG}}}line") == []
    assert drawn["flow_cond"].find(f"{{{SVG}}}polyline").get("marker-start")
    assert drawn["flow_plain"].find(f"{{{SVG}}}polyline").get("marker-start") is None
    # names that cannot fit are cut with an ellipsis (the full name is in the title)
    assert text_of(drawn["t_long"]).endswith("…")
    assert drawn["t_long"].findtext(f"{{{SVG}}}title").endswith("hundred by eighty")
    assert text_of(drawn["group_1"]) == "Documents" and text_of(drawn["data_ref"]) == "Charter [draft]"
    assert text_of(drawn["note"]).startswith("Annotations are bracketed &")
