"""Recording events in the transaction of a change, and reading them back by cursor."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.core.db import after_commit
from huddle.events.catalog import CATALOG
from huddle.events.models import Event
from huddle.events.schemas import Actor, Envelope

_WAKE_KEY = "huddle.events.wake"


async def record(
    session: AsyncSession,
    event_type: str,
    *,
    topic: str,
    actor: Actor,
    data: BaseModel,
    workspace_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
) -> Event:
    """Add one event to the session's transaction: it exists if and only if the change does.

    The dispatcher gives it a ``seq`` and publishes it after the commit.
    """
    schema = CATALOG.get(event_type)
    if schema is None:
        raise ValueError(f"unknown event type {event_type!r}: add it to events/catalog.py")
    if not isinstance(data, schema):
        raise TypeError(f"{event_type} carries {schema.__name__}, not {type(data).__name__}")
    event = Event(
        type=event_type,
        topic=topic,
        workspace_id=workspace_id,
        subject_id=subject_id,
        actor=actor.model_dump(mode="json", exclude_none=True),
        data=data.model_dump(mode="json"),
    )
    session.add(event)
    wake = session.info.get("huddle.wake_dispatcher")
    if wake is not None:
        after_commit(session, wake, key=_WAKE_KEY)
    return event


async def latest_seq(session: AsyncSession, *, published: bool = False) -> int:
    """The highest ``seq`` numbered so far (or, with ``published``, handed to the bus)."""
    query = select(func.coalesce(func.max(Event.seq), 0))
    if published:
        query = query.where(Event.published_at.is_not(None))
    return int(await session.scalar(query) or 0)


def envelope(event: Event) -> Envelope:
    assert event.seq is not None
    return Envelope(
        id=event.seq,
        type=event.type,
        topic=event.topic,
        workspace_id=event.workspace_id,
        subject_id=event.subject_id,
        actor=Actor.model_validate(event.actor),
        data=event.data,
        created_at=event.created_at,
    )


async def read_events(
    session: AsyncSession,
    topics: Collection[str],
    since: int,
    limit: int,
    until: int | None = None,
) -> list[Envelope]:
    """Published events on ``topics`` after ``since`` (up to ``until``), in seq order."""
    if not topics:
        return []
    query = select(Event).where(Event.seq > since, Event.topic.in_(list(topics)))
    if until is not None:
        query = query.where(Event.seq <= until)
    rows = await session.scalars(query.order_by(Event.seq).limit(limit))
    return [envelope(row) for row in rows]


async def events_about(
    session: AsyncSession, subject_id: uuid.UUID, since: int, limit: int
) -> list[Envelope]:
    """Published events about one resource after seq ``since``, oldest first."""
    rows = await session.scalars(
        select(Event)
        .where(Event.subject_id == subject_id, Event.seq > since)
        .order_by(Event.seq)
        .limit(limit)
    )
    return [envelope(row) for row in rows]
