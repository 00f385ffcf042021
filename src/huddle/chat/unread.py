"""Read markers, and unread / mention counts for many channels in two queries."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from huddle.access.channels import ChannelAccess
from huddle.access.deps import Caller
from huddle.chat.models import Message, MessageMention, ReadMarker
from huddle.chat.schemas import ReadState
from huddle.core.errors import ValidationFailed
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record


def _after_marker(
    user_id: uuid.UUID, message_id: InstrumentedAttribute[uuid.UUID]
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Join condition and filter: messages after the user's read marker (all, if none).

    Message ids are UUIDv7, so "after" is simply a greater id.
    """
    join = and_(ReadMarker.channel_id == Message.channel_id, ReadMarker.user_id == user_id)
    after = or_(
        ReadMarker.last_read_message_id.is_(None), message_id > ReadMarker.last_read_message_id
    )
    return join, after


async def unread_counts(
    session: AsyncSession, user_id: uuid.UUID, channel_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int, uuid.UUID | None]]:
    """Per channel: (unread top-level messages by others, unread mentions, marker)."""
    result: dict[uuid.UUID, tuple[int, int, uuid.UUID | None]] = {}
    if not channel_ids:
        return result
    join, after = _after_marker(user_id, Message.id)
    unread = await session.execute(
        select(Message.channel_id, func.count())
        .select_from(Message)
        .outerjoin(ReadMarker, join)
        .where(
            Message.channel_id.in_(channel_ids),
            Message.parent_id.is_(None),
            Message.deleted_at.is_(None),
            or_(Message.author_id.is_(None), Message.author_id != user_id),
            after,
        )
        .group_by(Message.channel_id)
    )
    counts = {cid: int(n) for cid, n in unread}
    mentions = await session.execute(
        select(MessageMention.channel_id, func.count())
        .join(Message, Message.id == MessageMention.message_id)
        .outerjoin(ReadMarker, join)
        .where(
            MessageMention.user_id == user_id,
            MessageMention.channel_id.in_(channel_ids),
            Message.deleted_at.is_(None),
            after,
        )
        .group_by(MessageMention.channel_id)
    )
    mention_counts = {cid: int(n) for cid, n in mentions}
    marker_rows = await session.execute(
        select(ReadMarker.channel_id, ReadMarker.last_read_message_id).where(
            ReadMarker.user_id == user_id, ReadMarker.channel_id.in_(channel_ids)
        )
    )
    markers = {row[0]: row[1] for row in marker_rows}
    for channel_id in channel_ids:
        result[channel_id] = (
            counts.get(channel_id, 0),
            mention_counts.get(channel_id, 0),
            markers.get(channel_id),
        )
    return result


async def mark_read(
    session: AsyncSession, caller: Caller, access: ChannelAccess, message_id: uuid.UUID
) -> ReadState:
    """Move the caller's read marker to ``message_id`` (backwards too: "unread from
    here"), and tell the caller's other devices with a ``channel.read`` event."""
    access.require_read()
    channel = access.channel
    found = await session.scalar(
        select(Message.id).where(Message.id == message_id, Message.channel_id == channel.id)
    )
    if found is None:
        raise ValidationFailed(
            "No such message in this channel",
            details=[{"loc": ["body", "message_id"], "msg": "not a message of this channel"}],
        )
    marker = await session.get(ReadMarker, (channel.id, caller.id), with_for_update=True)
    if marker is None:
        try:
            async with session.begin_nested():
                marker = ReadMarker(channel_id=channel.id, user_id=caller.id, updated_at=utcnow())
                session.add(marker)
                await session.flush()
        except IntegrityError:  # the caller's other device created it just now
            marker = await session.get(
                ReadMarker, (channel.id, caller.id), with_for_update=True, populate_existing=True
            )
            assert marker is not None
    marker.last_read_message_id = message_id
    marker.updated_at = utcnow()
    await session.flush()
    unread, mentions, _ = (await unread_counts(session, caller.id, [channel.id]))[channel.id]
    state = ReadState(
        channel_id=channel.id,
        last_read_message_id=message_id,
        unread_count=unread,
        mention_count=mentions,
    )
    await record(
        session,
        "channel.read",
        topic=topics.user(caller.id),
        actor=caller.actor,
        data=state,
        workspace_id=channel.workspace_id,
        subject_id=channel.id,
    )
    return state
