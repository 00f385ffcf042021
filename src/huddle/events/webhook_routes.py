"""Webhooks over HTTP: workspace admins register, test and watch them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from huddle.access.deps import CurrentCaller, WorkspaceAccessDep
from huddle.config import Settings
from huddle.core.db import SessionDep, commit
from huddle.core.errors import ERROR_RESPONSES, NotFound
from huddle.core.pagination import Page, PageParamsDep
from huddle.events import webhook_admin as webhooks
from huddle.events.schemas import (
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from huddle.events.webhooks import WebhookSender

router = APIRouter(
    prefix="/api/workspaces/{wid}/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.events.sender
    return sender


SettingsDep = Annotated[Settings, Depends(get_settings)]
SenderDep = Annotated[WebhookSender, Depends(get_sender)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    data: WebhookCreate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> WebhookCreated:
    """Register a webhook (admins). The URL must reach a public address; the answer is
    the only one that shows the signing secret."""
    return await webhooks.create_webhook(session, caller, access, data, settings)


@router.get("", response_model=Page[WebhookRead])
async def list_webhooks(
    access: WorkspaceAccessDep, session: SessionDep, page: PageParamsDep
) -> object:
    """The workspace's webhooks, newest first (admins)."""
    items, cursor = await webhooks.list_webhooks(session, access, page)
    return {"items": items, "next_cursor": cursor}


@router.get("/{hid}", response_model=WebhookRead)
async def get_webhook(hid: uuid.UUID, access: WorkspaceAccessDep, session: SessionDep) -> object:
    """One webhook (admins)."""
    return await webhooks.get_webhook(session, access, hid)


@router.patch("/{hid}", response_model=WebhookRead)
async def update_webhook(
    hid: uuid.UUID,
    data: WebhookUpdate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> object:
    """Change a webhook's URL, event types, secret, description or state (admins)."""
    return await webhooks.update_webhook(session, caller, access, hid, data, settings)


@router.delete("/{hid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    hid: uuid.UUID, access: WorkspaceAccessDep, caller: CurrentCaller, session: SessionDep
) -> Response:
    """Delete a webhook and its delivery log (admins)."""
    await webhooks.delete_webhook(session, caller, access, hid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{hid}/test", response_model=DeliveryRead)
async def test_webhook(
    hid: uuid.UUID,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    sender: SenderDep,
) -> object:
    """Send a signed `webhook.test` ping now and answer with its outcome (admins).

    The ping has event id 0, is attempted once (no retries) and is kept in the
    delivery log."""
    delivery_id = await webhooks.start_ping(session, caller, access, hid)
    await commit(session)
    try:
        return await sender.attempt(delivery_id, retry=False)
    except LookupError as exc:  # deleted while the ping was on its way
        raise NotFound("Webhook not found") from exc


@router.get("/{hid}/deliveries", response_model=Page[DeliveryRead])
async def list_deliveries(
    hid: uuid.UUID,
    access: WorkspaceAccessDep,
    session: SessionDep,
    page: PageParamsDep,
    status: Annotated[
        Literal["pending", "succeeded", "failed"] | None, Query(description="Only this state")
    ] = None,
) -> object:
    """The webhook's deliveries, newest first, with their last attempt (admins)."""
    items, cursor = await webhooks.list_deliveries(session, access, hid, page, status)
    return {"items": items, "next_cursor": cursor}


@router.post(
    "/{hid}/deliveries/{did}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
)
async def redeliver(
    hid: uuid.UUID,
    did: uuid.UUID,
    access: WorkspaceAccessDep,
    session: SessionDep,
    sender: SenderDep,
) -> object:
    """Queue a delivery to be sent again, from a fresh series of attempts (admins)."""
    return await webhooks.redeliver(session, access, hid, did, sender.wake)
