"""The notifications listing: one's own inbox channel (which delivers what it shows), or an auditor's view."""

from __future__ import annotations

from typing import Any

from pmoflow.engine import clock
from pmoflow.engine import notifications as outbox
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.services.context import Context, instance_row


def listing(ctx: Context, user: str | None = None, undelivered_only: bool = False,
            instance: int | str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
    """The notification outbox, oldest first: the acting user's own, `user`'s, or everyone's (`all_users`);
    only of one `instance` and only the undelivered ones when asked.

    Inbox delivery: listing your own (no `user`, or `user` is you, and not `all_users`) delivers what it
    shows: each row not delivered before gets `delivered_at` now and `new` true. Listing someone else's or
    everyone's (an auditor) changes nothing. An unknown user or instance is an error, not an empty list.
    """
    if user is not None and all_users:
        raise InvalidInput("give a user or all users, not both")
    ctx.db.check_schema()
    with ctx.tx() as session:
        own = not all_users and user in (None, ctx.user)
        recipient = ctx.actor(session).name if own else user
        if recipient is not None and not outbox.is_recipient(session, recipient):
            raise NotFound(f"unknown user '{recipient}': not in the organisation file, and no notification "
                           "was ever queued for them")
        instance_id = instance_row(session, instance).id if instance is not None else None
        rows = outbox.listing(session, recipient, instance_id, undelivered_only)
        now = clock.db_now()
        delivered = outbox.deliver(session, rows, recipient, now) if own and recipient is not None else set()
        return [outbox.view(r, now if r.id in delivered else None) for r in rows]


def unread_count(ctx: Context) -> int:
    """How many of the acting user's notifications are not delivered yet (what the web inbox shows beside its
    link to them); counting delivers nothing."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        return outbox.undelivered_count(session, ctx.actor(session).name)
