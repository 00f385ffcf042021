"""Search results: one ranked list mixing kinds, told apart by ``kind``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

_SNIPPET = (
    "About 20 words around the match, HTML-escaped, with the matched words in "
    "`<mark>`…`</mark>`: safe to insert as HTML."
)


class _Hit(BaseModel):
    id: uuid.UUID
    title: str
    snippet: str = Field(description=_SNIPPET)
    score: float = Field(
        description="Relevance, higher is better; only comparable within one result list."
    )
    created_at: datetime


class MessageHit(_Hit):
    """A chat message (thread replies included)."""

    kind: Literal["message"] = "message"
    title: str = Field(description="The channel's name, or `Direct message` for a DM.")
    channel_id: uuid.UUID
    parent_id: uuid.UUID | None = Field(description="The thread's root for a reply.")
    author_id: uuid.UUID | None


class TaskHit(_Hit):
    """A task; its snippet comes from the title and the description."""

    kind: Literal["task"] = "task"
    title: str = Field(description="The task's title.")
    project_id: uuid.UUID
    status: str = Field(description="The key of the task's column.")


SearchHit = Annotated[MessageHit | TaskHit, Field(discriminator="kind")]


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
