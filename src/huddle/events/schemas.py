"""The event envelope (DESIGN.md §7) and who caused an event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)


class Actor(BaseModel):
    """Who made a change: a user, an agent acting for a user, or the system."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "agent", "system"]
    id: uuid.UUID | None = None
    on_behalf_of: uuid.UUID | None = None
    tool_call_id: str | None = None
    rule_id: uuid.UUID | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``{kind, id?, on_behalf_of?, ...}``: absent fields are left out, not null."""
        return {k: v for k, v in handler(self).items() if v is not None}

    @classmethod
    def user(cls, user_id: uuid.UUID) -> Actor:
        return cls(kind="user", id=user_id)

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system")


class Envelope(BaseModel):
    """An event as every consumer sees it; ``id`` is the gapless ``seq``."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="The event's seq: gapless, increasing; the resume cursor.")
    type: str
    topic: str
    workspace_id: uuid.UUID | None
    subject_id: uuid.UUID | None
    actor: Actor
    data: dict[str, Any]
    created_at: datetime


class EventPage(BaseModel):
    items: list[Envelope]
    next_cursor: str | None = Field(description="Pass as `since` to read on; null at the end.")


# --- webhooks ---------------------------------------------------------------------------

EventTypes = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
    Field(
        min_length=1,
        max_length=100,
        description="Event types (`task.created`), families (`task.*`) or `*` for all.",
    ),
]
WebhookSecret = Annotated[
    str,
    StringConstraints(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$"),
    Field(description="Signing secret (16-200 printable characters)."),
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
    event_types: EventTypes
    secret: WebhookSecret | None = Field(
        default=None, description="Leave out to have one generated (shown once, in the answer)."
    )
    description: Annotated[str, StringConstraints(max_length=200)] = ""
    active: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
        | None
    ) = None
    event_types: EventTypes | None = None
    secret: WebhookSecret | None = None
    description: Annotated[str, StringConstraints(max_length=200)] | None = None
    active: bool | None = None


class _WebhookFields(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    event_types: list[str]
    description: str
    active: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class WebhookRead(_WebhookFields):
    """A webhook as admins see it: never with its secret."""

    model_config = ConfigDict(from_attributes=True)

    url: str


class WebhookEventData(_WebhookFields):
    """A webhook as ``webhook.*`` events carry it: its URL cut to the origin, since these
    events reach other receivers and URLs with a token in the path are credentials."""

    url_origin: str = Field(description="`scheme://host[:port]` of the webhook's URL.")

    @classmethod
    def of(cls, hook: Any) -> WebhookEventData:
        parts = urlsplit(str(hook.url))
        return cls(
            id=hook.id,
            workspace_id=hook.workspace_id,
            url_origin=f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
            event_types=list(hook.event_types),
            description=hook.description,
            active=hook.active,
            created_by=hook.created_by,
            created_at=hook.created_at,
            updated_at=hook.updated_at,
        )


class WebhookCreated(WebhookRead):
    secret: str = Field(description="The signing secret; this is the only answer that shows it.")


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: int | None = Field(
        validation_alias="event_seq", description="The event's id (null for a test ping)."
    )
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    delivered_at: datetime | None
    created_at: datetime
