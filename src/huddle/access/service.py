"""Who may see and change what: the one place permission checks live.

Every route, and later the WebSocket gateway and the AI/MCP tools, resolve access here:

* :func:`workspace_access` / :func:`project_access` load a resource and the caller's
  role on it. A resource the caller may not see is :class:`NotFound` (no existence
  leaks); ``.require(role)`` turns "visible but not allowed" into :class:`Forbidden`.
* :func:`visible_projects` is the query every project list starts from.
* channels (:mod:`huddle.access.channels`) and event topics (:mod:`huddle.access.topics`)
  build on these.

Effective project role (DESIGN.md §4): on a public project the higher of the workspace
role and any grant (to the user or a team they are in); on a private project workspace
admins are admins and everyone else has exactly their best grant, or no access. Grants
only count for workspace members. Site superusers are not implicit members.

Roles are cached per workspace (:mod:`huddle.core.cache`); anything that changes
memberships, teams or grants calls :func:`roles_changed`, which drops the workspace's
cache entries after the transaction commits (and bypasses the cache until then in that
session), so a demoted user loses their rights on their next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.roles import Role, highest
from huddle.auth.models import User
from huddle.core.cache import MISSING, ScopedCache
from huddle.core.db import SESSION_STARTED, after_commit
from huddle.core.errors import Forbidden, NotFound
from huddle.projects.models import Project, ProjectPermission
from huddle.workspaces.models import Membership, TeamMember, Workspace

_DIRTY = "huddle.access.dirty"


@dataclass
class WorkspaceAccess:
    workspace: Workspace
    role: Role

    def require(self, role: Role, message: str | None = None) -> None:
        if not self.role.at_least(role):
            raise Forbidden(message or f"This needs the {role.value} role in the workspace")


@dataclass
class ProjectAccess:
    project: Project
    role: Role
    workspace_role: Role

    def require(self, role: Role, message: str | None = None) -> None:
        if not self.role.at_least(role):
            raise Forbidden(message or f"This needs the {role.value} role on the project")


def _scope(workspace_id: uuid.UUID) -> str:
    return f"roles:{workspace_id}"


def _cache_usable(session: AsyncSession, workspace_id: uuid.UUID) -> bool:
    return workspace_id not in session.info.get(_DIRTY, set())


def bypass_cache(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Read this workspace's roles from the database in this session, not the cache
    (a check that must see a change whose cache invalidation may still be in flight)."""
    session.info.setdefault(_DIRTY, set()).add(workspace_id)


def roles_changed(session: AsyncSession, cache: ScopedCache, workspace_id: uuid.UUID) -> None:
    """Memberships, teams or grants of this workspace change in this transaction."""
    bypass_cache(session, workspace_id)

    async def drop() -> None:
        await cache.invalidate(_scope(workspace_id))

    after_commit(session, drop, key=("roles", workspace_id))


async def _cached(
    session: AsyncSession, cache: ScopedCache, workspace_id: uuid.UUID, key: str, compute
) -> Role | None:
    """A role from the cache, or computed and (when safe) cached.

    A value is cached only by a request whose transaction started after the scope's
    last invalidation (with a margin for clock skew between servers): a request that
    began before a demotion may read the old role from its snapshot, and must not put
    it back in the cache. Checking again after writing closes the remaining race.
    """
    scope = _scope(workspace_id)
    usable = _cache_usable(session, workspace_id)
    if usable:
        hit = await cache.get(scope, key)
        if hit is not None:
            return None if hit == MISSING else Role(hit)
    role = await compute()
    started = session.info.get(SESSION_STARTED)
    if usable and started is not None and await _fresh_enough(cache, scope, started):
        await cache.set(scope, key, role.value if role else None)
        if not await _fresh_enough(cache, scope, started):
            await cache.drop(scope)
    return role


_CLOCK_MARGIN = 2.0


async def _fresh_enough(cache: ScopedCache, scope: str, started: float) -> bool:
    invalidated = await cache.invalidated_at(scope)
    return invalidated is None or invalidated < started - _CLOCK_MARGIN


