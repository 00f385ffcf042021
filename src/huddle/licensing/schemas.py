"""The license status as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class LicenseRead(BaseModel):
    """``GET /api/license``: the mode, why it is not licensed, and the license's terms."""

    mode: Literal["licensed", "open_source"]
    reason: str | None = Field(
        description="Why Huddle runs in open-source mode (null when licensed), e.g. "
        "`no license key set` or `the license expired on …`."
    )
    license_id: str | None = Field(description="The license's id (`jti`).")
    licensee: str | None
    seats: int | None = Field(description="Active user accounts the license covers.")
    seats_used: int = Field(description="Active user accounts now.")
    features: list[str] = Field(description="The licensed features in force now.")
    issued_at: datetime | None
    not_before: datetime | None
    expires_at: datetime | None
