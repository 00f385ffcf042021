"""Teams inside a workspace: named groups with an @handle, grantable on projects."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess, roles_changed, workspace_access
from huddle.auth.models import User
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.events import topics
from huddle.events.service import record
from huddle.workspaces.models import Membership, Team, TeamMember
from huddle.workspaces.schemas import (
    TeamCreate,
    TeamMemberEventData,
    TeamRead,
    TeamUpdate,
    UserSummary,
)


async def team_access(
    session: AsyncSession, cache: ScopedCache, caller: Caller, team_id: uuid.UUID
) -> tuple[Team, WorkspaceAccess]:
    """A team and the caller's access to its workspace; 404 for non-members."""
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound("Team not found")
    try:
        access = await workspace_access(session, cache, caller.id, team.workspace_id)
    except NotFound:
        raise NotFound("Team not found") from None
    return team, access


async def _record_team(session: AsyncSession, caller: Caller, type: str, team: Team) -> None:
    await record(
        session,
        type,
        topic=topics.workspace(team.workspace_id),
        actor=caller.actor,
        data=TeamRead.model_validate(team),
        workspace_id=team.workspace_id,
        subject_id=team.id,
    )


async def _flush_handle(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "That handle is already taken in this workspace", details={"field": "handle"}
        ) from exc


async def _handle_free(session: AsyncSession, workspace_id: uuid.UUID, handle: str) -> None:
    taken = await session.scalar(
        select(Team.id).where(Team.workspace_id == workspace_id, Team.handle == handle)
    )
    if taken is not None:
        raise Conflict(
            "That handle is already taken in this workspace", details={"field": "handle"}
        )


async def create_team(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, data: TeamCreate
) -> Team:
    access.require(Role.admin)
    await _handle_free(session, access.workspace.id, data.handle)
    team = Team(workspace_id=access.workspace.id, name=data.name, handle=data.handle)
    session.add(team)
    await _flush_handle(session)
    await _record_team(session, caller, "team.created", team)
    return team


async def list_teams(
    session: AsyncSession, access: WorkspaceAccess, page: PageParams
) -> tuple[list[Team], str | None]:
    query = select(Team).where(Team.workspace_id == access.workspace.id)
    return await paginate(session, query, Team.id, page, newest_first=False)


async def update_team(
    session: AsyncSession, caller: Caller, team: Team, access: WorkspaceAccess, data: TeamUpdate
) -> Team:
    access.require(Role.admin)
    before = (team.name, team.handle)
    if data.handle is not None and data.handle != team.handle:
        await _handle_free(session, team.workspace_id, data.handle)
        team.handle = data.handle
    if data.name is not None:
        team.name = data.name
    await _flush_handle(session)
    if (team.name, team.handle) != before:
        await _record_team(session, caller, "team.updated", team)
    return team


async def delete_team(
    session: AsyncSession, cache: ScopedCache, caller: Caller, team: Team, access: WorkspaceAccess
) -> None:
    access.require(Role.admin)
    await _record_team(session, caller, "team.deleted", team)
    await session.delete(team)
    await session.flush()
    roles_changed(session, cache, team.workspace_id)


async def list_team_members(
    session: AsyncSession, team: Team, page: PageParams
) -> tuple[list[UserSummary], str | None]:
    query = (
        select(User, TeamMember.created_at)
        .join(TeamMember, TeamMember.user_id == User.id)
        .where(TeamMember.team_id == team.id)
    )
    rows, cursor = await paginate(
        session, query, User.id, page, newest_first=False, cursor_of=lambda row: row[0].id
    )
    return [UserSummary.model_validate(user) for user, _ in rows], cursor


async def _record_team_member(
    session: AsyncSession, caller: Caller, type: str, team: Team, user: User
) -> None:
    await record(
        session,
        type,
        topic=topics.workspace(team.workspace_id),
        actor=caller.actor,
        data=TeamMemberEventData(
            team_id=team.id, workspace_id=team.workspace_id, user=UserSummary.model_validate(user)
        ),
        workspace_id=team.workspace_id,
        subject_id=team.id,
    )


async def add_team_member(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    team: Team,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
) -> UserSummary:
    """Add a workspace member to a team (422 for someone outside the workspace)."""
    access.require(Role.admin)
    user = await session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(User.id == user_id, Membership.workspace_id == team.workspace_id)
    )
    if user is None:
        raise ValidationFailed(
            "Only members of the workspace can join its teams",
            details=[{"loc": ["body", "user_id"], "msg": "not a member of this workspace"}],
        )
    exists = await session.get(TeamMember, (team.id, user_id))
    if exists is not None:
        raise Conflict("Already in this team")
    session.add(TeamMember(team_id=team.id, user_id=user_id))
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent add won the race
        raise Conflict("Already in this team") from exc
    roles_changed(session, cache, team.workspace_id)
    await _record_team_member(session, caller, "team.member_added", team, user)
    return UserSummary.model_validate(user)


async def remove_team_member(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    team: Team,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
) -> None:
    access.require(Role.admin)
    row = await session.get(TeamMember, (team.id, user_id))
    if row is None:
        raise NotFound("Not in this team")
    user = await session.get(User, user_id)
    assert user is not None
    await _record_team_member(session, caller, "team.member_removed", team, user)
    await session.delete(row)
    await session.flush()
    roles_changed(session, cache, team.workspace_id)
