"""The assistant's tools: thin adapters over the services, run as the user they act for.

The agent (:mod:`huddle.ai.agent`) and the MCP server call the same :func:`run_tool`.
Where a tool acts is fixed by its :class:`ToolScope` — the user and the workspace come
from the validated request (the conversation, the MCP bearer token), never from the
model's output: a project or task the model names is looked up *inside* that workspace
with the user's own rights, exactly as the REST route would, and every event a tool
writes records ``actor = {kind: "agent", on_behalf_of: <user>, tool_call_id}``.

A tool never raises to the model: a refusal or bad argument comes back as
``{"error": {"code", "message"}}`` so the assistant can tell the user what happened.
Destructive tools (``delete_task``) do not act: they leave an :class:`AIPendingAction`
the user confirms (``POST /api/ai/actions/{id}/confirm``) or lets expire.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, project_access, visible_projects, workspace_access
from huddle.ai import summaries
from huddle.ai.models import AIPendingAction
from huddle.auth.models import User
from huddle.core.cache import ScopedCache
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError, Forbidden, NotFound
from huddle.core.time import utcnow
from huddle.events.schemas import Actor
from huddle.projects.models import Project
from huddle.projects.service import project_read
from huddle.search import semantic
from huddle.search.schemas import AISearchRequest
from huddle.tasks import queries
from huddle.tasks import service as tasks
from huddle.tasks.columns import list_columns, require_writable
from huddle.tasks.models import Priority, Task
from huddle.tasks.schemas import TaskCreate, TaskMove, TaskRead, TaskUpdate
from huddle.workspaces.models import Membership

log = logging.getLogger("huddle.ai.tools")


@dataclass(frozen=True)
class ToolScope:
    """Who the tools act for, and where: fixed by the request, never by the model."""

    state: State
    user_id: uuid.UUID
    workspace_id: uuid.UUID | None
    conversation_id: uuid.UUID | None = None

    @property
    def cache(self) -> ScopedCache:
        cache: ScopedCache = self.state.role_cache
        return cache


class ToolRefused(AppError):
    """A tool's own refusal (bad reference, nothing to do)."""

    status_code, code = 422, "tool_error"


# --- arguments ------------------------------------------------------------------------------

Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(Args):
    pass


class ListTasksArgs(Args):
    project_id: Ref = Field(description="The project's id or exact name.")
    status: str | None = Field(default=None, description="A column key, e.g. todo or done.")
    assignee_id: str | None = Field(
        default=None, description="A user id or username, `me`, or `none` for unassigned."
    )
    query: str | None = Field(default=None, max_length=200, description="Words in the title.")
    completed: bool | None = None
    limit: int = Field(default=20, ge=1, le=50)


class TaskRef(Args):
    task_id: uuid.UUID = Field(description="The task's id.")


class CreateTaskArgs(Args):
    project_id: Ref = Field(description="The project's id or exact name.")
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=50_000)
    assignee_id: str | None = Field(default=None, description="A user id or username, or `me`.")
    priority: Priority | None = None
    due_date: date | None = None
    status: str | None = Field(default=None, description="The column key to put it in.")


class UpdateTaskArgs(Args):
    task_id: uuid.UUID
    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=50_000)
    assignee_id: str | None = Field(
        default=None, description="A user id or username, `me`, or `none` to unassign."
    )
    priority: Priority | None = None
    due_date: date | None = None
    status: str | None = Field(default=None, description="A column key: moves the task.")


class MoveTaskArgs(Args):
    task_id: uuid.UUID
    status: str | None = Field(default=None, description="The target column's key.")
    column_id: uuid.UUID | None = Field(default=None, description="Or the target column's id.")


class SearchArgs(Args):
    query: str = Field(min_length=1, max_length=1000)
    project_id: Ref | None = None
    limit: int = Field(default=5, ge=1, le=20)


def _utc(value: datetime | None) -> datetime | None:
    """A model often leaves the time zone out: take such a time as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SummarizeArgs(Args):
    channel_id: uuid.UUID
    since: Annotated[datetime | None, AfterValidator(_utc)] = Field(
        default=None, description="An ISO 8601 time (UTC unless it says): only later messages."
    )


# --- helpers --------------------------------------------------------------------------------


def agent_caller(user: User, tool_call_id: str) -> Caller:
    """The user, acting through the assistant: the actor every tool's event records."""
    return Caller(
        user=user,
        actor=Actor(kind="agent", on_behalf_of=user.id, tool_call_id=tool_call_id[:100]),
    )


async def _user(session: AsyncSession, scope: ToolScope) -> User:
    user = await session.get(User, scope.user_id)
    if user is None or not user.is_active:
        raise Forbidden("This account is not active")
    return user


