"""`pmoflow` commands for PMO Administrators and the worker: retry, skip, suspend, resume, terminate, data edits,
version diff and migration, the worker and its schedules."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from pmoflow.engine.cli import (
    COUNT,
    app,
    emit_json,
    fail,
    handled,
    json_option,
    main,
    parse_data,
    parse_time,
    report_run,
    table,
    with_data,
)

if TYPE_CHECKING:  # rich.progress is imported only when a bar is drawn
    from rich.progress import Progress, TaskID



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

    known = not app().user  # a user named must exist: checked in the first pass, where a dropped connection is retried

    def one_pass() -> dict[str, Any]:
        nonlocal known
        if not known:
            app().whoami()
            known = True
        # due timers, then the e-mail outbox (a no-op unless PMOFLOW_SMTP_URL is set)
        return {**app().run_due(now, should_stop=stop.is_set), "mail": app().send_mail()}

    worker_loop.run(one_pass, stop=stop, interval=interval, once=once,
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
        if as_json:
            return emit_json(result)
        return print_migration(result)
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
    changes = parse_data(values, None)
    assert changes is not None, "--set is required, and parse_data returns None only for no data"
    result = app().edit_data(instance, changes, reason)
    if as_json:
        return emit_json(result)
    click.echo(f"instance {result['instance_id']}: set {json.dumps(result['after'], default=str)} "
               f"(was {json.dumps(result['before'], default=str)}) at {', '.join(result['tasks'])}")
