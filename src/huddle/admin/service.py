"""Site administration by superusers: find, deactivate, promote and delete users."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import count_admins, lock_workspace
from huddle.admin.schemas import AdminUserUpdate
from huddle.auth.models import ApiToken, User
from huddle.auth.schemas import UserRead
from huddle.auth.service import revoke_all_refresh_tokens
from huddle.core.errors import Conflict, Forbidden, NotFound
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.catalog import DeletedData
from huddle.events.service import record
from huddle.workspaces.models import Membership, Workspace


def require_superuser(caller: Caller) -> None:
    if not caller.user.is_superuser:
        raise Forbidden("Site administrators only")


async def search_users(
    session: AsyncSession, caller: Caller, q: str | None, page: PageParams
) -> tuple[list[User], str | None]:
    require_superuser(caller)
    query = select(User)
    if q:
        pattern = (
            "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        query = query.where(
            or_(
                User.email.like(pattern, escape="\\"),
                User.username.like(pattern, escape="\\"),
                func.lower(User.full_name).like(pattern, escape="\\"),
            )
        )
    return await paginate(session, query, User.id, page)


async def _target(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


async def update_user(
    session: AsyncSession, caller: Caller, user_id: uuid.UUID, data: AdminUserUpdate
) -> User:
    """Activate/deactivate or promote/demote; deactivation signs the user out everywhere."""
    require_superuser(caller)
    user = await _target(session, user_id)
    if user.id == caller.id and (data.is_active is False or data.is_superuser is False):
        raise Conflict("You cannot deactivate or demote yourself")
    changed = False
    if data.is_superuser is not None and data.is_superuser != user.is_superuser:
        user.is_superuser, changed = data.is_superuser, True
    if data.is_active is not None and data.is_active != user.is_active:
        user.is_active, changed = data.is_active, True
        if not data.is_active:
            await revoke_all_refresh_tokens(session, user.id)
            await session.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
    await session.flush()
    if changed:
        await record(
            session,
            "user.updated",
            topic=topics.user(user.id),
            actor=caller.actor,
            data=UserRead.model_validate(user),
            workspace_id=None,
            subject_id=user.id,
        )
    return user


async def delete_user(session: AsyncSession, caller: Caller, user_id: uuid.UUID) -> None:
    """Delete an account; refused while it is the last admin of a live workspace."""
    require_superuser(caller)
    user = await _target(session, user_id)
    if user.id == caller.id:
        raise Conflict("You cannot delete yourself")
    sole_admin_of = []
    admin_of = await session.scalars(
        select(Membership.workspace_id)
        .join(Workspace, Workspace.id == Membership.workspace_id)
        .where(
            Membership.user_id == user.id,
            Membership.role == Role.admin,
            Workspace.deleted_at.is_(None),
        )
    )
    for workspace_id in admin_of:
        await lock_workspace(session, workspace_id)
        if await count_admins(session, workspace_id) <= 1 and user.is_active:
            sole_admin_of.append(str(workspace_id))
    if sole_admin_of:
        raise Conflict(
            "This user is the only admin of some workspaces: promote someone else first",
            details={"workspace_ids": sole_admin_of},
        )
    await record(
        session,
        "user.deleted",
        topic=topics.user(user.id),
        actor=caller.actor,
        data=DeletedData(id=str(user.id)),
        workspace_id=None,
        subject_id=user.id,
    )
    await session.delete(user)
    await session.flush()
