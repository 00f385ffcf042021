"""Workspaces and their members."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess, count_admins, lock_workspace, roles_changed
from huddle.auth.models import User
from huddle.chat import channels as chat_channels
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, NotFound
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record
from huddle.projects.models import Project, ProjectPermission
from huddle.retention.service import check_workspace_limit
from huddle.workspaces.models import Membership, Team, TeamMember, Workspace
from huddle.workspaces.schemas import (
    MemberAdd,
    MemberEventData,
    MemberRead,
    UserSummary,
    WorkspaceCreate,
    WorkspaceData,
    WorkspaceRead,
    WorkspaceUpdate,
)


def workspace_read(workspace: Workspace, role: Role) -> WorkspaceRead:
    return WorkspaceRead(**WorkspaceData.model_validate(workspace).model_dump(), role=role)


def member_read(membership: Membership, user: User) -> MemberRead:
    return MemberRead(
        user=UserSummary.model_validate(user), role=membership.role, joined_at=membership.created_at
    )


async def _record_workspace(
    session: AsyncSession, caller: Caller, type: str, ws: Workspace
) -> None:
    await record(
        session,
        type,
        topic=topics.workspace(ws.id),
        actor=caller.actor,
        data=WorkspaceData.model_validate(ws),
        workspace_id=ws.id,
        subject_id=ws.id,
    )


async def _record_member(
    session: AsyncSession, caller: Caller, type: str, membership: Membership, user: User
) -> None:
    data = MemberEventData(
        **member_read(membership, user).model_dump(), workspace_id=membership.workspace_id
    )
    await record(
        session,
        type,
        topic=topics.workspace(membership.workspace_id),
        actor=caller.actor,
        data=data,
        workspace_id=membership.workspace_id,
        subject_id=user.id,
    )


# --- workspaces ---------------------------------------------------------------------------


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    return slug or "workspace"


async def _free_slug(session: AsyncSession, name: str) -> str:
    base = _slugify(name)
    taken = set(
        await session.scalars(select(Workspace.slug).where(Workspace.slug.like(f"{base}%")))
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def _flush_slug(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("That slug is already taken", details={"field": "slug"}) from exc


async def create_workspace(
    session: AsyncSession, cache: ScopedCache, caller: Caller, data: WorkspaceCreate
) -> WorkspaceRead:
    """Create a workspace; the caller becomes its owner and first admin."""
    if data.slug is not None:
        if await session.scalar(select(Workspace.id).where(Workspace.slug == data.slug)):
            raise Conflict("That slug is already taken", details={"field": "slug"})
        slug = data.slug
    else:
        slug = await _free_slug(session, data.name)
    workspace = Workspace(name=data.name, slug=slug, owner_id=caller.id)
    session.add(workspace)
    await _flush_slug(session)
    membership = Membership(workspace_id=workspace.id, user_id=caller.id, role=Role.admin)
    session.add(membership)
    await session.flush()
    roles_changed(session, cache, workspace.id)
    await _record_workspace(session, caller, "workspace.created", workspace)
    return workspace_read(workspace, Role.admin)


async def list_workspaces(
    session: AsyncSession, caller: Caller, page: PageParams
) -> tuple[list[WorkspaceRead], str | None]:
    query = (
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == caller.id, Workspace.deleted_at.is_(None))
    )
    rows, cursor = await paginate(
        session, query, Workspace.id, page, newest_first=False, cursor_of=lambda row: row[0].id
    )
    return [workspace_read(ws, role) for ws, role in rows], cursor


async def update_workspace(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    data: WorkspaceUpdate,
    site_retention_days: int | None = None,
) -> WorkspaceRead:
    """Rename, change the slug or the retention limit (admins); an explicit null
    ``data_retention_days`` clears the limit (the site's applies)."""
    access.require(Role.admin)
    workspace = access.workspace
    before = (workspace.name, workspace.slug, workspace.data_retention_days)
    if "data_retention_days" in data.model_fields_set:
        check_workspace_limit(data.data_retention_days, site_retention_days)
        workspace.data_retention_days = data.data_retention_days
    if data.slug is not None and data.slug != workspace.slug:
        taken = await session.scalar(select(Workspace.id).where(Workspace.slug == data.slug))
        if taken is not None:
            raise Conflict("That slug is already taken", details={"field": "slug"})
        workspace.slug = data.slug
    if data.name is not None:
        workspace.name = data.name
    await _flush_slug(session)
    if (workspace.name, workspace.slug, workspace.data_retention_days) != before:
        await _record_workspace(session, caller, "workspace.updated", workspace)
    return workspace_read(workspace, access.role)


async def delete_workspace(session: AsyncSession, caller: Caller, access: WorkspaceAccess) -> None:
    """Soft-delete: gone for everyone at once; history stays readable by its members."""
    access.require(Role.admin)
    workspace = access.workspace
    workspace.deleted_at = utcnow()
    await _record_workspace(session, caller, "workspace.deleted", workspace)
    # Free the slug for a new workspace ("~" never appears in a valid slug).
    workspace.slug = f"{workspace.slug[:60]}~{workspace.id.hex[:12]}"
    await session.flush()


# --- members ------------------------------------------------------------------------------


async def list_members(
    session: AsyncSession, access: WorkspaceAccess, page: PageParams
) -> tuple[list[MemberRead], str | None]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == access.workspace.id)
    )
    rows, cursor = await paginate(
        session, query, Membership.id, page, newest_first=False, cursor_of=lambda row: row[0].id
    )
    return [member_read(m, u) for m, u in rows], cursor


