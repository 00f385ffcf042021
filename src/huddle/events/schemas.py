"""The event envelope (DESIGN.md §7) and who caused an event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
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
