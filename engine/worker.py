"""The worker: pass after pass over due timers and timer start events, until told to stop.

A pass that meets a database failure that passes (a dropped or refused connection, a server restarting, a
deadlock, a lock held too long: `TransientDatabaseError`, `Conflict`) is tried again after a pause that doubles
from BACKOFF_FIRST up to BACKOFF_LIMIT seconds, with one line on stderr each time. Nothing is lost: each
instance fires in its own transaction, so what the pass committed stays and the next try picks up the rest.
A worker run `--once` gives up after ONCE_TRIES tries in a row and reports the error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pmoflow.engine.database import TransientDatabaseError
from pmoflow.engine.errors import Conflict

BACKOFF_FIRST = 0.5
BACKOFF_LIMIT = 30.0
ONCE_TRIES = 5
TRANSIENT = (TransientDatabaseError, Conflict)


def run(run_pass: Callable[[], dict[str, Any]], *, stop: threading.Event, interval: float, once: bool,
        on_pass: Callable[[dict[str, Any], int, float], None], log: Callable[[str], None]) -> None:
    """Call `run_pass` every `interval` seconds (once with `once`) until `stop` is set; `on_pass` gets each
    pass's result, its number and how long it took; `log` gets a line for each failed try."""
    passes, failures, delay = 0, 0, BACKOFF_FIRST
    while not stop.is_set():
        passes += 1
        started = time.monotonic()
        try:
            result = run_pass()
        except TRANSIENT as exc:
            failures += 1
            if once and failures >= ONCE_TRIES:
                raise
            log(f"{datetime.now(UTC).isoformat(timespec='seconds')}: worker pass {passes} failed "
                f"({failures} in a row), trying again in {delay:g} s: {exc.message}")
            if stop.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_LIMIT)
            continue
        failures, delay = 0, BACKOFF_FIRST
        on_pass(result, passes, time.monotonic() - started)
        if once or stop.wait(interval):
            return
