"""/api/auth: registration, login, refresh, logout, the caller's account, API tokens."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Response, status
from pydantic import AfterValidator

from huddle.auth import service
from huddle.auth.deps import AuthRuntimeDep, ClientAddress, CurrentUser
from huddle.auth.schemas import (
    PASSWORD_MAX,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserRead,
    UserUpdate,
)
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep
from huddle.core.validation import clean_text

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)

LoginName = Annotated[
    str,
    Form(min_length=1, max_length=320, description="Email or username"),
    AfterValidator(clean_text),
]
LoginPassword = Annotated[
    str, Form(min_length=1, max_length=PASSWORD_MAX), AfterValidator(clean_text)
]


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(
    data: UserCreate, session: SessionDep, runtime: AuthRuntimeDep, address: ClientAddress
) -> object:
    """Create an account (409 when the email or username is taken)."""
    return await service.register(session, runtime, data, client_address=address)


@router.post("/token", response_model=TokenPair)
async def token(
    username: LoginName,
    password: LoginPassword,
    session: SessionDep,
    runtime: AuthRuntimeDep,
    address: ClientAddress,
) -> TokenPair:
    """Log in with email or username and password (OAuth2 password form)."""
    return await service.login(session, runtime, username, password, client_address=address)


@router.post("/refresh", response_model=TokenPair)
async def refresh(data: RefreshRequest, session: SessionDep, runtime: AuthRuntimeDep) -> TokenPair:
    """Trade a refresh token for a new pair; reusing one revokes its whole family."""
    return await service.refresh(session, runtime.settings, data.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(data: RefreshRequest, session: SessionDep) -> Response:
    """Sign out the login the refresh token belongs to."""
    await service.logout(session, data.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> object:
    """The caller's account."""
    return user


@router.patch("/me", response_model=UserRead)
async def update_me(
    data: UserUpdate, user: CurrentUser, session: SessionDep, runtime: AuthRuntimeDep
) -> object:
    """Change the caller's account; a new password signs out every other login."""
    return await service.update_account(session, runtime, user, data)


@router.post("/api-tokens", status_code=status.HTTP_201_CREATED, response_model=ApiTokenCreated)
async def create_api_token(data: ApiTokenCreate, user: CurrentUser, session: SessionDep) -> object:
    """Create a personal API token; the secret is shown only in this response."""
    token, secret = await service.create_api_token(session, user, data.name, data.expires_in_days)
    return ApiTokenCreated(**ApiTokenRead.model_validate(token).model_dump(), token=secret)


@router.get("/api-tokens", response_model=Page[ApiTokenRead])
async def list_api_tokens(user: CurrentUser, session: SessionDep, page: PageParamsDep) -> object:
    """The caller's active API tokens, newest first (never their secrets)."""
    items, next_cursor = await service.list_api_tokens(session, user, page)
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/api-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_token(token_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    """Revoke one of the caller's API tokens."""
    await service.revoke_api_token(session, user, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
