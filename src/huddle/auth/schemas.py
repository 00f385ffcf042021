"""Request and response schemas of the auth routes."""

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

from huddle.core.validation import Email, StrictModel, clean_text

USERNAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,30}[a-z0-9])?$")
PASSWORD_MIN = 8
PASSWORD_MAX = 256  # bounds the hashing work a request can ask for


def _normalize_username(value: str) -> str:
    value = value.strip().lower()
    if not USERNAME_PATTERN.match(value) or len(value) < 3:
        raise ValueError(
            "username must be 3-32 characters: letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_password(value: str) -> str:
    if len(value) < PASSWORD_MIN:
        raise ValueError(f"password must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise ValueError(f"password must be at most {PASSWORD_MAX} characters")
    return clean_text(value)


Username = Annotated[str, Field(max_length=64), AfterValidator(_normalize_username)]
Password = Annotated[str, AfterValidator(_check_password)]
FullName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(clean_text)
]


class UserCreate(StrictModel):
    email: Email
    username: Username
    password: Password
    full_name: FullName = ""


class UserUpdate(StrictModel):
    """Changes to the caller's own account; email and password need the current password."""

    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None
    password: Password | None = None
    current_password: (
        Annotated[str, Field(max_length=PASSWORD_MAX), AfterValidator(clean_text)] | None
    ) = None

    @model_validator(mode="after")
    def _needs_current_password(self) -> UserUpdate:
        if (self.password is not None or self.email is not None) and not self.current_password:
            raise ValueError("current_password is required to change email or password")
        return self


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str
    is_active: bool
    is_superuser: bool
    created_at: datetime


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Lifetime of the access token in seconds.")


class RefreshRequest(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(clean_text)]


class ApiTokenCreate(StrictModel):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
        AfterValidator(clean_text),
    ]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, strict=True)


class ApiTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(description="The secret; shown only in this response.")
