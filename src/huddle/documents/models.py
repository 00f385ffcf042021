"""Documents with their version history, and uploaded files."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedText
from huddle.core.models import Base, CreatedAtMixin, IdMixin
from huddle.core.time import utcnow


class Document(IdMixin, CreatedAtMixin, Base):
    """A markdown page in a project, optionally pinned to a channel (its page).

    ``version`` counts saves; each save is also a :class:`DocumentVersion` row, so the
    history holds every text the document ever had. ``indexed_at`` is when the current
    text became searchable (None while the indexer has not caught up).
    """

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_project_id", "project_id", "id"),
        Index("ix_documents_channel_id", "channel_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(EncryptedText, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    indexed_at: Mapped[datetime | None]


class DocumentVersion(CreatedAtMixin, Base):
    """One save of a document: its title and text as they were then."""

    __tablename__ = "document_versions"

    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(EncryptedText)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The version this one restored, when it was made by a restore.
    restored_from: Mapped[int | None] = mapped_column(Integer)


class File(IdMixin, CreatedAtMixin, Base):
    """An uploaded file: its bytes live under HUDDLE_UPLOAD_DIR as ``storage_name``.

    ``text`` is what was extracted for search (PDF text, or the text file itself).
    """

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_project_id", "project_id", "id"),
        Index("ix_files_channel_id", "channel_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(EncryptedText, default="")
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    indexed_at: Mapped[datetime | None]
