"""The curated views of the main models, with the actions that change them.

Actions run in a Huddle unit of work and call the same service functions as the API:
deactivating a user here is ``PATCH /api/admin/users/{uid}`` (the ``user.updated``
event, refresh tokens and API tokens revoked), revoking a token is the owner's
``DELETE /api/auth/api-tokens/{id}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqladmin import action
from sqladmin.filters import BooleanFilter
from sqladmin.flash import flash
from starlette.requests import Request
from starlette.responses import Response

from huddle.access.deps import Caller
from huddle.admin import service as admin_service
from huddle.admin.schemas import AdminUserUpdate
from huddle.admin_panel.base import PanelView
from huddle.auth import service as auth_service
from huddle.auth.models import ApiToken, RefreshToken, User
from huddle.automation.models import Automation
from huddle.chat.models import Channel, Message
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError
from huddle.documents.models import Document
from huddle.events.models import Event, Webhook
from huddle.projects.models import Project
from huddle.tasks.models import Task
from huddle.workspaces.models import Invitation, Membership, Workspace


class UserView(PanelView, model=User):
    category = "Accounts"
    icon = "fa-solid fa-user"
    column_list = [
        "id",
        "username",
        "email",
        "full_name",
        "is_active",
        "is_superuser",
        "created_at",
    ]
    column_details_list = column_list
    column_searchable_list = ["username", "email"]
    column_sortable_list = ["username", "email", "created_at", "is_active", "is_superuser"]
    column_default_sort = ("created_at", True)
    column_filters: ClassVar[list[Any]] = [
        BooleanFilter(User.is_active),
        BooleanFilter(User.is_superuser),
    ]

    @action("deactivate", "Deactivate", "Deactivate the selected users and sign them out?")
    async def deactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=False)

    @action("reactivate", "Reactivate", "Reactivate the selected users?")
    async def reactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=True)

    async def _set_active(self, request: Request, *, active: bool) -> Response:
        ids = self.selected_ids(request)
        try:
            async with unit_of_work(self.app_state, write=True) as session:
                acting = await session.get(User, self.acting_user_id(request))
                if acting is None:
                    return self.back_to_list(request)
                caller = Caller.acting_as(acting)
                for user_id in ids:
                    await admin_service.update_user(
                        session, caller, user_id, AdminUserUpdate(is_active=active)
                    )
        except AppError as exc:
            flash(request, f"Nothing changed: {exc.message}", "danger")
        else:
            verb = "reactivated" if active else "deactivated"
            flash(request, f"{len(ids)} user(s) {verb}", "success")
        return self.back_to_list(request)


class ApiTokenView(PanelView, model=ApiToken):
    category = "Accounts"
    icon = "fa-solid fa-key"
    name = "API token"
    column_list = ["id", "user_id", "name", "prefix", "created_at", "last_used_at", "expires_at"]
    column_list += ["revoked_at"]
    column_details_list = column_list
    column_searchable_list = ["name", "prefix"]
    column_sortable_list = ["created_at", "last_used_at", "expires_at", "revoked_at"]
    column_default_sort = ("created_at", True)

    @action("revoke", "Revoke", "Revoke the selected API tokens?")
    async def revoke(self, request: Request) -> Response:
        count = 0
        try:
            async with unit_of_work(self.app_state, write=True) as session:
                for token_id in self.selected_ids(request):
                    token = await session.get(ApiToken, token_id)
                    if token is None or token.revoked_at is not None:
                        continue
                    owner = await session.get(User, token.user_id)
                    if owner is None:
                        continue
                    await auth_service.revoke_api_token(session, owner, token.id)
                    count += 1
        except AppError as exc:
            flash(request, f"Nothing changed: {exc.message}", "danger")
        else:
            flash(request, f"{count} token(s) revoked", "success")
        return self.back_to_list(request)


class RefreshTokenView(PanelView, model=RefreshToken):
    category = "Accounts"
    icon = "fa-solid fa-rotate"
    column_list = ["id", "user_id", "family_id", "created_at", "expires_at", "revoked_at"]
    column_default_sort = ("created_at", True)


class WorkspaceView(PanelView, model=Workspace):
    category = "Workspaces"
    icon = "fa-solid fa-building"
    column_list = ["id", "name", "slug", "owner_id", "created_at", "deleted_at"]
    column_searchable_list = ["name", "slug"]
    column_sortable_list = ["name", "slug", "created_at"]
    column_default_sort = ("created_at", True)


class MembershipView(PanelView, model=Membership):
    category = "Workspaces"
    icon = "fa-solid fa-user-group"
    column_list = ["id", "workspace_id", "user_id", "role", "created_at"]
    column_default_sort = ("created_at", True)


class InvitationView(PanelView, model=Invitation):
    category = "Workspaces"
    icon = "fa-solid fa-envelope"
    column_list = ["id", "workspace_id", "email", "role", "expires_at", "accepted_at"]
    column_list += ["revoked_at"]
    column_searchable_list = ["email"]
    column_default_sort = ("created_at", True)


class ProjectView(PanelView, model=Project):
    category = "Work"
    icon = "fa-solid fa-folder"
    column_list = ["id", "workspace_id", "name", "is_private", "created_at", "archived_at"]
    column_list += ["deleted_at"]
    column_searchable_list = ["name"]
    column_sortable_list = ["name", "created_at"]
    column_default_sort = ("created_at", True)


class TaskView(PanelView, model=Task):
    category = "Work"
    icon = "fa-solid fa-list-check"
    column_list = ["id", "project_id", "title", "priority", "assignee_id", "due_date"]
    column_list += ["completed_at", "created_at"]
    column_searchable_list = ["title"]
    column_sortable_list = ["title", "priority", "due_date", "created_at"]
    column_default_sort = ("created_at", True)


class AutomationView(PanelView, model=Automation):
    category = "Work"
    icon = "fa-solid fa-robot"
    column_list = ["id", "project_id", "name", "enabled", "owner_id", "disabled_reason"]
    column_list += ["created_at"]
    column_searchable_list = ["name"]
    column_default_sort = ("created_at", True)


class ChannelView(PanelView, model=Channel):
    category = "Chat"
    icon = "fa-solid fa-hashtag"
    column_list = ["id", "workspace_id", "name", "kind", "is_private", "created_at"]
    column_list += ["deleted_at"]
    column_searchable_list = ["name"]
    column_default_sort = ("created_at", True)


class MessageView(PanelView, model=Message):
    """Messages without their content (encrypted at rest, and private to the channel)."""

    category = "Chat"
    icon = "fa-solid fa-message"
    column_list = ["id", "channel_id", "author_id", "author_kind", "parent_id", "created_at"]
    column_list += ["edited_at", "deleted_at"]
    column_default_sort = ("created_at", True)


class DocumentView(PanelView, model=Document):
    """Documents without their content (encrypted at rest)."""

    category = "Documents"
    icon = "fa-solid fa-file-lines"
    column_list = ["id", "workspace_id", "project_id", "title", "version", "updated_at"]
    column_searchable_list = ["title"]
    column_default_sort = ("updated_at", True)


class EventView(PanelView, model=Event):
    """The event log without payloads (they may carry content, encrypted at rest)."""

    category = "Events"
    icon = "fa-solid fa-bolt"
    column_list = ["id", "seq", "type", "topic", "workspace_id", "subject_id", "actor"]
    column_list += ["created_at", "published_at"]
    column_searchable_list = ["type", "topic"]
    column_sortable_list = ["id", "seq", "type", "created_at"]
    column_default_sort = ("id", True)


class WebhookView(PanelView, model=Webhook):
    category = "Events"
    icon = "fa-solid fa-satellite-dish"
    column_list = ["id", "workspace_id", "url", "event_types", "active", "created_at"]
    column_searchable_list = ["url"]
    column_default_sort = ("created_at", True)


CURATED: tuple[type[PanelView], ...] = (
    UserView,
    ApiTokenView,
    RefreshTokenView,
    WorkspaceView,
    MembershipView,
    InvitationView,
    ProjectView,
    TaskView,
    AutomationView,
    ChannelView,
    MessageView,
    DocumentView,
    EventView,
    WebhookView,
)
