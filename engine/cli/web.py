"""`pmoflow` commands of the web workspace: serve, passwd, token, and the demo (optionally served)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from pmoflow.engine import limits
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.cli import (
    app,
    emit_json,
    handled,
    json_option,
    main,
    out,
    table,
)
from pmoflow.engine.errors import InvalidInput, PmoflowError

if TYPE_CHECKING:  # rich.progress is imported only when a bar is drawn
    pass



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
    walks = [library.demo for library in installed() if library.demo is not None]
    if not walks:
        raise InvalidInput("no installed process library has a demo")
    for demo in walks:
        demo(out, keep)



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
