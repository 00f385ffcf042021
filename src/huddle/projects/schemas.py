"""Schemas of projects and project grants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from huddle.access.roles import Role
from huddle.core.validation import StrictModel, clean_text

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(clean_text),
]
Description = Annotated[str, Field(max_length=10_000), AfterValidator(clean_text)]


class ProjectCreate(StrictModel):
    name: Name
    description: Description = ""
    is_private: bool = Field(default=False, strict=True)
    client_id: uuid.UUID | None = Field(default=None, description="The client it is for.")


class ProjectUpdate(StrictModel):
    name: Name | None = None
    description: Description | None = None
    is_private: bool | None = Field(default=None, strict=True)
    archived: bool | None = Field(default=None, strict=True, description="Archive or restore.")
    client_id: uuid.UUID | None = Field(
        default=None, description="Link to a client of the workspace; null unlinks."
    )


class ProjectData(BaseModel):
    """A project as events carry it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    client_id: uuid.UUID | None
    name: str
    description: str
    is_private: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


class ProjectRead(ProjectData):
    role: Role = Field(description="The caller's effective role on this project.")


class GrantSet(StrictModel):
    role: Role


class GrantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    project_id: uuid.UUID
    user_id: uuid.UUID | None
    team_id: uuid.UUID | None
    role: Role
    created_at: datetime
