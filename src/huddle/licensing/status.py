"""The license status over HTTP: who may see it, and the seats in use."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.roles import Role
from huddle.auth.models import User
from huddle.core.errors import Forbidden
from huddle.licensing.schemas import LicenseRead
from huddle.licensing.service import LicenseStatus
from huddle.workspaces.models import Membership, Workspace


async def seats_used(session: AsyncSession) -> int:
    """Seats in use: the active user accounts."""
    count = await session.scalar(select(func.count()).select_from(User).where(User.is_active))
    return int(count or 0)


async def may_see_license(session: AsyncSession, user: User) -> bool:
    """Site superusers and admins of any live workspace may see the license status."""
    if user.is_superuser:
        return True
    admin_of = await session.scalar(
        select(Membership.id)
        .join(Workspace, Workspace.id == Membership.workspace_id)
        .where(
            Membership.user_id == user.id,
            Membership.role == Role.admin,
            Workspace.deleted_at.is_(None),
        )
        .limit(1)
    )
    return admin_of is not None


async def license_read(session: AsyncSession, user: User, status: LicenseStatus) -> LicenseRead:
    """The status as ``GET /api/license`` shows it (never the token itself)."""
    if not await may_see_license(session, user):
        raise Forbidden("Only site administrators and workspace admins can see the license")
    found = status.license
    return LicenseRead(
        mode=status.mode.value,
        reason=status.reason,
        license_id=found.id if found else None,
        licensee=found.licensee if found else None,
        seats=found.seats if found else None,
        seats_used=await seats_used(session),
        features=list(status.features),
        issued_at=found.issued_at if found else None,
        not_before=found.not_before if found else None,
        expires_at=found.expires_at if found else None,
    )
