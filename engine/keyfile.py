"""Secret key files kept beside (or away from) the database: the audit key, the web server's signing key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pmoflow.engine.errors import InvalidInput


def ensure_key_file(path: Path, what: str) -> bool:
    """Create `path` holding a new random key, readable by its owner only (0600), unless it exists; True when this
    call created it. Two processes racing to create it end up sharing the one that won."""
    if path.exists():
        return False
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot create {what} {path}: folder {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # another process made it meanwhile: use that one
    except OSError as exc:
        raise InvalidInput(f"cannot create {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True
