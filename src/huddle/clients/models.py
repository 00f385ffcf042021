"""A workspace's client records; projects may belong to one."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.models import Base, CreatedAtMixin, IdMixin, JSONType
from huddle.core.time import utcnow


class ClientStatus(StrEnum):
    active = "active"
    archived = "archived"


class Client(IdMixin, CreatedAtMixin, Base):
    """Who the work is for: a name (unique in the workspace), contacts, notes."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_clients_workspace_id", "workspace_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    contact_emails: Mapped[list[str]] = mapped_column(JSONType, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ClientStatus] = mapped_column(
        Enum(ClientStatus, native_enum=False, length=16, validate_strings=True),
        default=ClientStatus.active,
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
