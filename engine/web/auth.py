"""Who is asking: a browser session (signed cookie), a personal API token (`Authorization: Bearer`), or, when
configured, a trusted reverse proxy's header. Every route needs one of them except those marked `public`.

Sessions: the cookie holds a random session id signed with the server's secret key (itsdangerous); the database
keeps only its SHA-256 (`identity`), so sign-out ends it on every server. A visitor who is not signed in gets a
pre-session id (never stored) that the sign-in form's CSRF token is bound to; signing in issues a new id, so an
id planted in a browser before sign-in is never a signed-in one. Cookies: HttpOnly, SameSite=Lax, Secure over
https, a max age.

CSRF: every state-changing request made with the session cookie carries the token bound to its session id, as the
form field `csrf_token` or the header `X-CSRF-Token`. Requests with a bearer token need none: a browser never
adds one by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, TimestampSigner
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import PermissionDenied, PmoflowError
from pmoflow.engine.services import identity
from pmoflow.engine.web.settings import Settings

COOKIE = "pmoflow_session"
ANONYMOUS = "anon."  # the prefix of a pre-sign-in id
CSRF_FIELD, CSRF_HEADER = "csrf_token", "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
PUBLIC = "__pmoflow_public__"


def public(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route as answering without sign-in (only sign-in itself, health and the static files)."""
    setattr(endpoint, PUBLIC, True)
    return endpoint


class NotSignedIn(identity.SignInRefused):
    """No session, token or trusted header, or one that is unknown, expired or revoked."""


class CsrfRefused(PermissionDenied):
    """A state-changing request with the session cookie but without its CSRF token."""


class Sessions:
    """Signing and reading the session cookie, and the CSRF tokens bound to session ids."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signer = TimestampSigner(settings.secret_key, salt="pmoflow.session")
        self._csrf_key = hashlib.sha256(b"pmoflow.csrf\0" + settings.secret_key.encode()).digest()
        self.max_age = int(settings.session_max_age.total_seconds())

    def read(self, request: Request) -> str | None:
        """The session id the request's cookie carries, if its signature holds and it is not too old."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            return self._signer.unsign(value, max_age=self.max_age).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def set(self, request: Request, response: Response, session_id: str) -> None:
        secure = self.settings.secure_cookies
        secure = request.url.scheme == "https" if secure is None else secure
        response.set_cookie(COOKIE, self._signer.sign(session_id).decode(), max_age=self.max_age, path="/",
                            httponly=True, samesite="lax", secure=secure)

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, token: str | None) -> bool:
        return isinstance(token, str) and hmac.compare_digest(self.csrf_token(session_id), token)


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions


def installation(request: Request) -> Pmoflow:
    """The app's shared installation (no user): what sign-in and token checks run against."""
    return request.app.state.pmoflow


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(request: Request) -> None:
    """The app-wide dependency: find who is asking (`request.state.user`, `.via`, `.session_id`) or refuse with
    401; refuse a state-changing session request without its CSRF token with 403. Public routes pass."""
    request.state.user = request.state.via = request.state.session_id = None
    if getattr(request.scope.get("endpoint"), PUBLIC, False):
        return
    user, via = await _who(request)
    if user is None:
        raise NotSignedIn("sign in first: a session, or an API token as 'Authorization: Bearer <token>'")
    request.state.user, request.state.via = user, via
    if via == "session" and request.method not in SAFE_METHODS:
        token: str | UploadFile | None = request.headers.get(CSRF_HEADER)
        if token is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
            token = (await request.form()).get(CSRF_FIELD)
        if not sessions(request).csrf_ok(request.state.session_id, token if isinstance(token, str) else None):
            raise CsrfRefused("the request has no valid CSRF token: reload the page and submit it again (API "
                              f"clients signed in by cookie send it as the {CSRF_HEADER} header)")


