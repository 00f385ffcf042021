"""Columns, tasks, the board, "my tasks" and task activity over HTTP."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import AfterValidator

from huddle.access.deps import CurrentCaller, ProjectAccessDep, RoleCache
from huddle.access.service import ProjectAccess, project_access
from huddle.admin.service import require_superuser
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES, NotFound, ValidationFailed
from huddle.core.pagination import Page
from huddle.core.validation import clean_text
from huddle.events.schemas import EventPage
from huddle.events.service import events_about
from huddle.tasks import columns, queries, service, workflow
from huddle.tasks.models import BoardColumn, Task
from huddle.tasks.schemas import (
    Board,
    ColumnCreate,
    ColumnRead,
    ColumnUpdate,
    TaskCreate,
    TaskMove,
    TaskRead,
    TaskUpdate,
    Workflow,
    WorkflowUpdate,
)

router = APIRouter(prefix="/api", tags=["tasks"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT
IfMatch = Annotated[str | None, Header(max_length=200, description='The task\'s ETag, e.g. "3"')]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=500)]


def _etag(response: Response, task: TaskRead) -> TaskRead:
    response.headers["ETag"] = f'"{task.version}"'
    return task


async def _task(
    tid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[Task, ProjectAccess]:
    task = await session.get(Task, tid)
    if task is None:
        raise NotFound("Task not found")
    try:
        access = await project_access(session, cache, caller.id, task.project_id)
    except NotFound:
        raise NotFound("Task not found") from None
    return task, access


async def _column(
    cid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[BoardColumn, ProjectAccess]:
    return await columns.column_access(
        session, cid, lambda pid: project_access(session, cache, caller.id, pid)
    )


TaskDep = Annotated[tuple[Task, ProjectAccess], Depends(_task)]
ColumnDep = Annotated[tuple[BoardColumn, ProjectAccess], Depends(_column)]


def _filters(
    caller: CurrentCaller,
    column_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=50), AfterValidator(clean_text)] = None,
    assignee_id: Annotated[
        str | None, Query(max_length=40, description="A user id, `me` or `none`")
    ] = None,
    completed: Annotated[bool | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200), AfterValidator(clean_text)] = None,
    due_before: Annotated[date | None, Query()] = None,
    due_after: Annotated[date | None, Query()] = None,
) -> queries.TaskFilters:
    filters = queries.TaskFilters(
        column_id=column_id,
        status=status,
        completed=completed,
        q=q,
        due_before=due_before,
        due_after=due_after,
    )
    if assignee_id == "none":
        filters.unassigned = True
    elif assignee_id == "me":
        filters.assignee_id = caller.id
    elif assignee_id is not None:
        try:
            filters.assignee_id = uuid.UUID(assignee_id)
        except ValueError as exc:
            raise ValidationFailed(
                "assignee_id must be a user id, me or none",
                details=[{"loc": ["query", "assignee_id"], "msg": "not a user id, me or none"}],
            ) from exc
    return filters


FiltersDep = Annotated[queries.TaskFilters, Depends(_filters)]


# --- columns ------------------------------------------------------------------------------


@router.get("/projects/{pid}/columns", response_model=list[ColumnRead])
async def list_columns(access: ProjectAccessDep, session: SessionDep) -> object:
    """The board's columns, in order."""
    return await columns.list_columns(session, access.project.id)


@router.post(
    "/projects/{pid}/columns", status_code=status.HTTP_201_CREATED, response_model=ColumnRead
)
async def create_column(
    data: ColumnCreate, access: ProjectAccessDep, caller: CurrentCaller, session: SessionDep
) -> object:
    """Add a column (project admins)."""
    return await columns.create_column(session, caller, access, data)


@router.patch("/columns/{cid}", response_model=ColumnRead)
async def update_column(
    data: ColumnUpdate, column: ColumnDep, caller: CurrentCaller, session: SessionDep
) -> object:
    """Rename a column, mark it done or not, or move it (project admins)."""
    return await columns.update_column(session, caller, column[1], column[0], data)


@router.delete("/columns/{cid}", status_code=NO_CONTENT)
async def delete_column(
    column: ColumnDep,
    caller: CurrentCaller,
    session: SessionDep,
    move_to: Annotated[uuid.UUID | None, Query(description="Column receiving the tasks")] = None,
) -> Response:
    """Delete a column (project admins); a column with tasks needs ``move_to``."""
    await columns.delete_column(session, caller, column[1], column[0], move_to)
    return Response(status_code=NO_CONTENT)


