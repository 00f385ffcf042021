"""GET /api/events: the catch-up feed clients resume from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from huddle.access.deps import CurrentCaller, RoleCache
from huddle.access.topics import can_read_topic, readable_topics
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES, NotFound
from huddle.core.validation import clean_text
from huddle.events.schemas import EventPage
from huddle.events.service import read_events

router = APIRouter(prefix="/api", tags=["events"], responses=ERROR_RESPONSES)


@router.get("/events", response_model=EventPage)
async def list_events(
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    since: Annotated[int, Query(ge=0, le=2**62, description="Return events after this seq")] = 0,
    topic: Annotated[str | None, Query(max_length=100), AfterValidator(clean_text)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """Events after ``since`` on topics the caller may read (or one topic), in seq order."""
    if topic is not None:
        if not await can_read_topic(session, cache, caller.id, topic):
            raise NotFound("Unknown topic")
        topics = {topic}
    else:
        topics = await readable_topics(session, caller.id)
    items = await read_events(session, topics, since, limit)
    next_cursor = str(items[-1].id) if len(items) == limit else None
    return EventPage(items=items, next_cursor=next_cursor)
