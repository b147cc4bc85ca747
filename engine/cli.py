"""The `pmoflow` command: a thin click layer over the Python API in `pmoflow.engine.api`.

Exit codes: 0 done; 1 error (bad input, not found, invalid form or BPMN, instance in error); 2 usage;
3 conflict; 4 permission denied. Errors go to stderr as `error: ...`, with a traceback only under --debug.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from pmoflow.engine import forms, limits
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError

if TYPE_CHECKING:  # rich.progress is imported only when a bar is drawn
    from rich.progress import Progress, TaskID

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = 1, details: list[str] | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(code)


NO_USER_CHECK = {"init", "validate", "test", "demo", "whoami"}  # no database needed, or they check it themselves


def handled(fn: Callable) -> Callable:
    """Turn engine errors into their exit codes and plain messages. A user given (--user, PMOFLOW_USER) must be
    in the organisation: every command that reads the database refuses an unknown one first, the same way
    (exit 4), before it reads its data or looks anything up."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            if ctx.obj.get("user") and ctx.command.name not in NO_USER_CHECK and not kwargs.get("archive_file"):
                app().whoami()
            return fn(*args, **kwargs)
        except PmoflowError as exc:
            if ctx.obj.get("debug"):
                raise
            fail(exc.message, exc.exit_code, exc.details)
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except BrokenPipeError:
            raise  # the reader went away (`pmoflow show 1 | head -1`): click exits quietly
        except Exception as exc:  # the last line of defence: no tracebacks for users
            if ctx.obj.get("debug"):
                raise
            fail(f"unexpected failure: {type(exc).__name__}: {exc} (run with --debug for details)")

    return wrapper


def app() -> Pmoflow:
    ctx = click.get_current_context()
    if "app" not in ctx.obj:
        ctx.obj["app"] = Pmoflow(ctx.obj["db"], user=ctx.obj["user"])
        ctx.call_on_close(ctx.obj["app"].close)
    return ctx.obj["app"]


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def parse_data(data: str | None, data_file: str | None) -> dict[str, Any] | None:
    if data is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    if data_file is not None:
        data = read_text(data_file)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError:  # the decoder recurses once per level: JSON nested thousands deep
        raise InvalidInput("the data is nested too deeply (JSON of at most 100 levels is accepted)") from None
    if not isinstance(value, dict):
        raise InvalidInput("the data must be a JSON object, like {\"field\": \"value\"}")
    return value


def read_text(path: str) -> str:
    """A UTF-8 text file (a byte-order mark is allowed), or InvalidInput saying why it cannot be read."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidInput(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") \
            from None


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*["" if v is None else str(v) for v in row])
    out.print(grid)


COUNT = click.IntRange(1, 2**31 - 1)  # versions and limits: positive, and within every database's integer
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
data_options = [
    click.option("--data", help="The data as a JSON object."),
    click.option("--data-file", type=click.Path(dir_okay=False), help="Read the JSON object from a file."),
]


def with_data(fn: Callable) -> Callable:
    for option in reversed(data_options):
        fn = option(fn)
    return fn


def refuse_unstorable(args: list[str]) -> None:
    """Every command-line word is text the databases must take alike: a NUL character, or a lone surrogate
    (what Python makes of bytes that are not UTF-8), would fail deep inside a query; refuse it as usage."""
    for i, arg in enumerate(args):
        problem = limits.text_problem(arg) if isinstance(arg, str) else None
        if problem:
            option = args[i - 1] if i and args[i - 1].startswith("-") and not arg.startswith("-") else ""
            raise click.UsageError(f"{option} {problem}" if option else f"the argument {limits.shown(arg)} {problem}")


class CheckedCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        refuse_unstorable(args)
        return super().parse_args(ctx, args)


class CheckedGroup(click.Group):
    """A group whose commands (and subgroups) check their words first (`refuse_unstorable`)."""

    command_class = CheckedCommand
    group_class = type  # subgroups are CheckedGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        refuse_unstorable(args)
        return super().parse_args(ctx, args)


def _flush_stdout() -> None:
    """Flush while click can still tell a reader that went away (`pmoflow show 1 | true`) from a failure."""
    sys.stdout.flush()


@click.group(cls=CheckedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="PMOFLOW_DB", help="Database URL (default sqlite:///pmoflow.db; env PMOFLOW_DB).")
@click.option("--user", envvar="PMOFLOW_USER", help="Act as this user (env PMOFLOW_USER).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, db: str | None, user: str | None, debug: bool) -> None:
    """Run a Project Management Office's processes as BPMN."""
    ctx.ensure_object(dict)
    ctx.obj.update(db=db, user=user, debug=debug)
    if hasattr(sys.stdout, "reconfigure"):  # a name the terminal cannot show is escaped, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    ctx.call_on_close(_flush_stdout)


@main.command()
@click.option("--org", type=click.Path(dir_okay=False), help="Organisation TOML file (default: the process library's).")
@json_option
@handled
def init(org: str | None, as_json: bool) -> None:
    """Create or upgrade the schema, load the organisation and deploy the bundled processes."""
    result = app().init(org)
    if as_json:
        return emit_json(result)
    click.echo(f"database ready: {result['database']}")
    click.echo(f"organisation: {result['users']} users from {result['organisation']}")
    click.echo(audit_key_line(result["audit_key"]))
    for p in result["processes"]:
        state = "deployed" if p["created"] else "unchanged"
        click.echo(f"{p['process_id']} v{p['version']} {state}")


def audit_key_line(key: dict[str, Any]) -> str:
    """Where the audit key is (never what it is), and whether the record was just sealed with it."""
    if key["source"] is None:
        return ("audit key: none configured, so the audit record is not anchored: set PMOFLOW_AUDIT_KEY_FILE to a "
                "file outside the database's reach and run init again")
    line = f"audit key: {'created ' if key['created'] else ''}{key['source']}"
    if key.get("sealed"):
        line += f"; sealed the record as it stands ({key['sealed']['instances']} instances)"
    return line + (f"; warning: {key['warning']}" if key.get("warning") else "")


