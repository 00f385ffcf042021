"""One client socket: its subscriptions, its bounded send queue and its writer.

Nothing here awaits on behalf of others: the hub hands a connection frames with
:meth:`Connection.push_event` / :meth:`Connection.push`, which never block. A client
that does not read fills its queue and is closed with 1013 ("try again later") instead
of slowing delivery to anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from contextlib import suppress

from starlette.websockets import WebSocket, WebSocketState

log = logging.getLogger("huddle.realtime")

CLOSE_TOO_SLOW = 1013
_CLOSE_TIMEOUT = 2.0


def event_frame(raw: str) -> str:
    """The ``event`` frame around an envelope serialised once for every socket."""
    return '{"type":"event","event":' + raw + "}"


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
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._limit = queue_size
        # While a resume replays history, live events wait here (bounded like the queue).
        self._held: list[tuple[int, str]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    # --- sending ----------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    async def _write(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                await self.websocket.send_text(frame)
                if self._queue.qsize() < self._limit // 2:
                    self._room.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away; the reader notices and cleans up
            self.closed.set()

    def push(self, frame: str) -> None:
        """Queue a frame; a full queue means the client stopped reading: drop it."""
        if self.closed.is_set():
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CLOSE_TOO_SLOW, "too slow: send queue full")

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
        asyncio.create_task(self._close(code, reason), name=f"ws-close-{self.id}")  # noqa: RUF006

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        with suppress(Exception):
            if self.websocket.application_state is not WebSocketState.DISCONNECTED:
                await asyncio.wait_for(self.websocket.close(code, reason), _CLOSE_TIMEOUT)

    async def finish(self) -> None:
        """Stop the writer (the socket is gone or closing)."""
        self.closed.set()
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._writer
