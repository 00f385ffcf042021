"""``@username`` and ``@team-handle`` mentions: who a message reaches."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_readers
from huddle.auth.models import User
from huddle.chat.models import Channel
from huddle.workspaces.models import Membership, Team, TeamMember

# A mention starts at a word boundary (not inside an email address) and takes the
# characters usernames and handles may contain; trailing punctuation ("@ana.") is not
# part of the name.
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9][A-Za-z0-9._-]*)")
_MAX_NAMES = 50  # names looked up per message: bounds the work one message can ask for


def mentioned_names(content: str) -> list[str]:
    """The distinct lowercased names after ``@`` in ``content``, first ones first."""
    names: list[str] = []
    for match in _MENTION.finditer(content):
        name = match.group(1).rstrip("._-").lower()
        if name and name not in names:
            names.append(name)
            if len(names) == _MAX_NAMES:
                break
    return names


async def resolve_mentions(
    session: AsyncSession, channel: Channel, content: str, author_id: uuid.UUID | None
) -> set[uuid.UUID]:
    """Users a message mentions — by username or through a team's handle — who may read
    the channel, the author excluded. A constant number of queries."""
    names = mentioned_names(content)
    if not names:
        return set()
    users = set(
        await session.scalars(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(
                Membership.workspace_id == channel.workspace_id,
                User.username.in_(names),
                User.is_active.is_(True),
            )
        )
    )
    users.update(
        await session.scalars(
            select(TeamMember.user_id)
            .join(Team, Team.id == TeamMember.team_id)
            .join(User, User.id == TeamMember.user_id)
            .where(
                Team.workspace_id == channel.workspace_id,
                Team.handle.in_(names),
                User.is_active.is_(True),
            )
        )
    )
    if author_id is not None:
        users.discard(author_id)
    return await channel_readers(session, channel, users)
