"""Who may see, read and post in which channel.

* A public channel is open to every member of its workspace.
* A private channel is read by its explicit members; workspace admins also see that it
  exists (name, topic, members) and may manage it, but read its messages only by adding
  themselves, which is recorded as a ``channel.member_added`` event.
* A DM is seen by its members only — workspace admins included (DESIGN.md §5).
* A channel attached to a project is, in addition, hidden from whoever cannot see the
  project, and the caller's role there is their project role (a viewer of the workspace
  granted ``member`` on the project may post in the project's channel).

Reading needs any role; posting, reacting and creating channels need ``member``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.roles import Role
from huddle.access.service import (
    project_grantees,
    project_role,
    visible_projects,
    workspace_role,
)
from huddle.chat.models import Channel, ChannelKind, ChannelMember
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, Forbidden, NotFound
from huddle.projects.models import Project
from huddle.workspaces.models import Membership, Workspace


@dataclass
class ChannelAccess:
    channel: Channel
    user_id: uuid.UUID
    role: Role  # the workspace role, or the project role for a project's channel
    workspace_role: Role
    is_member: bool  # explicit member of a private channel or DM
    archived: bool = False  # the channel's project is archived: read-only

    @property
    def can_read(self) -> bool:
        return self.is_member or not needs_membership(self.channel)

    @property
    def can_manage(self) -> bool:
        """Rename, re-topic, delete, remove others: workspace admins and the creator."""
        if self.channel.kind is ChannelKind.dm:
            return False
        return self.workspace_role is Role.admin or (
            self.channel.created_by == self.user_id and self.role.at_least(Role.member)
        )

    def require_read(self) -> None:
        if not self.can_read:
            raise Forbidden("Only the channel's members read a private channel; join it first")

    def require_post(self) -> None:
        self.require_read()
        if not self.role.at_least(Role.member):
            raise Forbidden("Viewers can read but not post")
        if self.archived:
            raise Conflict("This channel's project is archived: restore it to post")

    def require_manage(self) -> None:
        if not self.can_manage:
            raise Forbidden("Only workspace admins and the channel's creator manage it")


def needs_membership(channel: Channel) -> bool:
    return channel.is_private or channel.kind is ChannelKind.dm


async def channel_access(
    session: AsyncSession,
    cache: ScopedCache,
    user_id: uuid.UUID,
    channel_id: uuid.UUID,
    *,
    include_deleted: bool = False,
) -> ChannelAccess:
    """The channel and what the caller may do in it; 404 unless the caller may see it.

    ``include_deleted`` lets the event feed keep a deleted channel's history readable.
    """
    row = (
        await session.execute(
            select(Channel, Workspace.deleted_at)
            .join(Workspace, Workspace.id == Channel.workspace_id)
            .where(Channel.id == channel_id)
        )
    ).first()
    if row is None or (not include_deleted and (row[0].deleted_at or row[1])):
        raise NotFound("Channel not found")
    channel: Channel = row[0]
    ws_role = await workspace_role(session, cache, channel.workspace_id, user_id)
    if ws_role is None:
        raise NotFound("Channel not found")
    role: Role | None = ws_role
    archived = False
    if channel.project_id is not None:
        project = await session.get(Project, channel.project_id)
        if project is None or (project.deleted_at is not None and not include_deleted):
            raise NotFound("Channel not found")
        role, _ = await project_role(session, cache, project, user_id)
        archived = project.archived_at is not None
    if role is None:
        raise NotFound("Channel not found")
    is_member = False
    if needs_membership(channel):
        is_member = await is_channel_member(session, channel.id, user_id)
        if not is_member and (channel.kind is ChannelKind.dm or ws_role is not Role.admin):
            raise NotFound("Channel not found")
    return ChannelAccess(channel, user_id, role, ws_role, is_member, archived)


async def is_channel_member(
    session: AsyncSession, channel_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id
                )
            )
        )
    )


def my_channels(user_id: uuid.UUID) -> Select[uuid.UUID]:
    return select(ChannelMember.channel_id).where(ChannelMember.user_id == user_id)


def channel_open_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    """Channels anyone in the workspace may read, and the private channels and DMs the
    user is in (project rules come on top)."""
    return or_(
        and_(Channel.is_private.is_(False), Channel.kind != ChannelKind.dm),
        Channel.id.in_(my_channels(user_id)),
    )


def visible_channels(
    workspace_id: uuid.UUID, user_id: uuid.UUID, ws_role: Role, *, readable: bool = False
) -> Select[Channel]:
    """Live channels of a workspace the caller (a member with ``ws_role``) may see.

    With ``readable``, only those whose messages the caller may read (a workspace admin
    sees private channels they are not in, but does not read them).
    """
    conditions = [channel_open_to(user_id)]
    if ws_role is Role.admin and not readable:
        conditions.append(and_(Channel.is_private.is_(True), Channel.kind != ChannelKind.dm))
    project_ids = visible_projects(workspace_id, user_id, ws_role).with_only_columns(Project.id)
    return select(Channel).where(
        Channel.workspace_id == workspace_id,
        Channel.deleted_at.is_(None),
        or_(*conditions),
        or_(Channel.project_id.is_(None), Channel.project_id.in_(project_ids)),
    )


def readable_channel_ids(
    workspace_id: uuid.UUID, user_id: uuid.UUID, ws_role: Role
) -> Select[uuid.UUID]:
    """Ids of the live channels whose messages the caller may read (for search)."""
    return visible_channels(workspace_id, user_id, ws_role, readable=True).with_only_columns(
        Channel.id
    )


async def channel_readers(
    session: AsyncSession, channel: Channel, user_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``user_ids`` may read ``channel`` (mentions reach only them), in at most
    three queries whatever their number."""
    if not user_ids:
        return set()
    roles = dict(
        (
            await session.execute(
                select(Membership.user_id, Membership.role).where(
                    Membership.workspace_id == channel.workspace_id,
                    Membership.user_id.in_(user_ids),
                )
            )
        ).all()
    )
    readers = set(roles)
    if needs_membership(channel) and readers:
        readers &= set(
            await session.scalars(
                select(ChannelMember.user_id).where(
                    ChannelMember.channel_id == channel.id, ChannelMember.user_id.in_(readers)
                )
            )
        )
    if channel.project_id is not None and readers:
        project = await session.get(Project, channel.project_id)
        if project is None or project.deleted_at is not None:
            return set()
        if project.is_private:
            granted = set(await session.scalars(project_grantees(project.id)))
            readers = {u for u in readers if roles[u] is Role.admin or u in granted}
    return readers
