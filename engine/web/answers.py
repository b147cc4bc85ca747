"""How the REST API answers: JSON as `--json` prints it, pages of a listing with a `Link` to the next, ETags
from an instance's lock version, and `If-Match` turned into a façade that acts only on what the client read.

ETags: an instance's (and each of its tasks') is `"<instance id>.<lock version>"`. The lock version moves with
every change of the instance (a task claimed, completed, an administrative act), so a client that read a task
and sends its ETag back as `If-Match` acts only if nobody changed the instance meanwhile; otherwise 412 and
nothing changed. The check runs inside the command's own transaction (`Context.expecting`), not before it.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.web.auth import Acting

_TAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*(?:,|$)')


class JSON(JSONResponse):
    """JSON as the CLI's `--json` writes it (`default=str`), compact, UTF-8."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, ensure_ascii=False, separators=(",", ":")).encode()


def ok(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSON:
    return JSON(content, status_code=status, headers=headers)


def etag(instance_id: int, lock_version: int) -> str:
    return f'"{instance_id}.{lock_version}"'


def if_match_versions(header: str | None) -> frozenset[tuple[int, int]] | None:
    """The (instance id, lock version) pairs an `If-Match` header names; None when absent or `*` (no
    condition). A tag that is not one of ours matches nothing, so a header of only such tags refuses every
    change (412). Weak tags (`W/"..."`) are compared by value: a proxy that compresses may weaken ours."""
    if header is None or header.strip() == "*":
        return None
    pairs: set[tuple[int, int]] = set()
    for value in _TAG.findall(header):
        instance_id, dot, version = value.partition(".")
        if dot and instance_id.isdigit() and version.isdigit():
            pairs.add((int(instance_id), int(version)))
    return frozenset(pairs)


IF_MATCH_DOC = ("The ETag you read (GET of the instance or task). The act is done only if the instance is still "
                "at that version; otherwise 412 and nothing changes. Without it, the act is unconditional.")


def expecting(pmo: Acting, if_match: Annotated[str | None, Header(alias="If-Match",
                                                                   description=IF_MATCH_DOC)] = None) -> Pmoflow:
    """The signed-in user's façade, bound to the versions `If-Match` names (or unconditional without one)."""
    versions = if_match_versions(if_match)
    return pmo if versions is None else pmo.expecting(versions)


Expecting = Annotated[Pmoflow, Depends(expecting)]  # a state-changing route's `pmo: Expecting`


def paged(request: Request, items: list[dict[str, Any]], limit: int, key: str) -> JSON:
    """A page of a listing (the same list `--json` prints); when it is full, `Link: <...>; rel="next"` gives
    the next page's URL: the same query with `after` set to the last item's `key`."""
    headers = {}
    if len(items) == limit and items:
        following = request.url.include_query_params(after=items[-1][key])
        headers["Link"] = f'<{following}>; rel="next"'
    return ok(items, headers=headers)


LIMIT_DOC = "At most this many (a page); the answer's `Link: <...>; rel=\"next\"` header gives the next page."
AFTER_DOC = ("Keyset cursor: only those with an id above this one (the last id of the previous page). Stable "
             "while new ones arrive, and as cheap at any depth as on the first page.")
