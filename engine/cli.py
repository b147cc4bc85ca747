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
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pmoflow.engine import forms
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = 1, details: list[str] | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(code)


def handled(fn: Callable) -> Callable:
    """Turn engine errors into their exit codes and plain messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except PmoflowError as exc:
            if ctx.obj.get("debug"):
                raise
            fail(exc.message, exc.exit_code, exc.details)
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
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
        try:
            with open(data_file) as fh:
                data = fh.read()
        except OSError as exc:
            raise InvalidInput(f"cannot read {data_file}: {exc.strerror}") from exc
    if data is None:
        return None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("the data must be a JSON object, like {\"field\": \"value\"}")
    return value


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*["" if v is None else str(v) for v in row])
    out.print(grid)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
data_options = [
    click.option("--data", help="The data as a JSON object."),
    click.option("--data-file", type=click.Path(dir_okay=False), help="Read the JSON object from a file."),
]


def with_data(fn: Callable) -> Callable:
    for option in reversed(data_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="PMOFLOW_DB", help="Database URL (default sqlite:///pmoflow.db; env PMOFLOW_DB).")
@click.option("--user", envvar="PMOFLOW_USER", help="Act as this user (env PMOFLOW_USER).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, db: str | None, user: str | None, debug: bool) -> None:
    """Run a Project Management Office's processes as BPMN."""
    ctx.ensure_object(dict)
    ctx.obj.update(db=db, user=user, debug=debug)


@main.command()
@click.option("--org", type=click.Path(dir_okay=False), help="Organisation TOML file (default: the demo PMO).")
@json_option
@handled
def init(org: str | None, as_json: bool) -> None:
    """Create or upgrade the schema, load the organisation and deploy the bundled processes."""
    result = app().init(org)
    if as_json:
        return emit_json(result)
    click.echo(f"database ready: {result['database']}")
    click.echo(f"organisation: {result['users']} users from {result['organisation']}")
    for p in result["processes"]:
        state = "deployed" if p["created"] else "unchanged"
        click.echo(f"{p['process_id']} v{p['version']} {state}")


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
    """Check BPMN/DMN files without deploying them."""
    result = app().validate(list(paths))
    if as_json:
        return emit_json(result)
    for p in result:
        click.echo(f"ok: {p['process_id']} ({p['name']}): {', '.join(p['files'])}")


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
@click.option("--version", type=int, help="The version to draw (default: the newest).")
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
    print_tasks(result["tasks"], "Tasks")


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
            answer = click.prompt(label, default="", show_default=False, type=choice)
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
@json_option
@handled
def retry(instance: str, data: str | None, as_json: bool) -> None:
    """Re-run the failed task of an instance in error."""
    result = app().retry(instance, parse_data(data, None))
    report_run(result, as_json, f"instance {result['instance_id']} retried")


@main.command()
@click.option("--once", is_flag=True, help="Fire what is due now and exit.")
@click.option("--now", "now_text", help="Evaluate as of this ISO time (tests and dry runs).")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between polls when running on.")
@json_option
@handled
def worker(once: bool, now_text: str | None, interval: float, as_json: bool) -> None:
    """Fire due timers: once, or until SIGTERM or Ctrl-C (finishing the instance in hand)."""
    now = parse_time(now_text) if now_text is not None else None
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while True:
        result = app().run_due(now, should_stop=stop.is_set)
        if as_json:
            emit_json(result)
        elif result["fired"] or once:
            click.echo(f"{result['now']}: fired timers of {len(result['fired'])} instance(s) "
                       f"{result['fired']}; {len(result['errors'])} went into error")
        if once or stop.wait(interval):
            return


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--now: '{text}' is not an ISO time like 2027-01-31T09:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.group()
def audit() -> None:
    """The audit record: verify it has not been altered."""


@audit.command("verify")
@click.argument("instance", required=False)
@json_option
@handled
def audit_verify(instance: str | None, as_json: bool) -> None:
    """Re-compute the hash chains of every instance (or one) and report the first broken link of each."""
    result = app().verify(instance)
    if as_json:
        emit_json(result)
    elif result["ok"]:
        click.echo(f"ok: {result['checked_events']} events, every chain intact")
    if not result["ok"]:
        fail("the audit record was changed outside pmoflow", 1,
             [f"{f['stream']}: {f['problem']}" for f in result["findings"]])


@main.command()
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the demo database in this folder.")
@handled
def demo(keep: str | None) -> None:
    """Walk one project through initiation on a fresh embedded database, narrating each step."""
    from pmoflow.engine.demo import run_demo

    run_demo(out, keep)