@main.command()
@json_option
@handled
def whoami(as_json: bool) -> None:
    """Who you act as (--user, PMOFLOW_USER): your name and roles; exit 4 when the organisation has no such user."""
    me = app().whoami()
    if as_json:
        return emit_json(me)
    click.echo(f"{me['name']}" + (f" ({me['full_name']})" if me["full_name"] else "") + ": "
               + (", ".join(me["roles"]) or "no role"))


@main.command()
@json_option
@handled
def users(as_json: bool) -> None:
    """List the organisation's users and their roles."""
    result = app().users()
    if as_json:
        return emit_json([{"name": u["name"], "roles": u["roles"]} for u in result])
    table("Users", ["name", "full name", "roles"], [[u["name"], u["full_name"], ", ".join(u["roles"])]
                                                    for u in result])


@main.command()
@click.argument("paths", nargs=-1, required=True)
@json_option
@handled
def validate(paths: tuple[str, ...], as_json: bool) -> None:
    """Lint BPMN/DMN files, their forms, handlers and lanes, without deploying them.

    Prints every finding as FILE:LINE:COLUMN: error|warning: ELEMENT-ID: MESSAGE (hint: ...), or with --json a
    list of finding objects; exits 1 when any finding is an error. A PATH may be a folder, or a SpiffWorkflow
    modeler process-model folder (with process_model.json).
    """
    from pmoflow.engine.parser import Finding

    try:
        findings = app().validate(list(paths))
    except PmoflowError as exc:
        findings = getattr(exc, "findings", None)
        if findings is None:
            raise
    if as_json:
        emit_json(findings)
    else:
        for finding in findings:
            click.echo(str(Finding(**finding)))
    errors = sum(1 for f in findings if f["severity"] == "error")
    warnings = f"{len(findings) - errors} warning(s)" if len(findings) > errors else ""
    if errors:
        raise PmoflowError(f"{errors} problem(s) found" + (f" and {warnings}" if warnings else ""))
    if not as_json:
        click.echo("ok: no errors" + (f", {warnings}" if warnings else ""))


@main.command()
@click.argument("paths", nargs=-1, required=True)
@json_option
@handled
def deploy(paths: tuple[str, ...], as_json: bool) -> None:
    """Deploy BPMN/DMN files as new process versions (unchanged files keep their version)."""
    result = app().deploy(list(paths))
    if as_json:
        return emit_json(result)
    for p in result:
        state = "deployed as" if p["created"] else "unchanged at"
        click.echo(f"{p['process_id']} {state} version {p['version']}")


@main.command("test")
@click.argument("paths", nargs=-1, required=True)
@json_option
@handled
def test_command(paths: tuple[str, ...], as_json: bool) -> None:
    """Run scenario files (test_<name>.json beside the BPMN) against processes, without a database."""
    results = app().test(list(paths))
    failed = [r for r in results if not r["passed"]]
    if as_json:
        emit_json(results)
    else:
        for r in results:
            click.echo(f"{'ok  ' if r['passed'] else 'FAIL'} {r['file']}: {r['case']}: {r['message']}")
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("process_id")
@click.option("--version", type=COUNT, help="The version to draw (default: the newest).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Where to write the SVG.")
@handled
def diagram(process_id: str, version: int | None, out: str) -> None:
    """Draw a deployed process as SVG from its BPMN diagram interchange."""
    svg = app().diagram(process_id, version)
    try:
        with open(out, "w") as fh:
            fh.write(svg)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror}") from exc
    click.echo(f"wrote {out}")


@main.command()
@json_option
@handled
def processes(as_json: bool) -> None:
    """List deployed processes at their newest version."""
    result = app().processes()
    if as_json:
        return emit_json(result)
    table("Processes", ["process", "version", "name", "deployed by", "deployed at"],
          [[p["process_id"], p["version"], p["name"], p["deployed_by"], p["deployed_at"]] for p in result])


@main.command()
@click.argument("process_id")
@with_data
@click.option("--business-key", help="Your own reference for the instance.")
@json_option
@handled
def start(process_id: str, data: str | None, data_file: str | None, business_key: str | None,
          as_json: bool) -> None:
    """Start an instance of a process with initial data."""
    result = app().start(process_id, parse_data(data, data_file) or {}, business_key)
    report_run(result, as_json, f"started instance {result['instance_id']} of {process_id}")


@main.command()
@click.argument("name")
@with_data
@click.option("--correlate", "correlations", multiple=True, metavar="KEY=VALUE",
              help="A correlation value the message carries (repeatable); VALUE is read as JSON when it parses "
                   "(5, true), else as text.")
@json_option
@handled
def message(name: str, data: str | None, data_file: str | None, correlations: tuple[str, ...], as_json: bool) -> None:
    """Send a message: to the one instance waiting for it with these correlation values, or to the process
    whose message start event it names. A message nobody takes is refused and changes nothing."""
    result = app().message(name, parse_data(data, data_file) or {}, parse_pairs(correlations, "--correlate"))
    if as_json:
        return emit_json(result)
    click.echo(f"message {result['message']} delivered to instance {', '.join(map(str, result['delivered_to']))}")


