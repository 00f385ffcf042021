"""FastAPI dependencies: the license status now, and guards for licensed features."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from huddle.licensing.errors import LicenseRequired
from huddle.licensing.service import LicenseStatus, Verification


async def get_license_status(request: Request) -> LicenseStatus:
    """The license status at this moment: the key was verified at startup
    (``app.state.license``), its dates are checked on every request."""
    verification: Verification = request.app.state.license
    return verification.status()


LicenseStatusDep = Annotated[LicenseStatus, Depends(get_license_status)]


def require_license(feature: str) -> Callable[[Request], Awaitable[LicenseStatus]]:
    """A dependency that answers 403 ``license_required`` unless ``feature`` is licensed.

    Declare it as a parameter *after* the route's permission guard: FastAPI resolves
    parameters in order, so callers without the right still get their 401/404/403 first
    and only those allowed learn about the license::

        licensed: Annotated[LicenseStatus, Depends(require_license("usage_reports"))]
    """

    async def licensed(request: Request) -> LicenseStatus:
        status = await get_license_status(request)
        reason = status.refusal(feature)
        if reason is not None:
            raise LicenseRequired(feature, reason)
        return status

    licensed.__name__ = f"require_license_{feature}"
    return licensed
