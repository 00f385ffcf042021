"""Request and response shapes of channels, messages, reactions and read markers."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from huddle.chat.models import AuthorKind, ChannelKind
from huddle.core.validation import StrictModel, clean_text
from huddle.workspaces.schemas import UserSummary

MAX_MESSAGE_CHARS = 10_000
MAX_DM_MEMBERS = 8  # besides the caller


def _channel_name(value: str) -> str:
    value = clean_text(value).strip().removeprefix("#").strip()
    if not value:
        raise ValueError("must not be empty")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError("must be one line of printable text")
    return value


def _content(value: str) -> str:
    clean_text(value)
    if not value.strip():
        raise ValueError("must not be empty")
    return value


ChannelName = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_channel_name)]
Topic = Annotated[str, Field(max_length=250), AfterValidator(clean_text)]
Content = Annotated[
    str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS), AfterValidator(_content)
]
ClientMsgId = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(clean_text)]


class ChannelCreate(StrictModel):
    name: ChannelName
    kind: Literal["text", "voice"] = "text"
    topic: Topic = ""
    is_private: bool = False
    project_id: uuid.UUID | None = None
    member_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=100,
        description="Initial members of a private channel (the creator is always one)",
    )


class ChannelUpdate(StrictModel):
    name: ChannelName | None = None
    topic: Topic | None = None


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    name: str
    kind: ChannelKind
    topic: str
    is_private: bool
    created_by: uuid.UUID | None
    created_at: datetime
    members: list[UserSummary] | None = Field(
        default=None, description="A private channel's or DM's members; null when public"
    )


class ChannelListItem(ChannelRead):
    can_read: bool = Field(
        description="False for a private channel an admin sees but is not a member of"
    )
    unread_count: int = Field(description="Top-level messages by others after the read marker")
    mention_count: int = Field(description="Messages after the read marker mentioning the caller")
    last_read_message_id: uuid.UUID | None


class DMCreate(StrictModel):
    user_ids: list[uuid.UUID] = Field(
        min_length=1,
        max_length=MAX_DM_MEMBERS,
        description="The other members; the caller is implied (only the caller: a note to self)",
    )


class ChannelMemberAdd(StrictModel):
    user_id: uuid.UUID


class ChannelMemberEventData(BaseModel):
    channel_id: uuid.UUID
    user_id: uuid.UUID


class MessageCreate(StrictModel):
    content: Content
    parent_id: uuid.UUID | None = Field(default=None, description="Reply in this message's thread")
    client_msg_id: ClientMsgId | None = Field(
        default=None, description="Idempotency key: a repeat from the same author returns the first"
    )


class MessageUpdate(StrictModel):
    content: Content


class MessageData(BaseModel):
    """A message as events carry it (nothing caller-specific)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel_id: uuid.UUID
    author_id: uuid.UUID | None
    author_kind: AuthorKind
    parent_id: uuid.UUID | None
    content: str = Field(description="Empty for a deleted message (its tombstone)")
    client_msg_id: str | None
    reply_count: int
    last_reply_at: datetime | None
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    mentions: list[uuid.UUID] = Field(default_factory=list, description="Mentioned user ids")


class ReactionCount(BaseModel):
    emoji: str
    count: int
    me: bool = Field(description="Whether the caller reacted with this emoji")


class MessageRead(MessageData):
    author: UserSummary | None
    reactions: list[ReactionCount]


class ReactionEventData(BaseModel):
    message_id: uuid.UUID
    channel_id: uuid.UUID
    user_id: uuid.UUID
    emoji: str


class MentionData(BaseModel):
    message_id: uuid.UUID
    channel_id: uuid.UUID
    user_id: uuid.UUID
    author_id: uuid.UUID | None


class ReadRequest(StrictModel):
    message_id: uuid.UUID


class ReadState(BaseModel):
    channel_id: uuid.UUID
    last_read_message_id: uuid.UUID | None
    unread_count: int
    mention_count: int
