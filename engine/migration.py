"""Versions side by side, and running instances moved from one deployed version to another when it is safe.

`element_diff` compares two versions of a process element by element: flow nodes (tasks, events, gateways)
keyed by BPMN id from the stored specs, with the hidden helpers SpiffWorkflow adds (boundary-event split and
join, multi-instance child) folded into the element they belong to; sequence flows and lanes from the BPMN
sources; form files by content.

`migrate` moves one instance. It is safe when nothing that has happened, or is happening, would mean something
else on the new version, and no task would be left on an element that no longer exists:

- every task that is completed, started, ready, waiting or in error needs its element in the new version, and
  unchanged: type, name, lane, form (and the form file's content), documentation, scripts, conditions, timer
  and event definitions, operator, decision table, boundary events;
- a completed task also needs its outgoing flows to lead where they led (the path already taken stays the path);
  for the others the way on is predicted again from the new version, so a step may be added after them;
- a waiting task (timer, message, join) also needs the same incoming flows;
- a cancelled task needs its element to exist (the history keeps it);
- predicted tasks (maybe, likely, future) are dropped and predicted again from the new version;
- the same rules hold inside running subprocesses, whose process must still exist.

A refusal names every offending element and why. The move keeps every task that is not a prediction as it is
(its id, its data, a waiting timer's due time), so the inbox rows stay valid; nothing runs during a move.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from lxml import etree
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from pmoflow.engine import runtime, serialization
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import ProcessDefinition, ProcessInstance

PREDICTED = TaskState.PREDICTED_MASK | TaskState.FUTURE
ACTIVE = TaskState.COMPLETED | TaskState.STARTED | TaskState.ERROR | TaskState.READY | TaskState.WAITING
FINISHED_STATUSES = ("completed", "terminated")
FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
SPLIT, JOIN, CHILD = ".BoundaryEventSplit", ".BoundaryEventJoin", " [child]"
# Spec attributes that say nothing of their own: the id (the key), a type label that follows the type, the
# flows (compared as targets, below), SpiffWorkflow's prediction depth.
NOT_COMPARED = {"name", "description", "manual", "lookahead", "inputs", "outputs", "typename"}
LABELS = {
    "bpmn_name": "name", "lane": "lane", "documentation": "documentation", "script": "script",
    "prescript": "pre-script", "postscript": "post-script", "cond_task_specs": "conditions",
    "default_task_spec": "default flow", "operation_name": "operator", "operation_params": "operator parameters",
    "result_variable": "result variable", "decision_table": "decision table", "cancel_activity": "interrupting",
    "data_input_associations": "data inputs", "data_output_associations": "data outputs",
    "io_specification": "data input/output specification", "event_definition": "event",
    "spec": "called process",
}
EXTENSION_LABELS = {"instructionsForEndUser": "instructions", "preScript": "pre-script",
                    "postScript": "post-script", "calledDecisionId": "decision"}
KINDS = {"UserTask": "userTask", "ManualTask": "manualTask", "NoneTask": "task", "ScriptTask": "scriptTask",
         "ServiceTask": "serviceTask", "BusinessRuleTask": "businessRuleTask", "StartEvent": "startEvent",
         "EndEvent": "endEvent", "BoundaryEvent": "boundaryEvent", "ExclusiveGateway": "exclusiveGateway",
         "ParallelGateway": "parallelGateway", "InclusiveGateway": "inclusiveGateway",
         "EventBasedGateway": "eventBasedGateway", "CallActivity": "callActivity", "SubWorkflowTask": "subProcess",
         "TransactionSubprocess": "transaction"}


class MigrationRefused(InvalidInput):
    """An instance that cannot move safely; `result` lists each reason. Nothing was changed."""

    def __init__(self, result: dict[str, Any]) -> None:
        head = (f"instance {result['instance_id']} cannot move from v{result['from_version']} to "
                f"v{result['to_version']}")
        reasons = [r["message"] for r in result["reasons"]]
        message = f"{head}: {reasons[0]}" if len(reasons) == 1 else f"{head}: {len(reasons)} reasons"
        super().__init__(message, reasons if len(reasons) > 1 else [])
        self.result = result


# -- deployed versions ------------------------------------------------------------------------------------


class Version:
    """One deployed version as plain data: its specs by process name, its BPMN elements, its form files.
    Deployed versions never change: `of` keeps the last few read, so a bulk run reads each version once."""

    def __init__(self, definition: ProcessDefinition) -> None:
        self.number = definition.version
        self.sources: dict[str, str] = dict(definition.sources)
        stored = json.loads(definition.spec)
        self.top = stored["spec"]["name"]
        self.specs: dict[str, dict[str, Any]] = {self.top: stored["spec"], **stored["subprocess_specs"]}
        self._xml: _Xml | None = None
        self._elements: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.key: tuple | None = None
        self.diffs: dict[tuple, list[dict[str, Any]]] = {}  # element_diff against another version, by its key

    @classmethod
    def of(cls, session, definition: ProcessDefinition) -> Version:
        key = (runtime._db_key(session), definition.id, definition.content_hash)
        version = _VERSIONS.get(key)
        if version is None:
            version = cls(definition)
            version.key = key
            _VERSIONS.put(key, version)
        return version

    def task_specs(self, process: str) -> dict[str, dict[str, Any]]:
        spec = self.specs.get(process)
        return spec["task_specs"] if spec else {}

    def elements(self, process: str) -> dict[str, dict[str, dict[str, Any]]]:
        """BPMN id -> {task spec name: spec}: each element with its hidden helpers; plumbing left out."""
        if process not in self._elements:
            specs = self.task_specs(process)
            groups: dict[str, dict[str, dict[str, Any]]] = {}
            for name, spec in specs.items():
                owner = owner_of(name, specs)
                if owner is not None:
                    groups.setdefault(owner, {})[name] = spec
            self._elements[process] = groups
        return self._elements[process]

    def form(self, name: str) -> str | None:
        return self.sources.get(f"forms/{name}")

    @property
    def xml(self) -> _Xml:
        if self._xml is None:
            self._xml = _Xml(self.sources)
        return self._xml

    def diff_to(self, new: Version) -> list[dict[str, Any]]:
        if new.key is None:
            return element_diff(self, new)
        if new.key not in self.diffs:
            self.diffs[new.key] = element_diff(self, new)
        return copy.deepcopy(self.diffs[new.key])


_VERSIONS = runtime.LruCache(16)


def owner_of(name: str, specs: dict[str, dict[str, Any]]) -> str | None:
    """The BPMN element a task spec belongs to: itself, or the element a hidden helper serves (`X.Boundary
    EventSplit`, `X [child]` ...); None for the process's own plumbing (Start, End, the end join)."""
    spec = specs.get(name)
    if spec is not None and spec.get("bpmn_id"):
        return spec["bpmn_id"]
    for separator in (".", " ["):
        if separator in name:
            head = specs.get(name.rsplit(separator, 1)[0])
            if head is not None and head.get("bpmn_id"):
                return head["bpmn_id"]
    return None


