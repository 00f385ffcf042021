"""Stored first responses of requests sent with an ``Idempotency-Key``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedBytes
from huddle.core.models import Base, CreatedAtMixin, IdMixin


class IdempotencyKey(IdMixin, CreatedAtMixin, Base):
    """One key of one user on one route: the request's hash and, once done, its response.

    ``status_code`` is NULL while the first request is still running.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "route", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(400))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(2000))
    response_body: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    expires_at: Mapped[datetime]
