"""Channels, their members, messages, reactions, mentions and read markers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.crypto import EncryptedText
from huddle.core.models import Base, CreatedAtMixin, IdMixin


class ChannelKind(StrEnum):
    text = "text"
    voice = "voice"
    dm = "dm"


class AuthorKind(StrEnum):
    user = "user"
    ai = "ai"
    system = "system"


# Names are unique among the live public channels everyone in the workspace sees. Private
# channels, DMs and project channels are left out: a clash with a channel the caller
# cannot see would reveal that it exists.
_NAMED = "deleted_at IS NULL AND dm_key IS NULL AND is_private = false AND project_id IS NULL"


class Channel(IdMixin, CreatedAtMixin, Base):
    """A text or voice channel, or a DM (``kind=dm``, private, fixed members).

    A DM's ``dm_key`` is a digest of its sorted member ids, unique per workspace, so the
    same set of people always gets the same DM, even when two of them open it at once.
    """

    __tablename__ = "channels"
    __table_args__ = (
        UniqueConstraint("workspace_id", "dm_key"),
        Index(
            "ix_channels_workspace_name",
            "workspace_id",
            "name",
            unique=True,
            sqlite_where=text(_NAMED),
            postgresql_where=text(_NAMED),
        ),
        Index("ix_channels_workspace_id", "workspace_id", "id"),
        Index("ix_channels_project_id", "project_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[ChannelKind] = mapped_column(
        Enum(ChannelKind, native_enum=False, length=16, validate_strings=True)
    )
    topic: Mapped[str] = mapped_column(String(250), default="")
    is_private: Mapped[bool] = mapped_column(default=False)
    dm_key: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # Soft delete: the channel vanishes at once; its event history stays readable.
    deleted_at: Mapped[datetime | None]


class ChannelMember(CreatedAtMixin, Base):
    """Explicit membership of a private channel or a DM (public channels have none)."""

    __tablename__ = "channel_members"

    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Message(IdMixin, CreatedAtMixin, Base):
    """A chat message; ``parent_id`` makes it a thread reply. Deletion leaves a tombstone."""

    __tablename__ = "messages"
    __table_args__ = (
        # A retried send (same client_msg_id from the same author in the same channel)
        # finds the first message instead of creating a second.
        UniqueConstraint("channel_id", "author_id", "client_msg_id"),
        # History (top-level, newest first) and unread counts.
        Index("ix_messages_channel_parent_id", "channel_id", "parent_id", "id"),
        Index("ix_messages_parent_id", "parent_id", "id"),
        Index("ix_messages_author_id", "author_id"),
    )

    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_kind: Mapped[AuthorKind] = mapped_column(
        Enum(AuthorKind, native_enum=False, length=16, validate_strings=True),
        default=AuthorKind.user,
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    content: Mapped[str] = mapped_column(EncryptedText)
    client_msg_id: Mapped[str | None] = mapped_column(String(100))
    # Kept in step by posting and deleting replies (an atomic UPDATE), never counted.
    reply_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reply_at: Mapped[datetime | None]
    edited_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


class MessageMention(Base):
    """A user a message mentions (directly or through a team), for mention counts."""

    __tablename__ = "message_mentions"
    __table_args__ = (Index("ix_message_mentions_user_channel", "user_id", "channel_id"),)

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))


class Reaction(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "reactions"
    __table_args__ = (UniqueConstraint("message_id", "user_id", "emoji"),)

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    emoji: Mapped[str] = mapped_column(String(64))


class ReadMarker(Base):
    """How far a user has read a channel: messages after this one are unread."""

    __tablename__ = "read_markers"

    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    last_read_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime]