@dataclass
class _Xml:
    """What the specs do not keep: element kinds as drawn, sequence flows and lanes, each with its process."""

    sources: dict[str, str]
    kinds: dict[str, str] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        for name, text in sorted(self.sources.items()):
            if not name.endswith((".bpmn", ".bpmn20.xml")) or "/" in name:
                continue
            root = etree.fromstring(text.encode(), parser)
            for el in root.iter():
                if not isinstance(el.tag, str) or not el.tag.startswith(BPMN) or not el.get("id"):
                    continue
                local, element_id = el.tag[len(BPMN):], el.get("id")
                if local == "sequenceFlow":
                    condition = el.find(f"{BPMN}conditionExpression")
                    self.flows[element_id] = {
                        "process": _process_of(el), "name": el.get("name"), "source": el.get("sourceRef"),
                        "target": el.get("targetRef"),
                        "condition": (condition.text or "").strip() if condition is not None else None}
                elif local == "lane":
                    members = sorted((ref.text or "").strip() for ref in el.findall(f"{BPMN}flowNodeRef"))
                    self.lanes[element_id] = {"process": _process_of(el), "name": el.get("name"), "members": members}
                else:
                    self.kinds[element_id] = local


def _process_of(el) -> str | None:
    parent = el.getparent()
    while parent is not None and parent.tag not in (f"{BPMN}process", f"{BPMN}subProcess"):
        parent = parent.getparent()
    return parent.get("id") if parent is not None else None


