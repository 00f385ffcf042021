"""Automation rules over HTTP: ``/api/projects/{pid}/automations``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from huddle.access.deps import CurrentCaller, ProjectAccessDep, RoleCache
from huddle.automation import service
from huddle.automation.schemas import (
    AutomationCreate,
    AutomationRead,
    AutomationRunRead,
    AutomationUpdate,
)
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep

router = APIRouter(prefix="/api", tags=["automations"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT
BASE = "/projects/{pid}/automations"


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=AutomationRead)
async def create_automation(
    data: AutomationCreate,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> object:
    """Add a rule (project admins): *when* a task event matches `trigger`, *then* the
    `actions`, in order, all or none, with the permissions of the rule's owner (you)."""
    return await service.create_automation(session, cache, caller, access, data)


@router.get(BASE, response_model=Page[AutomationRead])
async def list_automations(
    access: ProjectAccessDep, session: SessionDep, page: PageParamsDep
) -> object:
    """The project's rules (everyone who can see the project), oldest first."""
    items, cursor = await service.list_automations(session, access, page)
    return {"items": items, "next_cursor": cursor}


@router.get(BASE + "/{automation_id}", response_model=AutomationRead)
async def get_automation(
    automation_id: uuid.UUID, access: ProjectAccessDep, session: SessionDep
) -> object:
    """One rule."""
    return await service.get_automation(session, access, automation_id)


@router.patch(BASE + "/{automation_id}", response_model=AutomationRead)
async def update_automation(
    automation_id: uuid.UUID,
    data: AutomationUpdate,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> object:
    """Change a rule (project admins); you become its owner. `enabled: true` switches
    back on a rule that was switched off."""
    rule = await service.get_automation(session, access, automation_id)
    return await service.update_automation(session, cache, caller, access, rule, data)


@router.delete(BASE + "/{automation_id}", status_code=NO_CONTENT)
async def delete_automation(
    automation_id: uuid.UUID, access: ProjectAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Delete a rule and its runs (project admins)."""
    rule = await service.get_automation(session, access, automation_id)
    await service.delete_automation(session, caller, access, rule)
    return Response(status_code=NO_CONTENT)


@router.get(BASE + "/{automation_id}/runs", response_model=Page[AutomationRunRead])
async def list_runs(
    automation_id: uuid.UUID, access: ProjectAccessDep, session: SessionDep, page: PageParamsDep
) -> object:
    """What the rule did, newest first: each run's outcome per action, or why it failed."""
    rule = await service.get_automation(session, access, automation_id)
    items, cursor = await service.list_runs(session, rule, page)
    return {"items": items, "next_cursor": cursor}
