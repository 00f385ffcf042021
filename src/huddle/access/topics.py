"""Who reads which event topic (DESIGN.md §7): the feed, and later the WebSocket gateway.

Deleted workspaces, projects and channels keep their history readable to those who
could see them, so the ``*.deleted`` event itself is not lost.
"""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_access, channel_open_to
from huddle.access.roles import Role
from huddle.access.service import project_role, project_visible, workspace_role
from huddle.chat.models import Channel
from huddle.core.cache import ScopedCache
from huddle.core.errors import NotFound
from huddle.events import topics
from huddle.projects.models import Project
from huddle.workspaces.models import Membership


async def can_read_topic(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, topic: str
) -> bool:
    """Whether the user may read events on ``topic``."""
    parsed = topics.parse(topic)
    if parsed is None:
        return False
    kind, ident = parsed
    if kind == "user":
        return ident == user_id
    if kind in ("workspace", "workspace_admin"):
        role = await workspace_role(session, cache, ident, user_id)
        return role is not None and (kind == "workspace" or role is Role.admin)
    if kind == "project":
        project = await session.get(Project, ident)
        if project is None:
            return False
        role, _ = await project_role(session, cache, project, user_id)
        return role is not None
    if kind == "channel":
        try:
            access = await channel_access(session, cache, user_id, ident, include_deleted=True)
        except NotFound:
            return False
        return access.can_read
    return False


async def readable_topics(session: AsyncSession, user_id: uuid.UUID) -> set[str]:
    """Every topic the user may read (for the unfiltered event feed)."""
    result: set[str] = {topics.user(user_id)}
    memberships = (
        await session.execute(
            select(Membership.workspace_id, Membership.role).where(Membership.user_id == user_id)
        )
    ).all()
    for workspace_id, role in memberships:
        result.add(topics.workspace(workspace_id))
        if role is Role.admin:
            result.add(topics.workspace_admin(workspace_id))
    if not memberships:
        return result
    workspace_ids = [w for w, _ in memberships]
    admin_of = [w for w, r in memberships if r is Role.admin]
    # Deleted projects included: their history stays readable to those who could see them.
    project_ids = list(
        await session.scalars(
            select(Project.id).where(
                Project.workspace_id.in_(workspace_ids),
                project_visible(user_id, admin=Project.workspace_id.in_(admin_of)),
            )
        )
    )
    result.update(topics.project(pid) for pid in project_ids)
    channel_ids = await session.scalars(
        select(Channel.id).where(
            Channel.workspace_id.in_(workspace_ids),
            channel_open_to(user_id),
            or_(Channel.project_id.is_(None), Channel.project_id.in_(project_ids)),
        )
    )
    result.update(topics.channel(cid) for cid in channel_ids)
    return result
