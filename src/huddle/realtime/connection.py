"""One client socket: its subscriptions, its bounded send queue and its writer.

Nothing here awaits on behalf of others: the hub hands a connection frames with
:meth:`Connection.push_event` / :meth:`Connection.push`, which never block. A client
that does not read fills its queue and is closed with 1013 ("try again later") instead
of slowing delivery to anyone else.

Fan-out cost: when a socket's writer is idle, a pushed frame is written at once, in the
pusher's own step (the ASGI send finishes without suspending while the transport
accepts data), so the common case costs no queue hand-off and no task switch per
socket. Only a send that has to wait (the peer's buffers are full) is handed to the
socket's writer task, and every later frame queues behind it, in order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Coroutine, Generator
from contextlib import suppress
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

log = logging.getLogger("huddle.realtime")

CLOSE_TOO_SLOW = 1013
_CLOSE_TIMEOUT = 2.0


def event_frame(raw: str) -> str:
    """The ``event`` frame around an envelope serialised once for every socket."""
    return '{"type":"event","event":' + raw + "}"


class _Unfinished:
    """A coroutine that was stepped once outside any task and stopped at ``pending``
    (what it yielded to the event loop). Awaiting this, in a task, runs it to the end —
    what Python 3.12's eager tasks do, without a task per frame."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, None]:
        pending = self.pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # cancellation thrown into the awaiting task
                try:
                    pending = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    pending = self.coro.send(value)
                except StopIteration:
                    return


class Connection:
    """A socket's state. ``topics`` maps each subscribed topic to its workspace (None
    for ``user:`` topics), which tells the hub whose access changes concern it."""

    def __init__(
        self, websocket: WebSocket, user_id: uuid.UUID, queue_size: int, remember: int = 10_000
    ) -> None:
        self.id = uuid.uuid4().hex
        self.websocket = websocket
        self.user_id = user_id
        self.topics: dict[str, uuid.UUID | None] = {}
        self.calls: dict[uuid.UUID, uuid.UUID] = {}  # call channel → its workspace
        self.workspaces: set[uuid.UUID] = set()  # where this user's presence is announced
        self.last_seq = 0  # the highest event seq this socket has been sent
        # The seqs recently sent, so a replay overlapping live delivery sends nothing twice.
        self._sent: set[int] = set()
        self._sent_order: deque[int] = deque()
        self._remember = remember
        self._queue: asyncio.Queue[str | _Unfinished] = asyncio.Queue(maxsize=queue_size)
        self._limit = queue_size
        self._idle = False  # the writer waits for a frame and nothing is being sent
        # While a resume replays history, live events wait here (bounded like the queue).
        self._held: list[tuple[int, str]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    # --- sending ----------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    async def _write(self) -> None:
        try:
            while True:
                self._idle = True
                frame = await self._queue.get()
                self._idle = False
                if isinstance(frame, _Unfinished):
                    await frame
                else:
                    await self.websocket.send_text(frame)
                if self._queue.qsize() < self._limit // 2:
                    self._room.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._lost()

    def push(self, frame: str) -> None:
        """Send or queue a frame; a full queue means the client stopped reading: drop it."""
        if self.closed.is_set():
            return
        if self._idle and self._queue.empty():
            self._send_now(frame)
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CLOSE_TOO_SLOW, "too slow: send queue full")

    def _send_now(self, frame: str) -> None:
        """Write while the writer is idle; a send that must wait goes to the writer."""
        coro = self.websocket.send_text(frame)
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception:
            self._lost()
            return
        self._queue.put_nowait(_Unfinished(coro, pending))

    def _lost(self) -> None:
        """A send failed: the peer went away (the reader notices and cleans up)."""
        self._idle = False
        self.closed.set()

    async def push_waiting(self, frame: str) -> bool:
        """Queue a frame once the queue is at most half full (a resume's replay:
        backpressure, not loss, and room left for acks and live frames). False when
        the socket closed meanwhile."""
        while self._queue.qsize() >= max(1, self._limit // 2):
            if self.closed.is_set():
                return False
            self._room.clear()
            room = asyncio.ensure_future(self._room.wait())
            closed = asyncio.ensure_future(self.closed.wait())
            await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
            room.cancel()
            closed.cancel()
        if self.closed.is_set():
            return False
        self._queue.put_nowait(frame)
        return True

    def push_event(self, seq: int, frame: str) -> None:
        """Queue a live event unless this socket already has it."""
        if seq in self._sent:
            return
        if self._held is not None:
            if len(self._held) >= self._limit:
                self.close(CLOSE_TOO_SLOW, "too slow: resume buffer full")
                return
            self._held.append((seq, frame))
            return
        self._mark_sent(seq)
        self.push(frame)

    async def push_replayed(self, seq: int, frame: str) -> bool:
        """Queue a replayed event (waiting for room) unless it was sent already."""
        if seq in self._sent:
            return False
        if not await self.push_waiting(frame):
            return False
        self._mark_sent(seq)
        return True

    def _mark_sent(self, seq: int) -> None:
        self._sent.add(seq)
        self._sent_order.append(seq)
        if len(self._sent_order) > self._remember:
            self._sent.discard(self._sent_order.popleft())
        self.last_seq = max(self.last_seq, seq)

    # --- resume -------------------------------------------------------------------------

    def hold_live(self) -> None:
        """From now until :meth:`release_live`, live events are buffered, not sent."""
        self._held = []

    def release_live(self) -> None:
        """Send the buffered live events the replay did not already cover, then go live.

        Runs without awaiting, so no live event can slip between the two.
        """
        held, self._held = self._held or [], None
        for seq, frame in held:
            self.push_event(seq, frame)

    @property
    def resuming(self) -> bool:
        return self._held is not None

    # --- closing ------------------------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        """Close from anywhere without waiting (the hub calls this mid-fan-out)."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.closed.set()
        self._closing = asyncio.create_task(self._close(code, reason), name=f"ws-close-{self.id}")

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        with suppress(Exception):
            if self.websocket.application_state is not WebSocketState.DISCONNECTED:
                await asyncio.wait_for(self.websocket.close(code, reason), _CLOSE_TIMEOUT)

    async def finish(self) -> None:
        """Stop the writer (the socket is gone or closing), and give a close frame begun
        by :meth:`close` its chance to go out: it waits behind frames the client has not
        read yet, and the server drops the connection as soon as the handler returns."""
        self.closed.set()
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._writer
        if self._closing is not None:
            with suppress(asyncio.CancelledError, Exception):
                await self._closing