def _workspace(scope: ToolScope) -> uuid.UUID:
    if scope.workspace_id is None:
        raise ToolRefused(
            "This conversation belongs to no workspace; start one with a workspace_id"
        )
    return scope.workspace_id


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def _project(session: AsyncSession, scope: ToolScope, ref: str) -> ProjectAccess:
    """A project of the scope's workspace, by id or name, as the user may see it."""
    workspace_id = _workspace(scope)
    project_id = _as_uuid(ref)
    if project_id is None:
        membership = await workspace_access(session, scope.cache, scope.user_id, workspace_id)
        matches = (
            await session.scalars(
                visible_projects(workspace_id, scope.user_id, membership.role)
                .where(func.lower(Project.name) == ref.lower())
                .where(Project.archived_at.is_(None))
                .limit(2)
            )
        ).all()
        if not matches:
            raise NotFound(f"No project named {ref!r} that you can see in this workspace")
        if len(matches) > 1:
            raise ToolRefused(f"Several projects are named {ref!r}: give the project's id")
        project_id = matches[0].id
    access = await project_access(session, scope.cache, scope.user_id, project_id)
    if access.project.workspace_id != workspace_id:
        raise NotFound("Project not found")
    return access


async def _task(
    session: AsyncSession, scope: ToolScope, task_id: uuid.UUID
) -> tuple[Task, ProjectAccess]:
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound("Task not found")
    try:
        access = await project_access(session, scope.cache, scope.user_id, task.project_id)
    except NotFound:
        raise NotFound("Task not found") from None
    if access.project.workspace_id != _workspace(scope):
        raise NotFound("Task not found")
    return task, access


async def _assignee(session: AsyncSession, scope: ToolScope, ref: str | None) -> uuid.UUID | None:
    """``me``, a user id, or a username/email of a member of the workspace."""
    if ref is None or ref.strip().lower() in ("", "none", "null", "nobody"):
        return None
    ref = ref.strip().removeprefix("@")
    if ref.lower() == "me":
        return scope.user_id
    user_id = _as_uuid(ref)
    if user_id is not None:
        return user_id
    found = await session.scalar(
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == _workspace(scope))
        .where(or_(User.username == ref.lower(), User.email == ref.lower()))
    )
    if found is None:
        raise NotFound(f"No member {ref!r} in this workspace")
    return found


#: A task's description as a list shows it to the model (get_task shows all of it).
LIST_DESCRIPTION_CHARS = 300


def _task_out(task: TaskRead, description_chars: int | None = None) -> dict[str, Any]:
    out = task.model_dump(mode="json")
    if description_chars is not None and len(out["description"]) > description_chars:
        out["description"] = out["description"][:description_chars] + " …"
    return out


# --- the tools ------------------------------------------------------------------------------


async def list_projects(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: NoArgs
) -> Any:
    workspace_id = _workspace(scope)
    access = await workspace_access(session, scope.cache, scope.user_id, workspace_id)
    projects = (
        await session.scalars(
            visible_projects(workspace_id, scope.user_id, access.role)
            .where(Project.archived_at.is_(None))
            .order_by(Project.name)
            .limit(200)
        )
    ).all()
    return {
        "projects": [
            {"id": str(p.id), "name": p.name, "description": p.description} for p in projects
        ]
    }


async def list_tasks(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: ListTasksArgs
) -> Any:
    access = await _project(session, scope, args.project_id)
    filters = queries.TaskFilters(status=args.status, completed=args.completed, q=args.query)
    if args.assignee_id is not None and args.assignee_id.strip().lower() == "none":
        filters.unassigned = True
    else:
        filters.assignee_id = await _assignee(session, scope, args.assignee_id)
    items, more = await queries.list_tasks(session, access.project, filters, args.limit, None)
    return {
        "project": {"id": str(access.project.id), "name": access.project.name},
        "tasks": [_task_out(t, LIST_DESCRIPTION_CHARS) for t in items],
        "more": more is not None,
    }


async def get_task(session: AsyncSession, scope: ToolScope, caller: Caller, args: TaskRef) -> Any:
    task, _ = await _task(session, scope, args.task_id)
    return _task_out(tasks.task_read(task, await tasks.status_of(session, task)))


async def _column_id(
    session: AsyncSession, project_id: uuid.UUID, key: str | None
) -> uuid.UUID | None:
    if key is None:
        return None
    columns = await list_columns(session, project_id)
    wanted = key.strip().lower()
    for column in columns:
        if wanted in (column.key, column.name.lower()):
            return column.id
    keys = ", ".join(c.key for c in columns)
    raise ToolRefused(f"No column {key!r} on this board (columns: {keys})")


async def create_task(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: CreateTaskArgs
) -> Any:
    access = await _project(session, scope, args.project_id)
    require_writable(access)
    data = TaskCreate(
        title=args.title,
        description=args.description,
        assignee_id=await _assignee(session, scope, args.assignee_id),
        priority=args.priority or Priority.none,
        due_date=args.due_date,
        column_id=await _column_id(session, access.project.id, args.status),
    )
    return _task_out(await tasks.create_task(session, scope.cache, caller, access, data))