async def _who(request: Request) -> tuple[str | None, str | None]:
    pmo = installation(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return None, None
        return await run_in_threadpool(pmo.token_user, credential.strip()), "token"
    settings: Settings = request.app.state.settings
    proxied = request.headers.get(settings.trusted_user_header)
    if settings.trusted_proxy and proxied and client_address(request) == settings.trusted_proxy:
        return (proxied if await run_in_threadpool(_known, pmo, proxied) else None), "proxy"
    session_id = sessions(request).read(request)
    if session_id is None or session_id.startswith(ANONYMOUS):
        return None, None
    request.state.session_id = session_id
    return await run_in_threadpool(pmo.session_user, session_id), "session"


def _known(pmo: Pmoflow, name: str) -> bool:
    try:
        pmo.acting_as(name).whoami()
    except PmoflowError:
        return False
    return True


def current_user(request: Request) -> str:
    """The signed-in user's name (set by `authenticate`)."""
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotSignedIn("sign in first")
    return user


User = Annotated[str, Depends(current_user)]


def acting(request: Request, user: User) -> Pmoflow:
    """The per-request façade: the installation as the signed-in user, sharing the app's database."""
    return installation(request).acting_as(user)


Acting = Annotated[Pmoflow, Depends(acting)]  # a route's parameter `pmo: Acting` acts as the signed-in user


def csrf_for(request: Request) -> str | None:
    """The CSRF token for forms on the page being rendered (bound to the session or the pre-session)."""
    session_id = getattr(request.state, "session_id", None) or getattr(request.state, "pre_session", None)
    return sessions(request).csrf_token(session_id) if session_id else None


# -- sign-in and sign-out ----------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never //elsewhere or a full URL)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\n" not in target:
        return target
    return "/"


def _sign_in_page(request: Request, status: int = 200, error: str | None = None, name: str = "",
                  next_path: str = "/", headers: dict[str, str] | None = None) -> Response:
    from pmoflow.engine.web.templates import page

    current = sessions(request).read(request)
    pre_session = current if current and current.startswith(ANONYMOUS) else ANONYMOUS + secrets.token_urlsafe(24)
    request.state.pre_session = pre_session
    response = page(request, "sign_in.html", {"error": error, "name": name, "next": _safe_next(next_path)},
                    status_code=status, headers=headers)
    if pre_session != current:
        sessions(request).set(request, response, pre_session)
    return response


def refused_response(request: Request, exc: PmoflowError) -> Response:
    """401 for a request without valid credentials: a problem for API clients, the sign-in form for browsers."""
    from pmoflow.engine.web.problems import body, problem_response, wants_html

    if wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _sign_in_page(request, 401, next_path=target if request.method == "GET" else "/")
    return problem_response(request, body(exc), {"WWW-Authenticate": 'Bearer realm="pmoflow"'})


@router.get("/sign-in")
@public
def sign_in_form(request: Request, next: str = "/") -> Response:
    return _sign_in_page(request, next_path=next)


@router.post("/sign-in")
@public
def sign_in(request: Request, name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
            csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    """Check the form's CSRF token (bound to the pre-session), the name and the password; on success a new
    session id in a new cookie, and a redirect to where the user was going."""
    pre_session = sessions(request).read(request)
    if pre_session is None or not sessions(request).csrf_ok(pre_session, csrf_token):
        return _sign_in_page(request, 403, "The form expired: sign in again.", name, next)
    settings: Settings = request.app.state.settings
    try:
        result = installation(request).sign_in(name, password, client_address(request), settings.session_max_age)
    except identity.Throttled as exc:
        return _sign_in_page(request, 429, exc.message, name, next, {"Retry-After": str(exc.retry_after)})
    except identity.SignInRefused as exc:
        return _sign_in_page(request, 401, f"Sign-in refused: {exc.message}.", name, next)
    response = RedirectResponse(_safe_next(next), status_code=303)
    sessions(request).set(request, response, result["session"])
    return response


@router.post("/sign-out")
def sign_out(request: Request, user: User) -> Response:
    """End the session (its row goes, so a copy of the cookie is worthless too) and clear the cookie."""
    if request.state.session_id:
        installation(request).sign_out(request.state.session_id)
    response = RedirectResponse(f"/sign-in?signed_out={quote(user)}", status_code=303)
    sessions(request).clear(response)
    return response
