"""WebSocket fan-out: Huddle (one process; two over Redis) against a minimal server.

For each setup, ``bench/ws_load.py`` (a separate process) opens ``--sockets``
subscribers to one channel and one sender, then sends messages at each rate of
``--rates`` for ``--seconds``; every subscriber measures send → receive latency. This
script reads the servers' CPU time (/proc) around each phase and their memory before
and after the sockets open, and prints a Markdown report; ``--write`` puts it into
bench/RESULTS.md.

    .venv/bin/python bench/ws_bench.py [--sockets 1000] [--rates 5,10,20,40,80]
        [--fixed-rate 10] [--seconds 10] [--redis redis://127.0.0.1:6379/0] [--write]

Needs the bench extra (``pip install -e '.[bench]'``: picows for the load client).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from results import write_section

ROOT = Path(__file__).resolve().parent
PASSWORD = "bench password 123"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


@dataclass
class Servers:
    processes: list[subprocess.Popen[bytes]]
    urls: list[str]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_http(url: str, path: str = "/health") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start_huddle(tmp: Path, count: int, redis: str | None) -> Servers:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
    env.update(
        HUDDLE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/bench.db",
        HUDDLE_DATA_DIR=str(tmp / "data"),
        HUDDLE_SECRET_KEY="ws-bench-secret-" + "x" * 40,
        HUDDLE_RATE_MESSAGES="1000000/1m",
        HUDDLE_LOG_LEVEL="WARNING",
    )
    if redis:
        env.update(
            HUDDLE_REDIS_URL=redis, HUDDLE_REDIS_KEY_PREFIX=f"ws-bench:{uuid.uuid4().hex[:8]}:"
        )
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "huddle", "serve", "--port", str(port)],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
        wait_http(urls[-1])  # the first one migrates the database
    return Servers(processes, urls)


def start_minimal() -> Servers:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "ws_minimal_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return Servers([process], [f"http://127.0.0.1:{port}"])


def huddle_fixture(url: str) -> dict[str, str]:
    """A sender and a reader in one workspace, and the channel they share."""
    tokens = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for name in ("sender", "reader"):
            user = http.post(
                "/api/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
            ).json()
            tokens[name] = http.post(
                "/api/auth/token", data={"username": name, "password": PASSWORD}
            ).json()["access_token"]
            tokens[f"{name}_id"] = user["id"]
        auth = {"Authorization": f"Bearer {tokens['sender']}"}
        ws = http.post("/api/workspaces", json={"name": "Bench"}, headers=auth).json()
        http.post(
            f"/api/workspaces/{ws['id']}/members",
            json={"user_id": tokens["reader_id"]},
            headers=auth,
        ).raise_for_status()
        channel = http.post(
            f"/api/workspaces/{ws['id']}/channels", json={"name": "bench"}, headers=auth
        ).json()
    tokens["channel"] = channel["id"]
    return tokens


@dataclass
class Run:
    name: str
    idle_kib_per_socket: float = 0.0
    phases: list[dict[str, Any]] = field(default_factory=list)


def run_load(name: str, servers: Servers, args: argparse.Namespace, huddle: dict | None) -> Run:
    ws_urls = [u.replace("http://", "ws://") + "/ws" for u in servers.urls]
    command = [sys.executable, str(ROOT / "ws_load.py"), "--sockets", str(args.sockets)]
    command += ["--rates", args.rates, "--seconds", str(args.seconds)]
    for url in ws_urls:
        command += ["--url", url]
    if huddle:
        command += ["--mode", "huddle", "--token", huddle["reader"]]
        command += ["--sender-token", huddle["sender"], "--channel", huddle["channel"]]
    else:
        command += ["--mode", "minimal"]
    pids = [p.pid for p in servers.processes]
    time.sleep(1)
    rss_before = sum(rss_kib(pid) for pid in pids)
    client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdin is not None
    run = Run(name)
    cpu_start = 0.0
    for line in client.stdout:
        if line.startswith("READY"):
            time.sleep(2)
            run.idle_kib_per_socket = (sum(rss_kib(pid) for pid in pids) - rss_before) / (
                args.sockets + 1
            )
            client.stdin.write("go\n")
            client.stdin.flush()
        elif line.startswith("START"):
            cpu_start = sum(cpu_seconds(pid) for pid in pids)
        elif line.startswith("END"):
            result = json.loads(line.split(" ", 2)[2])
            result["server_cpu_s"] = sum(cpu_seconds(pid) for pid in pids) - cpu_start
            run.phases.append(result)
            print(name, result, flush=True)
    client.wait()
    return run


def per_delivery_us(seconds: float, deliveries: int) -> float:
    return seconds / deliveries * 1e6 if deliveries else float("nan")


def report(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## WebSocket fan-out (`bench/ws_bench.py`)",
        "",
        f"Run {now} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}. Servers and the load client "
        "share the machine's two cores.",
        "",
        f"Command: `{command}`",
        "",
        f"{args.sockets} subscriber sockets on one channel, one sender; each rate runs "
        f"{args.seconds:g} s. A delivery is one message received by one subscriber. Server "
        "CPU is user+system time of the server process(es) during the phase, divided by "
        "deliveries; the client's own CPU per delivery is shown beside it.",
        "",
        "| setup | msgs/s sent | deliveries/s | received | p50 ms | p99 ms "
        "| server CPU µs/delivery | client CPU µs/delivery |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for p in run.phases:
            received = f"{p['deliveries'] / p['expected']:.1%}" if p["expected"] else "-"
            lines.append(
                f"| {run.name} | {p['rate']} | {p['deliveries'] / args.seconds:,.0f} | {received} "
                f"| {p['p50_ms']:.1f} | {p['p99_ms']:.1f} "
                f"| {per_delivery_us(p['server_cpu_s'], p['deliveries']):.2f} "
                f"| {per_delivery_us(p['client_cpu_s'], p['deliveries']):.2f} |"
            )
    lines += [
        "",
        "| setup | memory per idle socket "
        "| best deliveries/s with p99 < 100 ms and ≥ 99% received |",
        "|---|---|---|",
    ]
    for run in runs:
        good = [
            p["deliveries"] / args.seconds
            for p in run.phases
            if p["p99_ms"] is not None
            and p["p99_ms"] < 100
            and p["deliveries"] >= 0.99 * p["expected"]
        ]
        best = f"{max(good):,.0f}" if good else "none met"
        lines.append(f"| {run.name} | {run.idle_kib_per_socket:.1f} KiB | {best} |")
    fixed = {
        run.name: next((p for p in run.phases if p["rate"] == args.fixed_rate), None)
        for run in runs
    }
    base, ours = fixed.get("minimal server"), fixed.get("huddle, 1 process")
    if base and ours:
        ratio = per_delivery_us(ours["server_cpu_s"], ours["deliveries"]) / per_delivery_us(
            base["server_cpu_s"], base["deliveries"]
        )
        verdict = "met" if ratio <= 1.4 else "missed"
        lines += [
            "",
            f"Goal: Huddle's server CPU per delivery at most 1.4x the minimal server's, at "
            f"{args.fixed_rate} msgs/s: **{ratio:.2f}x — {verdict}**.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rates", default="5,10,20,40,80")
    parser.add_argument("--fixed-rate", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--redis")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if str(args.fixed_rate) not in args.rates.split(","):
        raise SystemExit("--fixed-rate must be one of --rates")
    command = "  ".join([".venv/bin/python bench/ws_bench.py", *sys.argv[1:]]).replace("  ", " ")
    runs = []
    minimal = start_minimal()
    try:
        runs.append(run_load("minimal server", minimal, args, None))
    finally:
        minimal.stop()
    setups = [("huddle, 1 process", 1, None)]
    if args.redis:
        setups.append(("huddle, 2 processes + Redis", 2, args.redis))
    for name, count, redis in setups:
        with tempfile.TemporaryDirectory() as tmp:
            servers = start_huddle(Path(tmp), count, redis)
            try:
                fixture = huddle_fixture(servers.urls[0])
                runs.append(run_load(name, servers, args, fixture))
            finally:
                servers.stop()
    text = report(runs, args, command)
    print(text)
    if args.write:
        write_section("## WebSocket fan-out", text)


if __name__ == "__main__":
    main()
