"""Conversations with the assistant, their messages, pending actions, prompts, usage."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedJSON, EncryptedText
from huddle.core.models import Base, CreatedAtMixin, IdMixin
from huddle.core.time import utcnow


class AIRole(enum.StrEnum):
    user = "user"
    assistant = "assistant"
    tool = "tool"


class ActionStatus(enum.StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    failed = "failed"


class AIConversation(IdMixin, CreatedAtMixin, Base):
    """A conversation of one user with the assistant, tied to one workspace: the model
    may name projects and tasks only inside it."""

    __tablename__ = "ai_conversations"
    __table_args__ = (Index("ix_ai_conversations_owner_id", "owner_id", "id"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(EncryptedText, default="")
    system_prompt: Mapped[str | None] = mapped_column(EncryptedText)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AIMessage(IdMixin, CreatedAtMixin, Base):
    """One message of a conversation, in order (``position``): what the user said, what
    the assistant answered or which tools it called, and each tool's result."""

    __tablename__ = "ai_messages"
    __table_args__ = (
        Index("ix_ai_messages_conversation_id", "conversation_id", "position", unique=True),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ai_conversations.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[AIRole] = mapped_column(Enum(AIRole, native_enum=False, length=20))
    content: Mapped[str | None] = mapped_column(EncryptedText)
    # assistant: [{"id", "name", "arguments"}] (arguments as the JSON text the model wrote)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(EncryptedJSON)
    # tool: the call this is the result of, and the tool's name
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    tool_name: Mapped[str | None] = mapped_column(String(100))


class AIPendingAction(IdMixin, CreatedAtMixin, Base):
    """A destructive tool call waiting for its user's confirmation (or its expiry)."""

    __tablename__ = "ai_pending_actions"
    __table_args__ = (Index("ix_ai_pending_actions_conversation_id", "conversation_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # None when an MCP client asked for it (no conversation there).
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ai_conversations.id", ondelete="CASCADE")
    )
    tool: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)
    tool_call_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[ActionStatus] = mapped_column(
        Enum(ActionStatus, native_enum=False, length=20), default=ActionStatus.pending
    )
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)


class Prompt(IdMixin, CreatedAtMixin, Base):
    """A saved prompt template: the owner's own, or shared in a workspace (by an admin)."""

    __tablename__ = "prompts"
    __table_args__ = (
        Index("ix_prompts_owner_id", "owner_id", "id"),
        Index("ix_prompts_workspace_id", "workspace_id", "id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(EncryptedText)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AIUsage(IdMixin, CreatedAtMixin, Base):
    """Tokens spent: one row per call to the LLM."""

    __tablename__ = "ai_usage"
    __table_args__ = (Index("ix_ai_usage_user_id", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ai_conversations.id", ondelete="SET NULL")
    )
    purpose: Mapped[str] = mapped_column(String(40))  # chat, summary, answer, mention
    model: Mapped[str] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
