"""Rows written straight into the database with the timestamps a retention test needs."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.auth.models import RefreshToken, User
from huddle.chat.models import (
    Channel,
    ChannelKind,
    Message,
    MessageMention,
    Reaction,
    ReadMarker,
)
from huddle.core.db import Database
from huddle.core.ids import new_id
from huddle.core.time import utcnow
from huddle.documents.models import File
from huddle.documents.storage import FileStore
from huddle.events.models import Event, Webhook, WebhookDelivery
from huddle.projects.models import Project
from huddle.search.models import Chunk, IndexGeneration, SourceKind
from huddle.workspaces.models import Invitation, Workspace

_names = itertools.count(1)


@dataclass
class Seed:
    """Factories over one session; ``seq`` numbers the published events it writes."""

    session: AsyncSession
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def user(self, name: str | None = None) -> User:
        name = name or f"user{next(_names)}"
        user = User(email=f"{name}@example.com", username=name, hashed_password="x")
        self.session.add(user)
        await self.session.flush()
        return user

    async def workspace(self, owner: User, days: int | None = None) -> Workspace:
        n = next(_names)
        ws = Workspace(name=f"W{n}", slug=f"w{n}", owner_id=owner.id, data_retention_days=days)
        self.session.add(ws)
        await self.session.flush()
        return ws

    async def channel(self, ws: Workspace) -> Channel:
        channel = Channel(workspace_id=ws.id, name=f"c{next(_names)}", kind=ChannelKind.text)
        self.session.add(channel)
        await self.session.flush()
        return channel

    async def message(
        self,
        channel: Channel,
        author: User,
        at: datetime,
        content: str = "hello",
        parent: Message | None = None,
    ) -> Message:
        # The id is time-ordered like a real one made at ``at`` (read markers compare ids).
        message = Message(
            id=uuid_at(at),
            channel_id=channel.id,
            author_id=author.id,
            parent_id=parent.id if parent else None,
            content=content,
            created_at=at,
        )
        self.session.add(message)
        await self.session.flush()
        if parent is not None:
            parent.reply_count += 1
            parent.last_reply_at = at
            await self.session.flush()
        return message

    async def decorate(self, message: Message, user: User, channel: Channel, ws: Workspace) -> None:
        """A reaction, a mention of ``user``, a chunk and a published event about it."""
        self.session.add(Reaction(message_id=message.id, user_id=user.id, emoji="👍"))
        self.session.add(
            MessageMention(message_id=message.id, user_id=user.id, channel_id=channel.id)
        )
        await self.chunk(ws, SourceKind.message, message.id, channel_id=channel.id)
        await self.event(ws.id, message.created_at, subject_id=message.id)

    async def chunk(
        self,
        ws: Workspace,
        kind: SourceKind,
        source_id: uuid.UUID,
        channel_id: uuid.UUID | None = None,
        project_id: uuid.UUID | None = None,
    ) -> Chunk:
        chunk = Chunk(
            workspace_id=ws.id,
            project_id=project_id,
            channel_id=channel_id,
            source_kind=kind,
            source_id=source_id,
            ordinal=0,
            text="text",
            source_hash="0" * 64,
            model="test",
            embedding=b"\x00" * 16,
        )
        self.session.add(chunk)
        await self.session.flush()
        return chunk

    async def event(
        self,
        workspace_id: uuid.UUID | None,
        at: datetime,
        *,
        subject_id: uuid.UUID | None = None,
        published: bool = True,
        type: str = "message.created",
    ) -> Event:
        event = Event(
            type=type,
            topic=f"workspace:{workspace_id}",
            workspace_id=workspace_id,
            subject_id=subject_id,
            actor={"kind": "system"},
            data={"id": str(subject_id)},
            created_at=at,
            seq=next(self.seq) if published else None,
            published_at=at if published else None,
        )
        self.session.add(event)
        await self.session.flush()
        return event

    async def webhook(self, ws: Workspace) -> Webhook:
        hook = Webhook(
            workspace_id=ws.id,
            url="http://127.0.0.1:9/hook",
            secret="s" * 32,
            event_types=["*"],
            active=False,
        )
        self.session.add(hook)
        await self.session.flush()
        return hook

    async def delivery(self, hook: Webhook, event: Event | None) -> WebhookDelivery:
        delivery = WebhookDelivery(
            webhook_id=hook.id,
            event_seq=event.seq if event else None,
            event_type=event.type if event else "ping",
            status="delivered",
        )
        self.session.add(delivery)
        await self.session.flush()
        return delivery

    async def marker(self, channel: Channel, user: User, message: Message | None) -> ReadMarker:
        marker = ReadMarker(
            channel_id=channel.id,
            user_id=user.id,
            last_read_message_id=message.id if message else None,
            updated_at=utcnow(),
        )
        self.session.add(marker)
        await self.session.flush()
        return marker

    async def project(self, ws: Workspace) -> Project:
        project = Project(workspace_id=ws.id, name=f"P{next(_names)}")
        self.session.add(project)
        await self.session.flush()
        return project

    async def file(self, ws: Workspace, project: Project, at: datetime, store: FileStore) -> File:
        stored = await store.save(b"file bytes " + uuid.uuid4().bytes)
        row = File(
            workspace_id=ws.id,
            project_id=project.id,
            filename="notes.md",
            content_type="text/markdown",
            size=stored.size,
            sha256=stored.sha256,
            storage_name=stored.name,
            text="notes",
            created_at=at,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def invitation(self, ws: Workspace, expires_at: datetime, **extra: Any) -> Invitation:
        invitation = Invitation(
            workspace_id=ws.id,
            email=f"guest{next(_names)}@example.com",
            role="member",
            token_hash=uuid.uuid4().hex,
            expires_at=expires_at,
            **extra,
        )
        self.session.add(invitation)
        await self.session.flush()
        return invitation

    async def refresh_token(
        self, user: User, family: uuid.UUID, expires_at: datetime, **extra: Any
    ) -> RefreshToken:
        token = RefreshToken(
            user_id=user.id,
            family_id=family,
            token_hash=uuid.uuid4().hex,
            expires_at=expires_at,
            **extra,
        )
        self.session.add(token)
        await self.session.flush()
        return token


def uuid_at(at: datetime) -> uuid.UUID:
    """A UUIDv7 whose time part is ``at`` (random below it), as messages get."""
    millis = int(at.timestamp() * 1000)
    raw = new_id().int & ((1 << 80) - 1)  # keep version, variant and random bits
    return uuid.UUID(int=(millis << 80) | raw)


async def exists(db: Database, model: type, row_id: Any) -> bool:
    async with db.read_session() as session:
        return await session.get(model, row_id) is not None


async def count(db: Database, model: type, *where: Any) -> int:
    async with db.read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def generation(db: Database, workspace_id: uuid.UUID) -> int:
    async with db.read_session() as session:
        value = await session.scalar(
            select(IndexGeneration.generation).where(IndexGeneration.workspace_id == workspace_id)
        )
        return int(value or 0)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
