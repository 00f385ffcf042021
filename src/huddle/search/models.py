"""The semantic index: chunks of documents, files and messages with their embeddings."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedText
from huddle.core.models import Base, IdMixin
from huddle.core.time import utcnow


class SourceKind(StrEnum):
    document = "document"
    file = "file"
    message = "message"


class Chunk(IdMixin, Base):
    """A passage of a source, embedded.

    ``embedding`` holds the vector as little-endian float32 bytes on every database (the
    embedded index reads it). On PostgreSQL with pgvector the migration adds the column
    ``embedding_vec vector(384)`` with an HNSW index, which the model does not map: the
    vector store writes and queries it (see :mod:`huddle.search.vectors`).
    """

    __tablename__ = "chunks"
    __table_args__ = (
        Index("ix_chunks_source", "source_kind", "source_id"),
        Index("ix_chunks_workspace_id", "workspace_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE")
    )
    source_kind: Mapped[SourceKind] = mapped_column(
        Enum(SourceKind, native_enum=False, length=16, validate_strings=True)
    )
    source_id: Mapped[uuid.UUID]
    ordinal: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str | None] = mapped_column(EncryptedText)
    text: Mapped[str] = mapped_column(EncryptedText)
    # sha256 of what was embedded for the whole source: unchanged text is not re-embedded.
    source_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(100))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IndexGeneration(Base):
    """Bumped in every transaction that changes a workspace's chunks, so that an
    in-process vector index knows, with one primary-key read, whether it is current."""

    __tablename__ = "index_generations"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
