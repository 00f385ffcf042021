"""Schemas of workspaces, members, teams and invitations."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from huddle.access.roles import Role
from huddle.core.validation import Email, StrictModel, clean_text

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
_HANDLE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,38}[a-z0-9])?$")


def _slug(value: str) -> str:
    value = value.strip().lower()
    if not _SLUG.match(value):
        raise ValueError(
            "slug must be 1-80 lowercase letters, digits or '-', not starting or ending with '-'"
        )
    return value


def _handle(value: str) -> str:
    value = value.strip().lower().removeprefix("@")
    if not _HANDLE.match(value):
        raise ValueError("handle must be 1-40 lowercase letters, digits, '.', '_' or '-'")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(clean_text),
]
Slug = Annotated[str, Field(max_length=80), AfterValidator(_slug)]
Handle = Annotated[str, Field(max_length=41), AfterValidator(_handle)]


class WorkspaceCreate(StrictModel):
    name: Name
    slug: Slug | None = None


RETENTION_DESCRIPTION = (
    "Delete messages (and the rest of the workspace's history) older than this many days; "
    "at most the server's HUDDLE_DATA_RETENTION_DAYS. Null: the server's limit, if any."
)


class WorkspaceUpdate(StrictModel):
    name: Name | None = None
    slug: Slug | None = None
    # Explicit null clears it (the service tells "null" from "not given").
    data_retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description=RETENTION_DESCRIPTION
    )


class WorkspaceData(BaseModel):
    """A workspace as events carry it (no caller-specific fields)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    owner_id: uuid.UUID | None
    created_at: datetime
    data_retention_days: int | None = Field(default=None, description=RETENTION_DESCRIPTION)


class WorkspaceRead(WorkspaceData):
    role: Role = Field(description="The caller's role in this workspace.")


class UserSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    full_name: str


class MemberRead(BaseModel):
    user: UserSummary
    role: Role
    joined_at: datetime


class MemberEventData(MemberRead):
    workspace_id: uuid.UUID


class MemberAdd(StrictModel):
    user_id: uuid.UUID | None = None
    email: Email | None = None
    role: Role = Role.member

    @model_validator(mode="after")
    def _one_of(self) -> MemberAdd:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id or email")
        return self


class MemberUpdate(StrictModel):
    role: Role


class InvitationCreate(StrictModel):
    email: Email
    role: Role = Role.member


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    role: Role
    invited_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationRead):
    token: str = Field(description="The secret of the accept link; shown only here.")


class InvitationAccept(StrictModel):
    token: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(clean_text)]


class TeamCreate(StrictModel):
    name: Name
    handle: Handle


class TeamUpdate(StrictModel):
    name: Name | None = None
    handle: Handle | None = None


class TeamRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    handle: str
    created_at: datetime


class TeamMemberAdd(StrictModel):
    user_id: uuid.UUID


class TeamMemberEventData(BaseModel):
    team_id: uuid.UUID
    workspace_id: uuid.UUID
    user: UserSummary
