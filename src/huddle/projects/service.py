"""Projects and project grants."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import (
    ProjectAccess,
    WorkspaceAccess,
    best_grants,
    effective_role,
    lock_project,
    roles_changed,
    visible_projects,
)
from huddle.chat import channels as chat_channels
from huddle.clients.service import client_in_workspace
from huddle.core.cache import ScopedCache
from huddle.core.errors import NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record
from huddle.projects.models import Project, ProjectPermission
from huddle.projects.schemas import (
    GrantRead,
    ProjectCreate,
    ProjectData,
    ProjectRead,
    ProjectUpdate,
)
from huddle.tasks.columns import create_default_columns
from huddle.workspaces.models import Membership, Team


def project_topic(project: Project) -> str:
    """Public projects speak on the workspace topic, private ones only on their own."""
    return (
        topics.project(project.id) if project.is_private else topics.workspace(project.workspace_id)
    )


def project_read(project: Project, role: Role) -> ProjectRead:
    return ProjectRead(**ProjectData.model_validate(project).model_dump(), role=role)


async def _record(session: AsyncSession, caller: Caller, type: str, project: Project) -> None:
    await record(
        session,
        type,
        topic=project_topic(project),
        actor=caller.actor,
        data=ProjectData.model_validate(project),
        workspace_id=project.workspace_id,
        subject_id=project.id,
    )


async def create_project(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: WorkspaceAccess,
    data: ProjectCreate,
) -> ProjectRead:
    """Create a project (members and admins). The creator is granted admin on it."""
    access.require(Role.member, "Viewers cannot create projects")
    if data.client_id is not None:
        await client_in_workspace(session, access.workspace.id, data.client_id, "client_id")
    project = Project(
        workspace_id=access.workspace.id,
        client_id=data.client_id,
        name=data.name,
        description=data.description,
        is_private=data.is_private,
        created_by=caller.id,
    )
    session.add(project)
    await session.flush()
    await create_default_columns(session, project.id)
    # Without this grant, a member creating a private project would lock themselves out.
    session.add(ProjectPermission(project_id=project.id, user_id=caller.id, role=Role.admin))
    await session.flush()
    roles_changed(session, cache, project.workspace_id)
    await _record(session, caller, "project.created", project)
    return project_read(project, Role.admin)


async def list_projects(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    page: PageParams,
    include_archived: bool,
    client_id: uuid.UUID | None = None,
) -> tuple[list[ProjectRead], str | None]:
    """Projects the caller can see, each with the caller's role (two queries in all)."""
    query = visible_projects(access.workspace.id, caller.id, access.role)
    if not include_archived:
        query = query.where(Project.archived_at.is_(None))
    if client_id is not None:
        query = query.where(Project.client_id == client_id)
    projects, cursor = await paginate(session, query, Project.id, page, newest_first=False)
    grants = await best_grants(session, [p.id for p in projects], caller.id)
    items = []
    for project in projects:
        role = effective_role(project.is_private, access.role, grants.get(project.id))
        assert role is not None
        items.append(project_read(project, role))
    return items, cursor


async def update_project(
    session: AsyncSession, caller: Caller, access: ProjectAccess, data: ProjectUpdate
) -> ProjectRead:
    """Change a project's settings (project admins)."""
    access.require(Role.admin)
    project = access.project
    fields = ("name", "description", "is_private", "archived_at", "client_id")
    before = tuple(getattr(project, f) for f in fields)
    if "client_id" in data.model_fields_set:
        if data.client_id is not None:
            await client_in_workspace(session, project.workspace_id, data.client_id, "client_id")
        project.client_id = data.client_id
    for field in ("name", "description", "is_private"):
        value = getattr(data, field)
        if value is not None:
            setattr(project, field, value)
    if data.archived is not None:
        project.archived_at = (project.archived_at or utcnow()) if data.archived else None
    if tuple(getattr(project, f) for f in fields) != before:
        project.updated_at = utcnow()
        await session.flush()
        await _record(session, caller, "project.updated", project)
    return project_read(project, access.role)


async def delete_project(session: AsyncSession, caller: Caller, access: ProjectAccess) -> None:
    """Soft-delete a project (project admins)."""
    access.require(Role.admin)
    access.project.deleted_at = utcnow()
    await session.flush()
    await _record(session, caller, "project.deleted", access.project)
    await chat_channels.close_project_channels(session, caller, access.project.id)


# --- grants -------------------------------------------------------------------------------


async def list_grants(
    session: AsyncSession, access: ProjectAccess, page: PageParams
) -> tuple[list[ProjectPermission], str | None]:
    query = select(ProjectPermission).where(ProjectPermission.project_id == access.project.id)
    return await paginate(session, query, ProjectPermission.id, page, newest_first=False)


async def _record_grant(
    session: AsyncSession,
    caller: Caller,
    type: str,
    access: ProjectAccess,
    grant: ProjectPermission,
) -> None:
    await record(
        session,
        type,
        topic=project_topic(access.project),
        actor=caller.actor,
        data=GrantRead.model_validate(grant),
        workspace_id=access.project.workspace_id,
        subject_id=access.project.id,
    )


async def set_grant(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    role: Role,
    *,
    user_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> ProjectPermission:
    """Grant a workspace member or a team of the workspace a role on the project (admins)."""
    access.require(Role.admin)
    await lock_project(session, access.project.id)
    workspace_id = access.project.workspace_id
    column: Any
    value: uuid.UUID | None
    if user_id is not None:
        ok = await session.scalar(
            select(Membership.id).where(
                Membership.workspace_id == workspace_id, Membership.user_id == user_id
            )
        )
        column, value, what = ProjectPermission.user_id, user_id, "user"
    else:
        ok = await session.scalar(
            select(Team.id).where(Team.workspace_id == workspace_id, Team.id == team_id)
        )
        column, value, what = ProjectPermission.team_id, team_id, "team"
    if ok is None:
        raise ValidationFailed(
            f"Grants go to members or teams of the project's workspace; this {what} is not one",
            details=[
                {
                    "loc": ["path", "uid" if what == "user" else "tid"],
                    "msg": f"not a {what} of this workspace",
                }
            ],
        )
    grant = await session.scalar(
        select(ProjectPermission).where(
            ProjectPermission.project_id == access.project.id, column == value
        )
    )
    if grant is None:
        grant = ProjectPermission(
            project_id=access.project.id, user_id=user_id, team_id=team_id, role=role
        )
        session.add(grant)
    elif grant.role is role:
        return grant
    else:
        grant.role = role
    await session.flush()
    roles_changed(session, cache, workspace_id)
    await _record_grant(session, caller, "project.permission_set", access, grant)
    return grant


async def remove_grant(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    *,
    user_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> None:
    access.require(Role.admin)
    await lock_project(session, access.project.id)
    column, value = (
        (ProjectPermission.user_id, user_id)
        if user_id is not None
        else (ProjectPermission.team_id, team_id)
    )
    grant = await session.scalar(
        select(ProjectPermission).where(
            ProjectPermission.project_id == access.project.id, column == value
        )
    )
    if grant is None:
        raise NotFound("No such grant on this project")
    await _record_grant(session, caller, "project.permission_removed", access, grant)
    await session.delete(grant)
    await session.flush()
    roles_changed(session, cache, access.project.workspace_id)