async def workspace_role(
    session: AsyncSession, cache: ScopedCache, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> Role | None:
    async def compute() -> Role | None:
        return await session.scalar(
            select(Membership.role).where(
                Membership.workspace_id == workspace_id, Membership.user_id == user_id
            )
        )

    return await _cached(session, cache, workspace_id, f"w:{user_id}", compute)


def user_teams(user_id: uuid.UUID) -> Select[uuid.UUID]:
    return select(TeamMember.team_id).where(TeamMember.user_id == user_id)


async def best_grant(
    session: AsyncSession, project_id: uuid.UUID, user_id: uuid.UUID
) -> Role | None:
    """The highest role granted on a project to the user or any team they are in."""
    return (await best_grants(session, [project_id], user_id)).get(project_id)


async def best_grants(
    session: AsyncSession, project_ids: list[uuid.UUID], user_id: uuid.UUID
) -> dict[uuid.UUID, Role]:
    """The best grant per project for a user (direct or through teams), in one query."""
    if not project_ids:
        return {}
    rows = await session.execute(
        select(ProjectPermission.project_id, ProjectPermission.role).where(
            ProjectPermission.project_id.in_(project_ids),
            or_(
                ProjectPermission.user_id == user_id,
                ProjectPermission.team_id.in_(user_teams(user_id)),
            ),
        )
    )
    best: dict[uuid.UUID, Role] = {}
    for project_id, role in rows:
        best[project_id] = highest(best.get(project_id), role) or role
    return best


def effective_role(is_private: bool, ws_role: Role | None, grant: Role | None) -> Role | None:
    """DESIGN.md §4: the higher of workspace role and grant; on private projects admins
    are admins and everyone else has exactly their grant. Non-members have nothing."""
    if ws_role is None:
        return None
    if is_private:
        return Role.admin if ws_role is Role.admin else grant
    return highest(ws_role, grant)


async def project_role(
    session: AsyncSession, cache: ScopedCache, project: Project, user_id: uuid.UUID
) -> tuple[Role | None, Role | None]:
    """(effective project role, workspace role) of a user; (None, None) for non-members."""
    ws_role = await workspace_role(session, cache, project.workspace_id, user_id)
    if ws_role is None:
        return None, None

    async def compute() -> Role | None:
        grant = await best_grant(session, project.id, user_id)
        return effective_role(project.is_private, ws_role, grant)

    key = f"p:{project.id}:{int(project.is_private)}:{user_id}"
    return await _cached(session, cache, project.workspace_id, key, compute), ws_role


async def workspace_access(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    """The workspace and the caller's role in it; 404 unless the caller is a member."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None or workspace.deleted_at is not None:
        raise NotFound("Workspace not found")
    role = await workspace_role(session, cache, workspace_id, user_id)
    if role is None:
        raise NotFound("Workspace not found")
    return WorkspaceAccess(workspace, role)


async def live_project(session: AsyncSession, project_id: uuid.UUID) -> Project:
    """A project that is not deleted, in a workspace that is not deleted (else 404)."""
    row = (
        await session.execute(
            select(Project, Workspace.deleted_at)
            .join(Workspace, Workspace.id == Project.workspace_id)
            .where(Project.id == project_id)
        )
    ).first()
    if row is None or row[0].deleted_at is not None or row[1] is not None:
        raise NotFound("Project not found")
    project: Project = row[0]
    return project


async def project_access(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, project_id: uuid.UUID
) -> ProjectAccess:
    """The project and the caller's effective role; 404 unless the caller may see it."""
    project = await live_project(session, project_id)
    role, ws_role = await project_role(session, cache, project, user_id)
    if role is None or ws_role is None:
        raise NotFound("Project not found")
    return ProjectAccess(project, role, ws_role)


def visible_projects(workspace_id: uuid.UUID, user_id: uuid.UUID, ws_role: Role) -> Select[Project]:
    """Projects of a workspace the caller (a member with ``ws_role``) may see."""
    query = select(Project).where(
        Project.workspace_id == workspace_id, Project.deleted_at.is_(None)
    )
    if ws_role is Role.admin:
        return query
    return query.where(project_visible(user_id))


def visible_project_ids(user_id: uuid.UUID) -> Select[uuid.UUID]:
    """Ids of every live project, in every workspace, that ``user_id`` may see."""
    return (
        select(Project.id)
        .join(Workspace, Workspace.id == Project.workspace_id)
        .join(
            Membership,
            and_(Membership.workspace_id == Project.workspace_id, Membership.user_id == user_id),
        )
        .where(
            Project.deleted_at.is_(None),
            Workspace.deleted_at.is_(None),
            project_visible(user_id, admin=Membership.role == Role.admin),
        )
    )


def project_visible(
    user_id: uuid.UUID, *, admin: ColumnElement[bool] | None = None
) -> ColumnElement[bool]:
    """The rule for seeing a project: it is public, or the user holds a grant (their own
    or a team's), or — where ``admin`` is true — they administer its workspace."""
    rules: list[ColumnElement[bool]] = [
        Project.is_private.is_(False),
        Project.id.in_(granted_projects(user_id)),
    ]
    if admin is not None:
        rules.append(admin)
    return or_(*rules)


def project_grantees(project_id: uuid.UUID) -> CompoundSelect[uuid.UUID]:
    """Users granted a project, directly or through a team (the reverse of
    :func:`granted_projects`)."""
    return (
        select(TeamMember.user_id)
        .join(ProjectPermission, ProjectPermission.team_id == TeamMember.team_id)
        .where(ProjectPermission.project_id == project_id)
        .union(
            select(ProjectPermission.user_id).where(
                ProjectPermission.project_id == project_id,
                ProjectPermission.user_id.is_not(None),
            )
        )
    )


def granted_projects(user_id: uuid.UUID) -> Select[uuid.UUID]:
    return select(ProjectPermission.project_id).where(
        or_(
            ProjectPermission.user_id == user_id,
            ProjectPermission.team_id.in_(user_teams(user_id)),
        )
    )


async def lock_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Serialise membership changes of one workspace (row lock on PostgreSQL)."""
    await session.execute(
        select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
    )


async def lock_project(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Serialise changes to a project's grants and board columns (row lock on PostgreSQL)."""
    await session.execute(select(Project.id).where(Project.id == project_id).with_for_update())


async def share_project(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Take, up front, the KEY SHARE lock on the project row that inserting a task takes
    anyway (its foreign key). Taken later, after the column lock, it would invert the
    order column changes use (project FOR UPDATE, then columns) and could deadlock."""
    await session.execute(
        select(Project.id).where(Project.id == project_id).with_for_update(key_share=True)
    )


async def count_admins(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    """Admins of a workspace who can act (deactivated accounts do not count).

    Callers that act on the answer hold :func:`lock_workspace`, so two admins demoting
    each other at once cannot both see "another admin remains".
    """
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.workspace_id == workspace_id,
                Membership.role == Role.admin,
                User.is_active.is_(True),
            )
        )
        or 0
    )