# --- tasks --------------------------------------------------------------------------------


@router.post("/projects/{pid}/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskRead)
async def create_task(
    data: TaskCreate,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    response: Response,
) -> TaskRead:
    """Add a task at the end of its column (members and admins)."""
    return _etag(response, await service.create_task(session, cache, caller, access, data))


@router.get("/projects/{pid}/tasks", response_model=Page[TaskRead])
async def list_tasks(
    access: ProjectAccessDep,
    session: SessionDep,
    filters: FiltersDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> object:
    """The project's tasks in board order, filtered (assignee_id may be `me` or `none`)."""
    items, next_cursor = await queries.list_tasks(session, access.project, filters, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/projects/{pid}/board", response_model=Board)
async def get_board(
    access: ProjectAccessDep,
    session: SessionDep,
    per_column: Annotated[int, Query(ge=1, le=500, description="Cards per column")] = 100,
) -> Board:
    """Columns in order with their first cards (and each column's task count)."""
    return await queries.board(session, access.project, per_column)


@router.get("/projects/{pid}/workflow", response_model=Workflow)
async def get_workflow(access: ProjectAccessDep, session: SessionDep) -> Workflow:
    """The board's workflow rules: allowed transitions between columns and WIP limits."""
    return await workflow.get_workflow(session, access.project.id)


@router.put(
    "/projects/{pid}/workflow",
    response_model=Workflow,
    responses={409: {"description": "A move the rules forbid answers `workflow_violation`"}},
)
async def put_workflow(
    data: WorkflowUpdate, access: ProjectAccessDep, caller: CurrentCaller, session: SessionDep
) -> Workflow:
    """Replace the board's rules (project admins). No transitions: any move is allowed;
    a move that breaks a rule is then a 409 `workflow_violation` naming the rule."""
    return await workflow.put_workflow(session, caller, access, data)


@router.get("/tasks/{tid}", response_model=TaskRead)
async def get_task(task: TaskDep, session: SessionDep, response: Response) -> TaskRead:
    """One task; the ETag is its version."""
    return _etag(response, service.task_read(task[0], await service.status_of(session, task[0])))


@router.patch("/tasks/{tid}", response_model=TaskRead)
async def update_task(
    data: TaskUpdate,
    task: TaskDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    response: Response,
    if_match: IfMatch = None,
) -> TaskRead:
    """Change a task; with If-Match, 412 if it changed since. `status` moves it to that column."""
    updated = await service.update_task(session, cache, caller, task[1], task[0], data, if_match)
    return _etag(response, updated)


@router.post("/tasks/{tid}/move", response_model=TaskRead)
async def move_task(
    data: TaskMove,
    task: TaskDep,
    caller: CurrentCaller,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskRead:
    """Place the task in a column: above `before_id`, below `after_id`, or at the end."""
    return _etag(
        response, await service.move_task(session, caller, task[1], task[0], data, if_match)
    )


@router.delete("/tasks/{tid}", status_code=NO_CONTENT)
async def delete_task(
    task: TaskDep, caller: CurrentCaller, session: SessionDep, if_match: IfMatch = None
) -> Response:
    """Delete a task (its creator, or a project admin)."""
    await service.delete_task(session, caller, task[1], task[0], if_match)
    return Response(status_code=NO_CONTENT)


@router.get("/tasks/{tid}/activity", response_model=EventPage)
async def task_activity(
    task: TaskDep,
    session: SessionDep,
    since: Annotated[int, Query(ge=0, le=2**62, description="Events after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """The task's events, oldest first (pass the last id as `since` for more)."""
    items = await events_about(session, task[0].id, since, limit)
    return EventPage(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)


@router.get("/me/tasks", response_model=Page[TaskRead])
async def my_tasks(
    caller: CurrentCaller,
    session: SessionDep,
    filters: FiltersDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> object:
    """Tasks assigned to the caller in every project they can see, newest first."""
    items, next_cursor = await queries.my_tasks(session, caller.id, filters, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/admin/tasks", response_model=Page[TaskRead])
async def admin_tasks(
    caller: CurrentCaller,
    session: SessionDep,
    filters: FiltersDep,
    project_id: Annotated[uuid.UUID | None, Query()] = None,
    user_id: Annotated[uuid.UUID | None, Query(description="Assigned to this user")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> object:
    """Every task, for site administrators (filters: user, project, status, ...)."""
    require_superuser(caller)
    if user_id is not None:
        filters.assignee_id = user_id
    items, next_cursor = await queries.admin_tasks(session, filters, project_id, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
