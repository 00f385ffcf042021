"""AI token usage per user of a workspace: a licensed report (``usage_reports``).

Which ``ai_usage`` rows count for a workspace: the rows of its conversations, plus the
rows that belong to no conversation (channel summaries, search answers, ``@ai`` in chat,
which do not record a workspace) of users who are members of it now. Rows of another
workspace's conversations never count. A member of several workspaces therefore appears,
with the same conversation-less calls, in each of them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.ai.models import AIConversation, AIUsage
from huddle.auth.models import User
from huddle.core.errors import ValidationFailed
from huddle.workspaces.models import Membership
from huddle.workspaces.schemas import UserSummary


class UsageTotals(BaseModel):
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


class UserUsage(UsageTotals):
    user: UserSummary | None  # null: calls of accounts deleted since


class UsageReport(BaseModel):
    workspace_id: uuid.UUID
    since: datetime | None
    until: datetime | None
    items: list[UserUsage]  # most tokens first
    totals: UsageTotals


def in_workspace(workspace_id: uuid.UUID) -> ColumnElement[bool]:
    """The ``ai_usage`` rows that count for a workspace (see the module's docstring)."""
    conversations = select(AIConversation.id).where(AIConversation.workspace_id == workspace_id)
    members = select(Membership.user_id).where(Membership.workspace_id == workspace_id)
    return or_(
        AIUsage.conversation_id.in_(conversations),
        and_(AIUsage.conversation_id.is_(None), AIUsage.user_id.in_(members)),
    )


async def usage_report(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageReport:
    """Calls and tokens per user in ``[since, until)`` (either end open when None)."""
    if since is not None and until is not None and until <= since:
        raise ValidationFailed(
            "until must be after since",
            details=[{"loc": ["query", "until"], "msg": "must be after since"}],
        )
    query = (
        select(
            AIUsage.user_id,
            func.count(),
            func.coalesce(func.sum(AIUsage.input_tokens), 0),
            func.coalesce(func.sum(AIUsage.output_tokens), 0),
        )
        .where(in_workspace(workspace_id))
        .group_by(AIUsage.user_id)
    )
    if since is not None:
        query = query.where(AIUsage.created_at >= since)
    if until is not None:
        query = query.where(AIUsage.created_at < until)
    rows = (await session.execute(query)).all()
    user_ids = [row[0] for row in rows if row[0] is not None]
    users = (
        {user.id: user for user in await session.scalars(select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    items = [
        UserUsage(
            user=UserSummary.model_validate(users[user_id]) if user_id in users else None,
            calls=int(calls),
            input_tokens=int(tokens_in),
            output_tokens=int(tokens_out),
            total_tokens=int(tokens_in) + int(tokens_out),
        )
        for user_id, calls, tokens_in, tokens_out in rows
    ]
    items.sort(key=lambda item: (-item.total_tokens, item.user.username if item.user else ""))
    totals = UsageTotals(
        calls=sum(item.calls for item in items),
        input_tokens=sum(item.input_tokens for item in items),
        output_tokens=sum(item.output_tokens for item in items),
        total_tokens=sum(item.total_tokens for item in items),
    )
    return UsageReport(
        workspace_id=workspace_id, since=since, until=until, items=items, totals=totals
    )
