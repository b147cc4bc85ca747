"""`pmoflow` commands for auditors: audit verify, events, archive and checkpoint, and reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from pmoflow.engine.cli import (
    COUNT,
    app,
    emit_json,
    fail,
    handled,
    json_option,
    main,
    table,
)
from pmoflow.engine.errors import InvalidInput

if TYPE_CHECKING:  # rich.progress is imported only when a bar is drawn
    pass



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
        assert process_id is not None, "exactly one of the instance and --process is given (checked above)"
        result = app().process_report(process_id, since=since, until=until, period=period, override=override)
    write_output(render(result, "json" if as_json else fmt), output)
