"""Projects and their grants over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from huddle.access.deps import CurrentCaller, ProjectAccessDep, RoleCache, WorkspaceAccessDep
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep
from huddle.projects import service
from huddle.projects.schemas import GrantRead, GrantSet, ProjectCreate, ProjectRead, ProjectUpdate

router = APIRouter(prefix="/api", tags=["projects"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.post(
    "/workspaces/{wid}/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectRead
)
async def create_project(
    data: ProjectCreate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> ProjectRead:
    """Create a project (members and admins); the creator is its admin."""
    return await service.create_project(session, cache, caller, access, data)


@router.get("/workspaces/{wid}/projects", response_model=Page[ProjectRead])
async def list_projects(
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    page: PageParamsDep,
    include_archived: Annotated[bool, Query()] = False,
    client_id: Annotated[uuid.UUID | None, Query(description="Only this client's")] = None,
) -> object:
    """Projects of the workspace the caller can see."""
    items, cursor = await service.list_projects(
        session, caller, access, page, include_archived, client_id
    )
    return {"items": items, "next_cursor": cursor}


@router.get("/projects/{pid}", response_model=ProjectRead)
async def get_project(access: ProjectAccessDep) -> ProjectRead:
    """One project, with the caller's effective role."""
    return service.project_read(access.project, access.role)


@router.patch("/projects/{pid}", response_model=ProjectRead)
async def update_project(
    data: ProjectUpdate, access: ProjectAccessDep, caller: CurrentCaller, session: SessionDep
) -> ProjectRead:
    """Change name, description, privacy or archive state (project admins)."""
    return await service.update_project(session, caller, access, data)


@router.delete("/projects/{pid}", status_code=NO_CONTENT)
async def delete_project(
    access: ProjectAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Delete a project (project admins)."""
    await service.delete_project(session, caller, access)
    return Response(status_code=NO_CONTENT)


@router.get("/projects/{pid}/permissions", response_model=Page[GrantRead])
async def list_grants(access: ProjectAccessDep, session: SessionDep, page: PageParamsDep) -> object:
    """The project's grants to users and teams, oldest first."""
    items, cursor = await service.list_grants(session, access, page)
    return {"items": items, "next_cursor": cursor}


@router.put("/projects/{pid}/permissions/{uid}", response_model=GrantRead)
async def set_user_grant(
    uid: uuid.UUID,
    data: GrantSet,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> object:
    """Grant a workspace member a role on the project (project admins)."""
    return await service.set_grant(session, cache, caller, access, data.role, user_id=uid)


@router.delete("/projects/{pid}/permissions/{uid}", status_code=NO_CONTENT)
async def remove_user_grant(
    uid: uuid.UUID,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> Response:
    """Remove a member's grant (project admins)."""
    await service.remove_grant(session, cache, caller, access, user_id=uid)
    return Response(status_code=NO_CONTENT)


@router.put("/projects/{pid}/team-permissions/{tid}", response_model=GrantRead)
async def set_team_grant(
    tid: uuid.UUID,
    data: GrantSet,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> object:
    """Grant a team of the workspace a role on the project (project admins)."""
    return await service.set_grant(session, cache, caller, access, data.role, team_id=tid)


@router.delete("/projects/{pid}/team-permissions/{tid}", status_code=NO_CONTENT)
async def remove_team_grant(
    tid: uuid.UUID,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> Response:
    """Remove a team's grant (project admins)."""
    await service.remove_grant(session, cache, caller, access, team_id=tid)
    return Response(status_code=NO_CONTENT)