def definition(session, process_id: str, version: int | str) -> ProcessDefinition:
    """One deployed version, or NotFound naming the versions there are."""
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise InvalidInput(f"version {version!r} is not a number") from None
    versions = list(session.scalars(select(ProcessDefinition.version).where(
        ProcessDefinition.process_id == process_id).order_by(ProcessDefinition.version)))
    if not versions:
        raise NotFound(f"no process '{process_id}' is deployed (see 'pmoflow processes')")
    found = session.scalar(select(ProcessDefinition).where(
        ProcessDefinition.process_id == process_id, ProcessDefinition.version == number))
    if found is None:
        raise NotFound(f"process {process_id} has no version {number} (deployed: "
                       f"{', '.join(map(str, versions))})")
    return found


# -- comparing specs ---------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


SCALAR = (str, int, float, bool, type(None))


def _plain(value: Any) -> str:
    return "(none)" if value is None or value == "" else _short(value)


def _change(label: str, old: Any, new: Any) -> str:
    """`label: old -> new` for short plain values, `label changed` for scripts, tables and structures."""
    if isinstance(old, SCALAR) and isinstance(new, SCALAR) and "\n" not in f"{old}{new}" \
            and len(str(old)) <= 60 and len(str(new)) <= 60:
        return f"{label}: {_plain(old)} -> {_plain(new)}"
    return f"{label} changed"


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "(none)"


def _targets(names: list[str], specs: dict[str, dict[str, Any]], itself: str | None) -> list[str]:
    """Where flows lead (or come from), as BPMN ids: hidden helpers stand for their element."""
    return sorted({owner for owner in (owner_of(n, specs) for n in names) if owner and owner != itself})


def _extension_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    details = []
    old_props, new_props = old.get("properties", {}) or {}, new.get("properties", {}) or {}
    for key in sorted(set(old_props) | set(new_props)):
        if old_props.get(key) != new_props.get(key):
            label = "form" if key == "formJsonSchemaFilename" else "ui schema" \
                if key == "formUiSchemaFilename" else f"property {key}"
            details.append(_change(label, old_props.get(key), new_props.get(key)))
    for key in sorted((set(old) | set(new)) - {"properties", "serviceTaskOperator"}):
        if old.get(key) != new.get(key):
            details.append(_change(EXTENSION_LABELS.get(key, key), old.get(key), new.get(key)))
    return details


