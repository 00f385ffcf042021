"""Reading tasks: the board, filtered lists, "my tasks", admin oversight.

Every read is a constant number of statements whatever the project's size, and each
statement walks an index for at most a page of rows (no OFFSET, no N+1): the board and
the project list take, per column, the first cards in rank order from the
``(column_id, position)`` index, all in one UNION ALL statement.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.service import visible_project_ids
from huddle.core.errors import ValidationFailed
from huddle.projects.models import Project
from huddle.tasks.columns import list_columns
from huddle.tasks.models import BoardColumn, Task
from huddle.tasks.schemas import Board, BoardColumnRead, ColumnRead, TaskRead
from huddle.tasks.service import task_read
from huddle.tasks.workflow import get_workflow


@dataclass
class TaskFilters:
    column_id: uuid.UUID | None = None
    status: str | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool = False
    completed: bool | None = None
    q: str | None = None
    due_before: date | None = None
    due_after: date | None = None

    def conditions(self) -> list[Any]:
        conds: list[Any] = []
        if self.unassigned:
            conds.append(Task.assignee_id.is_(None))
        elif self.assignee_id is not None:
            conds.append(Task.assignee_id == self.assignee_id)
        if self.completed is not None:
            conds.append(
                Task.completed_at.is_not(None) if self.completed else Task.completed_at.is_(None)
            )
        if self.q:
            escaped = self.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(func.lower(Task.title).like(f"%{escaped}%", escape="\\"))
        if self.due_before is not None:
            conds.append(Task.due_date < self.due_before)
        if self.due_after is not None:
            conds.append(Task.due_date > self.due_after)
        return conds

    def column_conditions(self) -> list[Any]:
        """``status`` and ``column_id`` for queries across boards (joined with BoardColumn);
        a single board's list applies them by choosing columns instead."""
        conds: list[Any] = []
        if self.column_id is not None:
            conds.append(Task.column_id == self.column_id)
        if self.status is not None:
            conds.append(BoardColumn.key == self.status)
        return conds


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "Invalid cursor", details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
    )


def encode_cursor(data: list[Any]) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(value, list):
        raise _bad_cursor()
    return value


async def _first_cards(
    session: AsyncSession,
    columns: list[BoardColumn],
    per_column: int,
    conditions: list[Any],
    start: tuple[int, str, uuid.UUID] | None = None,
) -> list[Task]:
    """Up to ``per_column`` tasks of each column in rank order, in one statement.

    With ``start`` (column index, rank, id), columns before it are skipped and its own
    column resumes after that card: the keyset of the board-ordered list.
    """
    branches: list[Select[Any]] = []
    for index, column in enumerate(columns):
        if start is not None and index < start[0]:
            continue
        query = select(Task.id).where(Task.column_id == column.id, *conditions)
        if start is not None and index == start[0]:
            query = query.where(
                or_(Task.position > start[1], and_(Task.position == start[1], Task.id > start[2]))
            )
        branches.append(
            query.order_by(Task.position, Task.id).limit(per_column).subquery().select()
        )
    if not branches:
        return []
    ids = union_all(*branches).subquery()
    rows = await session.scalars(select(Task).where(Task.id.in_(select(ids.c.id))))
    order = {c.id: i for i, c in enumerate(columns)}
    return sorted(rows, key=lambda t: (order[t.column_id], t.position, t.id))


async def board(session: AsyncSession, project: Project, per_column: int) -> Board:
    """Columns in order, each with its task count and first ``per_column`` cards."""
    columns = await list_columns(session, project.id)
    tasks = await _first_cards(session, columns, per_column, [])
    by_column: dict[uuid.UUID, list[TaskRead]] = {c.id: [] for c in columns}
    keys = {c.id: c.key for c in columns}
    for task in tasks:
        by_column[task.column_id].append(task_read(task, keys[task.column_id]))
    return Board(
        project_id=project.id,
        workflow=await get_workflow(session, project.id),
        columns=[
            BoardColumnRead(
                **ColumnRead.model_validate(c).model_dump(),
                task_count=c.task_count,
                tasks=by_column[c.id],
            )
            for c in columns
        ],
    )


async def list_tasks(
    session: AsyncSession, project: Project, filters: TaskFilters, limit: int, cursor: str | None
) -> tuple[list[TaskRead], str | None]:
    """Tasks in board order (columns by position, cards by rank), filtered, by keyset."""
    columns = await list_columns(session, project.id)
    if filters.column_id is not None or filters.status is not None:
        columns = [
            c
            for c in columns
            if (filters.column_id is None or c.id == filters.column_id)
            and (filters.status is None or c.key == filters.status)
        ]
    start = None
    if cursor:
        raw = decode_cursor(cursor)
        try:
            column_id, rank, task_id = uuid.UUID(str(raw[0])), str(raw[1]), uuid.UUID(str(raw[2]))
        except (IndexError, ValueError, TypeError, AttributeError) as exc:
            raise _bad_cursor() from exc
        index = next((i for i, c in enumerate(columns) if c.id == column_id), None)
        if index is None:
            raise _bad_cursor()
        start = (index, rank, task_id)
    tasks = (await _first_cards(session, columns, limit + 1, filters.conditions(), start))[
        : limit + 1
    ]
    keys = {c.id: c.key for c in columns}
    next_cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        last = tasks[-1]
        next_cursor = encode_cursor([str(last.column_id), last.position, str(last.id)])
    return [task_read(t, keys[t.column_id]) for t in tasks], next_cursor


async def _page_by_id(
    session: AsyncSession, query: Select[*tuple[Any, ...]], limit: int, cursor: str | None
) -> tuple[list[TaskRead], str | None]:
    if cursor:
        raw = decode_cursor(cursor)
        try:
            query = query.where(Task.id < uuid.UUID(str(raw[0])))
        except (IndexError, ValueError) as exc:
            raise _bad_cursor() from exc
    rows = (await session.execute(query.order_by(Task.id.desc()).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([str(rows[-1][0].id)])
    return [task_read(task, key) for task, key in rows], next_cursor


async def my_tasks(
    session: AsyncSession, user_id: uuid.UUID, filters: TaskFilters, limit: int, cursor: str | None
) -> tuple[list[TaskRead], str | None]:
    """Tasks assigned to the caller in projects they can still see, newest first."""
    filters.assignee_id, filters.unassigned = user_id, False
    query = (
        select(Task, BoardColumn.key)
        .join(BoardColumn, BoardColumn.id == Task.column_id)
        .where(*filters.conditions(), *filters.column_conditions())
        .where(Task.project_id.in_(visible_project_ids(user_id)))
    )
    return await _page_by_id(session, query, limit, cursor)


async def admin_tasks(
    session: AsyncSession,
    filters: TaskFilters,
    project_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[TaskRead], str | None]:
    """Every task, for site administrators, newest first."""
    query = select(Task, BoardColumn.key).join(BoardColumn, BoardColumn.id == Task.column_id)
    query = query.where(*filters.conditions(), *filters.column_conditions())
    if project_id is not None:
        query = query.where(Task.project_id == project_id)
    return await _page_by_id(session, query, limit, cursor)
