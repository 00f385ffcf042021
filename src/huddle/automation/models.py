"""Automation rules and the record of their runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.models import Base, CreatedAtMixin, IdMixin, JSONType
from huddle.core.time import utcnow


class Automation(IdMixin, CreatedAtMixin, Base):
    """*When* an event about a task of the project matches ``trigger``, *then* ``actions``.

    The rule acts with the permissions of ``owner_id``: the project admin who created it
    or last changed it. When the owner can no longer manage the project the rule is
    switched off (``enabled`` false, ``disabled_reason`` says why)."""

    __tablename__ = "automations"
    __table_args__ = (Index("ix_automations_project_id", "project_id", "id"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONType)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: Events recorded before this (its creation, or when it was last switched on) do
    #: not set it off, however late the engine reads them.
    active_since: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


class AutomationRun(IdMixin, CreatedAtMixin, Base):
    """One execution of a rule for one event (at most one per rule and event)."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        UniqueConstraint("automation_id", "event_id"),
        Index("ix_automation_runs_automation_id", "automation_id", "id"),
    )

    automation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("automations.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[uuid.UUID | None]
    status: Mapped[RunStatus] = mapped_column(
        Enum(RunStatus, native_enum=False, length=16, validate_strings=True)
    )
    #: What each action did, in order: ``{"type", "result": "done" | "unchanged"}``.
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    #: Why the run failed: ``{"code", "message", "action"}`` (``action``: its index).
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
