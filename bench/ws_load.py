"""The light load client of the WebSocket benchmark (one process, picows).

Opens ``--sockets`` subscriber sockets spread over ``--url`` (one or more servers), then
one sender socket on the first URL, and for each rate in ``--rates`` sends that many
messages per second for ``--seconds``. Every message carries ``t=<send time in ns>``;
each subscriber notes ``receive time - send time`` for every frame that carries it.
The client parses nothing else (one ``bytes.find`` per frame), so its own cost per
delivery stays small; it reports that cost too.

Protocol with the orchestrator (bench/ws_bench.py): prints ``READY`` when every socket
is connected (and, for Huddle, authenticated and subscribed), waits for a line on stdin,
then for each rate prints ``START <rate>`` and ``END <rate> <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MARK = b"t="


class Subscriber(WSListener):
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.transport: WSTransport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        at = payload.find(MARK)
        if at < 0 or (self.bench.huddle and b'"type":"event"' not in payload[:40]):
            if not self.ready.done() and (b'"ack"' in payload or not self.bench.huddle):
                self.ready.set_result(payload)
            return
        end = at + 2
        while end < len(payload) and 48 <= payload[end] <= 57:
            end += 1
        if self.bench.recording:
            self.bench.latencies.append(time.time_ns() - int(payload[at + 2 : end]))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.bench.disconnects += 1


class Bench:
    def __init__(self, huddle: bool) -> None:
        self.huddle = huddle
        self.recording = False
        self.latencies: list[int] = []
        self.disconnects = 0


async def open_socket(bench: Bench, url: str, token: str | None, topic: str | None) -> Subscriber:
    transport, listener = await ws_connect(lambda: Subscriber(bench), url)
    assert isinstance(listener, Subscriber)
    if bench.huddle:
        transport.send(WSMsgType.TEXT, json.dumps({"type": "auth", "token": token}).encode())
        if topic:
            frame = {"type": "subscribe", "ref": 1, "topic": topic}
            transport.send(WSMsgType.TEXT, json.dumps(frame).encode())
            await asyncio.wait_for(listener.ready, 30)
    return listener


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--mode", choices=("huddle", "minimal"), required=True)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--token")
    parser.add_argument("--sender-token")
    parser.add_argument("--channel")
    parser.add_argument("--rates", default="20")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    bench = Bench(args.mode == "huddle")
    topic = f"channel:{args.channel}" if bench.huddle else None
    subscribers = []
    for n in range(args.sockets):
        url = args.url[n % len(args.url)]
        subscribers.append(await open_socket(bench, url, args.token, topic))
    sender = await open_socket(bench, args.url[0], args.sender_token, None)
    await asyncio.sleep(1)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    assert sender.transport is not None
    for rate in [int(r) for r in args.rates.split(",")]:
        await asyncio.sleep(1)
        print(f"START {rate}", flush=True)
        bench.latencies.clear()
        bench.recording = True
        cpu0, wall0 = time.process_time(), time.perf_counter()
        sent, interval = 0, 1 / rate
        while time.perf_counter() - wall0 < args.seconds:
            stamp = f"t={time.time_ns()}"
            if bench.huddle:
                frame = {"type": "message.send", "channel_id": args.channel, "content": stamp}
                sender.transport.send(WSMsgType.TEXT, json.dumps(frame).encode())
            else:
                sender.transport.send(WSMsgType.TEXT, json.dumps({"content": stamp}).encode())
            sent += 1
            await asyncio.sleep(max(0.0, wall0 + sent * interval - time.perf_counter()))
        await asyncio.sleep(1.0)  # stragglers
        bench.recording = False
        cpu = time.process_time() - cpu0
        lat = sorted(bench.latencies)
        result = {
            "rate": rate,
            "sent": sent,
            "deliveries": len(lat),
            "expected": sent * args.sockets,
            "p50_ms": lat[len(lat) // 2] / 1e6 if lat else None,
            "p99_ms": lat[int(len(lat) * 0.99)] / 1e6 if lat else None,
            "client_cpu_s": cpu,
            "disconnects": bench.disconnects,
        }
        print(f"END {rate} {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
