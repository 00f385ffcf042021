"""Schemas of documents, their versions, and files."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from huddle.core.validation import StrictModel, clean_text

#: The longest document text accepted (characters).
MAX_CONTENT = 1_000_000

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    AfterValidator(clean_text),
]
Content = Annotated[str, Field(max_length=MAX_CONTENT), AfterValidator(clean_text)]


class DocumentCreate(StrictModel):
    title: Title
    content: Content = ""
    channel_id: uuid.UUID | None = Field(
        default=None, description="Pin the document to a channel of the project (its page)."
    )


class DocumentSave(StrictModel):
    """A save: the whole new title and text, and the version they were edited from."""

    title: Title
    content: Content
    base_version: int = Field(
        ge=1,
        strict=True,
        description="The version this edit started from; a stale one is 409 with the "
        "current version and content.",
    )
    channel_id: uuid.UUID | None = Field(
        default=None, description="Pin to a channel, or null to unpin (omitted: unchanged)."
    )


class DocumentSummary(BaseModel):
    """A document in a list (without its text)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID
    channel_id: uuid.UUID | None
    title: str
    version: int
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None = Field(
        description="When the current version became searchable (null: not yet)."
    )


class DocumentRead(DocumentSummary):
    content: str


class DocumentVersionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    title: str
    author_id: uuid.UUID | None
    created_at: datetime
    restored_from: int | None = Field(description="The version this save restored, if any.")


class DocumentVersionRead(DocumentVersionSummary):
    document_id: uuid.UUID
    content: str


class FileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID
    channel_id: uuid.UUID | None
    filename: str
    content_type: str
    size: int = Field(description="Bytes.")
    sha256: str
    uploaded_by: uuid.UUID | None
    created_at: datetime
    indexed_at: datetime | None = Field(
        description="When its text became searchable (null: not yet)."
    )
