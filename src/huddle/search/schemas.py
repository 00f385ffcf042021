"""Search results: one ranked list mixing kinds, told apart by ``kind``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from huddle.core.validation import StrictModel, clean_text

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


class DocumentHit(_Hit):
    """A document; its snippet comes from the title or the text."""

    kind: Literal["document"] = "document"
    title: str = Field(description="The document's title.")
    project_id: uuid.UUID
    channel_id: uuid.UUID | None = Field(description="The channel it is pinned to, if any.")


class FileHit(_Hit):
    """An uploaded file; its snippet comes from the name or the extracted text."""

    kind: Literal["file"] = "file"
    title: str = Field(description="The file's name.")
    project_id: uuid.UUID
    channel_id: uuid.UUID | None = Field(description="The channel it is attached to, if any.")
    content_type: str


SearchHit = Annotated[MessageHit | TaskHit | DocumentHit | FileHit, Field(discriminator="kind")]


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


# --- semantic search (POST /api/ai/search) ----------------------------------------------------

Question = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(clean_text),
]


class AISearchRequest(StrictModel):
    query: Question = Field(description="A question or a description of what to find.")
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None = Field(
        default=None, description="Only this project's documents, files and channels."
    )
    channel_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=50,
        description="Only messages of these channels, and documents and files pinned or "
        "attached to them.",
    )
    limit: int = Field(default=10, ge=1, le=50, description="Sources to return (max 50).")


class AISource(BaseModel):
    kind: Literal["document", "file", "message"]
    id: uuid.UUID = Field(description="The document's, file's or message's id.")
    title: str = Field(
        description="A document's title, a file's name, a message's channel name "
        "(`Direct message` for a DM)."
    )
    snippet: str = Field(description="The passage that matched, plain text (≤ 300 chars).")
    score: float = Field(description="Cosine similarity to the query, higher is better.")
    project_id: uuid.UUID | None
    channel_id: uuid.UUID | None
    url: str = Field(
        description="Where the source is read: `/api/documents/{id}`, `/api/files/{id}` "
        "(its download is `/api/files/{id}/download`) or `/api/messages/{id}`."
    )


class AISearchAnswer(BaseModel):
    answer: str | None = Field(
        description="An answer written from the sources when an LLM is configured; null otherwise."
    )
    sources: list[AISource]
