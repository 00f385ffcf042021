"""Schemas of the superuser API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = Field(default=None, strict=True)
    is_superuser: bool | None = Field(default=None, strict=True)