@main.command()
@json_option
@handled
def messages(as_json: bool) -> None:
    """What instances wait for: each message name, the instance and the correlation values it expects."""
    result = app().messages()
    if as_json:
        return emit_json(result)
    table("Waiting for messages", ["message", "instance", "process", "status", "at", "expects"],
          [[m["message"], m["instance_id"], m["process_id"], m["status"], m["waiting_at"],
            ", ".join(f"{k}={v!r}" for k, v in m["expects"].items()) or "any"] for m in result])


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option} takes KEY=VALUE, not {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        values[key.strip()] = value if isinstance(value, str | int | float | bool) else raw
    from pmoflow.engine.serialization import check_data

    check_data(values, option)  # NaN, 2**70: what no stored value can equal
    return values


def report_run(result: dict[str, Any], as_json: bool, done: str) -> None:
    """Print a run's outcome; an instance that went into error is exit code 1."""
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{done}: {result['status']}")
    if result["status"] == "error":
        fail(f"instance {result['instance_id']} is in error {describe_error(result['error'] or {})}; "
             f"fix the cause and run 'pmoflow retry {result['instance_id']}'")


def describe_error(err: dict[str, Any]) -> str:
    """'at task compute (Compute total), line 3: total = 1 / 0: ZeroDivisionError: ...', leaving out what
    is not known."""
    where = ""
    if err.get("bpmn_id"):
        name = f" ({err['task_name']})" if err.get("task_name") else ""
        where = f"at task {err['bpmn_id']}{name}"
    if err.get("line"):
        where += f", line {err['line']}" + (f": {err['line_text'].strip()}" if err.get("line_text") else "")
    return f"{where}: {err.get('message', 'unknown error')}".lstrip(": ")


@main.command()
@click.option("--status", help="Only instances in this status.")
@click.option("--process", help="Only instances of this process.")
@json_option
@handled
def instances(status: str | None, process: str | None, as_json: bool) -> None:
    """List process instances."""
    result = app().instances(status, process)
    if as_json:
        return emit_json(result)
    table("Instances", ["id", "process", "version", "status", "started by", "started at", "next due"],
          [[i["instance_id"], i["process_id"], i["version"], i["status"], i["started_by"], i["started_at"],
            i["next_due"]] for i in result])


@main.command()
@click.argument("instance")
@json_option
@handled
def show(instance: str, as_json: bool) -> None:
    """Show one instance: status, version, data and tasks."""
    result = app().show(instance)
    if as_json:
        return emit_json(result)
    click.echo(f"instance {result['instance_id']}: {result['process_id']} v{result['version']} "
               f"[{result['status']}] started by {result['started_by']} at {result['started_at']}")
    if result["error"]:
        click.echo(f"error {describe_error(result['error'])}")
    click.echo("data: " + json.dumps(result["data"], indent=2, default=str))
    if result["calls"]:
        table("Called processes", ["called at", "process", "item", "state", "now at"],
              [[c["name"] or c["called_at"], c["process"], _item_label(c["item"]), c["state"], ", ".join(c["at"])]
               for c in result["calls"]])
    print_tasks(result["tasks"], "Tasks")


def _item_label(item: Any) -> str:
    """A multi-instance item in one cell: its id or name when it has one, else its JSON."""
    if isinstance(item, dict):
        for key in ("id", "name", "title"):
            if key in item:
                return str(item[key])
    return "" if item is None else json.dumps(item, default=str)[:60]


def print_tasks(tasks: list[dict[str, Any]], title: str) -> None:
    table(title, ["id", "instance", "task", "lane", "for", "assignee", "due", "state"],
          [[t["id"], t["instance_id"], t["name"], t["lane"], ", ".join(t["candidates"]), t["assignee"], t["due"],
            t["state"]] for t in tasks])


@main.command()
@click.option("--all", "all_tasks", is_flag=True, help="Every open task, not only yours.")
@json_option
@handled
def tasks(all_tasks: bool, as_json: bool) -> None:
    """Your inbox: open tasks for your roles, or assigned to you."""
    result = app().tasks(all_tasks)
    if as_json:
        return emit_json(result)
    print_tasks(result, "Open tasks" if all_tasks else f"Inbox of {app().user}")


@main.command()
@click.option("--for", "for_user", metavar="USER", help="Someone else's notifications (delivers nothing).")
@click.option("--all", "all_users", is_flag=True, help="Everyone's notifications (delivers nothing).")
@click.option("--instance", help="Only the notifications of this instance.")
@click.option("--undelivered", is_flag=True, help="Only notifications not delivered yet.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@json_option
@handled
def notifications(for_user: str | None, all_users: bool, instance: str | None, undelivered: bool, fmt: str,
                  as_json: bool) -> None:
    """The notification outbox: reminders, escalations and notices queued for you, oldest first.

    Listing your own delivers them (new ones are marked *); --for USER or --all lists others' and delivers nothing.
    """
    if for_user is not None and all_users:
        raise click.UsageError("give --for USER or --all, not both")
    result = app().notifications(for_user, undelivered, instance, all_users)
    if as_json or fmt == "json":
        return emit_json(result)
    whose = "everyone" if all_users else for_user or app().user
    if not result:
        click.echo(f"no {'undelivered ' if undelivered else ''}notifications for {whose}")
        return
    table(f"Notifications for {whose}", ["id", "", "instance", "kind", "subject", "task", "for", "via role",
                                         "queued", "delivered"],
          [[n["id"], "*" if n["new"] else "", n["instance_id"], n["kind"], n["subject"], n["task_name"] or n["task"],
            n["recipient"], n["via_role"], n["created_at"], n["delivered_at"]] for n in result])


@main.command()
@click.argument("task_id")
@json_option
@handled
def task(task_id: str, as_json: bool) -> None:
    """Show one task with its instructions and form."""
    result = app().task(task_id)
    if as_json:
        return emit_json(result)
    click.echo(f"task {result['id']}: {result['name']} ({result['bpmn_id']}) of instance {result['instance_id']}")
    click.echo(f"state {result['state']}; for {', '.join(result['candidates'])}; assignee {result['assignee']}; "
               f"due {result['due']}")
    if result["instructions"]:
        click.echo(f"\n{result['instructions']}\n")
    for name, prop in (result.get("schema") or {}).get("properties", {}).items():
        required = name in result["schema"].get("required", [])
        click.echo(f"  {name}{' (required)' if required else ''}: {prop.get('title', '')} [{prop.get('type', '')}]")


@main.command()
@click.argument("task_id")
@json_option
@handled
def claim(task_id: str, as_json: bool) -> None:
    """Take a task so that nobody else works on it."""
    result = app().claim(task_id)
    emit_json(result) if as_json else click.echo(f"task {result['id']} claimed by {result['assignee']}")


@main.command()
@click.argument("task_id")
@json_option
@handled
def unclaim(task_id: str, as_json: bool) -> None:
    """Give a claimed task back to its candidates."""
    result = app().unclaim(task_id)
    emit_json(result) if as_json else click.echo(f"task {result['id']} is open again")


@main.command()
@click.argument("task_id")
@click.argument("user")
@json_option
@handled
def delegate(task_id: str, user: str, as_json: bool) -> None:
    """Hand a task to another user who may take it."""
    result = app().delegate(task_id, user)
    emit_json(result) if as_json else click.echo(f"task {result['id']} delegated to {result['assignee']}")


@main.command()
@click.argument("task_id")
@with_data
@json_option
@handled
def complete(task_id: str, data: str | None, data_file: str | None, as_json: bool) -> None:
    """Submit a task's form. Without --data, prompts field by field when run in a terminal."""
    values = parse_data(data, data_file)
    if values is None:
        values = prompt_form(app().task(task_id)) if interactive() else {}
    result = app().complete(task_id, values)
    report_run(result, as_json, f"task {result['task_id']} completed; instance {result['instance_id']}")


def interactive() -> bool:
    """Prompt only when a person is at a terminal; scripts without --data get the form's errors instead."""
    return sys.stdin.isatty()


def prompt_form(task_view: dict[str, Any]) -> dict[str, Any]:
    """Ask for each field of the task's form; empty answers skip optional fields."""
    schema = task_view.get("schema") or {}
    required = set(schema.get("required", []))
    values: dict[str, Any] = {}
    click.echo(f"{task_view['name']}: {schema.get('title', '')}")
    for name, prop in schema.get("properties", {}).items():
        label = prop.get("title", name) + ("" if name in required else " (optional)")
        if prop.get("description"):
            click.echo(f"  {prop['description']}")
        choice = click.Choice([str(v) for v in prop["enum"]]) if "enum" in prop else None
        while True:
            try:
                answer = click.prompt(label, default="", show_default=False, type=choice)
            except click.Abort:  # Ctrl-C or Ctrl-D: click turned it into Abort
                raise PmoflowError(f"task {task_view['id']} was not completed: the prompt was interrupted and "
                                   "nothing was submitted") from None
            if answer == "" and name not in required:
                break
            try:
                values[name] = forms.convert_answer(answer, prop)
                break
            except ValueError as exc:
                click.echo(f"  {exc}; try again", err=True)
    return values


@main.command()
@click.argument("instance")
@json_option
@handled
def history(instance: str, as_json: bool) -> None:
    """The audit history of one instance."""
    result = app().history(instance)
    if as_json:
        return emit_json(result)
    table(f"History of instance {instance}", ["seq", "at", "actor", "event", "task", "details"],
          [[e["seq"], e["at"], e["actor"], e["type"], e["task_name"] or e["task"] or "",
            json.dumps(e["payload"], default=str)[:160]] for e in result])


@main.command()
@click.argument("instance")
@click.option("--data", help="Corrected data (JSON object) for the failed task.")
@click.option("--reason", help="Why (required with --data: the record keeps it).")
@json_option
@handled
def retry(instance: str, data: str | None, reason: str | None, as_json: bool) -> None:
    """Re-run the failed task of an instance in error (PMO Administrators)."""
    result = app().retry(instance, parse_data(data, None), reason=reason)
    report_run(result, as_json, f"instance {result['instance_id']} retried")


@main.command()
@click.option("--once", is_flag=True, help="Fire what is due now and exit.")
@click.option("--now", "now_text", help="Evaluate timers and schedules as of this ISO time (catch-up, tests); "
              "events are still recorded at the real time, with this time beside them (as_of).")
@click.option("--dry-run", is_flag=True, help="List what would fire and start (as of --now) and change nothing.")
@click.option("--interval", type=click.FloatRange(0.1, 86400.0), default=5.0, show_default=True,
              help="Seconds between polls when running on (0.1 to 86400).")
@click.option("--verbose", is_flag=True, help="One line per pass on stderr, even when nothing was due.")
@json_option
@handled
def worker(once: bool, now_text: str | None, dry_run: bool, interval: float, verbose: bool, as_json: bool) -> None:
    """Fire due timers and start the instances due timer start events call for: once, or until SIGTERM or
    Ctrl-C (finishing the instance in hand). A database error that passes (a dropped connection, a locked
    database) is retried with a backoff, one line on stderr each time."""
    from pmoflow.engine import worker as worker_loop

    now = parse_time(now_text) if now_text is not None else None
    if dry_run:
        return print_dry_run(app().run_due(now, dry_run=True), as_json)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    def on_pass(result: dict[str, Any], number: int, seconds: float) -> None:
        line = (f"{result['now']}: fired timers of {len(result['fired'])} instance(s) {result['fired']}; started "
                f"{len(result['started'])} instance(s) {result['started']} by timer start events; "
                f"{len(result['errors'])} went into error")
        if as_json:
            emit_json(result)
        elif result["fired"] or result["started"] or once:
            click.echo(line)
        if verbose:
            click.echo(f"pass {number} ({seconds:.2f} s): {line}", err=True)

    # each pass: due timers, then the e-mail outbox (a no-op unless PMOFLOW_SMTP_URL is set)
    worker_loop.run(lambda: {**app().run_due(now, should_stop=stop.is_set), "mail": app().send_mail()},
                    stop=stop, interval=interval, once=once,
                    on_pass=on_pass, log=lambda line: click.echo(line, err=True))


def print_dry_run(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return emit_json(result)
    click.echo(f"dry run as of {result['now']}: nothing was changed")
    table("Instances with timers due", ["instance", "process", "business key", "timer", "due"],
          [[i["instance_id"], f"{i['process_id']} v{i['version']}", i["business_key"] or "",
            t["name"] or t["task"] or "", t["due"]] for i in result["would_fire"]
           for t in i["timers"] or [{"name": "(next due)", "task": None, "due": i["next_due"]}]])
    table("Instances timer start events would start", ["process", "version", "start event", "due", "occurrence"],
          [[s["process_id"], s["version"], s["start_event"], due, s["fired"] + n]
           for s in result["would_start"] for n, due in enumerate(s["occurrences"], start=1)])


@main.command("schedules")
@json_option
@handled
def schedules_command(as_json: bool) -> None:
    """Timer start events of deployed processes: when the worker next starts an instance of each."""
    result = app().schedules()
    if as_json:
        return emit_json(result)
    table("Timer start events", ["process", "version", "start event", "expression", "next due", "remaining",
                                 "fired", "owner"],
          [[s["process_id"], s["version"], s["start_event"], s["expression"], s["next_due"] or "done",
            "unbounded" if s["remaining"] is None else s["remaining"], s["fired"], s["owner"]] for s in result])


NOW_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))


def parse_time(text: str) -> datetime:
    """`--now`: an ISO time (UTC unless a zone is given) from 1970 to 2999. Timers add their durations to it,
    and the calendar ends in 9999: a worker as of 9999-12-31 would fail on the first timer it computes."""
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        in_range = NOW_RANGE[0] <= moment < NOW_RANGE[1]
    except (ValueError, OverflowError):
        raise InvalidInput(f"--now: {limits.shown(text)} is not an ISO time like 2027-01-31T09:00:00+00:00") \
            from None
    if not in_range:
        raise InvalidInput(f"--now: {text} is outside the years the worker evaluates timers in (1970 to 2999)")
    return moment


@main.group()
def audit() -> None:
    """The audit record: verify it, query it across instances, archive finished instances."""


@audit.command("verify")
@click.argument("instance", required=False)
@click.option("--file", "archive_file", type=click.Path(dir_okay=False),
              help="Check an archive file written by 'audit archive' instead of the database.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A file from 'audit checkpoint': report every stream that no longer extends it.")
@click.option("--archives", type=click.Path(file_okay=False),
              help="The folder holding the archives: report any the record lists that is missing or changed.")
@json_option
@handled
def audit_verify(instance: str | None, archive_file: str | None, checkpoint: str | None, archives: str | None,
                 as_json: bool) -> None:
    """Re-compute the hash chains of every instance (or one) and of the processes' deployments, re-derive the
    tables the engine acts on, check the seals made with the audit key, and report the first problem of each
    stream. With --file, check an archive instead."""
    if archive_file is not None:
        if instance is not None or checkpoint is not None or archives is not None:
            raise click.UsageError("--file checks an archive on its own: give it without INSTANCE, --checkpoint "
                                   "or --archives")
        return verify_archive_file(archive_file, as_json)
    result = app().verify_record(instance, checkpoint, archives)
    if as_json:
        emit_json(result)
    elif result["ok"]:
        click.echo(f"ok: {result['checked_events']} events, every chain intact and what the engine acts on matches "
                   f"them; {result['anchoring']['note']}")
    if not result["ok"]:
        fail("the audit record was changed outside pmoflow", 1,
             [f"{f['stream']}: {f['problem']}" for f in result["findings"]] + [result["anchoring"]["note"]])


def verify_archive_file(path: str, as_json: bool) -> None:
    result = app().verify_archive(path)
    if as_json:
        emit_json(result)
    elif result["ok"]:
        recorded = (f"; recorded in this database as archive event {result['recorded']['seq']} "
                    f"({result['recorded']['at']}, by {result['recorded']['actor']})") if result["recorded"] else \
            f"; {result.get('note')}"
        click.echo(f"ok: archive {path} verifies: {result['instances']} instances, {result['events']} events, "
                   f"digest {result['digest']}{recorded}")
    if not result["ok"]:
        fail(f"the archive {path} was changed after it was written", 1,
             [(f"line {f['line']}: " if f["line"] else "")
              + (f"instance {f['instance_id']}, " if f["instance_id"] is not None else "") + f["problem"]
              for f in result["findings"]])


@main.command("diff")
@click.argument("process_id")
@click.argument("from_version", type=COUNT)
@click.argument("to_version", type=COUNT)
@json_option
@handled
def diff_versions(process_id: str, from_version: int, to_version: int, as_json: bool) -> None:
    """List the elements added, removed and changed between two deployed versions of a process."""
    result = app().diff(process_id, from_version, to_version)
    if as_json:
        return emit_json(result)
    title = f"{process_id}: v{result['from_version']} -> v{result['to_version']}"
    if not result["changes"]:
        click.echo(f"{title}: no differences")
        return
    table(title, ["change", "element", "kind", "name", "details"],
          [[c["change"], c["element"] if c["process"] == process_id else f"{c['process']}/{c['element']}",
            c["kind"], c["name"], "; ".join(c["details"])] for c in result["changes"]])
    counts = result["summary"]
    click.echo(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")


@main.command()
@click.argument("instance", required=False)
@click.option("--to-version", type=COUNT, required=True, help="The deployed version to move to.")
@click.option("--process", "process_id", help="Move every unfinished instance of this process (with --from-version).")
@click.option("--from-version", type=COUNT, help="With --process: the version whose instances move.")
@click.option("--dry-run", is_flag=True, help="List what would move, and why each refused one is unsafe; change "
                                              "nothing.")
@click.option("--reason", help="Why: recorded with each move.")
@json_option
@handled
def migrate(instance: str | None, to_version: int, process_id: str | None, from_version: int | None,
            dry_run: bool, reason: str | None, as_json: bool) -> None:
    """Move a running instance, or every instance of one version, to another version when it is safe.

    Safe: every task that ran, runs or waits is on an element the new version keeps unchanged (a completed
    task's outgoing flows too; steps may be added after a waiting one). Each move is recorded in the instance's
    history; a refused instance is left exactly as it was. Exit 1 when any is refused (a dry run only reports)."""
    from pmoflow.engine.migration import MigrationRefused

    if (instance is None) == (process_id is None):
        raise click.UsageError("give an INSTANCE, or --process P --from-version N (not both)")
    if instance is not None and from_version is not None:
        raise click.UsageError("--from-version goes with --process; an instance moves from the version it is on")
    if process_id is not None and from_version is None:
        raise click.UsageError("--process needs --from-version")
    if instance is not None:
        try:
            result = app().migrate(instance, to_version, dry_run, reason=reason)
        except MigrationRefused as refused:
            if as_json:
                emit_json(refused.result)
            raise
        return emit_json(result) if as_json else print_migration(result)
    assert process_id is not None and from_version is not None, "the usage checks above require both"
    with MigrationProgress(process_id, from_version, to_version, enabled=not as_json) as progress:
        result = app().migrate_all(process_id, from_version, to_version, dry_run, progress=progress, reason=reason)
    if as_json:
        emit_json(result)
    else:
        print_bulk_migration(result)
    if result["refused"] and not dry_run:
        fail(f"{len(result['refused'])} instance(s) of {process_id} could not move to v{to_version} and were left "
             f"as they were: " + ", ".join(str(r["instance_id"]) for r in result["refused"]))


def print_migration(result: dict[str, Any]) -> None:
    moved = f"instance {result['instance_id']}: v{result['from_version']} -> v{result['to_version']}"
    if result["outcome"] == "migrated":
        click.echo(f"{moved}: migrated ({result['status']})")
    elif result["outcome"] == "would-migrate":
        click.echo(f"{moved}: would migrate (dry run: nothing changed)")
    else:
        click.echo(f"{moved}: would be refused (dry run):")
        for reason in result["reasons"]:
            click.echo(f"  - {reason['message']}")


def print_bulk_migration(result: dict[str, Any]) -> None:
    span = f"{result['process_id']} v{result['from_version']} -> v{result['to_version']}"
    if not result["instances"]:
        click.echo(f"{span}: no unfinished instances on v{result['from_version']}")
        return
    table(f"Migration of {span}" + (" (dry run: nothing changed)" if result["dry_run"] else ""),
          ["instance", "outcome", "why"],
          [[r["instance_id"], r["outcome"], "; ".join(x["message"] for x in r["reasons"])]
           for r in result["instances"]])
    if result["dry_run"]:
        click.echo(f"{len(result['would_migrate'])} would migrate, {len(result['refused'])} would be refused")
    else:
        click.echo(f"{len(result['migrated'])} migrated, {len(result['refused'])} refused")


class MigrationProgress:
    """A progress bar on stderr for a bulk migration of more than one instance; nothing otherwise."""

    def __init__(self, process_id: str, from_version: int, to_version: int, enabled: bool) -> None:
        self.label = f"migrating {process_id} v{from_version} -> v{to_version}"
        self.enabled = enabled
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < 2:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                console=Console(stderr=True, highlight=False))
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        assert self.task is not None, "added with the bar"
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- the auditor's commands: queries, reports, archives ---------------------------------------------------


def period_options(fn: Callable) -> Callable:
    for option in reversed([
        click.option("--since", help="From this date or time (ISO, UTC unless a zone is given)."),
        click.option("--until", help="Up to this date (inclusive) or time."),
        click.option("--period", help="A whole period instead: 2027, 2027-Q1, 2027-03 or 2027-03-31."),
    ]):
        fn = option(fn)
    return fn


def write_output(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"written to {output}", err=True)


@audit.command("events")
@click.option("--process", help="Only this process (its id).")
@click.option("--version", type=COUNT, help="Only this process version.")
@click.option("--instance", help="Only this instance.")
@click.option("--actor", help="Only what this user did.")
@click.option("--role", help="Only what was done by holders of this role (at the time).")
@click.option("--type", "types", multiple=True, help="Only this event type (repeatable): task_completed, "
                                                     "decision, gateway, retry, skip, ...")
@click.option("--task", help="Only events of this task (its BPMN id).")
@period_options
@click.option("--where", multiple=True, metavar="PATH=VALUE",
              help="A payload field's value (repeatable), e.g. data.gateDecision=Stop, outputs.recommendation!=Go; "
                   "values compare as text (true, false, 12).")
@click.option("--late", is_flag=True, help="Only tasks completed after their due time.")
@click.option("--by-starter", is_flag=True, help="Only tasks completed by the person who started the instance.")
@click.option("--override", metavar="SUBMITTED=RECOMMENDED",
              help="Only submissions that differ from the latest recommendation before them in the instance, "
                   "e.g. data.gateDecision=outputs.recommendation.")
@click.option("--limit", type=COUNT, help="At most this many events (the oldest first).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@json_option
@handled
def audit_events(process, version, instance, actor, role, types, task, since, until, period, where, late,
                 by_starter, override, limit, fmt, output, as_json) -> None:
    """Events across instances, filtered; every filter is answered from an index.

    Every override of a quarter: --period 2027-Q1 --override data.gateDecision=outputs.recommendation.
    Every late task of a quarter: --period 2027-Q1 --late.
    """
    import csv
    import io

    from pmoflow.engine.audit import CSV_COLUMNS, csv_row

    events = app().audit_events(process=process, version=version, instance=instance, actor=actor, role=role,
                                types=types, task=task, since=since, until=until, period=period, where=where,
                                late=late, by_starter=by_starter, override=override, limit=limit)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        return write_output(json.dumps(events, indent=2, default=str) + "\n", output)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(e) for e in events)
        return write_output(buffer.getvalue(), output)
    if output is not None:
        raise click.UsageError("--output goes with --format json or csv")
    if not events:
        click.echo("no events match these filters")
        return
    table(f"{len(events)} event(s)", ["instance", "seq", "at", "actor", "event", "task", "details"],
          [[e["instance_id"] if e["instance_id"] is not None else e["stream"], e["seq"], e["at"], e["actor"],
            e["type"], e["task_name"] or e["task"] or "", json.dumps(e["payload"], default=str)[:120]]
           for e in events])


@audit.command("archive")
@click.option("--before", required=True, help="Archive instances that finished before this date or time.")
@click.option("--to", "path", required=True, type=click.Path(dir_okay=False), help="The new archive file.")
@json_option
@handled
def audit_archive(before: str, path: str, as_json: bool) -> None:
    """Move completed and terminated instances' history into a verifiable file, then remove it from the database.

    The file holds every event with its hashes and a digest of its own; 'audit verify --file FILE' checks it.
    The act is recorded in the database's archive chain. Normal operation never removes history.
    """
    result = app().archive(before, path)
    if as_json:
        return emit_json(result)
    if not result["instances"]:
        click.echo(f"no completed or terminated instance finished before {before}: nothing archived, no file written")
        return
    click.echo(f"archived {result['instances']} instance(s), {result['events']} events, to {result['file']} "
               f"(digest {result['digest']}); removed them from the database (archive event {result['recorded_as']})")


@audit.command("checkpoint")
@click.option("--to", "path", required=True, type=click.Path(dir_okay=False), help="The new checkpoint file.")
@json_option
@handled
def audit_checkpoint(path: str, as_json: bool) -> None:
    """Export every stream's head, signed with the audit key, for an auditor to keep outside the database's reach;
    'audit verify --checkpoint FILE' later reports every stream that no longer extends it."""
    result = app().checkpoint(path)
    if as_json:
        return emit_json(result)
    click.echo(f"checkpoint of {result['streams']} streams ({result['events']} events) written to {result['file']}; "
               "keep it where the database's administrators cannot change it")


@main.command()
@click.argument("instance", required=False)
@click.option("--process", "process_id", help="A report on this process over a period, instead of one instance.")
@period_options
@click.option("--override", metavar="SUBMITTED=RECOMMENDED",
              help="With --process: list the submissions that differ from their recommendation, e.g. "
                   "data.gateDecision=outputs.recommendation.")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="md", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@json_option
@handled
def report(instance: str | None, process_id: str | None, since: str | None, until: str | None, period: str | None,
           override: str | None, fmt: str, output: str | None, as_json: bool) -> None:
    """An audit report: of one INSTANCE (summary, verification, diagram with the path taken, timeline, time per
    step, decisions and rules, duties, administrative acts), or of a --process over a period (counts, cycle
    times, overrides, late tasks, open findings). --format html gives one self-contained file."""
    from pmoflow.engine.report import render

    if (instance is None) == (process_id is None):
        raise click.UsageError("give an INSTANCE, or --process P with --since DATE or --period P (not both)")
    if instance is not None:
        if since or until or period or override:
            raise click.UsageError("--since, --until, --period and --override go with --process")
        result = app().report(instance)
    else:
        result = app().process_report(process_id, since=since, until=until, period=period, override=override)
    write_output(render(result, "json" if as_json else fmt), output)


def admin_options(fn: Callable) -> Callable:
    fn = json_option(fn)
    return click.option("--reason", help="Why: recorded with the act.")(fn)


def report_admin(result: dict[str, Any], as_json: bool, done: str) -> None:
    emit_json(result) if as_json else click.echo(f"instance {result['instance_id']} {done}: {result['status']}")


@main.command()
@click.argument("instance")
@admin_options
@handled
def suspend(instance: str, reason: str | None, as_json: bool) -> None:
    """Hold an instance: its tasks cannot be completed and the worker leaves it until it is resumed."""
    report_admin(app().suspend(instance, reason), as_json, "suspended")


@main.command()
@click.argument("instance")
@admin_options
@handled
def resume(instance: str, reason: str | None, as_json: bool) -> None:
    """Release a suspended instance (timers that came due meanwhile fire on the worker's next pass)."""
    report_admin(app().resume(instance, reason), as_json, "resumed")


@main.command()
@click.argument("instance")
@admin_options
@handled
def terminate(instance: str, reason: str | None, as_json: bool) -> None:
    """End an unfinished instance for good, cancelling its open tasks."""
    report_admin(app().terminate(instance, reason), as_json, "terminated")


@main.command()
@click.argument("instance")
@with_data
@admin_options
@handled
def skip(instance: str, data: str | None, data_file: str | None, reason: str | None, as_json: bool) -> None:
    """Mark the failed task of an instance in error as done without running it (with --data as its result),
    and run the instance on."""
    result = app().skip(instance, parse_data(data, data_file), reason)
    report_run(result, as_json, f"instance {result['instance_id']}: failed task skipped")


@main.command("data")
@click.argument("instance")
@click.option("--set", "values", required=True, help="The fields to change, as a JSON object.")
@admin_options
@handled
def edit_data(instance: str, values: str, reason: str | None, as_json: bool) -> None:
    """Change the data an instance is at (its open tasks and waiting events); recorded with before and after."""
    result = app().edit_data(instance, parse_data(values, None), reason)
    if as_json:
        return emit_json(result)
    click.echo(f"instance {result['instance_id']}: set {json.dumps(result['after'], default=str)} "
               f"(was {json.dumps(result['before'], default=str)}) at {', '.join(result['tasks'])}")


@main.command()
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the demo database in this folder.")
@click.option("--serve", "serve_it", is_flag=True,
              help="Instead of the narrated walk: serve a demo database on the web (see 'serve'), printing the "
                   "demo passwords.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: the address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="With --serve: the port.")
@handled
def demo(keep: str | None, serve_it: bool, host: str, port: int) -> None:
    """Run the installed process library's narrated demo on a fresh embedded database."""
    from pmoflow.engine.library import installed

    if serve_it:
        return serve_demo(keep, host, port)
    walks = [library for library in installed() if library.demo is not None]
    if not walks:
        raise InvalidInput("no installed process library has a demo")
    for library in walks:
        library.demo(out, keep)


def serve_demo(keep: str | None, host: str, port: int) -> None:
    """`demo --serve`: a demo database (fresh, or the one kept in --keep) with the installed library's
    organisation, every user given the demo password, then the web workspace with the worker beside it."""
    import tempfile
    from pathlib import Path

    from pmoflow.engine.web import server

    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="pmoflow-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'demo.db'}"
    setup = Pmoflow(db, user=server.demo_administrator())
    result = setup.init()
    setup.close()
    people = server.demo_passwords(db)
    click.echo(f"demo database: {db} ({result['users']} people, "
               f"{', '.join(p['process_id'] for p in result['processes'])})")
    table("Demo sign-ins (demo passwords: never use them on a real database)", ["user", "password", "roles"],
          [[p["name"], p["password"], ", ".join(p["roles"])] for p in people])
    click.echo(f"open http://{host}:{port}/ and sign in; Ctrl-C stops the server")
    server.run(db, host, port, with_worker=True, log=lambda line: click.echo(line, err=True))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="The port.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes (each with its own connection pool).")
@click.option("--with-worker", is_flag=True,
              help="Also run the timer worker loop in this process (a one-machine install).")
@click.option("--worker-interval", type=click.FloatRange(0.1, 86400.0), default=5.0, show_default=True,
              help="With --with-worker: seconds between the worker's polls.")
@click.option("--trusted-proxy", metavar="ADDRESS", envvar="PMOFLOW_TRUSTED_PROXY",
              help="Single sign-on: believe the X-Remote-User header of requests from this address (a reverse "
                   "proxy that signs people in); off unless given (env PMOFLOW_TRUSTED_PROXY).")
@click.option("--check", is_flag=True, help="Check the database and the secret key, say what would be served, "
                                            "and exit without serving.")
@handled
def serve(host: str, port: int, workers: int, with_worker: bool, worker_interval: float, trusted_proxy: str | None,
          check: bool) -> None:
    """Serve the web workspace and the REST API (/api/v1) until Ctrl-C or SIGTERM. People sign in with the
    password 'pmoflow passwd' set, REST clients with a 'pmoflow token'."""
    from pmoflow.engine.database import resolve_url
    from pmoflow.engine.web import server

    db = resolve_url(click.get_current_context().obj["db"])
    if check:
        server.prepare(db)
        click.echo(f"ready to serve {db_label(db)} on http://{host}:{port}/ with {workers} process(es)"
                   f"{' and the worker' if with_worker else ''}")
        return
    click.echo(f"serving {db_label(db)} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    server.run(db, host, port, workers, with_worker, worker_interval, trusted_proxy,
               log=lambda line: click.echo(line, err=True))


def db_label(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (scripts).")
@json_option
@handled
def passwd(user: str, password_stdin: bool, as_json: bool) -> None:
    """Set USER's password for the web workspace: your own, or anyone's as a PMO Administrator (--user). Asked
    twice, hidden; never taken on the command line. Without --user you act as USER. Ends USER's web sessions."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat the password")
        except click.Abort:  # Ctrl-C or Ctrl-D: click turned it into Abort
            raise PmoflowError(f"the password of {limits.shown(user)} was not changed: the prompt was "
                               "interrupted") from None
    result = app().acting_as(click.get_current_context().obj["user"] or user).set_password(user, password)
    if as_json:
        return emit_json(result)
    click.echo(f"password of {result['user']} set (by {result['set_by']})")


@main.group()
def token() -> None:
    """Personal API tokens for REST clients (Authorization: Bearer ...): made for the acting user (--user),
    acting with that user's roles, shown once and stored only as a hash."""


@token.command("create")
@click.argument("name")
@json_option
@handled
def token_create(name: str, as_json: bool) -> None:
    """Make a token named NAME (where it is used: "laptop", "reporting job") and show it, once."""
    result = app().create_token(name)
    if as_json:
        return emit_json(result)
    click.echo(result["token"])
    click.echo(f"token {result['id']} ('{result['name']}') of {result['user']}: copy it now, it is not shown again; "
               f"'pmoflow token revoke {result['id']}' ends it", err=True)


@token.command("list")
@click.option("--all", "all_users", is_flag=True, help="Every user's tokens (PMO Administrators).")
@json_option
@handled
def token_list(all_users: bool, as_json: bool) -> None:
    """Your tokens (never their secrets): id, name, when made, when revoked."""
    result = app().tokens(all_users)
    if as_json:
        return emit_json(result)
    table("API tokens", ["id", "name", "user", "created", "revoked"],
          [[t["id"], t["name"], t["user"], t["created_at"], t["revoked_at"] or ""] for t in result])


@token.command("revoke")
@click.argument("token_id")
@json_option
@handled
def token_revoke(token_id: str, as_json: bool) -> None:
    """Revoke token TOKEN_ID (yours, or anyone's as a PMO Administrator): refused from then on."""
    result = app().revoke_token(token_id)
    if as_json:
        return emit_json(result)
    click.echo(f"token {result['id']} of {result['user']} revoked at {result['revoked_at']}")
