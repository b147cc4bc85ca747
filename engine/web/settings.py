"""The web server's settings, and its secret key: what signs session cookies and CSRF tokens.

The key, first found of: `PMOFLOW_SECRET_KEY` (the key itself), `PMOFLOW_SECRET_KEY_FILE` (a file path; created
with 64 random hex digits and mode 0600 when it does not exist), and for a SQLite database the file beside it,
`<database>.secret-key`, created the same way. Several servers of one PostgreSQL database must share one key:
give them the same `PMOFLOW_SECRET_KEY_FILE`. Changing the key signs everybody out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from pmoflow.engine.database import resolve_url
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.keyfile import ensure_key_file

KEY_ENV, KEY_FILE_ENV = "PMOFLOW_SECRET_KEY", "PMOFLOW_SECRET_KEY_FILE"
PROXY_ENV = "PMOFLOW_TRUSTED_PROXY"
KEY_SUFFIX = ".secret-key"
MIN_KEY = 32


@dataclass(frozen=True)
class Settings:
    """What a deployment may change. `secure_cookies`: None marks cookies Secure when the request came over
    https (behind a proxy, run uvicorn with --proxy-headers); `trusted_proxy`: the address of a reverse proxy
    whose `trusted_user_header` names the signed-in user (single sign-on); off when None."""

    secret_key: str
    session_max_age: timedelta = timedelta(hours=8)
    secure_cookies: bool | None = None
    trusted_proxy: str | None = None
    trusted_user_header: str = "X-Remote-User"
    max_upload_bytes: int = 5 * 1024 * 1024

    def __post_init__(self) -> None:
        if len(self.secret_key) < MIN_KEY:
            raise InvalidInput(f"the web secret key is too short: use at least {MIN_KEY} characters")

    @classmethod
    def from_environment(cls, secret_key: str) -> Settings:
        """The defaults, with single sign-on when `PMOFLOW_TRUSTED_PROXY` names the proxy's address."""
        return cls(secret_key=secret_key, trusted_proxy=os.environ.get(PROXY_ENV, "").strip() or None)

    def __repr__(self) -> str:  # the key never shows in a log or a traceback
        return f"Settings(session_max_age={self.session_max_age}, trusted_proxy={self.trusted_proxy!r})"


def key_path(db_url: str | None) -> Path | None:
    """Where the key file is: `PMOFLOW_SECRET_KEY_FILE`, else beside a SQLite database file, else None."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    url = make_url(resolve_url(db_url))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + KEY_SUFFIX)


def secret_key(db_url: str | None) -> str:
    """The server's secret key (see the module's docstring), creating its file on first use."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].strip()
    path = key_path(db_url)
    if path is None:
        raise InvalidInput(f"set {KEY_FILE_ENV} (a file every server of this database can read; it is created "
                           f"when missing) or {KEY_ENV}: a PostgreSQL database has no folder to keep the web "
                           "server's secret key beside")
    ensure_key_file(path, "the web secret key")
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the web secret key {path}: {exc}") from None
