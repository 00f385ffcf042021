"""Request and response bodies of the assistant's routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from huddle.core.validation import StrictModel, clean_text

Title = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(clean_text)
]
PromptText = Annotated[str, Field(max_length=20_000), AfterValidator(clean_text)]
UserText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
    AfterValidator(clean_text),
]


class ConversationCreate(StrictModel):
    title: Title | None = None
    workspace_id: uuid.UUID | None = Field(
        default=None,
        description="The workspace the assistant works in (default: your only workspace).",
    )
    system_prompt: PromptText | None = Field(
        default=None, description="Extra instructions for the assistant in this conversation."
    )
    prompt_id: uuid.UUID | None = Field(
        default=None, description="A saved prompt to use as the system prompt."
    )


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str = Field(description="The JSON arguments, as the model wrote them.")


class AIMessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: Literal["user", "assistant", "tool"]
    content: str | None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    created_at: datetime


class PendingAction(BaseModel):
    id: uuid.UUID
    tool: str
    args: dict[str, Any]
    expires_at: datetime


class ConversationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    workspace_id: uuid.UUID | None
    system_prompt: str | None
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationRead):
    messages: list[AIMessageRead]
    pending_actions: list[PendingAction]


class MessageCreate(StrictModel):
    content: UserText


class Reply(BaseModel):
    """The assistant's answer to one message: its final message, every message the turn
    added (the user's, tool calls, tool results, the answer), and the actions waiting
    for confirmation."""

    message: AIMessageRead
    messages: list[AIMessageRead]
    pending_actions: list[PendingAction]


class ActionResult(BaseModel):
    id: uuid.UUID
    tool: str
    status: Literal["confirmed"]
    result: dict[str, Any]


class AIHealth(BaseModel):
    status: Literal["ok", "unconfigured", "unreachable"]
    provider: str
    model: str | None
    reachable: bool
    detail: str | None = None


class SummarizeRequest(StrictModel):
    channel_id: uuid.UUID
    since: AwareDatetime | None = Field(
        default=None, description="Only messages after this time (with its time zone)."
    )


class Summary(BaseModel):
    summary: str
    message_count: int


class PromptCreate(StrictModel):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(clean_text),
    ]
    content: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
        AfterValidator(clean_text),
    ]
    workspace_id: uuid.UUID | None = None
    shared: bool = Field(
        default=False,
        strict=True,
        description="Shared with every member of workspace_id (workspace admins only).",
    )


class PromptUpdate(StrictModel):
    name: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            AfterValidator(clean_text),
        ]
        | None
    ) = None
    content: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
            AfterValidator(clean_text),
        ]
        | None
    ) = None
    shared: bool | None = Field(default=None, strict=True)


class PromptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    workspace_id: uuid.UUID | None
    shared: bool
    name: str
    content: str
    created_at: datetime
    updated_at: datetime
