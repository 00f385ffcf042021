"""The event log: the transactional outbox, and the history clients resume from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedJSON, EncryptedText
from huddle.core.models import Base, CreatedAtMixin, IdMixin, JSONType
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
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]


class Webhook(IdMixin, CreatedAtMixin, Base):
    """A workspace's HTTP endpoint that receives a signed POST per matching event."""

    __tablename__ = "webhooks"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    # Event types (``task.created``), families (``task.*``) or ``*``.
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(IdMixin, CreatedAtMixin, Base):
    """One event to one webhook, with the outcome of its latest attempt.

    Rows are written in the transaction that marks their event published, so an event
    is never published without its deliveries. The sender claims due rows (``pending``
    and ``next_attempt_at`` passed), posts, and records the outcome; a test ping has no
    ``event_seq`` and carries its own ``payload``.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_seq: Mapped[int | None] = mapped_column(BigId)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(EncryptedText)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_duration_ms: Mapped[int | None]
    delivered_at: Mapped[datetime | None]


class InboundEvent(Base):
    """A CloudEvent accepted from the Dapr sidecar: (source, id) is handled once."""

    __tablename__ = "inbound_events"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class BusCursor(Base):
    """How far an integration bus (Dapr) has been fed: the last ``seq`` it accepted."""

    __tablename__ = "bus_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    seq: Mapped[int] = mapped_column(BigId)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
