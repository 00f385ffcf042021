"""The event log: the transactional outbox, and the history clients resume from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.models import Base, JSONType
from huddle.core.time import utcnow

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    """One domain event. ``id`` orders inserts; ``seq`` (the public id) orders commits.

    ``seq`` stays NULL until the dispatcher, after commit, gives the event the next
    number in publish order; clients only ever see events that have one.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_seq", "seq", unique=True),
        Index("ix_events_topic_seq", "topic", "seq"),
        Index("ix_events_subject_id", "subject_id"),
        Index("ix_events_workspace_seq", "workspace_id", "seq"),
        # The dispatcher's work queue: tiny, since published events leave it.
        Index(
            "ix_events_unpublished",
            "id",
            sqlite_where=text("published_at IS NULL"),
            postgresql_where=text("published_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigId)
    type: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(100))
    workspace_id: Mapped[uuid.UUID | None]
    subject_id: Mapped[uuid.UUID | None]
    actor: Mapped[dict[str, Any]] = mapped_column(JSONType)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
