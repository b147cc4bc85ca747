"""`pmoflow serve`: the web app on Uvicorn, with the worker loop beside it for a one-machine install, and the
demo organisation's passwords for `pmoflow demo --serve`."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import Database
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.services.context import ADMINISTRATOR
from pmoflow.engine.web import settings as web_settings

DEMO_PASSWORD = "{name}-demo-pass"  # the demo's passwords: known to everyone, for a demo database only


def prepare(db_url: str) -> str:
    """Check the database is ready and find (or create) the secret key, before any server process starts.
    Returns the key."""
    database = Database(db_url)
    try:
        database.check_schema()
    finally:
        database.dispose()
    return web_settings.secret_key(db_url)


def _tell_worker_processes(db_url: str) -> None:
    """Worker processes build their app from the environment (`app.app_from_env`): the same database and key."""
    os.environ["PMOFLOW_DB"] = db_url
    path = web_settings.key_path(db_url)
    if not os.environ.get(web_settings.KEY_ENV) and path is not None:
        os.environ[web_settings.KEY_FILE_ENV] = str(path)


def run(db_url: str, host: str, port: int, workers: int = 1, with_worker: bool = False,
        worker_interval: float = 5.0, trusted_proxy: str | None = None, log: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM): one process, or `workers` Uvicorn worker processes; with
    `with_worker`, the timer worker loop runs in a thread of this process meanwhile; with `trusted_proxy`, the
    user that proxy names in X-Remote-User is signed in (`Settings.trusted_proxy`)."""
    import uvicorn

    from pmoflow.engine.web.app import create_app

    key = prepare(db_url)
    if trusted_proxy:
        os.environ[web_settings.PROXY_ENV] = trusted_proxy  # what the app reads, in every server process
    stop = threading.Event()
    thread = start_worker(db_url, stop, worker_interval, log) if with_worker else None
    try:
        if workers == 1:
            uvicorn.run(create_app(db_url, secret_key=key), host=host, port=port, log_level="info")
        else:
            _tell_worker_processes(db_url)
            uvicorn.run("pmoflow.engine.web.app:app_from_env", factory=True, host=host, port=port,
                        workers=workers, log_level="info")
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)


def start_worker(db_url: str, stop: threading.Event, interval: float,
                 log: Callable[[str], None]) -> threading.Thread:
    """The worker loop (`pmoflow worker`) in a background thread, sharing nothing with the web app but the
    database: it fires due timers and timer start events every `interval` seconds until `stop` is set."""
    from pmoflow.engine import worker

    def loop() -> None:
        pmo = Pmoflow(db_url)
        try:
            worker.run(lambda: {**pmo.run_due(should_stop=stop.is_set), "mail": pmo.send_mail()}, stop=stop,
                       interval=interval, once=False,
                       on_pass=lambda result, _n, _s: _report(result, log), log=log)
        finally:
            pmo.close()

    thread = threading.Thread(target=loop, name="pmoflow-worker", daemon=True)
    thread.start()
    return thread


def _report(result: dict[str, Any], log: Callable[[str], None]) -> None:
    if result["fired"] or result["started"] or result["errors"]:
        log(f"worker: {result['now']}: fired timers of {len(result['fired'])} instance(s), started "
            f"{len(result['started'])}, {len(result['errors'])} went into error")


def demo_administrator() -> str:
    """A PMO Administrator of the installed library's organisation file: who (re-)initialises a demo database."""
    from pmoflow.engine import library, organisation

    people = organisation.load(library.default_organisation(library.installed())).people
    return next(p.name for p in people if ADMINISTRATOR in p.roles)  # init refuses a file without one


def demo_passwords(db_url: str) -> list[dict[str, Any]]:
    """Give every user of an initialised demo database the demo password `DEMO_PASSWORD` (set by one of its PMO
    Administrators): the people a newcomer signs in as."""
    pmo = Pmoflow(db_url)
    try:
        people = pmo.users()
        admins = [p["name"] for p in people if ADMINISTRATOR in p["roles"]]
        if not admins:
            raise InvalidInput(f"the demo organisation has no {ADMINISTRATOR} to set the passwords")
        admin = pmo.acting_as(admins[0])
        for person in people:
            admin.set_password(person["name"], DEMO_PASSWORD.format(name=person["name"]))
        return [{**p, "password": DEMO_PASSWORD.format(name=p["name"])} for p in people]
    finally:
        pmo.close()