def _attribute_changes(key: str, old: Any, new: Any) -> list[str]:
    if key == "extensions":
        return _extension_changes(old or {}, new or {})
    if key == "cond_task_specs":
        before = {c["task_spec"]: c["condition"] for c in old or []}
        after = {c["task_spec"]: c["condition"] for c in new or []}
        details = [_change(f"condition to {t}", before.get(t), after.get(t))
                   for t in sorted(set(before) | set(after)) if before.get(t) != after.get(t)]
        return details or ["condition order changed"]
    if key == "event_definition" and old and new and old.get("typename") == new.get("typename"):
        kind = "timer" if "Timer" in old.get("typename", "") else "event"
        return [_change(f"{kind} {k}", old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                if k not in ("description", "typename") and old.get(k) != new.get(k)]
    if key == "event_definition":
        return [_change("event type", (old or {}).get("typename"), (new or {}).get("typename"))]
    return [_change(LABELS.get(key, key), old, new)]


def spec_changes(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, old_v: Version,
                 new_v: Version, process: str, outgoing: bool = True, incoming: bool = False) -> list[str]:
    """What changed in one task spec: its own attributes, its form files' content, and (as asked) where its
    flows lead and come from. A hidden helper reports what it stands for (the boundary events)."""
    old_specs, new_specs = old_v.task_specs(process), new_v.task_specs(process)
    owner = owner_of(name, old_specs) or owner_of(name, new_specs)
    if name.endswith(JOIN):
        return []  # follows its split
    if name.endswith(SPLIT):
        before = [t for t in _targets((old or {}).get("outputs", []), old_specs, owner)]
        after = [t for t in _targets((new or {}).get("outputs", []), new_specs, owner)]
        return [f"boundary events: {_names(before)} -> {_names(after)}"] if before != after else []
    if old is None or new is None:
        return [f"{'multi-instance child' if name.endswith(CHILD) else name} {'added' if old is None else 'removed'}"]
    if old["typename"] != new["typename"]:
        return [f"type: {KINDS.get(old['typename'], old['typename'])} -> {KINDS.get(new['typename'], new['typename'])}"]
    details = []
    for key in sorted((set(old) | set(new)) - NOT_COMPARED):
        if old.get(key) != new.get(key):
            details.extend(_attribute_changes(key, old.get(key), new.get(key)))
    old_props = (old.get("extensions") or {}).get("properties", {}) or {}
    new_props = (new.get("extensions") or {}).get("properties", {}) or {}
    for prop in FORM_PROPERTIES:
        form = old_props.get(prop)
        if form and form == new_props.get(prop) and old_v.form(form) != new_v.form(form):
            details.append(f"form {form}: content changed")
    if outgoing:
        before, after = _targets(old["outputs"], old_specs, owner), _targets(new["outputs"], new_specs, owner)
        if before != after:
            details.append(f"outgoing: {_names(before)} -> {_names(after)}")
    if incoming:
        before, after = _targets(old["inputs"], old_specs, owner), _targets(new["inputs"], new_specs, owner)
        if before != after:
            details.append(f"incoming: {_names(before)} -> {_names(after)}")
    return details


def element_changes(element: str, old_v: Version, new_v: Version, process: str, outgoing: bool = True,
                    incoming: bool = False) -> list[str]:
    """Everything that changed in one BPMN element, its hidden helpers included."""
    old_group = old_v.elements(process).get(element, {})
    new_group = new_v.elements(process).get(element, {})
    details: list[str] = []
    for name in sorted(set(old_group) | set(new_group), key=lambda n: (n != element, n)):
        for detail in spec_changes(name, old_group.get(name), new_group.get(name), old_v, new_v, process,
                                   outgoing, incoming):
            if detail not in details:
                details.append(detail)
    return details


def _kind(element: str, spec_group: dict[str, dict[str, Any]], xml: _Xml) -> str:
    if element in xml.kinds:
        return xml.kinds[element]
    spec = spec_group.get(element) or next(iter(spec_group.values()), {})
    return KINDS.get(spec.get("typename", ""), spec.get("typename", "element"))


def _described(spec_group: dict[str, dict[str, Any]], element: str, kind: str) -> list[str]:
    spec = spec_group.get(element) or next(iter(spec_group.values()), {})
    details = [f"type {kind}"]
    if spec.get("bpmn_name"):
        details.append(f"name {spec['bpmn_name']!r}")
    if spec.get("lane"):
        details.append(f"lane {spec['lane']}")
    return details


def element_diff(old_v: Version, new_v: Version) -> list[dict[str, Any]]:
    """Every added, removed and changed element between two versions, as {element, kind, change, details,
    process, name}: flow nodes, then sequence flows, then lanes, the top-level process first."""
    changes: list[tuple[tuple, dict[str, Any]]] = []

    def add(process: str, order: int, element: str, kind: str, change: str, details: list[str],
            name: str | None) -> None:
        key = (process != old_v.top, process, order, element)
        changes.append((key, {"element": element, "kind": kind, "change": change, "details": details,
                              "process": process, "name": name}))

    for process in sorted(set(old_v.specs) | set(new_v.specs)):
        old_el, new_el = old_v.elements(process), new_v.elements(process)
        old_spec, new_spec = old_v.specs.get(process), new_v.specs.get(process)
        if old_spec and new_spec:
            details = [_change(LABELS.get(k, k) if k != "description" else "name", old_spec.get(k), new_spec.get(k))
                       for k in ("description", "data_objects", "io_specification", "correlation_keys")
                       if old_spec.get(k) != new_spec.get(k)]
            if details:
                add(process, -1, process, "process", "changed", details, new_spec.get("description"))
        for element in sorted(set(old_el) | set(new_el)):
            if element not in new_el:
                kind = _kind(element, old_el[element], old_v.xml)
                add(process, 0, element, kind, "removed", _described(old_el[element], element, kind),
                    _name(old_el[element], element))
            elif element not in old_el:
                kind = _kind(element, new_el[element], new_v.xml)
                add(process, 0, element, kind, "added", _described(new_el[element], element, kind),
                    _name(new_el[element], element))
            else:
                details = element_changes(element, old_v, new_v, process)
                if details:
                    add(process, 0, element, _kind(element, new_el[element], new_v.xml), "changed", details,
                        _name(new_el[element], element))
    for order, kind, old_parts, new_parts, describe in (
            (1, "sequenceFlow", old_v.xml.flows, new_v.xml.flows, _flow_details),
            (2, "lane", old_v.xml.lanes, new_v.xml.lanes, _lane_details)):
        for element in sorted(set(old_parts) | set(new_parts)):
            old, new = old_parts.get(element), new_parts.get(element)
            part = new or old
            assert part is not None  # the element is in one version at least
            if old is None or new is None:
                details = describe({}, part)
                add(part["process"] or old_v.top, order, element, kind, "added" if old is None else "removed",
                    details, part.get("name"))
            elif describe(old, new):
                add(new["process"] or new_v.top, order, element, kind, "changed", describe(old, new), new.get("name"))
    return [change for _, change in sorted(changes, key=lambda c: c[0])]


def _name(group: dict[str, dict[str, Any]], element: str) -> str | None:
    spec = group.get(element) or next(iter(group.values()), {})
    return spec.get("bpmn_name")


def _flow_details(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if not old:
        text = f"{new['source']} -> {new['target']}"
        return [text + (f" when {new['condition']}" if new.get("condition") else "")]
    return [_change(label, old.get(key), new.get(key)) for key, label in
            (("source", "from"), ("target", "to"), ("condition", "condition"), ("name", "name"))
            if old.get(key) != new.get(key)]


def _lane_details(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if not old:
        return [f"name {new.get('name')!r}", f"elements: {_names(new['members'])}"]
    details = [_change("name", old.get("name"), new.get("name"))] if old.get("name") != new.get("name") else []
    gained = sorted(set(new["members"]) - set(old["members"]))
    lost = sorted(set(old["members"]) - set(new["members"]))
    if gained:
        details.append(f"elements added: {_names(gained)}")
    if lost:
        details.append(f"elements removed: {_names(lost)}")
    return details


def summary(changes: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {kind: [c["element"] for c in changes if c["change"] == kind] for kind in ("added", "removed", "changed")}


def diff(session, process_id: str, from_version: int | str, to_version: int | str) -> dict[str, Any]:
    old = definition(session, process_id, from_version)
    new = definition(session, process_id, to_version)
    changes = Version.of(session, old).diff_to(Version.of(session, new))
    return {"process_id": process_id, "from_version": old.version, "to_version": new.version,
            "changes": changes, "summary": {k: len(v) for k, v in summary(changes).items()}}


# -- the safety check --------------------------------------------------------------------------------------


def _workflows(workflow) -> list:
    return [workflow, *workflow.subprocesses.values()]


def _state_name(state: int) -> str:
    return TaskState.get_name(state).lower()


@dataclass
class _Prediction:
    """Where the way on is predicted again: from `task` itself (its predicted children dropped), or below a
    predicted task that is kept (`keep`: its own children dropped)."""

    task_id: UUID
    proxy_state: int
    keep: bool


def _prediction_points(workflow) -> list[tuple[Any, Any, _Prediction | None, list]]:
    """For every task that is not a prediction but has predicted children: (workflow, task, how to predict
    again, the predicted tasks to drop). Nothing is changed here."""
    points: list[tuple[Any, Any, _Prediction | None, list[Any]]] = []
    for wf in _workflows(workflow):
        for task in list(wf.tasks.values()):
            if task.state & PREDICTED:
                continue
            predicted = [c for c in task.children if c.state & PREDICTED]
            if not predicted:
                continue
            if task.state == TaskState.CANCELLED:
                points.append((wf, task, None, predicted))  # it will never go on
            elif task.state != TaskState.COMPLETED and len(predicted) == len(task.children):
                proxy = max(c.state for c in predicted)  # predict as strongly as SpiffWorkflow did
                points.append((wf, task, _Prediction(task.id, proxy, keep=False), predicted))
            else:  # the branches a finished (or partly running) task chose stay; what follows them is redone
                for child in predicted:
                    points.append((wf, child, _Prediction(child.id, child.state, keep=True), list(child.children)))
    return points


def check(workflow, old_v: Version, new_v: Version) -> list[dict[str, Any]]:
    """Every reason the instance cannot move to `new_v`, one per offending element (empty: safe)."""
    seen: dict[tuple[str, str], dict[str, set[int]]] = {}  # (process, element) -> task spec name -> states
    reasons: list[dict[str, Any]] = []
    kept = {point[1].id for point in _prediction_points(workflow) if point[2] is not None and point[2].keep}
    for wf in _workflows(workflow):
        process = wf.spec.name
        if process not in new_v.specs:
            if any(not t.state & PREDICTED for t in wf.tasks.values()):
                reasons.append(_reason(process, None, process, "started", "removed", [], new_v,
                                       f"subprocess {process} is running and was removed in v{new_v.number}"))
            continue
        old_specs = old_v.task_specs(process)
        for task in wf.tasks.values():
            if task.state & PREDICTED and task.id not in kept:
                continue
            name = task.task_spec.name
            element = owner_of(name, old_specs) or name
            seen.setdefault((process, element), {}).setdefault(name, set()).add(task.state)
    for (process, element), names in seen.items():
        reason = _element_reason(process, element, names, old_v, new_v)
        if reason is not None:
            reasons.append(reason)
    return reasons


def _element_reason(process: str, element: str, names: dict[str, set[int]], old_v: Version,
                    new_v: Version) -> dict[str, Any] | None:
    """Why one element's tasks cannot move, or None. Each task spec is held to what its own tasks did: a
    completed boundary split does not make the ready task it serves strict about its outgoing flows."""
    old_specs, new_specs = old_v.task_specs(process), new_v.task_specs(process)
    main_states = names.get(element) or set().union(*names.values())
    label = ", ".join(sorted({_state_name(s) for s in main_states}))
    title = old_specs.get(element, {}).get("bpmn_name")
    gone = sorted(n for n in names if n not in new_specs)
    plumbing = owner_of(next(iter(names)), old_specs) is None
    if plumbing or element not in new_v.elements(process):
        return _reason(process, element, title, label, "removed", [], new_v) if gone or not plumbing else None
    details = [f"{n} removed" for n in gone if not n.endswith(JOIN)]
    if any(s & ACTIVE for states in names.values() for s in states):
        group = set(old_v.elements(process).get(element, {})) | set(new_v.elements(process).get(element, {}))
        for name in sorted(group - set(gone), key=lambda n: (n != element, n)):
            states = names.get(name, set())
            for detail in spec_changes(name, old_specs.get(name), new_specs.get(name), old_v, new_v, process,
                                       outgoing=any(s & TaskState.COMPLETED for s in states),
                                       incoming=any(s & TaskState.WAITING for s in states)):
                if detail not in details:
                    details.append(detail)
    if gone and not details:
        details = [f"{n} removed" for n in gone]
    return _reason(process, element, title, label, "changed", details, new_v) if details else None


def _reason(process: str, element: str | None, name: str | None, state: str, problem: str, details: list[str],
            new_v: Version, message: str | None = None) -> dict[str, Any]:
    if message is None:
        what = f"{element} ({name})" if name else f"{element}"
        message = f"{what} is {state} and was {problem} in v{new_v.number}"
        if details:
            message += ": " + "; ".join(details)
    return {"element": element, "name": name, "process": process, "task_state": state, "problem": problem,
            "details": details, "message": message}


# -- moving an instance ------------------------------------------------------------------------------------


def rebuild(workflow, new_specs: serialization.Specs):
    """The instance on the new version: predictions dropped, the state stored and loaded with the new specs
    (every remaining task finds its spec by name), then the way on predicted again from the new version.
    `workflow` is spent: it must be a private copy."""
    again = []
    for wf, _task, prediction, drop in _prediction_points(workflow):
        for task in drop:
            if task.id in wf.tasks:
                wf._remove_task(task.id)
        if prediction is not None:
            again.append(prediction)
    moved = serialization.load_state(serialization.dump_state(workflow), new_specs)
    for prediction in again:
        task = moved.get_task_from_id(prediction.task_id)
        recorded = task._state
        task._state = prediction.proxy_state
        try:
            task.task_spec._predict(task, mask=PREDICTED)
        finally:
            task._state = recorded
    return moved


def migrate(session, instance: ProcessInstance, to_version: int | str, actor: str, handlers,
            dry_run: bool = False, from_version: int | None = None, reason: str | None = None) -> dict[str, Any]:
    """Move one instance to another version of its process when it is safe; refuse (MigrationRefused) with
    every reason when it is not. A dry run checks and rebuilds in memory, and changes nothing."""
    old_def = session.get(ProcessDefinition, instance.definition_id)
    new_def = definition(session, instance.process_id, to_version)
    result = {"instance_id": instance.id, "process_id": instance.process_id, "from_version": old_def.version,
              "to_version": new_def.version, "dry_run": dry_run, "status": instance.status, "reasons": []}
    if new_def.id == old_def.id:
        raise InvalidInput(f"instance {instance.id} is already on version {new_def.version} of {instance.process_id}")
    old_v, new_v = Version.of(session, old_def), Version.of(session, new_def)
    if from_version is not None and old_def.version != from_version:
        result["reasons"] = [_reason(old_v.top, None, None, instance.status, "moved", [], new_v,
                                     f"instance {instance.id} is now on version {old_def.version}, "
                                     f"not {from_version}")]
    elif instance.status in FINISHED_STATUSES:
        result["reasons"] = [_reason(old_v.top, None, None, instance.status, instance.status, [], new_v,
                                     f"instance {instance.id} is {instance.status}: a finished instance has "
                                     "nothing left to migrate")]
    else:
        workflow = serialization.load_state(instance.state, runtime.specs_of(session, old_def))
        result["reasons"] = check(workflow, old_v, new_v)
        if not result["reasons"]:
            try:
                moved = rebuild(workflow, runtime.specs_of(session, new_def))
            except Exception as exc:  # a state the rules did not foresee: refuse rather than half-move
                result["reasons"] = [_reason(old_v.top, None, None, instance.status, "unsupported", [], new_v,
                                             f"the instance could not be rebuilt on v{new_def.version}: "
                                             f"{type(exc).__name__}: {exc}")]
    if result["reasons"]:
        result["outcome"] = "refused"
        if dry_run:
            return result
        raise MigrationRefused(result)
    changes = summary(old_v.diff_to(new_v))
    result["changes"] = changes
    if dry_run:
        result["outcome"] = "would-migrate"
        return result
    status, error = instance.status, instance.error
    held = status not in ("running", "waiting", "error")  # suspended: a status the workflow does not decide
    if held:  # project and save as what it is under the hold, then put the hold back
        instance.status = "error" if error else "running"
    run = runtime.Run(session, instance, new_def, actor, handlers, workflow=moved)
    instance.definition_id, instance.version = new_def.id, new_def.version
    run.log.add("migrated", from_version=old_def.version, to_version=new_def.version, changes=changes,
                reason=reason, before={"version": old_def.version}, after={"version": new_def.version})
    run.sync_tasks()
    run.save()
    if held:
        instance.status, instance.error = status, error
        session.flush()
    result.update(outcome="migrated", status=instance.status)
    return result


def instances_on(session, process_id: str, from_version: int | str, to_version: int | str) -> list[int]:
    """The unfinished instances on one version, after checking both versions exist and differ."""
    old = definition(session, process_id, from_version)
    new = definition(session, process_id, to_version)
    if old.id == new.id:
        raise InvalidInput(f"--from-version and --to-version are both {old.version}: nothing to move")
    return list(session.scalars(select(ProcessInstance.id).where(
        ProcessInstance.definition_id == old.id, ProcessInstance.status.not_in(FINISHED_STATUSES))
        .order_by(ProcessInstance.id)))


def refusal(instance_id: int, from_version: int, to_version: int, message: str, dry_run: bool) -> dict[str, Any]:
    """A bulk run's record of an instance that failed for a reason outside the safety rules."""
    return {"instance_id": instance_id, "from_version": from_version, "to_version": to_version, "dry_run": dry_run,
            "outcome": "refused", "reasons": [{"element": None, "name": None, "process": None, "task_state": None,
                                               "problem": "error", "details": [], "message": message}]}


def bulk_result(process_id: str, from_version: int | str, to_version: int | str, dry_run: bool,
                results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"process_id": process_id, "from_version": int(from_version), "to_version": int(to_version),
            "dry_run": dry_run, "instances": results,
            "migrated": [r["instance_id"] for r in results if r["outcome"] == "migrated"],
            "would_migrate": [r["instance_id"] for r in results if r["outcome"] == "would-migrate"],
            "refused": [{"instance_id": r["instance_id"], "reasons": [x["message"] for x in r["reasons"]]}
                        for r in results if r["outcome"] == "refused"]}
