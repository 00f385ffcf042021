"""Bounded, fair delivery: a socket that stops reading is closed with 1013 and never
slows the others; each event is serialised once for all sockets."""

from __future__ import annotations

import asyncio
import json
import uuid

from starlette.websockets import WebSocketState

from huddle.events.bus import MemoryBus
from huddle.realtime.connection import CLOSE_TOO_SLOW, Connection
from huddle.realtime.fanout import LocalFanout
from huddle.realtime.hub import Hub
from huddle.realtime.state import MemoryCalls, MemoryPresence


class FakeSocket:
    def __init__(self, stuck: bool = False) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.sent: list[str] = []
        self.closed_with: int | None = None
        self.stuck = stuck
        self._never = asyncio.Event()

    async def send_text(self, text: str) -> None:
        if self.stuck:
            await self._never.wait()  # a client that stopped reading: send never finishes
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code
        self.application_state = WebSocketState.DISCONNECTED


async def wait_until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_stuck_socket_is_closed_1013_and_others_get_everything():
    hub = Hub(None, LocalFanout(MemoryBus()), MemoryPresence(), MemoryCalls())  # type: ignore[arg-type]
    stuck_ws, fast_ws = FakeSocket(stuck=True), FakeSocket()
    stuck = Connection(stuck_ws, uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    fast = Connection(fast_ws, uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    for conn in (stuck, fast):
        conn.start()
        await hub.add(conn)
        hub.subscribe(conn, "channel:x", None)
    for seq in range(1, 201):
        raw = json.dumps({"id": seq, "topic": "channel:x"})
        await hub.deliver_event(seq, "channel:x", "message.created", raw)
        await asyncio.sleep(0)  # let the fast writer run, as the event loop would
    await wait_until(lambda: len(fast_ws.sent) == 200)
    assert [json.loads(f)["event"]["id"] for f in fast_ws.sent] == list(range(1, 201))
    await wait_until(lambda: stuck_ws.closed_with is not None)
    assert stuck_ws.closed_with == CLOSE_TOO_SLOW and stuck.close_code == CLOSE_TOO_SLOW
    assert fast.close_code is None
    for conn in (stuck, fast):
        await conn.finish()


async def test_one_frame_text_is_shared_by_all_sockets():
    hub = Hub(None, LocalFanout(MemoryBus()), MemoryPresence(), MemoryCalls())  # type: ignore[arg-type]
    sockets = [FakeSocket() for _ in range(3)]
    conns = [Connection(ws, uuid.uuid4(), queue_size=8) for ws in sockets]  # type: ignore[arg-type]
    for conn in conns:
        await hub.add(conn)
        hub.subscribe(conn, "project:p", None)
    await hub.deliver_event(1, "project:p", "task.created", '{"id": 1}')
    queued = [conn._queue.get_nowait() for conn in conns]
    assert all(frame is queued[0] for frame in queued)  # the very same str object


async def test_replay_and_live_never_send_an_event_twice():
    ws = FakeSocket()
    conn = Connection(ws, uuid.uuid4(), queue_size=64)  # type: ignore[arg-type]
    conn.start()
    conn.hold_live()
    conn.push_event(5, "live-5")  # arrives while the replay reads the log
    conn.push_event(6, "live-6")
    for seq in (4, 5):
        await conn.push_replayed(seq, f"replay-{seq}")
    conn.release_live()
    conn.push_event(6, "live-6-again")
    await wait_until(lambda: len(ws.sent) == 3)
    assert ws.sent == ["replay-4", "replay-5", "live-6"]
    await conn.finish()


class SlowSocket(FakeSocket):
    async def send_text(self, text: str) -> None:
        await asyncio.sleep(0.001)  # an honest client on a slow link
        self.sent.append(text)


async def test_a_long_replay_to_a_slow_reader_leaves_room_for_live_frames():
    ws = SlowSocket()
    conn = Connection(ws, uuid.uuid4(), queue_size=64)  # type: ignore[arg-type]
    conn.start()
    conn.hold_live()

    async def typing_meanwhile() -> None:
        for n in range(20):
            await asyncio.sleep(0.01)
            conn.push(f"typing-{n}")

    others = asyncio.create_task(typing_meanwhile())
    for seq in range(1, 301):
        assert await conn.push_replayed(seq, f"replay-{seq}")
    conn.push("ack")
    conn.release_live()
    await others
    await wait_until(lambda: len(ws.sent) == 321, timeout=10)
    assert conn.close_code is None
    assert [f for f in ws.sent if f.startswith("replay")] == [f"replay-{n}" for n in range(1, 301)]
    await conn.finish()


async def test_a_replay_stops_when_the_socket_closes():
    ws = FakeSocket(stuck=True)
    conn = Connection(ws, uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    conn.start()
    seq = 0
    while True:  # fill until a replayed frame has to wait for room (backpressure)
        seq += 1
        waiting = asyncio.create_task(conn.push_replayed(seq, "x"))
        await asyncio.sleep(0.01)
        if not waiting.done():
            break
        assert waiting.result() is True and seq < 20
    conn.close(1013)
    assert await asyncio.wait_for(waiting, 1) is False  # ...and gives up on close
    await conn.finish()


class GatedSocket(FakeSocket):
    """Sends finish at once until ``gate`` is cleared; then they wait for it (the peer's
    buffers are full)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)


async def test_idle_sockets_are_written_at_once_and_a_waiting_send_keeps_the_order():
    ws = GatedSocket()
    conn = Connection(ws, uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    conn.start()
    await asyncio.sleep(0)  # the writer is now idle
    conn.push("a")
    assert ws.sent == ["a"]  # written in the pusher's own step, no task switch
    ws.gate.clear()
    conn.push("b")  # has to wait: handed to the writer
    conn.push("c")  # queued behind it
    conn.push_event(1, "d")
    await asyncio.sleep(0.01)
    assert ws.sent == ["a"]
    ws.gate.set()
    await wait_until(lambda: len(ws.sent) == 4)
    assert ws.sent == ["a", "b", "c", "d"]
    await asyncio.sleep(0)
    conn.push("e")  # idle again: at once
    assert ws.sent[-1] == "e" and conn.close_code is None
    await conn.finish()


class BrokenSocket(FakeSocket):
    async def send_text(self, text: str) -> None:
        raise RuntimeError("connection reset")


async def test_a_failed_immediate_write_marks_the_socket_closed():
    conn = Connection(BrokenSocket(), uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    conn.start()
    await asyncio.sleep(0)
    conn.push("a")
    assert conn.closed.is_set()
    conn.push("b")  # dropped quietly: the reader notices the socket is gone
    await conn.finish()


async def test_finishing_cancels_a_waiting_send():
    ws = GatedSocket()
    conn = Connection(ws, uuid.uuid4(), queue_size=8)  # type: ignore[arg-type]
    conn.start()
    await asyncio.sleep(0)
    ws.gate.clear()
    conn.push("stuck")
    await asyncio.sleep(0.01)  # the writer now awaits the unfinished send
    await asyncio.wait_for(conn.finish(), 1)
    ws.gate.set()
    await asyncio.sleep(0.01)
    assert ws.sent == []  # the cancelled send never completed


async def test_open_sockets_are_counted_in_the_metrics(live, connect):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.helpers import wait_for

    async def open_sockets() -> float:
        text = (await live.http.get("/metrics")).text
        [family] = [
            f
            for f in text_string_to_metric_families(text)
            if f.name == "huddle_websocket_connections"
        ]
        return family.samples[0].value

    before = await open_sockets()
    first, _second = await connect("member"), await connect("admin")

    def counted(expected: float):
        async def check() -> bool:
            return await open_sockets() == expected

        return check

    await wait_for(counted(before + 2), timeout=10)
    await first.close()
    await wait_for(counted(before + 1), timeout=10)
