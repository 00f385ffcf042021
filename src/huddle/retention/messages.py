"""Chat messages past the limit, with everything that hangs off them.

A message goes with its reactions, mentions, semantic-index chunks and the events about
it (``subject_id``: its created/updated/deleted events, reactions and mentions), even
those newer than the limit: they would otherwise keep its text or its traces.

Threads: ``messages.parent_id`` cascades, so deleting an expired thread root would take
its newer replies with it. An expired root that still has replies becomes a tombstone
instead (content emptied, ``deleted_at`` set: what a user's delete leaves) and is deleted
once its last reply has expired and gone. Replies always go first: a root is only ever
deleted when nothing points at it.

Read markers (per channel and user) that point at a message being deleted move back to
the newest message of the channel still there before it, or to none. Unread is "a
greater id than the marker" (ids are time-ordered), and every message older than an
expired one has expired too, so the marker then counts exactly the messages it counted
before: nothing becomes unread or read by the move.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Row, and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from huddle.chat.models import Channel, Message, MessageMention, Reaction, ReadMarker
from huddle.events.models import Event
from huddle.retention.history import delete_events, drop_chunks
from huddle.retention.report import Counts, Scope, Step
from huddle.search.models import SourceKind


def _expired(scope: Scope) -> list[ColumnElement[bool]]:
    in_workspace = select(Channel.id).where(Channel.workspace_id == scope.workspace_id)
    return [Message.channel_id.in_(in_workspace), Message.created_at < scope.cutoff]


def _has_replies() -> ColumnElement[bool]:
    reply = aliased(Message)
    return exists().where(reply.parent_id == Message.id)


async def purge_messages(step: Step, scope: Scope, counts: Counts) -> None:
    """Delete the workspace's expired messages; tombstone expired roots with replies left."""
    await _delete_expired(step, scope, counts)
    await _tombstone_roots(step, scope, counts)


async def _delete_expired(step: Step, scope: Scope, counts: Counts) -> None:
    deletable = or_(Message.parent_id.is_not(None), ~_has_replies())
    query = (
        select(Message.id, Message.parent_id)
        .where(*_expired(scope), deletable)
        .order_by(Message.id)
        .limit(step.batch)
        # PostgreSQL: a root a reply is being posted to right now (the poster holds its
        # row lock) waits for the next pass; one locked here makes that reply wait and
        # then find the thread gone.
        .with_for_update(skip_locked=True, of=Message)
    )
    # Not "stop when a step finds fewer than the batch": deleting a thread's last
    # replies makes its root deletable, so look again until nothing is left.
    while not step.stopping():
        async with step.db.write_session() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return
            await _delete(session, scope, rows, counts)
            await session.commit()


async def _delete(
    session: AsyncSession,
    scope: Scope,
    rows: Sequence[Row[uuid.UUID, uuid.UUID | None]],
    counts: Counts,
) -> None:
    ids = [row.id for row in rows]
    await _strip(session, scope, ids, counts)
    counts.read_markers += await _move_markers(session, ids)
    gone = await session.execute(
        delete(Message).where(Message.id.in_(ids)).execution_options(synchronize_session=False)
    )
    counts.messages += gone.rowcount  # type: ignore[attr-defined]
    parents = {row.parent_id for row in rows if row.parent_id is not None} - set(ids)
    if parents:
        await _recount_replies(session, parents)


async def _strip(session: AsyncSession, scope: Scope, ids: list[uuid.UUID], counts: Counts) -> None:
    """What goes with a message, whether it is deleted or becomes a tombstone."""
    reactions = await session.execute(
        delete(Reaction)
        .where(Reaction.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    counts.reactions += reactions.rowcount  # type: ignore[attr-defined]
    mentions = await session.execute(
        delete(MessageMention)
        .where(MessageMention.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    counts.mentions += mentions.rowcount  # type: ignore[attr-defined]
    await drop_chunks(session, scope.workspace_id, SourceKind.message, ids, counts)
    await delete_events(session, scope.workspace_id, Event.subject_id.in_(ids), counts)


async def _move_markers(session: AsyncSession, ids: list[uuid.UUID]) -> int:
    older = aliased(Message)
    before = (
        select(older.id)
        .where(
            older.channel_id == ReadMarker.channel_id,
            older.id < ReadMarker.last_read_message_id,
            older.id.not_in(ids),
        )
        .order_by(older.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    moved = await session.execute(
        update(ReadMarker)
        .where(ReadMarker.last_read_message_id.in_(ids))
        .values(last_read_message_id=before)
        .execution_options(synchronize_session=False)
    )
    return int(moved.rowcount)  # type: ignore[attr-defined]


async def _recount_replies(session: AsyncSession, parents: set[uuid.UUID]) -> None:
    """Roots that lost replies here: the count and last reply time of those left (as
    a user's delete of a reply keeps them)."""
    reply = aliased(Message)
    live = and_(reply.parent_id == Message.id, reply.deleted_at.is_(None))
    await session.execute(
        update(Message)
        .where(Message.id.in_(parents))
        .values(
            reply_count=select(func.count()).select_from(reply).where(live).scalar_subquery(),
            last_reply_at=select(func.max(reply.created_at)).where(live).scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )


async def _tombstone_roots(step: Step, scope: Scope, counts: Counts) -> None:
    query = (
        select(Message.id)
        .where(
            *_expired(scope),
            Message.parent_id.is_(None),
            Message.deleted_at.is_(None),
            _has_replies(),
        )
        .order_by(Message.id)
        .limit(step.batch)
        .with_for_update(skip_locked=True, of=Message)
    )
    while not step.stopping():
        async with step.db.write_session() as session:
            ids = list(await session.scalars(query))
            if not ids:
                return
            await _strip(session, scope, ids, counts)
            emptied = await session.execute(
                update(Message)
                .where(Message.id.in_(ids), Message.deleted_at.is_(None))
                .values(content="", deleted_at=step.now)
                .execution_options(synchronize_session=False)
            )
            counts.tombstones += emptied.rowcount  # type: ignore[attr-defined]
            await session.commit()
        if len(ids) < step.batch:
            return
