"""Workspaces, members, invitations and teams over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel

from huddle.access.deps import CurrentCaller, RoleCache, WorkspaceAccessDep
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep
from huddle.workspaces import invitations, service, teams
from huddle.workspaces.models import Team
from huddle.workspaces.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberAdd,
    MemberRead,
    MemberUpdate,
    TeamCreate,
    TeamMemberAdd,
    TeamRead,
    TeamUpdate,
    UserSummary,
    WorkspaceCreate,
    WorkspaceRead,
    WorkspaceUpdate,
)

router = APIRouter(prefix="/api", tags=["workspaces"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT


def get_mailer(request: Request) -> invitations.Mailer:
    mailer: invitations.Mailer = request.app.state.mailer
    return mailer


MailerDep = Annotated[invitations.Mailer, Depends(get_mailer)]


# --- workspaces ---------------------------------------------------------------------------


@router.post("/workspaces", status_code=status.HTTP_201_CREATED, response_model=WorkspaceRead)
async def create_workspace(
    data: WorkspaceCreate, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> WorkspaceRead:
    """Create a workspace; the caller becomes its admin."""
    return await service.create_workspace(session, cache, caller, data)


@router.get("/workspaces", response_model=Page[WorkspaceRead])
async def list_workspaces(
    caller: CurrentCaller, session: SessionDep, page: PageParamsDep
) -> object:
    """The caller's workspaces, with the caller's role in each."""
    items, cursor = await service.list_workspaces(session, caller, page)
    return {"items": items, "next_cursor": cursor}


@router.get("/workspaces/{wid}", response_model=WorkspaceRead)
async def get_workspace(access: WorkspaceAccessDep) -> WorkspaceRead:
    """One workspace the caller belongs to."""
    return service.workspace_read(access.workspace, access.role)


@router.patch("/workspaces/{wid}", response_model=WorkspaceRead)
async def update_workspace(
    data: WorkspaceUpdate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    request: Request,
) -> WorkspaceRead:
    """Rename a workspace, change its slug or its retention limit (admins)."""
    site_days = request.app.state.settings.data_retention_days
    return await service.update_workspace(session, caller, access, data, site_days)


@router.delete("/workspaces/{wid}", status_code=NO_CONTENT)
async def delete_workspace(
    access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Delete a workspace (admins)."""
    await service.delete_workspace(session, caller, access)
    return Response(status_code=NO_CONTENT)


# --- members ------------------------------------------------------------------------------


@router.get("/workspaces/{wid}/members", response_model=Page[MemberRead])
async def list_members(
    access: WorkspaceAccessDep, session: SessionDep, page: PageParamsDep
) -> object:
    """Members of the workspace, in the order they joined."""
    items, cursor = await service.list_members(session, access, page)
    return {"items": items, "next_cursor": cursor}


