"""Tasks: create, change, move, delete — each with its event."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, project_role, share_project
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.schemas import Actor
from huddle.events.service import record
from huddle.projects.models import Project
from huddle.tasks import ranking
from huddle.tasks.columns import list_columns, lock_columns, require_writable
from huddle.tasks.models import BoardColumn, Task
from huddle.tasks.schemas import (
    ColumnRebalanced,
    TaskCreate,
    TaskMove,
    TaskMoved,
    TaskRead,
    TaskUpdate,
)
from huddle.tasks.workflow import check_entry


def task_read(task: Task, status: str) -> TaskRead:
    """The read schema of a task whose column key is ``status``."""
    fields = {name: getattr(task, name) for name in TaskRead.model_fields if name != "status"}
    return TaskRead(**fields, status=status)


async def status_of(session: AsyncSession, task: Task) -> str:
    key = await session.scalar(select(BoardColumn.key).where(BoardColumn.id == task.column_id))
    assert key is not None
    return key


async def _record(
    session: AsyncSession,
    caller: Caller | None,
    access: ProjectAccess,
    event_type: str,
    task: Task,
    status: str,
) -> TaskRead:
    data = task_read(task, status)
    await record(
        session,
        event_type,
        topic=topics.project(access.project.id),
        actor=caller.actor if caller is not None else Actor.system(),
        data=data,
        workspace_id=access.project.workspace_id,
        subject_id=task.id,
    )
    return data


def check_version(task: Task, if_match: str | None) -> None:
    """Honour ``If-Match: "<version>"`` (or the bare version, or ``*``): 412 when stale."""
    if if_match is None or if_match.strip() == "*":
        return
    wanted = {part.strip().removeprefix("W/").strip('"') for part in if_match.split(",")}
    if str(task.version) not in wanted:
        raise PreconditionFailed(
            "The task changed since you read it",
            details={"current_version": task.version},
        )


async def check_fresh(session: AsyncSession, task: Task, if_match: str | None) -> None:
    """Lock the task row and re-read it, then check ``If-Match`` against what is there
    now: two writers holding the same ETag cannot both pass, and a move reads the card's
    current column and rank. Callers lock columns first (the order every writer uses)."""
    await session.refresh(task, with_for_update=True)
    check_version(task, if_match)


async def check_assignee(
    session: AsyncSession, cache: ScopedCache, project: Project, assignee_id: uuid.UUID | None
) -> None:
    if assignee_id is None:
        return
    role, _ = await project_role(session, cache, project, assignee_id)
    if role is None:
        raise ValidationFailed(
            "The assignee must be able to see this project",
            details=[{"loc": ["body", "assignee_id"], "msg": "cannot see this project"}],
        )


async def _column_of(
    session: AsyncSession, project_id: uuid.UUID, column_id: uuid.UUID, field: str
) -> BoardColumn:
    column = await session.get(BoardColumn, column_id)
    if column is None or column.project_id != project_id:
        raise ValidationFailed(
            "No such column on this board",
            details=[{"loc": ["body", field], "msg": "not a column of this board"}],
        )
    return column


async def _last_rank(
    session: AsyncSession, column_id: uuid.UUID, exclude: uuid.UUID | None = None
) -> str | None:
    query = select(func.max(Task.position)).where(Task.column_id == column_id)
    if exclude is not None:
        query = query.where(Task.id != exclude)
    return await session.scalar(query)


def _set_column(task: Task, column: BoardColumn) -> None:
    task.column_id = column.id
    if column.is_done:
        task.completed_at = task.completed_at or utcnow()
    else:
        task.completed_at = None


async def create_task(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller | None,
    access: ProjectAccess,
    data: TaskCreate,
) -> TaskRead:
    """Add a task at the end of its column (default: the board's first column).

    ``caller`` None: the system creates it (a command from another service, see
    :mod:`huddle.events.commands`): no creator, and the event's actor is ``system``.
    """
    require_writable(access)
    if data.column_id is not None:
        column = await _column_of(session, access.project.id, data.column_id, "column_id")
    else:
        column = (await list_columns(session, access.project.id))[0]
    await check_assignee(session, cache, access.project, data.assignee_id)
    await share_project(session, access.project.id)
    await lock_columns(session, {column.id})
    await check_entry(session, access.project.id, None, column)
    task = Task(
        project_id=access.project.id,
        title=data.title,
        description=data.description,
        priority=data.priority,
        assignee_id=data.assignee_id,
        creator_id=caller.id if caller is not None else None,
        due_date=data.due_date,
        position=ranking.between(await _last_rank(session, column.id), None),
    )
    _set_column(task, column)
    session.add(task)
    await _count(session, column.id, +1)
    await session.flush()
    return await _record(session, caller, access, "task.created", task, column.key)


async def _count(session: AsyncSession, column_id: uuid.UUID, delta: int) -> None:
    """Adjust a column's task count (the caller holds the column's lock)."""
    await session.execute(
        update(BoardColumn)
        .where(BoardColumn.id == column_id)
        .values(task_count=BoardColumn.task_count + delta)
        .execution_options(synchronize_session=False)
    )


async def get_task(session: AsyncSession, task_id: uuid.UUID) -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound("Task not found")
    return task


async def _flush_versioned(session: AsyncSession) -> None:
    try:
        await session.flush()
    except StaleDataError as exc:
        raise Conflict("The task was changed at the same moment; read it again and retry") from exc


async def update_task(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    task: Task,
    data: TaskUpdate,
    if_match: str | None,
) -> TaskRead:
    """Change fields; ``status`` moves the task to the end of that column."""
    require_writable(access)
    target = None
    if data.status is not None:
        columns = await list_columns(session, access.project.id)
        target = next((c for c in columns if c.key == data.status), None)
        if target is None:
            raise ValidationFailed(
                "No column with that key",
                details=[{"loc": ["body", "status"], "msg": "unknown column key"}],
            )
        # Columns before the task row, always: the order column deletion takes too.
        await lock_columns(session, {task.column_id, target.id})
    await check_fresh(session, task, if_match)
    given = data.model_fields_set
    if "title" in given and data.title is None:
        raise ValidationFailed(
            "title cannot be null", details=[{"loc": ["body", "title"], "msg": "required"}]
        )
    if "assignee_id" in given:
        await check_assignee(session, cache, access.project, data.assignee_id)
        task.assignee_id = data.assignee_id
    for field in ("title", "description", "priority"):
        value = getattr(data, field)
        if field in given and value is not None:
            setattr(task, field, value)
    if "due_date" in given:
        task.due_date = data.due_date
    if target is not None and target.id != task.column_id:
        await check_entry(session, access.project.id, task.column_id, target)
        return await _move(session, caller, access, task, target, None, None, "task.moved")
    if not session.is_modified(task):
        return task_read(task, await status_of(session, task))
    await _flush_versioned(session)
    return await _record(
        session, caller, access, "task.updated", task, await status_of(session, task)
    )


async def move_task(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    task: Task,
    data: TaskMove,
    if_match: str | None,
) -> TaskRead:
    """Put the task exactly where asked: above ``before_id``, below ``after_id``, or last."""
    require_writable(access)
    target = await _column_of(session, access.project.id, data.column_id, "column_id")
    await lock_columns(session, {task.column_id, target.id})
    await check_fresh(session, task, if_match)
    await check_entry(session, access.project.id, task.column_id, target)
    return await _move(
        session, caller, access, task, target, data.before_id, data.after_id, "task.moved"
    )


async def _anchor(
    session: AsyncSession, anchor_id: uuid.UUID, column: BoardColumn, task: Task, field: str
) -> Task:
    anchor = await session.get(Task, anchor_id, populate_existing=True)
    if anchor is None or anchor.column_id != column.id or anchor.id == task.id:
        raise ValidationFailed(
            "The anchor card must be another card in the target column",
            details=[{"loc": ["body", field], "msg": "not another card of the target column"}],
        )
    return anchor


async def _neighbour(
    session: AsyncSession, column_id: uuid.UUID, rank: str, task_id: uuid.UUID, above: bool
) -> str | None:
    """The rank of the nearest card above (or below) ``rank``, ignoring the moving task."""
    query = select(Task.position).where(Task.column_id == column_id, Task.id != task_id)
    if above:
        query = query.where(Task.position < rank).order_by(Task.position.desc())
    else:
        query = query.where(Task.position > rank).order_by(Task.position)
    return await session.scalar(query.limit(1))


async def _move(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    task: Task,
    target: BoardColumn,
    before_id: uuid.UUID | None,
    after_id: uuid.UUID | None,
    event_type: str,
) -> TaskRead:
    """Place ``task`` in ``target``. The caller holds the locks of the task's column and
    of ``target`` (taken before the task row, the order every writer uses) and has
    re-read the task under them, so the ranks read here are current."""
    lower: str | None
    upper: str | None
    if before_id is not None and after_id is not None:
        before = await _anchor(session, before_id, target, task, "before_id")
        after = await _anchor(session, after_id, target, task, "after_id")
        if not after.position < before.position:
            raise ValidationFailed(
                "after_id must be above before_id",
                details=[{"loc": ["body", "after_id"], "msg": "must be above before_id"}],
            )
        lower, upper = after.position, before.position
        between = await _neighbour(session, target.id, lower, task.id, above=False)
        if between != upper:
            raise ValidationFailed(
                "before_id and after_id must be adjacent",
                details=[{"loc": ["body"], "msg": "anchors are not neighbours"}],
            )
    elif before_id is not None:
        upper = (await _anchor(session, before_id, target, task, "before_id")).position
        lower = await _neighbour(session, target.id, upper, task.id, above=True)
    elif after_id is not None:
        lower = (await _anchor(session, after_id, target, task, "after_id")).position
        upper = await _neighbour(session, target.id, lower, task.id, above=False)
    else:
        lower, upper = await _last_rank(session, target.id, exclude=task.id), None
    source = task.column_id
    task.position = ranking.between(lower, upper)
    _set_column(task, target)
    await _flush_versioned(session)  # one flush: one version step
    if source != target.id:
        await _count(session, source, -1)
        await _count(session, target.id, +1)
    if ranking.too_long(task.position):
        positions = await rebalance(session, target.id)
        await session.refresh(task)
        await record(
            session,
            "column.rebalanced",
            topic=topics.project(access.project.id),
            actor=caller.actor,
            data=ColumnRebalanced(
                project_id=access.project.id, column_id=target.id, positions=positions
            ),
            workspace_id=access.project.workspace_id,
            subject_id=target.id,
        )
    moved = TaskMoved(**task_read(task, target.key).model_dump(), from_column_id=source)
    await record(
        session,
        event_type,
        topic=topics.project(access.project.id),
        actor=caller.actor,
        data=moved,
        workspace_id=access.project.workspace_id,
        subject_id=task.id,
    )
    return moved


async def rebalance(session: AsyncSession, column_id: uuid.UUID) -> dict[str, str]:
    """Give every task of a column a short, evenly spaced rank (order unchanged).

    Rare: only when repeated inserts into one gap have grown a rank past
    ``ranking.MAX_RANK_LENGTH``. The caller holds the column's lock. Ranks change but
    versions do not: no user-visible field of the tasks changed.
    """
    ids = list(
        await session.scalars(
            select(Task.id).where(Task.column_id == column_id).order_by(Task.position)
        )
    )
    positions = dict(zip(ids, ranking.evenly(len(ids)), strict=True))
    for task_id, rank in positions.items():
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(position=rank)
            .execution_options(synchronize_session=False)
        )
    return {str(task_id): rank for task_id, rank in positions.items()}


async def delete_task(
    session: AsyncSession, caller: Caller, access: ProjectAccess, task: Task, if_match: str | None
) -> None:
    """Delete a task: its creator (member+) or a project admin."""
    require_writable(access)
    if task.creator_id != caller.id and not access.role.at_least(Role.admin):
        access.require(Role.admin, "Only project admins can delete other people's tasks")
    await lock_columns(session, {task.column_id})
    await check_fresh(session, task, if_match)
    await _record(session, caller, access, "task.deleted", task, await status_of(session, task))
    await _count(session, task.column_id, -1)
    await session.delete(task)
    await _flush_versioned(session)
