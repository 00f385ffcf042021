"""Clients over HTTP: ``/api/workspaces/{wid}/clients``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from huddle.access.deps import CurrentCaller, WorkspaceAccessDep
from huddle.clients import service
from huddle.clients.models import ClientStatus
from huddle.clients.schemas import ClientCreate, ClientRead, ClientUpdate
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep

router = APIRouter(prefix="/api", tags=["clients"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.post(
    "/workspaces/{wid}/clients", status_code=status.HTTP_201_CREATED, response_model=ClientRead
)
async def create_client(
    data: ClientCreate, access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> object:
    """Add a client (workspace admins); names are unique in the workspace (409)."""
    return await service.create_client(session, caller, access, data)


@router.get("/workspaces/{wid}/clients", response_model=Page[ClientRead])
async def list_clients(
    access: WorkspaceAccessDep,
    session: SessionDep,
    page: PageParamsDep,
    status_filter: Annotated[
        ClientStatus | None, Query(alias="status", description="Only active or archived ones")
    ] = None,
) -> object:
    """The workspace's clients (every member). Their projects:
    `GET /api/workspaces/{wid}/projects?client_id=`."""
    items, cursor = await service.list_clients(session, access, page, status_filter)
    return {"items": items, "next_cursor": cursor}


@router.get("/workspaces/{wid}/clients/{client_id}", response_model=ClientRead)
async def get_client(
    client_id: uuid.UUID, access: WorkspaceAccessDep, session: SessionDep
) -> object:
    """One client."""
    return await service.get_client(session, access, client_id)


@router.patch("/workspaces/{wid}/clients/{client_id}", response_model=ClientRead)
async def update_client(
    client_id: uuid.UUID,
    data: ClientUpdate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
) -> object:
    """Change a client's name, contacts, notes or status (workspace admins)."""
    client = await service.get_client(session, access, client_id)
    return await service.update_client(session, caller, access, client, data)


@router.delete("/workspaces/{wid}/clients/{client_id}", status_code=NO_CONTENT)
async def delete_client(
    client_id: uuid.UUID, access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Delete a client (workspace admins); 409 while projects belong to it."""
    client = await service.get_client(session, access, client_id)
    await service.delete_client(session, caller, access, client)
    return Response(status_code=NO_CONTENT)