async def add_member(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: WorkspaceAccess,
    data: MemberAdd,
) -> MemberRead:
    """Add an existing user (by id or email) with a role (admins only)."""
    access.require(Role.admin)
    column = User.id == data.user_id if data.user_id is not None else User.email == data.email
    user = await session.scalar(select(User).where(column))
    if user is None or not user.is_active:
        raise NotFound("User not found")
    return await join(session, cache, caller, access.workspace.id, user, data.role)


async def join(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    workspace_id: uuid.UUID,
    user: User,
    role: Role,
) -> MemberRead:
    """Make ``user`` a member (409 if they already are) and record ``member.added``."""
    existing = await session.scalar(
        select(Membership.id).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user.id
        )
    )
    if existing is not None:
        raise Conflict("Already a member of this workspace")
    membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role)
    session.add(membership)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("Already a member of this workspace") from exc
    roles_changed(session, cache, workspace_id)
    await _record_member(session, caller, "member.added", membership, user)
    return member_read(membership, user)


async def _membership(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Membership, User]:
    row = (
        await session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound("Member not found")
    return row[0], row[1]


async def _ensure_another_admin(session: AsyncSession, membership: Membership, user: User) -> None:
    """Refuse to take away the last active admin (deactivated admins cannot act)."""
    if (
        membership.role is Role.admin
        and user.is_active
        and await count_admins(session, membership.workspace_id) <= 1
    ):
        raise Conflict("A workspace needs at least one admin: promote someone else first")


async def change_role(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
    role: Role,
) -> MemberRead:
    access.require(Role.admin)
    await lock_workspace(session, access.workspace.id)
    membership, user = await _membership(session, access.workspace.id, user_id)
    if membership.role is role:
        return member_read(membership, user)
    if role is not Role.admin:
        await _ensure_another_admin(session, membership, user)
    membership.role = role
    await session.flush()
    roles_changed(session, cache, access.workspace.id)
    await _record_member(session, caller, "member.role_changed", membership, user)
    return member_read(membership, user)


async def remove_member(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
) -> None:
    """An admin removes a member, or a member leaves; the last admin can do neither."""
    if user_id != caller.id:
        access.require(Role.admin)
    await lock_workspace(session, access.workspace.id)
    membership, user = await _membership(session, access.workspace.id, user_id)
    await _ensure_another_admin(session, membership, user)
    await _record_member(session, caller, "member.removed", membership, user)
    # Their teams, project grants and private channels in this workspace go with them,
    # so rejoining later starts from the role given then, not from forgotten grants.
    # (DMs stay: they are the person's own conversations, invisible while they are out.)
    workspace_id = access.workspace.id
    await chat_channels.leave_workspace(session, caller, workspace_id, user_id)
    await session.execute(
        delete(TeamMember).where(
            TeamMember.user_id == user_id,
            TeamMember.team_id.in_(select(Team.id).where(Team.workspace_id == workspace_id)),
        )
    )
    await session.execute(
        delete(ProjectPermission).where(
            ProjectPermission.user_id == user_id,
            ProjectPermission.project_id.in_(
                select(Project.id).where(Project.workspace_id == workspace_id)
            ),
        )
    )
    await session.delete(membership)
    await session.flush()
    roles_changed(session, cache, workspace_id)
