"""Every event type and the schema of its ``data`` (one model per type, DESIGN.md §7).

``record()`` refuses a type that is not here, or data of the wrong schema, so the
catalog is the complete list of what Huddle emits.
"""

from __future__ import annotations

from pydantic import BaseModel

from huddle.auth.schemas import UserRead
from huddle.automation.schemas import AutomationRead
from huddle.chat.schemas import (
    ChannelMemberEventData,
    ChannelRead,
    MentionData,
    MessageData,
    ReactionEventData,
    ReadState,
)
from huddle.clients.schemas import ClientRead
from huddle.documents.schemas import DocumentRead, FileRead
from huddle.events.schemas import WebhookEventData
from huddle.projects.schemas import GrantRead, ProjectData
from huddle.tasks.schemas import (
    ColumnDeleted,
    ColumnRead,
    ColumnRebalanced,
    ColumnsReordered,
    TaskMoved,
    TaskRead,
    Workflow,
)
from huddle.workspaces.schemas import (
    InvitationRead,
    MemberEventData,
    TeamMemberEventData,
    TeamRead,
    WorkspaceData,
)


class DeletedData(BaseModel):
    id: str


CATALOG: dict[str, type[BaseModel]] = {
    "workspace.created": WorkspaceData,
    "workspace.updated": WorkspaceData,
    "workspace.deleted": WorkspaceData,
    "member.added": MemberEventData,
    "member.removed": MemberEventData,
    "member.role_changed": MemberEventData,
    "invitation.created": InvitationRead,
    "invitation.accepted": InvitationRead,
    "invitation.revoked": InvitationRead,
    "team.created": TeamRead,
    "team.updated": TeamRead,
    "team.deleted": TeamRead,
    "team.member_added": TeamMemberEventData,
    "team.member_removed": TeamMemberEventData,
    "client.created": ClientRead,
    "client.updated": ClientRead,
    "client.deleted": ClientRead,
    "project.created": ProjectData,
    "project.updated": ProjectData,
    "project.deleted": ProjectData,
    "project.permission_set": GrantRead,
    "project.permission_removed": GrantRead,
    "task.created": TaskRead,
    "task.updated": TaskRead,
    "task.moved": TaskMoved,
    "task.deleted": TaskRead,
    "document.created": DocumentRead,
    "document.updated": DocumentRead,
    "document.deleted": DocumentRead,
    "file.uploaded": FileRead,
    "file.deleted": FileRead,
    "workflow.updated": Workflow,
    "automation.created": AutomationRead,
    "automation.updated": AutomationRead,
    "automation.deleted": AutomationRead,
    "column.created": ColumnRead,
    "column.updated": ColumnRead,
    "column.reordered": ColumnsReordered,
    "column.deleted": ColumnDeleted,
    "column.rebalanced": ColumnRebalanced,
    "channel.created": ChannelRead,
    "channel.updated": ChannelRead,
    "channel.deleted": ChannelRead,
    "channel.member_added": ChannelMemberEventData,
    "channel.member_removed": ChannelMemberEventData,
    "channel.read": ReadState,
    "message.created": MessageData,
    "message.updated": MessageData,
    "message.deleted": MessageData,
    "reaction.added": ReactionEventData,
    "reaction.removed": ReactionEventData,
    "mention": MentionData,
    "user.updated": UserRead,
    "user.deleted": DeletedData,
    "webhook.created": WebhookEventData,
    "webhook.updated": WebhookEventData,
    "webhook.deleted": WebhookEventData,
}
