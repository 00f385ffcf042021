"""Board columns and tasks."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.models import Base, CreatedAtMixin, IdMixin
from huddle.core.time import utcnow

# Ranks are compared byte by byte: PostgreSQL must not apply a locale collation.
RankString = String(64).with_variant(String(64, collation="C"), "postgresql")


class Priority(StrEnum):
    none = "none"
    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


class BoardColumn(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "board_columns"
    __table_args__ = (
        UniqueConstraint("project_id", "key"),
        Index("ix_board_columns_project_position", "project_id", "position"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(50))
    position: Mapped[int] = mapped_column(Integer)
    is_done: Mapped[bool] = mapped_column(default=False)
    # Kept in step by every create, move and delete (under the column lock), so the
    # board never counts a project's tasks.
    task_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Workflow: at most this many tasks (None: no limit); see huddle.tasks.workflow.
    wip_limit: Mapped[int | None] = mapped_column(Integer)


class WorkflowTransition(Base):
    """An allowed move between two columns of a project's board."""

    __tablename__ = "workflow_transitions"
    __table_args__ = (Index("ix_workflow_transitions_project_id", "project_id"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    from_column_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("board_columns.id", ondelete="CASCADE"), primary_key=True
    )
    to_column_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("board_columns.id", ondelete="CASCADE"), primary_key=True
    )


class Task(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # The board and column-filtered lists: tasks of a column in order.
        Index("ix_tasks_column_position", "column_id", "position"),
        # Project-wide lists and admin filters, newest first.
        Index("ix_tasks_project_id", "project_id", "id"),
        # "My tasks" and the assignee filter.
        Index("ix_tasks_assignee_id", "assignee_id", "id"),
        Index("ix_tasks_project_due_date", "project_id", "due_date"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    column_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("board_columns.id", ondelete="RESTRICT")
    )
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[Priority] = mapped_column(
        Enum(Priority, native_enum=False, length=16, validate_strings=True), default=Priority.none
    )
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    due_date: Mapped[date | None]
    # A fractional index: the task sorts by plain byte order of this string in its column.
    position: Mapped[str] = mapped_column(RankString)
    completed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}
