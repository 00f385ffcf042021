"""Channels and DMs: create, list with unread counts, change, delete, members."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import (
    ChannelAccess,
    channel_readers,
    is_channel_member,
    needs_membership,
    visible_channels,
)
from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess, project_access
from huddle.auth.models import User
from huddle.chat.models import Channel, ChannelKind, ChannelMember
from huddle.chat.schemas import (
    ChannelCreate,
    ChannelListItem,
    ChannelMemberEventData,
    ChannelRead,
    ChannelUpdate,
)
from huddle.chat.unread import unread_counts
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record
from huddle.projects.models import Project
from huddle.workspaces.models import Membership
from huddle.workspaces.schemas import UserSummary

DM_TITLE = "Direct message"


async def _members(
    session: AsyncSession, channel_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[UserSummary]]:
    """Members of these private channels/DMs, in one query."""
    result: dict[uuid.UUID, list[UserSummary]] = {cid: [] for cid in channel_ids}
    if not channel_ids:
        return result
    rows = await session.execute(
        select(ChannelMember.channel_id, User)
        .join(User, User.id == ChannelMember.user_id)
        .where(ChannelMember.channel_id.in_(channel_ids))
        .order_by(User.username)
    )
    for channel_id, user in rows:
        result[channel_id].append(UserSummary.model_validate(user))
    return result


async def channel_read(session: AsyncSession, channel: Channel) -> ChannelRead:
    read = ChannelRead.model_validate(channel)
    if needs_membership(channel):
        read.members = (await _members(session, [channel.id]))[channel.id]
    return read


async def channel_topic(session: AsyncSession, channel: Channel) -> str:
    """Where ``channel.*`` events go (DESIGN.md §7): the workspace for a public channel
    everyone in it may see, the channel itself for a private one, a DM, or a channel of
    a private project."""
    if needs_membership(channel):
        return topics.channel(channel.id)
    if channel.project_id is not None:
        project = await session.get(Project, channel.project_id)
        if project is None or project.is_private:
            return topics.channel(channel.id)
    return topics.workspace(channel.workspace_id)


async def _record_channel(
    session: AsyncSession, caller: Caller, event_type: str, channel: Channel
) -> ChannelRead:
    data = await channel_read(session, channel)
    await record(
        session,
        event_type,
        topic=await channel_topic(session, channel),
        actor=caller.actor,
        data=data,
        workspace_id=channel.workspace_id,
        subject_id=channel.id,
    )
    return data


async def _record_member(
    session: AsyncSession, caller: Caller, event_type: str, channel: Channel, user_id: uuid.UUID
) -> None:
    data = ChannelMemberEventData(channel_id=channel.id, user_id=user_id)
    targets = [topics.channel(channel.id)]
    if event_type == "channel.member_removed":
        # The removed user can no longer read the channel's topic; tell them directly.
        targets.append(topics.user(user_id))
    for topic in targets:
        await record(
            session,
            event_type,
            topic=topic,
            actor=caller.actor,
            data=data,
            workspace_id=channel.workspace_id,
            subject_id=channel.id,
        )


async def _flush_name(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("A channel with this name already exists in the workspace") from exc


async def _workspace_members(
    session: AsyncSession, workspace_id: uuid.UUID, user_ids: set[uuid.UUID], field: str
) -> None:
    """422 unless every id is a member of the workspace."""
    found = set(
        await session.scalars(
            select(Membership.user_id).where(
                Membership.workspace_id == workspace_id, Membership.user_id.in_(user_ids)
            )
        )
    )
    missing = user_ids - found
    if missing:
        raise ValidationFailed(
            "Channel members must be members of the workspace",
            details=[
                {
                    "loc": ["body", field],
                    "msg": f"not a workspace member: {sorted(map(str, missing))}",
                }
            ],
        )


async def create_channel(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: WorkspaceAccess,
    data: ChannelCreate,
) -> ChannelRead:
    """A text or voice channel; a private one starts with the creator and ``member_ids``."""
    access.require(Role.member, "Viewers cannot create channels")
    if data.project_id is not None:
        try:
            project = await project_access(session, cache, caller.id, data.project_id)
        except NotFound:
            raise ValidationFailed(
                "No such project in this workspace",
                details=[{"loc": ["body", "project_id"], "msg": "not a project you can see"}],
            ) from None
        if project.project.workspace_id != access.workspace.id:
            raise ValidationFailed(
                "No such project in this workspace",
                details=[{"loc": ["body", "project_id"], "msg": "not in this workspace"}],
            )
        project.require(Role.member, "Creating a project's channel needs the member role on it")
    if data.member_ids and not data.is_private:
        raise ValidationFailed(
            "Only private channels have a member list",
            details=[{"loc": ["body", "member_ids"], "msg": "public channels are open to all"}],
        )
    channel = Channel(
        workspace_id=access.workspace.id,
        project_id=data.project_id,
        name=data.name,
        kind=ChannelKind(data.kind),
        topic=data.topic,
        is_private=data.is_private,
        created_by=caller.id,
    )
    session.add(channel)
    await _flush_name(session)
    if data.is_private:
        members = {caller.id, *data.member_ids}
        await _workspace_members(session, access.workspace.id, members, "member_ids")
        session.add_all(ChannelMember(channel_id=channel.id, user_id=uid) for uid in members)
        await session.flush()
        unable = members - await channel_readers(session, channel, members)
        if unable:
            raise ValidationFailed(
                "Every member must be able to see the channel's project",
                details=[{"loc": ["body", "member_ids"], "msg": "cannot see the project"}],
            )
    return await _record_channel(session, caller, "channel.created", channel)


def dm_key(user_ids: set[uuid.UUID]) -> str:
    """The same digest for the same set of people, whoever opens the DM."""
    return hashlib.sha256(",".join(sorted(str(u) for u in user_ids)).encode()).hexdigest()


async def open_dm(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, user_ids: list[uuid.UUID]
) -> tuple[ChannelRead, bool]:
    """The one DM of the caller and ``user_ids``; (channel, created)."""
    access.require(Role.member, "Viewers cannot start conversations")
    members = {caller.id, *user_ids}
    await _workspace_members(session, access.workspace.id, members, "user_ids")
    key = dm_key(members)
    query = select(Channel).where(
        Channel.workspace_id == access.workspace.id, Channel.dm_key == key
    )
    existing = await session.scalar(query)
    if existing is not None:
        return await channel_read(session, existing), False
    channel = Channel(
        workspace_id=access.workspace.id,
        name="",
        kind=ChannelKind.dm,
        is_private=True,
        dm_key=key,
        created_by=caller.id,
    )
    try:
        async with session.begin_nested():
            session.add(channel)
            await session.flush()
    except IntegrityError:
        # Someone opened the same DM at the same moment: theirs is the one.
        existing = await session.scalar(query)
        if existing is None:
            raise
        return await channel_read(session, existing), False
    session.add_all(ChannelMember(channel_id=channel.id, user_id=uid) for uid in members)
    await session.flush()
    return await _record_channel(session, caller, "channel.created", channel), True


async def update_channel(
    session: AsyncSession, caller: Caller, access: ChannelAccess, data: ChannelUpdate
) -> ChannelRead:
    access.require_manage()
    channel = access.channel
    changes = {
        field: value
        for field, value in data.model_dump(exclude_none=True).items()
        if getattr(channel, field) != value
    }
    if not changes:
        return await channel_read(session, channel)
    for field, value in changes.items():
        setattr(channel, field, value)
    await _flush_name(session)
    return await _record_channel(session, caller, "channel.updated", channel)


async def delete_channel(session: AsyncSession, caller: Caller, access: ChannelAccess) -> None:
    """Soft delete: gone from lists and routes at once; history stays in the event log."""
    access.require_manage()
    access.channel.deleted_at = utcnow()
    await session.flush()
    await _record_channel(session, caller, "channel.deleted", access.channel)


def _require_private(channel: Channel) -> None:
    if channel.kind is ChannelKind.dm:
        raise Conflict("A DM's members are fixed; open a DM with the new set of people")
    if not channel.is_private:
        raise Conflict("Public channels have no member list: every workspace member is in")


async def add_member(
    session: AsyncSession, caller: Caller, access: ChannelAccess, user_id: uuid.UUID
) -> tuple[ChannelRead, bool]:
    """Add someone to a private channel; (channel, added). Its members (with the member
    role) and its managers may add; an admin adding themselves is how they join."""
    channel = access.channel
    _require_private(channel)
    if not (access.can_manage or (access.is_member and access.role.at_least(Role.member))):
        raise Forbidden("Only the channel's members and managers add people to it")
    if await is_channel_member(session, channel.id, user_id):
        return await channel_read(session, channel), False
    await _workspace_members(session, channel.workspace_id, {user_id}, "user_id")
    try:
        async with session.begin_nested():
            session.add(ChannelMember(channel_id=channel.id, user_id=user_id))
            await session.flush()
    except IntegrityError:  # added by someone else at the same moment
        return await channel_read(session, channel), False
    if user_id not in await channel_readers(session, channel, {user_id}):
        raise ValidationFailed(
            "This user cannot see the channel's project",
            details=[{"loc": ["body", "user_id"], "msg": "cannot see the project"}],
        )
    await _record_member(session, caller, "channel.member_added", channel, user_id)
    return await channel_read(session, channel), True


async def remove_member(
    session: AsyncSession, caller: Caller, access: ChannelAccess, user_id: uuid.UUID
) -> None:
    """Leave a private channel, or (managers) remove someone from it."""
    channel = access.channel
    _require_private(channel)
    if user_id != caller.id and not access.can_manage:
        raise Forbidden("Only workspace admins and the channel's creator remove others")
    removed = await session.execute(
        delete(ChannelMember).where(
            ChannelMember.channel_id == channel.id, ChannelMember.user_id == user_id
        )
    )
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise NotFound("Not a member of this channel")
    await _record_member(session, caller, "channel.member_removed", channel, user_id)


async def list_channels(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    params: PageParams,
    kind: ChannelKind | None = None,
) -> tuple[list[ChannelListItem], str | None]:
    """The channels the caller sees, oldest first, with unread and mention counts —
    a fixed number of statements whatever the page holds."""
    query = visible_channels(access.workspace.id, caller.id, access.role)
    if kind is not None:
        query = query.where(Channel.kind == kind)
    channels, cursor = await paginate(session, query, Channel.id, params, newest_first=False)
    return await list_items(session, caller.id, channels), cursor


async def list_items(
    session: AsyncSession, user_id: uuid.UUID, channels: list[Channel]
) -> list[ChannelListItem]:
    """Channels with the caller's counts and private members (three queries in all)."""
    members = await _members(session, [c.id for c in channels if needs_membership(c)])
    readable = {
        c.id
        for c in channels
        if not needs_membership(c) or any(m.id == user_id for m in members.get(c.id, []))
    }
    counts = await unread_counts(session, user_id, list(readable))
    items = []
    for channel in channels:
        unread, mentions, last_read = counts.get(channel.id, (0, 0, None))
        items.append(
            ChannelListItem(
                **ChannelRead.model_validate(channel).model_dump(exclude={"members"}),
                members=members.get(channel.id),
                can_read=channel.id in readable,
                unread_count=unread,
                mention_count=mentions,
                last_read_message_id=last_read,
            )
        )
    return items


