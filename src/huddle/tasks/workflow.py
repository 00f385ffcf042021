"""Workflow rules of a project's board: allowed column transitions and WIP limits.

No transition configured means any move is allowed; once one is, a task may only move
between columns along a configured ``from → to`` pair (reordering inside a column is
always allowed). A column's WIP limit caps the tasks in it: a task may not enter a full
column (moved or created there). A refused move is a 409 ``workflow_violation`` whose
``details`` name the rule, and nothing is written.

The checks run after the columns are locked (:func:`huddle.tasks.columns.lock_columns`),
so the count they read is the one the move changes: two moves cannot both take the last
place in a column.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess
from huddle.core.errors import AppError, ValidationFailed
from huddle.events import topics
from huddle.events.service import record
from huddle.tasks.columns import list_columns
from huddle.tasks.models import BoardColumn, WorkflowTransition
from huddle.tasks.schemas import Transition, WipLimit, Workflow, WorkflowUpdate


class WorkflowViolation(AppError):
    status_code, code, message = 409, "workflow_violation", "The board's workflow forbids it"


async def get_workflow(session: AsyncSession, project_id: uuid.UUID) -> Workflow:
    transitions = (
        await session.execute(
            select(WorkflowTransition.from_column_id, WorkflowTransition.to_column_id)
            .where(WorkflowTransition.project_id == project_id)
            .order_by(WorkflowTransition.from_column_id, WorkflowTransition.to_column_id)
        )
    ).all()
    columns = await list_columns(session, project_id)
    return Workflow(
        project_id=project_id,
        transitions=[Transition(from_column_id=f, to_column_id=t) for f, t in transitions],
        wip_limits=[
            WipLimit(column_id=c.id, limit=c.wip_limit) for c in columns if c.wip_limit is not None
        ],
    )


def _bad(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"loc": ["body", field], "msg": message}])


async def put_workflow(
    session: AsyncSession, caller: Caller, access: ProjectAccess, data: WorkflowUpdate
) -> Workflow:
    """Replace the project's rules as a whole (project admins)."""
    access.require(Role.admin, "Only project admins change the workflow")
    project_id = access.project.id
    columns = {c.id: c for c in await list_columns(session, project_id)}
    pairs: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for rule in data.transitions:
        if rule.from_column_id not in columns or rule.to_column_id not in columns:
            raise _bad("transitions", "every column must be a column of this board")
        if rule.from_column_id == rule.to_column_id:
            raise _bad("transitions", "a transition joins two different columns")
        pairs.add((rule.from_column_id, rule.to_column_id))
    limits: dict[uuid.UUID, int | None] = {}
    for wip in data.wip_limits:
        if wip.column_id not in columns:
            raise _bad("wip_limits", "every column must be a column of this board")
        if wip.column_id in limits:
            raise _bad("wip_limits", "one limit per column")
        limits[wip.column_id] = wip.limit
    await session.execute(
        delete(WorkflowTransition)
        .where(WorkflowTransition.project_id == project_id)
        .execution_options(synchronize_session=False)
    )
    session.add_all(
        WorkflowTransition(project_id=project_id, from_column_id=f, to_column_id=t)
        for f, t in sorted(pairs)
    )
    for column in columns.values():
        column.wip_limit = limits.get(column.id)
    await session.flush()
    workflow = await get_workflow(session, project_id)
    await record(
        session,
        "workflow.updated",
        topic=topics.project(project_id),
        actor=caller.actor,
        data=workflow,
        workspace_id=access.project.workspace_id,
        subject_id=project_id,
    )
    return workflow


async def check_entry(
    session: AsyncSession,
    project_id: uuid.UUID,
    source: uuid.UUID | None,
    target: BoardColumn,
) -> None:
    """Refuse a task entering ``target`` (from ``source``; None: a new task) when a rule
    forbids it. The caller holds the locks of both columns."""
    if source == target.id:
        return
    if source is not None:
        allowed = set(
            await session.scalars(
                select(WorkflowTransition.to_column_id).where(
                    WorkflowTransition.project_id == project_id,
                    WorkflowTransition.from_column_id == source,
                )
            )
        )
        configured = allowed or await session.scalar(
            select(WorkflowTransition.project_id)
            .where(WorkflowTransition.project_id == project_id)
            .limit(1)
        )
        if configured and target.id not in allowed:
            raise WorkflowViolation(
                "This board does not allow moving a task from that column to this one",
                details={
                    "rule": "transition",
                    "from_column_id": str(source),
                    "to_column_id": str(target.id),
                    "allowed_to_column_ids": sorted(str(c) for c in allowed),
                },
            )
    # Read under the lock: the count this move would change.
    limit, count = (
        await session.execute(
            select(BoardColumn.wip_limit, BoardColumn.task_count).where(BoardColumn.id == target.id)
        )
    ).one()
    if limit is not None and count >= limit:
        raise WorkflowViolation(
            f"The column is at its WIP limit ({limit})",
            details={
                "rule": "wip_limit",
                "column_id": str(target.id),
                "limit": limit,
                "count": count,
            },
        )
