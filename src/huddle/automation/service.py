"""Automation rules of a project: every project reader sees them, project admins write
them (``automation.*`` events on the project's topic). What a rule does when it runs is
in :mod:`huddle.automation.engine`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_access
from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess
from huddle.automation.models import Automation, AutomationRun
from huddle.automation.schemas import (
    AssignAction,
    AutomationCreate,
    AutomationRead,
    AutomationUpdate,
    MoveAction,
    PostMessageAction,
    Trigger,
    dump,
)
from huddle.core.cache import ScopedCache
from huddle.core.errors import AppError, NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.schemas import Actor
from huddle.events.service import record
from huddle.tasks.models import BoardColumn
from huddle.tasks.service import check_assignee

MANAGE = "Only project admins manage automations"


def _bad(loc: list[str | int], message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"loc": ["body", *loc], "msg": message}])


async def _column(
    session: AsyncSession, project_id: uuid.UUID, column_id: uuid.UUID, loc: list[str | int]
) -> None:
    column = await session.get(BoardColumn, column_id)
    if column is None or column.project_id != project_id:
        raise _bad(loc, "not a column of this board")


async def _check(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    trigger: Trigger,
    actions: list[Any],
) -> None:
    """Everything a rule names must exist in the project, and its saver must be allowed
    to do what it does (post in its channels): 422 naming the field otherwise."""
    project = access.project
    if trigger.column_id is not None:
        await _column(session, project.id, trigger.column_id, ["trigger", "column_id"])
    for index, action in enumerate(actions):
        loc: list[str | int] = ["actions", index]
        if isinstance(action, MoveAction):
            await _column(session, project.id, action.column_id, [*loc, "column_id"])
        elif isinstance(action, AssignAction):
            try:
                await check_assignee(session, cache, project, action.user_id)
            except ValidationFailed:
                raise _bad([*loc, "user_id"], "cannot see this project") from None
        elif isinstance(action, PostMessageAction):
            try:
                channel = await channel_access(session, cache, caller.id, action.channel_id)
                channel.require_post()
            except AppError:
                raise _bad([*loc, "channel_id"], "not a channel you can post in") from None
            if channel.channel.workspace_id != project.workspace_id:
                raise _bad([*loc, "channel_id"], "not a channel you can post in")


async def record_rule_event(
    session: AsyncSession,
    actor: Actor,
    workspace_id: uuid.UUID,
    type_: str,
    rule: Automation,
) -> None:
    """``automation.*`` on the rule's project topic (also when the engine stops a rule)."""
    await record(
        session,
        type_,
        topic=topics.project(rule.project_id),
        actor=actor,
        data=AutomationRead.model_validate(rule),
        workspace_id=workspace_id,
        subject_id=rule.id,
    )


async def _record(
    session: AsyncSession, caller: Caller, access: ProjectAccess, type_: str, rule: Automation
) -> None:
    await record_rule_event(session, caller.actor, access.project.workspace_id, type_, rule)


async def get_automation(
    session: AsyncSession, access: ProjectAccess, automation_id: uuid.UUID
) -> Automation:
    rule = await session.get(Automation, automation_id)
    if rule is None or rule.project_id != access.project.id:
        raise NotFound("Automation not found")
    return rule


async def list_automations(
    session: AsyncSession, access: ProjectAccess, page: PageParams
) -> tuple[list[Automation], str | None]:
    query = select(Automation).where(Automation.project_id == access.project.id)
    return await paginate(session, query, Automation.id, page, newest_first=False)


async def create_automation(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    data: AutomationCreate,
) -> Automation:
    access.require(Role.admin, MANAGE)
    await _check(session, cache, caller, access, data.trigger, list(data.actions))
    rule = Automation(
        project_id=access.project.id,
        name=data.name,
        enabled=data.enabled,
        trigger=dump(data.trigger),
        actions=[dump(a) for a in data.actions],
        owner_id=caller.id,
        created_by=caller.id,
    )
    session.add(rule)
    await session.flush()
    await _record(session, caller, access, "automation.created", rule)
    return rule


async def update_automation(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    rule: Automation,
    data: AutomationUpdate,
) -> Automation:
    access.require(Role.admin, MANAGE)
    current = AutomationRead.model_validate(rule)
    trigger = data.trigger if data.trigger is not None else current.trigger
    actions = list(data.actions) if data.actions is not None else list(current.actions)
    await _check(session, cache, caller, access, trigger, actions)
    before = (rule.name, rule.enabled, rule.trigger, rule.actions, rule.owner_id)
    if data.name is not None:
        rule.name = data.name
    if data.trigger is not None:
        rule.trigger = dump(data.trigger)
    if data.actions is not None:
        rule.actions = [dump(a) for a in data.actions]
    if data.enabled is not None:
        if data.enabled and not rule.enabled:
            rule.active_since = utcnow()  # what happened while it was off stays undone
        rule.enabled = data.enabled
    if rule.enabled:
        rule.disabled_reason = None
    rule.owner_id = caller.id  # it acts with the permissions of whoever set it up last
    if (rule.name, rule.enabled, rule.trigger, rule.actions, rule.owner_id) != before:
        rule.updated_at = utcnow()
        await session.flush()
        await _record(session, caller, access, "automation.updated", rule)
    return rule


async def delete_automation(
    session: AsyncSession, caller: Caller, access: ProjectAccess, rule: Automation
) -> None:
    access.require(Role.admin, MANAGE)
    await _record(session, caller, access, "automation.deleted", rule)
    await session.delete(rule)
    await session.flush()


async def list_runs(
    session: AsyncSession, rule: Automation, page: PageParams
) -> tuple[list[AutomationRun], str | None]:
    """The rule's runs, newest first."""
    query = select(AutomationRun).where(AutomationRun.automation_id == rule.id)
    return await paginate(session, query, AutomationRun.id, page)
