"""The event log, webhook deliveries and semantic-index chunks under retention.

Events are the activity history: past the limit they go like the content they describe.
Two kinds of event are always kept, whatever their age:

* events not yet published (``published_at`` NULL): the outbox has still to hand them on;
* the event holding the highest ``seq`` in the whole log: the dispatcher numbers new events
  from it (and readers take it as the log's current position), so deleting it would hand
  out a ``seq`` a second time. It goes at the first pass after any newer event exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.events.models import Event, Webhook, WebhookDelivery
from huddle.retention.report import Counts, Step
from huddle.search.indexer import bump_generations
from huddle.search.models import Chunk, SourceKind


def _deletable() -> list[ColumnElement[bool]]:
    newest = select(func.max(Event.seq)).scalar_subquery()
    return [Event.published_at.is_not(None), Event.seq.is_not(None), Event.seq < newest]


async def delete_events(
    session: AsyncSession,
    workspace_id: uuid.UUID | None,
    condition: ColumnElement[bool],
    counts: Counts,
    limit: int | None = None,
) -> int:
    """Delete the published events matching ``condition`` (up to ``limit``) and their
    webhook deliveries; returns how many events went."""
    query = select(Event.id, Event.seq).where(condition, *_deletable()).order_by(Event.seq)
    rows = (await session.execute(query.limit(limit) if limit else query)).all()
    if not rows:
        return 0
    seqs = [row.seq for row in rows]
    if workspace_id is not None:  # webhooks belong to workspaces: nothing to do without one
        hooks = select(Webhook.id).where(Webhook.workspace_id == workspace_id)
        gone = await session.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.webhook_id.in_(hooks), WebhookDelivery.event_seq.in_(seqs))
            .execution_options(synchronize_session=False)
        )
        counts.webhook_deliveries += gone.rowcount  # type: ignore[attr-defined]
    await session.execute(
        delete(Event)
        .where(Event.id.in_([row.id for row in rows]))
        .execution_options(synchronize_session=False)
    )
    counts.events += len(rows)
    return len(rows)


async def purge_old_events(
    step: Step, workspace_id: uuid.UUID | None, cutoff: datetime, counts: Counts
) -> None:
    """Published events of a workspace (or, with None, of none) created before ``cutoff``."""
    where = (
        Event.workspace_id == workspace_id
        if workspace_id is not None
        else Event.workspace_id.is_(None)
    )
    condition = where & (Event.created_at < cutoff)
    while not step.stopping():
        async with step.db.write_session() as session:
            done = await delete_events(session, workspace_id, condition, counts, step.batch)
            await session.commit()
        if done < step.batch:
            return


async def drop_chunks(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    kind: SourceKind,
    source_ids: Sequence[uuid.UUID],
    counts: Counts,
) -> None:
    """Delete the index chunks of these sources and, when there were some, bump the
    workspace's index generation in the same transaction (as the indexer does), so
    in-process vector indexes drop them at their next search."""
    gone = await session.execute(
        delete(Chunk)
        .where(Chunk.source_kind == kind, Chunk.source_id.in_(source_ids))
        .execution_options(synchronize_session=False)
    )
    if not gone.rowcount:  # type: ignore[attr-defined]
        return
    counts.chunks += gone.rowcount  # type: ignore[attr-defined]
    await bump_generations(session, {workspace_id})