async def update_task(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: UpdateTaskArgs
) -> Any:
    task, access = await _task(session, scope, args.task_id)
    require_writable(access)
    given = args.model_fields_set - {"task_id"}
    if not given:
        raise ToolRefused("Nothing to change: give at least one field")
    fields: dict[str, Any] = {name: getattr(args, name) for name in given}
    if "assignee_id" in fields:
        fields["assignee_id"] = await _assignee(session, scope, args.assignee_id)
    data = TaskUpdate(**fields)
    return _task_out(
        await tasks.update_task(session, scope.cache, caller, access, task, data, None)
    )


async def move_task(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: MoveTaskArgs
) -> Any:
    task, access = await _task(session, scope, args.task_id)
    require_writable(access)
    column_id = args.column_id or await _column_id(session, access.project.id, args.status)
    if column_id is None:
        raise ToolRefused("Say where to: status (a column key) or column_id")
    return _task_out(
        await tasks.move_task(session, caller, access, task, TaskMove(column_id=column_id), None)
    )


async def complete_task(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: TaskRef
) -> Any:
    task, access = await _task(session, scope, args.task_id)
    require_writable(access)
    done = next((c for c in await list_columns(session, access.project.id) if c.is_done), None)
    if done is None:
        raise ToolRefused("This board has no done column")
    if task.column_id == done.id:
        return {"task": _task_out(tasks.task_read(task, done.key)), "note": "already done"}
    return _task_out(
        await tasks.move_task(session, caller, access, task, TaskMove(column_id=done.id), None)
    )


def _check_can_delete(task: Task, access: ProjectAccess, user_id: uuid.UUID) -> None:
    require_writable(access)
    if task.creator_id != user_id and not access.role.at_least(Role.admin):
        access.require(Role.admin, "Only project admins can delete other people's tasks")


async def delete_task(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: TaskRef
) -> Any:
    """Checks the user may delete it, then leaves a pending action: nothing is deleted
    until the user confirms."""
    task, access = await _task(session, scope, args.task_id)
    _check_can_delete(task, access, scope.user_id)
    assert caller.actor.tool_call_id is not None
    ttl = timedelta(seconds=scope.state.settings.ai_action_ttl)
    action = AIPendingAction(
        user_id=scope.user_id,
        workspace_id=access.project.workspace_id,
        conversation_id=scope.conversation_id,
        tool="delete_task",
        args={"task_id": str(task.id)},
        tool_call_id=caller.actor.tool_call_id,
        expires_at=utcnow() + ttl,
    )
    session.add(action)
    await session.flush()
    return {
        "status": "awaiting_confirmation",
        "pending_action": pending_out(action),
        "task": {"id": str(task.id), "title": task.title},
        "message": (
            "Nothing is deleted yet: the user must confirm this action "
            f"(it expires in {int(ttl.total_seconds() // 60)} minutes)."
        ),
    }


def pending_out(action: AIPendingAction) -> dict[str, Any]:
    return {
        "id": str(action.id),
        "tool": action.tool,
        "args": action.args,
        "expires_at": action.expires_at.isoformat(),
    }


async def delete_task_now(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: TaskRef
) -> Any:
    """What a confirmed ``delete_task`` does (rights checked again, at confirmation)."""
    task, access = await _task(session, scope, args.task_id)
    _check_can_delete(task, access, scope.user_id)
    title = task.title
    await tasks.delete_task(session, caller, access, task, None)
    return {"deleted": True, "task": {"id": str(args.task_id), "title": title}}


async def search(session: AsyncSession, scope: ToolScope, caller: Caller, args: SearchArgs) -> Any:
    project_id = None
    if args.project_id is not None:
        project_id = (await _project(session, scope, args.project_id)).project.id
    request = AISearchRequest(
        query=args.query,
        workspace_id=_workspace(scope),
        project_id=project_id,
        limit=args.limit,
    )
    runtime = scope.state.semantic
    found = await semantic.search(
        session, scope.cache, runtime.embedder, runtime.index, caller, request
    )
    return {"sources": [s.model_dump(mode="json") for s in found.sources]}