@router.post(
    "/workspaces/{wid}/members", status_code=status.HTTP_201_CREATED, response_model=MemberRead
)
async def add_member(
    data: MemberAdd,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> MemberRead:
    """Add an existing user by id or email (admins)."""
    return await service.add_member(session, cache, caller, access, data)


@router.patch("/workspaces/{wid}/members/{uid}", response_model=MemberRead)
async def change_member_role(
    uid: uuid.UUID,
    data: MemberUpdate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> MemberRead:
    """Change a member's role (admins); the last admin cannot be demoted."""
    return await service.change_role(session, cache, caller, access, uid, data.role)


@router.delete("/workspaces/{wid}/members/{uid}", status_code=NO_CONTENT)
async def remove_member(
    uid: uuid.UUID,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> Response:
    """Remove a member (admins), or leave (yourself); the last admin can do neither."""
    await service.remove_member(session, cache, caller, access, uid)
    return Response(status_code=NO_CONTENT)


# --- invitations --------------------------------------------------------------------------


@router.post(
    "/workspaces/{wid}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationCreated,
)
async def create_invitation(
    data: InvitationCreate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    mailer: MailerDep,
) -> InvitationCreated:
    """Invite someone by email (admins); the link is mailed and its token shown once."""
    return await invitations.create_invitation(session, caller, access, data, mailer)


@router.get("/workspaces/{wid}/invitations", response_model=Page[InvitationRead])
async def list_invitations(
    access: WorkspaceAccessDep,
    session: SessionDep,
    page: PageParamsDep,
    pending: Annotated[
        bool, Query(description="Only pending (not accepted, revoked or expired)")
    ] = False,
) -> object:
    """The workspace's invitations, newest first (admins)."""
    items, cursor = await invitations.list_invitations(session, access, page, pending)
    return {"items": items, "next_cursor": cursor}


@router.delete("/workspaces/{wid}/invitations/{iid}", status_code=NO_CONTENT)
async def revoke_invitation(
    iid: uuid.UUID, access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Revoke a pending invitation (admins)."""
    await invitations.revoke_invitation(session, caller, access, iid)
    return Response(status_code=NO_CONTENT)


class AcceptedRead(BaseModel):
    workspace: WorkspaceRead
    member: MemberRead


@router.post("/invitations/accept", response_model=AcceptedRead)
async def accept_invitation(
    data: InvitationAccept, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> AcceptedRead:
    """Accept an invitation sent to the caller's email; the caller joins the workspace."""
    accepted = await invitations.accept_invitation(session, cache, caller, data.token)
    return AcceptedRead(
        workspace=service.workspace_read(accepted.workspace, accepted.member.role),
        member=accepted.member,
    )


# --- teams --------------------------------------------------------------------------------


@router.post(
    "/workspaces/{wid}/teams", status_code=status.HTTP_201_CREATED, response_model=TeamRead
)
async def create_team(
    data: TeamCreate, access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> object:
    """Create a team with an @handle (admins)."""
    return await teams.create_team(session, caller, access, data)


@router.get("/workspaces/{wid}/teams", response_model=Page[TeamRead])
async def list_teams(
    access: WorkspaceAccessDep, session: SessionDep, page: PageParamsDep
) -> object:
    """The workspace's teams."""
    items, cursor = await teams.list_teams(session, access, page)
    return {"items": items, "next_cursor": cursor}


async def _team(
    tid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[Team, teams.WorkspaceAccess]:
    return await teams.team_access(session, cache, caller, tid)


TeamDep = Annotated[tuple[Team, teams.WorkspaceAccess], Depends(_team)]


@router.get("/teams/{tid}", response_model=TeamRead)
async def get_team(team: TeamDep) -> object:
    """One team."""
    return team[0]


@router.patch("/teams/{tid}", response_model=TeamRead)
async def update_team(
    data: TeamUpdate, team: TeamDep, caller: CurrentCaller, session: SessionDep
) -> object:
    """Rename a team or change its handle (admins)."""
    return await teams.update_team(session, caller, team[0], team[1], data)


@router.delete("/teams/{tid}", status_code=NO_CONTENT)
async def delete_team(
    team: TeamDep, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> Response:
    """Delete a team and its project grants (admins)."""
    await teams.delete_team(session, cache, caller, team[0], team[1])
    return Response(status_code=NO_CONTENT)


@router.get("/teams/{tid}/members", response_model=Page[UserSummary])
async def list_team_members(team: TeamDep, session: SessionDep, page: PageParamsDep) -> object:
    """The team's members."""
    items, cursor = await teams.list_team_members(session, team[0], page)
    return {"items": items, "next_cursor": cursor}


@router.post(
    "/teams/{tid}/members", status_code=status.HTTP_201_CREATED, response_model=UserSummary
)
async def add_team_member(
    data: TeamMemberAdd,
    team: TeamDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> UserSummary:
    """Add a workspace member to the team (admins)."""
    return await teams.add_team_member(session, cache, caller, team[0], team[1], data.user_id)


@router.delete("/teams/{tid}/members/{uid}", status_code=NO_CONTENT)
async def remove_team_member(
    uid: uuid.UUID, team: TeamDep, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> Response:
    """Remove someone from the team (admins)."""
    await teams.remove_team_member(session, cache, caller, team[0], team[1], uid)
    return Response(status_code=NO_CONTENT)
