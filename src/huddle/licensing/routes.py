"""``GET /api/license``: the license status, for site and workspace admins."""

from __future__ import annotations

from fastapi import APIRouter

from huddle.access.deps import CurrentCaller
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.licensing import status as license_status
from huddle.licensing.deps import LicenseStatusDep
from huddle.licensing.schemas import LicenseRead

router = APIRouter(prefix="/api", tags=["license"], responses=ERROR_RESPONSES)


@router.get("/license", response_model=LicenseRead)
async def get_license(
    caller: CurrentCaller, session: SessionDep, status: LicenseStatusDep
) -> LicenseRead:
    """The license status: mode, licensee, seats, features, expiry (admins)."""
    return await license_status.license_read(session, caller.user, status)
