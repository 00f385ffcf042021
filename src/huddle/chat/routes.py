"""Channels, DMs, messages, reactions and read markers over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from huddle.access.channels import ChannelAccess, channel_access
from huddle.access.deps import CurrentCaller, RoleCache, WorkspaceAccessDep
from huddle.chat import channels, messages, unread
from huddle.chat.messages import ChatRuntime
from huddle.chat.models import ChannelKind, Message
from huddle.chat.schemas import (
    ChannelCreate,
    ChannelListItem,
    ChannelMemberAdd,
    ChannelRead,
    ChannelUpdate,
    DMCreate,
    MessageCreate,
    MessageRead,
    MessageUpdate,
    ReadRequest,
    ReadState,
)
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep

router = APIRouter(prefix="/api", tags=["chat"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT
Emoji = Annotated[str, Path(min_length=1, max_length=64, description="An emoji, or a name")]


def get_chat_runtime(request: Request) -> ChatRuntime:
    runtime: ChatRuntime = request.app.state.chat
    return runtime


ChatRuntimeDep = Annotated[ChatRuntime, Depends(get_chat_runtime)]


def _found(model: type, description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of an idempotent create's 200 (it found the existing one)."""
    return {200: {"model": model, "description": description}}


def _created_or_found(response: Response, created: bool) -> None:
    """201 when the request created the row, 200 when it found it already there."""
    if not created:
        response.status_code = status.HTTP_200_OK


