"""The `pmoflow` command: a thin click layer over the Python API in `pmoflow.engine.api`.


Exit codes: 0 done; 1 error (bad input, not found, invalid form or BPMN, instance in error); 2 usage;
3 conflict; 4 permission denied. Errors go to stderr as `error: ...`, with a traceback only under --debug.
"""


from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pmoflow.engine import forms, limits
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)



def fail(message: str, code: int = 1, details: list[str] | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(code)



# Commands that need no database, or check the user themselves (the worker: inside its retried first pass).
NO_USER_CHECK = {"init", "validate", "test", "demo", "whoami", "worker"}



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
        refused = getattr(exc, "findings", None)
        if refused is None:
            raise
        findings = refused
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



# -- the auditor's commands: queries, reports, archives ---------------------------------------------------


# The commands of the other nouns register themselves on `main` when imported.
from pmoflow.engine.cli import admin, records, web  # noqa: E402, F401