async def leave_workspace(
    session: AsyncSession, caller: Caller, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Someone leaves (or is removed from) a workspace: they leave its private channels,
    each with its ``channel.member_removed`` event. Their DMs stay theirs."""
    channels = list(
        await session.scalars(
            select(Channel)
            .join(ChannelMember, ChannelMember.channel_id == Channel.id)
            .where(
                Channel.workspace_id == workspace_id,
                Channel.kind != ChannelKind.dm,
                ChannelMember.user_id == user_id,
            )
        )
    )
    if not channels:
        return
    await session.execute(
        delete(ChannelMember).where(
            ChannelMember.user_id == user_id,
            ChannelMember.channel_id.in_([c.id for c in channels]),
        )
    )
    for channel in channels:
        await _record_member(session, caller, "channel.member_removed", channel, user_id)


async def close_project_channels(
    session: AsyncSession, caller: Caller, project_id: uuid.UUID
) -> None:
    """A project is deleted: its channels go with it, each with ``channel.deleted``."""
    channels = await session.scalars(
        select(Channel).where(Channel.project_id == project_id, Channel.deleted_at.is_(None))
    )
    for channel in channels:
        channel.deleted_at = utcnow()
        await session.flush()
        await _record_channel(session, caller, "channel.deleted", channel)
