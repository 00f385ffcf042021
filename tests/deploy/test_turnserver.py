"""deploy/coturn/turnserver.conf run by the real coturn: it takes the credentials Huddle
hands out (GET /api/webrtc/turn-credentials), refuses others, and does not relay into
private or loopback addresses.

Only what a test machine needs is added on the command line (as docker-compose.yml adds
the secret): loopback addresses and free ports, no TLS, files in the test's directory.
Needs Debian's ``coturn`` (``.ci/run`` installs it); without it the tests skip, or fail
when ``HUDDLE_TEST_REQUIRE_SERVICES`` names coturn.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from huddle.realtime.turn import turn_credentials
from tests.conftest import skip_or_fail
from tests.deploy.stack import DEPLOY
from tests.e2e.server import free_port
from tests.realtime.test_coturn import allocate

SECRET = "0f3c9a6d2b7e4f18a5c6d7e8f9a0b1c2"
StartTurn = Callable[..., tuple[int, Path]]


@pytest.fixture
def client() -> str:
    found = shutil.which("turnutils_uclient")
    if not shutil.which("turnserver") or not found:
        skip_or_fail(
            "coturn", "needs coturn (apt-get install coturn) for turnserver/turnutils_uclient"
        )
    assert found is not None
    return found


@pytest.fixture
def start_turn(client: str, tmp_path: Path) -> Iterator[StartTurn]:
    """``start(*extra options)`` runs turnserver with the deploy config: (port, log)."""
    running: list[tuple[subprocess.Popen[bytes], IO[str]]] = []

    def start(*extra: str) -> tuple[int, Path]:
        port = free_port()
        workdir = tmp_path / f"turn-{port}"
        workdir.mkdir()
        log_path = workdir / "turn.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [
                str(shutil.which("turnserver")),
                "-c",
                str(DEPLOY / "coturn" / "turnserver.conf"),
                f"--static-auth-secret={SECRET}",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={port}",
                "--no-tls",
                "--no-dtls",
                f"--pidfile={workdir / 'turn.pid'}",
                f"--db={workdir / 'turndb'}",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running.append((process, log))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return port, log_path
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"turnserver did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)

    yield start
    for process, log in running:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def credentials(secret: str = SECRET) -> tuple[str, str]:
    issued = turn_credentials(secret, uuid.uuid4(), 600, [])
    return issued.username, issued.password


async def test_the_deploy_config_accepts_huddle_s_credentials(client: str, start_turn: StartTurn):
    # The test's relay and peer are on loopback, which the config denies: allowed here.
    port, _ = start_turn("--allow-loopback-peers", "--allowed-peer-ip=127.0.0.1")
    username, password = credentials()
    code, output = await allocate(client, port, username, password)
    assert code == 0 and "tot_recv_msgs=" in output and "Cannot complete" not in output, output
    # Signed with another secret: refused.
    username, password = credentials("another secret")
    _, refused = await allocate(client, port, username, password)
    assert "Cannot complete Allocation" in refused, refused


async def test_the_deploy_config_relays_nothing_to_private_addresses(
    client: str, start_turn: StartTurn
):
    # Loopback peers are let through coturn's own switch; the config's denied ranges
    # still refuse them.
    port, log = start_turn("--allow-loopback-peers")
    username, password = credentials()
    _, output = await allocate(client, port, username, password)
    assert "403 (Forbidden IP)" in output, output
    deadline = time.monotonic() + 5
    while "denied in the range: 127.0.0.0-127.255.255.255" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        await asyncio.sleep(0.05)
