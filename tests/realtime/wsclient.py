"""A live Huddle server in the test's event loop, and a small WebSocket client for it.

The server is real uvicorn on a free port (real sockets, real WebSocket handshakes), and
the test keeps its app object, so it can build worlds and read app state directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection

from tests.e2e.server import free_port

TIMEOUT = 10.0


@dataclass
class Live:
    app: FastAPI
    url: str
    http: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    async def stop(self) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        await asyncio.wait_for(self.task, TIMEOUT)


async def serve(app: FastAPI) -> Live:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(TIMEOUT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    return Live(app, url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT), server, task)


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


@dataclass
class Client:
    """One socket. Frames that are not the awaited ack pile up in ``inbox``."""

    ws: ClientConnection
    ready: dict[str, Any]
    inbox: list[dict[str, Any]] = field(default_factory=list)
    _refs: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def connect(cls, url: str, token: str, **options: Any) -> Client:
        ws = await websockets.connect(url, open_timeout=TIMEOUT, **options)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert ready["type"] == "ready", ready
        return cls(ws, ready)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return frame

    async def call(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a frame with a fresh ref and return its ack (other frames go to inbox)."""
        ref = f"r{next(self._refs)}"
        await self.ws.send(json.dumps({"type": type_, "ref": ref, **fields}))
        while True:
            frame = await self.recv()
            if frame.get("type") in ("ack", "pong") and frame.get("ref") == ref:
                return frame
            self.inbox.append(frame)

    async def ok(self, type_: str, **fields: Any) -> Any:
        answer = await self.call(type_, **fields)
        assert answer["ok"] is True, answer
        return answer["data"]

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The first frame (already received or arriving) that ``match``es."""
        for index, frame in enumerate(self.inbox):
            if match(frame):
                return self.inbox.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv()
                if match(frame):
                    return frame
                self.inbox.append(frame)

    async def event(self, event_type: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await self.wait_for(
            lambda f: f.get("type") == "event" and f["event"]["type"] == event_type, timeout
        )
        return frame["event"]

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (to show that nothing does)."""
        frames = list(self.inbox)
        self.inbox.clear()
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frames.append(await self.recv(seconds))
        except TimeoutError:
            pass
        return frames

    async def close(self) -> None:
        await self.ws.close()


def is_event(event_type: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "event" and f["event"]["type"] == event_type
