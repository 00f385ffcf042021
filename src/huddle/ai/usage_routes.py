"""``GET /api/workspaces/{wid}/ai/usage``: AI token usage per user (workspace admins,
licensed feature ``usage_reports``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from huddle.access.deps import WorkspaceAccessDep
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess
from huddle.ai.usage import UsageReport, usage_report
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES, ErrorBody
from huddle.licensing.deps import require_license
from huddle.licensing.service import LicenseStatus

router = APIRouter(
    prefix="/api/workspaces",
    tags=["ai"],
    responses={
        **ERROR_RESPONSES,
        403: {
            "model": ErrorBody,
            "description": "Forbidden (`forbidden`: not a workspace admin; "
            "`license_required`: no license with `usage_reports` in force)",
        },
    },
)


async def workspace_admin(access: WorkspaceAccessDep) -> WorkspaceAccess:
    """The workspace, for its admins: 404 for non-members, 403 for other members."""
    access.require(Role.admin, "Only workspace admins can see AI usage")
    return access


@router.get("/{wid}/ai/usage", response_model=UsageReport)
async def ai_usage(
    access: Annotated[WorkspaceAccess, Depends(workspace_admin)],
    # After the admin guard: only admins learn that the feature is unlicensed.
    _licensed: Annotated[LicenseStatus, Depends(require_license("usage_reports"))],
    session: SessionDep,
    since: Annotated[
        AwareDatetime | None, Query(description="From this moment on (inclusive; with a zone)")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Up to this moment (exclusive; with a zone)")
    ] = None,
) -> UsageReport:
    """AI calls and tokens per user of the workspace, most tokens first (admins; licensed)."""
    return await usage_report(session, access.workspace.id, since, until)