async def _channel(
    cid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> ChannelAccess:
    return await channel_access(session, cache, caller.id, cid)


async def _message(
    mid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[Message, ChannelAccess]:
    return await messages.message_access(session, cache, caller, mid)


ChannelDep = Annotated[ChannelAccess, Depends(_channel)]
MessageDep = Annotated[tuple[Message, ChannelAccess], Depends(_message)]


# --- channels -----------------------------------------------------------------------------


@router.post(
    "/workspaces/{wid}/channels", status_code=status.HTTP_201_CREATED, response_model=ChannelRead
)
async def create_channel(
    body: ChannelCreate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
) -> ChannelRead:
    """Create a text or voice channel (private ones start with their listed members)."""
    return await channels.create_channel(session, cache, caller, access, body)


@router.get("/workspaces/{wid}/channels", response_model=Page[ChannelListItem])
async def list_channels(
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    page: PageParamsDep,
    kind: Annotated[ChannelKind | None, Query()] = None,
) -> Page[ChannelListItem]:
    """Channels and DMs the caller sees, oldest first, with unread and mention counts."""
    items, cursor = await channels.list_channels(session, caller, access, page, kind)
    return Page(items=items, next_cursor=cursor)


@router.post(
    "/workspaces/{wid}/dms",
    response_model=ChannelRead,
    status_code=status.HTTP_201_CREATED,
    responses=_found(ChannelRead, "The DM already existed"),
)
async def open_dm(
    body: DMCreate,
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    response: Response,
) -> ChannelRead:
    """The one DM channel of the caller and these people (201 created, 200 existing)."""
    channel, created = await channels.open_dm(session, caller, access, body.user_ids)
    _created_or_found(response, created)
    return channel


@router.get("/channels/{cid}", response_model=ChannelListItem)
async def get_channel(
    access: ChannelDep, caller: CurrentCaller, session: SessionDep
) -> ChannelListItem:
    """One channel, with the caller's unread and mention counts."""
    return (await channels.list_items(session, caller.id, [access.channel]))[0]


@router.patch("/channels/{cid}", response_model=ChannelRead)
async def update_channel(
    body: ChannelUpdate, access: ChannelDep, caller: CurrentCaller, session: SessionDep
) -> ChannelRead:
    """Rename a channel or change its topic (workspace admins and its creator)."""
    return await channels.update_channel(session, caller, access, body)


@router.delete("/channels/{cid}", status_code=NO_CONTENT)
async def delete_channel(access: ChannelDep, caller: CurrentCaller, session: SessionDep) -> None:
    """Delete a channel (workspace admins and its creator)."""
    await channels.delete_channel(session, caller, access)


@router.post(
    "/channels/{cid}/members",
    response_model=ChannelRead,
    status_code=status.HTTP_201_CREATED,
    responses=_found(ChannelRead, "Already a member"),
)
async def add_channel_member(
    body: ChannelMemberAdd,
    access: ChannelDep,
    caller: CurrentCaller,
    session: SessionDep,
    response: Response,
) -> ChannelRead:
    """Add a workspace member to a private channel."""
    channel, added = await channels.add_member(session, caller, access, body.user_id)
    _created_or_found(response, added)
    return channel


@router.delete("/channels/{cid}/members/{uid}", status_code=NO_CONTENT)
async def remove_channel_member(
    uid: uuid.UUID, access: ChannelDep, caller: CurrentCaller, session: SessionDep
) -> None:
    """Leave a private channel, or remove someone from it (admins and its creator)."""
    await channels.remove_member(session, caller, access, uid)


@router.post("/channels/{cid}/read", response_model=ReadState)
async def mark_read(
    body: ReadRequest, access: ChannelDep, caller: CurrentCaller, session: SessionDep
) -> ReadState:
    """Set the caller's read marker to this message."""
    return await unread.mark_read(session, caller, access, body.message_id)


# --- messages -----------------------------------------------------------------------------


@router.get("/channels/{cid}/messages", response_model=Page[MessageRead])
async def list_messages(
    access: ChannelDep,
    caller: CurrentCaller,
    session: SessionDep,
    page: PageParamsDep,
    before: Annotated[uuid.UUID | None, Query(description="Messages older than this one")] = None,
    parent_id: Annotated[uuid.UUID | None, Query(description="This thread's replies")] = None,
) -> Page[MessageRead]:
    """History, newest first: top-level messages, or one thread's replies."""
    items, cursor = await messages.list_messages(
        session, caller, access, page, before=before, parent_id=parent_id
    )
    return Page(items=items, next_cursor=cursor)


@router.post(
    "/channels/{cid}/messages",
    response_model=MessageRead,
    status_code=status.HTTP_201_CREATED,
    responses=_found(MessageRead, "Repeated client_msg_id"),
)
async def post_message(
    body: MessageCreate,
    access: ChannelDep,
    caller: CurrentCaller,
    session: SessionDep,
    runtime: ChatRuntimeDep,
    response: Response,
) -> MessageRead:
    """Post a message or thread reply (a repeated client_msg_id returns the first, 200)."""
    message, created = await messages.post_message(session, runtime, caller, access, body)
    _created_or_found(response, created)
    return message


@router.get("/messages/{mid}", response_model=MessageRead)
async def get_message(found: MessageDep, caller: CurrentCaller, session: SessionDep) -> object:
    """One message."""
    return await messages.read_message(session, caller.id, found[0])


@router.patch("/messages/{mid}", response_model=MessageRead)
async def edit_message(
    body: MessageUpdate, found: MessageDep, caller: CurrentCaller, session: SessionDep
) -> MessageRead:
    """Edit one's own message."""
    message, access = found
    return await messages.edit_message(session, caller, access, message, body.content)


@router.delete("/messages/{mid}", status_code=NO_CONTENT)
async def delete_message(found: MessageDep, caller: CurrentCaller, session: SessionDep) -> None:
    """Delete a message (its author, or an admin), leaving a tombstone."""
    message, access = found
    await messages.delete_message(session, caller, access, message)


@router.put("/messages/{mid}/reactions/{emoji}", response_model=MessageRead)
async def add_reaction(
    emoji: Emoji, found: MessageDep, caller: CurrentCaller, session: SessionDep
) -> MessageRead:
    """React to a message with an emoji (idempotent)."""
    message, access = found
    return await messages.add_reaction(session, caller, access, message, emoji)


@router.delete("/messages/{mid}/reactions/{emoji}", status_code=NO_CONTENT)
async def remove_reaction(
    emoji: Emoji, found: MessageDep, caller: CurrentCaller, session: SessionDep
) -> None:
    """Take back one's reaction (idempotent)."""
    message, access = found
    await messages.remove_reaction(session, caller, access, message, emoji)