async def summarize_channel(
    session: AsyncSession | None, scope: ToolScope, caller: Caller, args: SummarizeArgs
) -> Any:
    summary = await summaries.summarize_channel(
        scope.state.db,
        scope.cache,
        scope.state.ai.llm,
        scope.user_id,
        args.channel_id,
        args.since,
        budget_tokens=scope.state.settings.ai_context_tokens,
        workspace_id=_workspace(scope),
    )
    return summary.model_dump()


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    run: Callable[[Any, ToolScope, Caller, Any], Awaitable[Any]]
    writes: bool = False
    destructive: bool = False
    #: Waits on the model: run without a transaction (it opens short ones itself).
    uses_model: bool = False

    def schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return schema


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in [
        Tool(
            "list_projects",
            "List the projects of this workspace that the user can see (id and name).",
            NoArgs,
            list_projects,
        ),
        Tool(
            "list_tasks",
            "List tasks of a project in board order, optionally filtered by status "
            "(column key), assignee (`me`, `none`, a username), words in the title.",
            ListTasksArgs,
            list_tasks,
        ),
        Tool("get_task", "Read one task by id.", TaskRef, get_task),
        Tool(
            "create_task",
            "Create a task in a project (by id or exact name); assignee_id may be `me`.",
            CreateTaskArgs,
            create_task,
            writes=True,
        ),
        Tool(
            "update_task",
            "Change a task's title, description, assignee, priority, due date or status.",
            UpdateTaskArgs,
            update_task,
            writes=True,
        ),
        Tool(
            "move_task",
            "Move a task to another column (by its key, e.g. doing, or its id).",
            MoveTaskArgs,
            move_task,
            writes=True,
        ),
        Tool("complete_task", "Mark a task done.", TaskRef, complete_task, writes=True),
        Tool(
            "delete_task",
            "Ask to delete a task. Nothing is deleted until the user confirms the pending "
            "action this returns.",
            TaskRef,
            delete_task,
            writes=True,
            destructive=True,
        ),
        Tool(
            "search",
            "Find passages in the documents, files and chat messages the user can read, "
            "closest in meaning to the query.",
            SearchArgs,
            search,
        ),
        Tool(
            "summarize_channel",
            "Summarise a chat channel the user can read (optionally only messages after `since`).",
            SummarizeArgs,
            summarize_channel,
            uses_model=True,
        ),
    ]
}

#: What a confirmed pending action runs.
CONFIRMED: dict[str, Tool] = {
    "delete_task": Tool("delete_task", "", TaskRef, delete_task_now, writes=True),
}


class ProjectRef(Args):
    project_id: Ref = Field(description="The project's id or exact name.")


async def get_project(
    session: AsyncSession, scope: ToolScope, caller: Caller, args: ProjectRef
) -> Any:
    """A project with the caller's role on it and its board's columns."""
    access = await _project(session, scope, args.project_id)
    project = project_read(access.project, access.role).model_dump(mode="json")
    project["columns"] = [
        {"id": str(c.id), "key": c.key, "name": c.name, "is_done": c.is_done}
        for c in await list_columns(session, access.project.id)
    ]
    return project


#: Reads offered as MCP resources (not as agent tools: list_projects and list_tasks do).
RESOURCES: dict[str, Tool] = {
    "get_project": Tool("get_project", "", ProjectRef, get_project),
}


def refusal(exc: AppError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message}}


def parse_args(tool: Tool, raw: str | dict[str, Any] | None) -> Args:
    try:
        data = json.loads(raw or "{}") if not isinstance(raw, dict) else raw
    except json.JSONDecodeError as exc:
        raise ToolRefused(f"The arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ToolRefused("The arguments must be a JSON object")
    try:
        return tool.args.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ToolRefused(f"Invalid arguments: {problems}") from exc


async def run_tool(
    scope: ToolScope,
    name: str,
    raw_args: str | dict[str, Any] | None,
    tool_call_id: str,
    *,
    tools: dict[str, Tool] = TOOLS,
) -> dict[str, Any]:
    """Run one tool call in its own transaction; a refusal is returned, not raised."""
    tool = tools.get(name)
    if tool is None:
        return refusal(ToolRefused(f"No tool named {name!r}"))
    try:
        args = parse_args(tool, raw_args)
        if tool.uses_model:
            async with unit_of_work(scope.state, write=False) as session:
                caller = agent_caller(await _user(session, scope), tool_call_id)
            result = await tool.run(None, scope, caller, args)
        else:
            async with unit_of_work(scope.state, write=tool.writes) as session:
                caller = agent_caller(await _user(session, scope), tool_call_id)
                result = await tool.run(session, scope, caller, args)
    except ValidationError as exc:  # a service schema refused a value the model gave
        return refusal(ToolRefused(f"Invalid arguments: {exc.errors()[0]['msg']}"))
    except AppError as exc:
        log.info("tool %s refused for %s: %s", name, scope.user_id, exc.message)
        return refusal(exc)
    except Exception:
        # The transaction was rolled back: the model hears that it failed (and the
        # conversation stays well-formed), the details go to the log only.
        log.exception("tool %s failed for %s", name, scope.user_id)
        return {
            "error": {
                "code": "internal_error",
                "message": "The tool failed unexpectedly; nothing it did was saved",
            }
        }
    return result if isinstance(result, dict) else {"result": result}
