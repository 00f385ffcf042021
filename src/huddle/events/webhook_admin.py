"""Managing webhooks (workspace admins): the service behind the webhook routes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess
from huddle.config import Settings
from huddle.core.db import after_commit
from huddle.core.errors import NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.models import Webhook, WebhookDelivery
from huddle.events.schemas import (
    Actor,
    Envelope,
    WebhookCreate,
    WebhookCreated,
    WebhookEventData,
    WebhookUpdate,
)
from huddle.events.service import record
from huddle.events.webhook_targets import UrlRefused, check_url
from huddle.events.webhooks import TEST_EVENT, new_secret, valid_event_type


def ping_payload(hook: Webhook, actor: Actor, when: datetime) -> str:
    """The envelope of a test ping (``id`` 0: never a real event)."""
    return Envelope(
        id=0,
        type=TEST_EVENT,
        topic=topics.workspace_admin(hook.workspace_id),
        workspace_id=hook.workspace_id,
        subject_id=hook.id,
        actor=actor,
        data={"webhook_id": str(hook.id)},
        created_at=when,
    ).model_dump_json()


async def _record_change(
    session: AsyncSession, caller: Caller, event_type: str, hook: Webhook
) -> None:
    await session.flush()
    await session.refresh(hook)
    await record(
        session,
        event_type,
        topic=topics.workspace_admin(hook.workspace_id),
        actor=caller.actor,
        data=WebhookEventData.of(hook),
        workspace_id=hook.workspace_id,
        subject_id=hook.id,
    )


def _check_types(event_types: Sequence[str]) -> list[str]:
    unknown = [t for t in event_types if not valid_event_type(t)]
    if unknown:
        raise ValidationFailed(
            "Unknown event types",
            details=[
                {"loc": ["body", "event_types"], "msg": f"unknown event type {t!r}"}
                for t in unknown
            ],
        )
    return list(dict.fromkeys(event_types))


async def _check_url(url: str, settings: Settings) -> str:
    try:
        await check_url(url, settings.webhook_allow_private)
    except UrlRefused as exc:
        raise ValidationFailed(
            f"Webhook URL refused: {exc}",
            code="webhook_url_refused",
            details=[{"loc": ["body", "url"], "msg": str(exc)}],
        ) from exc
    return url


async def create_webhook(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    data: WebhookCreate,
    settings: Settings,
) -> WebhookCreated:
    access.require(Role.admin)
    hook = Webhook(
        workspace_id=access.workspace.id,
        url=await _check_url(data.url, settings),
        event_types=_check_types(data.event_types),
        secret=data.secret or new_secret(),
        description=data.description,
        active=data.active,
        created_by=caller.id,
    )
    session.add(hook)
    await _record_change(session, caller, "webhook.created", hook)
    return WebhookCreated.model_validate(hook)


async def get_webhook(
    session: AsyncSession, access: WorkspaceAccess, hook_id: uuid.UUID
) -> Webhook:
    access.require(Role.admin)
    hook = await session.get(Webhook, hook_id)
    if hook is None or hook.workspace_id != access.workspace.id:
        raise NotFound("Webhook not found")
    return hook


async def list_webhooks(
    session: AsyncSession, access: WorkspaceAccess, page: PageParams
) -> tuple[list[Webhook], str | None]:
    access.require(Role.admin)
    query = select(Webhook).where(Webhook.workspace_id == access.workspace.id)
    return await paginate(session, query, Webhook.id, page)


async def update_webhook(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    hook_id: uuid.UUID,
    data: WebhookUpdate,
    settings: Settings,
) -> Webhook:
    hook = await get_webhook(session, access, hook_id)
    if data.url is not None:
        hook.url = await _check_url(data.url, settings)
    if data.event_types is not None:
        hook.event_types = _check_types(data.event_types)
    if data.secret is not None:
        hook.secret = data.secret
    if data.description is not None:
        hook.description = data.description
    if data.active is not None:
        hook.active = data.active
    hook.updated_at = utcnow()
    await _record_change(session, caller, "webhook.updated", hook)
    return hook


async def delete_webhook(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, hook_id: uuid.UUID
) -> None:
    hook = await get_webhook(session, access, hook_id)
    await _record_change(session, caller, "webhook.deleted", hook)
    await session.delete(hook)


async def list_deliveries(
    session: AsyncSession,
    access: WorkspaceAccess,
    hook_id: uuid.UUID,
    page: PageParams,
    status: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    hook = await get_webhook(session, access, hook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return await paginate(session, query, WebhookDelivery.id, page)


async def start_ping(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, hook_id: uuid.UUID
) -> uuid.UUID:
    """Write a test delivery (sent by the caller right after commit)."""
    hook = await get_webhook(session, access, hook_id)
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        event_type=TEST_EVENT,
        payload=ping_payload(hook, caller.actor, utcnow()),
        next_attempt_at=None,
    )
    session.add(delivery)
    await session.flush()
    return delivery.id


async def redeliver(
    session: AsyncSession,
    access: WorkspaceAccess,
    hook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    wake_sender: Callable[[], None],
) -> WebhookDelivery:
    """Send a delivery again from its first attempt (whatever its state): the sender
    is woken once this is committed."""
    hook = await get_webhook(session, access, hook_id)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != hook.id:
        raise NotFound("Delivery not found")
    delivery.status, delivery.attempts = "pending", 0
    delivery.next_attempt_at = utcnow()
    delivery.delivered_at = None
    await session.flush()

    async def wake() -> None:
        wake_sender()

    after_commit(session, wake)
    return delivery
