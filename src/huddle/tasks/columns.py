"""Board columns: a project's workflow stages, in order."""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, lock_project
from huddle.core.errors import Conflict, NotFound, ValidationFailed
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record
from huddle.tasks import ranking
from huddle.tasks.models import BoardColumn, Task
from huddle.tasks.schemas import (
    ColumnCreate,
    ColumnDeleted,
    ColumnRead,
    ColumnsReordered,
    ColumnUpdate,
)

DEFAULT_COLUMNS = (
    ("To do", "todo", False),
    ("In progress", "in_progress", False),
    ("Done", "done", True),
)


async def create_default_columns(session: AsyncSession, project_id: uuid.UUID) -> None:
    """The columns every new project starts with (part of creating the project)."""
    for position, (name, key, is_done) in enumerate(DEFAULT_COLUMNS):
        session.add(
            BoardColumn(
                project_id=project_id, name=name, key=key, position=position, is_done=is_done
            )
        )
    await session.flush()


async def list_columns(session: AsyncSession, project_id: uuid.UUID) -> list[BoardColumn]:
    rows = await session.scalars(
        select(BoardColumn)
        .where(BoardColumn.project_id == project_id)
        .order_by(BoardColumn.position)
    )
    return list(rows)


async def lock_columns(session: AsyncSession, column_ids: set[uuid.UUID]) -> None:
    """Serialise changes to the order of these columns' tasks (row locks on PostgreSQL,
    taken in id order so two moves never deadlock; SQLite serialises writers anyway).

    A column deleted meanwhile is a 409: the caller must not write tasks into it.
    """
    locked = set(
        await session.scalars(
            select(BoardColumn.id)
            .where(BoardColumn.id.in_(sorted(column_ids)))
            .order_by(BoardColumn.id)
            .with_for_update()
        )
    )
    if locked != column_ids:
        raise Conflict("The column was just deleted; reload the board")


async def column_access(
    session: AsyncSession, column_id: uuid.UUID, project_access_for
) -> tuple[BoardColumn, ProjectAccess]:
    """A column and the caller's access to its project (404 if either is invisible)."""
    column = await session.get(BoardColumn, column_id)
    if column is None:
        raise NotFound("Column not found")
    try:
        access = await project_access_for(column.project_id)
    except NotFound:
        raise NotFound("Column not found") from None
    return column, access


def _topic(access: ProjectAccess) -> str:
    return topics.project(access.project.id)


async def _record(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    event_type: str,
    data: BaseModel,
    subject: uuid.UUID,
) -> None:
    await record(
        session,
        event_type,
        topic=_topic(access),
        actor=caller.actor,
        data=data,
        workspace_id=access.project.workspace_id,
        subject_id=subject,
    )


def _keyify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "column"


def _renumber(columns: list[BoardColumn]) -> None:
    for position, column in enumerate(columns):
        column.position = position


def require_writable(access: ProjectAccess, role: Role = Role.member) -> None:
    access.require(role)
    if access.project.archived_at is not None:
        raise Conflict("This project is archived: restore it to make changes")


async def create_column(
    session: AsyncSession, caller: Caller, access: ProjectAccess, data: ColumnCreate
) -> BoardColumn:
    """Add a column (project admins), at the end or at ``position``."""
    require_writable(access, Role.admin)
    await lock_project(session, access.project.id)
    columns = await list_columns(session, access.project.id)
    keys = {c.key for c in columns}
    if data.key is not None:
        if data.key in keys:
            raise Conflict("That key is already used on this board", details={"field": "key"})
        key = data.key
    else:
        base = key = _keyify(data.name)
        n = 2
        while key in keys:
            key, n = f"{base}_{n}", n + 1
    column = BoardColumn(
        project_id=access.project.id, name=data.name, key=key, is_done=data.is_done, position=0
    )
    index = len(columns) if data.position is None else min(data.position, len(columns))
    columns.insert(index, column)
    _renumber(columns)
    session.add(column)
    await session.flush()
    await _record(
        session, caller, access, "column.created", ColumnRead.model_validate(column), column.id
    )
    if index != len(columns) - 1:
        await _record_order(session, caller, access, columns)
    return column


async def _record_order(
    session: AsyncSession, caller: Caller, access: ProjectAccess, columns: list[BoardColumn]
) -> None:
    data = ColumnsReordered(
        project_id=access.project.id, columns=[ColumnRead.model_validate(c) for c in columns]
    )
    await _record(session, caller, access, "column.reordered", data, access.project.id)


async def update_column(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    column: BoardColumn,
    data: ColumnUpdate,
) -> BoardColumn:
    """Rename, mark done or not, or move a column (project admins). The key never changes."""
    require_writable(access, Role.admin)
    await lock_project(session, access.project.id)
    await session.refresh(column)
    before = (column.name, column.is_done)
    if data.name is not None:
        column.name = data.name
    if data.is_done is not None:
        column.is_done = data.is_done
    if column.is_done != before[1]:
        # The column's tasks become complete (or open) with it.
        await lock_columns(session, {column.id})
        await session.execute(
            update(Task)
            .where(Task.column_id == column.id)
            .values(
                completed_at=func.coalesce(Task.completed_at, utcnow()) if column.is_done else None,
                version=Task.version + 1,
            )
            .execution_options(synchronize_session=False)
        )
    if (column.name, column.is_done) != before:
        await session.flush()
        await _record(
            session, caller, access, "column.updated", ColumnRead.model_validate(column), column.id
        )
    if data.position is not None and data.position != column.position:
        columns = [c for c in await list_columns(session, access.project.id) if c.id != column.id]
        columns.insert(min(data.position, len(columns)), column)
        _renumber(columns)
        await session.flush()
        await _record_order(session, caller, access, columns)
    return column


async def delete_column(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    column: BoardColumn,
    move_to: uuid.UUID | None,
) -> None:
    """Delete a column (project admins); its tasks go to the end of ``move_to``, in order."""
    require_writable(access, Role.admin)
    # Lock the board and every column: the count read below must not move under us.
    await lock_project(session, access.project.id)
    await lock_columns(session, {c.id for c in await list_columns(session, access.project.id)})
    columns = await list_columns(session, access.project.id)
    if len(columns) == 1:
        raise Conflict("A board needs at least one column")
    await session.refresh(column)
    count = column.task_count
    target = None
    if move_to is not None:
        target = next((c for c in columns if c.id == move_to and c.id != column.id), None)
        if target is None:
            raise ValidationFailed(
                "move_to must be another column of this board",
                details=[{"loc": ["query", "move_to"], "msg": "not another column of this board"}],
            )
    if count and target is None:
        raise Conflict(
            "This column has tasks: give move_to, the column that receives them",
            details={"task_count": count},
        )
    if target is not None and count:
        last = await session.scalar(
            select(func.max(Task.position)).where(Task.column_id == target.id)
        )
        tasks = list(
            await session.scalars(
                select(Task).where(Task.column_id == column.id).order_by(Task.position)
            )
        )
        for task, rank in zip(tasks, ranking.after(last, len(tasks)), strict=True):
            task.column_id = target.id
            task.position = rank
            task.completed_at = (task.completed_at or utcnow()) if target.is_done else None
        target.task_count += len(tasks)
        await session.flush()
    data = ColumnDeleted(
        column=ColumnRead.model_validate(column),
        moved_to=target.id if target else None,
        moved_tasks=count,
    )
    await _record(session, caller, access, "column.deleted", data, column.id)
    await session.delete(column)
    _renumber([c for c in columns if c.id != column.id])
    await session.flush()
