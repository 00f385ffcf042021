"""``/ws``: the WebSocket gateway (DESIGN.md §6).

The first frame authenticates (``{"type": "auth", "token"}`` within
``HUDDLE_WS_AUTH_TIMEOUT`` seconds; 4401 for a bad token, 4408 for silence) and is
answered with ``ready`` and the latest event ``seq``. After that each client frame gets
an ack (see :mod:`huddle.realtime.frames`); the server pushes the events of subscribed
topics, ephemeral frames, and a ``heartbeat`` every ``HUDDLE_WS_HEARTBEAT`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from contextlib import suppress

from fastapi import APIRouter, WebSocket
from sqlalchemy import select
from starlette.datastructures import State
from starlette.websockets import WebSocketDisconnect, WebSocketState

from huddle.auth.deps import touch_api_token, user_for_token
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError
from huddle.core.observability import WEBSOCKETS
from huddle.core.requestid import set_user_id
from huddle.events.service import latest_seq
from huddle.realtime import frames
from huddle.realtime.connection import Connection
from huddle.realtime.hub import Hub
from huddle.workspaces.models import Membership, Workspace

log = logging.getLogger("huddle.realtime")
router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_BIG = 1009


async def _authenticate(websocket: WebSocket) -> uuid.UUID | None:
    """Wait for the auth frame; the user id, or None after closing the socket."""
    state = websocket.app.state
    try:
        text = await asyncio.wait_for(websocket.receive_text(), state.settings.ws_auth_timeout)
    except TimeoutError:
        await websocket.close(CLOSE_AUTH_TIMEOUT, "authentication timed out")
        return None
    except KeyError:  # a binary frame
        await websocket.close(CLOSE_UNAUTHORIZED, "authentication failed")
        return None
    except (WebSocketDisconnect, RuntimeError):
        return None
    try:
        if len(text) > state.settings.ws_max_frame_kb * 1024:
            raise ValueError("auth frame too large")
        frame = json.loads(text)
        token = frame.get("token") if isinstance(frame, dict) else None
        if frame.get("type") != "auth" or not isinstance(token, str):
            raise ValueError("the first frame must be auth")
        async with unit_of_work(state, write=False) as session:

            def touch(token_id: uuid.UUID) -> None:
                state.background.spawn(touch_api_token(state.db, token_id), "touch-api-token")

            user = await user_for_token(session, state, token, touch)
            return user.id
    except (ValueError, AttributeError, RecursionError, AppError):
        await websocket.close(CLOSE_UNAUTHORIZED, "authentication failed")
        return None


async def _workspaces_and_cursor(state: State, user_id: uuid.UUID) -> tuple[set[uuid.UUID], int]:
    async with unit_of_work(state, write=False) as session:
        workspaces = set(
            await session.scalars(
                select(Membership.workspace_id)
                .join(Workspace, Workspace.id == Membership.workspace_id)
                .where(Membership.user_id == user_id, Workspace.deleted_at.is_(None))
            )
        )
        cursor = await latest_seq(session)
    return workspaces, cursor


async def _heartbeat(hub: Hub, conn: Connection, every: float) -> None:
    while not conn.closed.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(conn.closed.wait(), every)
        if conn.closed.is_set():
            return
        conn.push(json.dumps({"type": "heartbeat", "cursor": conn.last_seq}))
        with suppress(Exception):
            await hub.presence.refresh(conn.user_id, conn.id)
            for channel_id in conn.calls:
                await hub.calls.refresh(channel_id, conn.user_id, conn.id)


@router.websocket("/ws")
async def gateway(websocket: WebSocket) -> None:
    """One client's socket, from authentication to close."""
    state = websocket.app.state
    hub: Hub = state.hub
    settings = state.settings
    await websocket.accept()
    user_id = await _authenticate(websocket)
    if user_id is None:
        return
    remember = settings.ws_replay_limit + settings.ws_send_queue
    conn = Connection(websocket, user_id, settings.ws_send_queue, remember)
    conn.workspaces, cursor = await _workspaces_and_cursor(state, user_id)
    conn.last_seq = cursor
    conn.start()
    conn.push(json.dumps({"type": "ready", "user_id": str(user_id), "cursor": cursor}))
    ctx = frames.Session(hub=hub, conn=conn, state=state, typing_at={})
    heartbeat = asyncio.create_task(_heartbeat(hub, conn, settings.ws_heartbeat))
    limit = settings.ws_max_frame_kb * 1024
    set_user_id(user_id)
    WEBSOCKETS.inc()
    try:
        await hub.add(conn)
        while not conn.closed.is_set():
            receive = asyncio.ensure_future(websocket.receive())
            closed = asyncio.ensure_future(conn.closed.wait())
            done, _ = await asyncio.wait({receive, closed}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await receive
                break
            closed.cancel()
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                conn.push(
                    frames.error_ack(None, frames.FrameError("text_only", "Send text frames", 422))
                )
                continue
            if len(text) > limit:
                conn.close(CLOSE_TOO_BIG, "frame too large")
                break
            await frames.handle(ctx, text)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("socket of %s failed", user_id)
        conn.close(1011, "internal error")
    finally:
        WEBSOCKETS.dec()
        heartbeat.cancel()
        try:
            await hub.remove(conn)
        except Exception:
            log.exception("cleaning up the socket of %s failed", user_id)
        await conn.finish()
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            with suppress(Exception):
                await websocket.close(conn.close_code or 1000)
