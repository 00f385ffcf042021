"""Schemas of board columns and tasks."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from huddle.core.validation import StrictModel, clean_text
from huddle.tasks.models import Priority

_KEY = re.compile(r"^[a-z0-9][a-z0-9_]{0,48}[a-z0-9]?$")


def _key(value: str) -> str:
    value = value.strip().lower()
    if not _KEY.match(value):
        raise ValueError("key must be 1-50 lowercase letters, digits or '_'")
    return value


ColumnName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(clean_text),
]
ColumnKey = Annotated[str, Field(max_length=50), AfterValidator(_key)]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(clean_text),
]
Description = Annotated[str, Field(max_length=50_000), AfterValidator(clean_text)]


class ColumnCreate(StrictModel):
    name: ColumnName
    key: ColumnKey | None = Field(
        default=None, description="Stable key; derived from the name if absent."
    )
    is_done: bool = Field(default=False, strict=True)
    position: int | None = Field(
        default=None, ge=0, strict=True, description="0 = first; default last."
    )


class ColumnUpdate(StrictModel):
    name: ColumnName | None = None
    is_done: bool | None = Field(default=None, strict=True)
    position: int | None = Field(
        default=None, ge=0, strict=True, description="Move the column here."
    )


class ColumnRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    key: str
    position: int
    is_done: bool


class ColumnDeleted(BaseModel):
    column: ColumnRead
    moved_to: uuid.UUID | None
    moved_tasks: int


class ColumnsReordered(BaseModel):
    project_id: uuid.UUID
    columns: list[ColumnRead]


class ColumnRebalanced(BaseModel):
    """Every card of a column got a new position (same order): apply them all."""

    project_id: uuid.UUID
    column_id: uuid.UUID
    positions: dict[str, str] = Field(description="task id -> new position")


class TaskCreate(StrictModel):
    title: Title
    description: Description = ""
    assignee_id: uuid.UUID | None = None
    priority: Priority = Priority.none
    due_date: date | None = None
    column_id: uuid.UUID | None = Field(default=None, description="Default: the first column.")


class TaskUpdate(StrictModel):
    """Fields to change; ``null`` clears ``assignee_id`` or ``due_date``."""

    title: Title | None = None
    description: Description | None = None
    assignee_id: uuid.UUID | None = None
    priority: Priority | None = None
    due_date: date | None = None
    status: ColumnKey | None = Field(
        default=None, description="A column key: moves the task to its end."
    )


class TaskMove(StrictModel):
    column_id: uuid.UUID
    before_id: uuid.UUID | None = Field(default=None, description="Place directly above this card.")
    after_id: uuid.UUID | None = Field(default=None, description="Place directly below this card.")


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    column_id: uuid.UUID
    status: str = Field(description="The key of the task's column.")
    title: str
    description: str
    priority: Priority
    assignee_id: uuid.UUID | None
    creator_id: uuid.UUID | None
    due_date: date | None
    position: str = Field(description="Order within the column: compare as plain byte strings.")
    completed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class TaskMoved(TaskRead):
    """``task.moved``: the task where it is now, and the column it left."""

    from_column_id: uuid.UUID = Field(
        description="The column it was in before: the same as `column_id` for a reorder."
    )


class BoardColumnRead(ColumnRead):
    task_count: int
    tasks: list[TaskRead]


class Board(BaseModel):
    project_id: uuid.UUID
    columns: list[BoardColumnRead]
    workflow: Workflow = Field(
        description="The board's rules, so clients can grey out moves it would refuse."
    )


class Transition(StrictModel):
    from_column_id: uuid.UUID
    to_column_id: uuid.UUID


class WipLimit(StrictModel):
    column_id: uuid.UUID
    limit: int | None = Field(ge=1, le=10_000, strict=True, description="null: no limit")


class WorkflowUpdate(StrictModel):
    """The whole rule set (it replaces the current one)."""

    transitions: list[Transition] = Field(
        default_factory=list,
        max_length=2_500,
        description="Allowed moves between columns; empty: any move is allowed.",
    )
    wip_limits: list[WipLimit] = Field(default_factory=list, max_length=50)


class Workflow(BaseModel):
    """A board's workflow rules (also the ``data`` of ``workflow.updated``)."""

    project_id: uuid.UUID
    transitions: list[Transition]
    wip_limits: list[WipLimit]


Board.model_rebuild()
