"""Huddle's TURN credentials against a real coturn (``use-auth-secret``).

Needs the Debian package ``coturn`` (``.ci/run`` installs it); without it the test
skips with its reason, or fails when ``HUDDLE_TEST_REQUIRE_SERVICES`` names coturn.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.server import free_port

SECRET = "coturn-test-secret"


@pytest.fixture
def coturn(tmp_path: Path):
    binary, client = shutil.which("turnserver"), shutil.which("turnutils_uclient")
    if not binary or not client:
        skip_or_fail(
            "coturn", "needs coturn (apt-get install coturn) for turnserver/turnutils_uclient"
        )
    port = free_port()
    log = (tmp_path / "turn.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--min-port=49160",
            "--max-port=49400",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=huddle.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            f"--pidfile={tmp_path / 'turn.pid'}",
            f"--db={tmp_path / 'turndb'}",
            "--log-file=stdout",
            "--simple-log",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(
                    f"turnserver did not start: {(tmp_path / 'turn.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
    try:
        yield port, client
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def allocate(client: str, port: int, username: str, password: str) -> tuple[int, str]:
    """Run turnutils_uclient: a TURN allocation plus a few relayed messages."""
    proc = await asyncio.create_subprocess_exec(
        client,
        "-u",
        username,
        "-w",
        password,
        "-p",
        str(port),
        "-n",
        "2",
        "-m",
        "1",
        "-y",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    return int(proc.returncode or 0), output.decode(errors="replace")


@pytest.mark.parametrize(
    "live_settings", [{"turn_secret": SECRET, "turn_uris": "turn:127.0.0.1:3478"}]
)
async def test_coturn_accepts_huddle_credentials(world, coturn):
    port, client = coturn
    creds = await world.ok("member", "GET", "/api/webrtc/turn-credentials")
    code, output = await allocate(client, port, creds["username"], creds["password"])
    assert code == 0 and "tot_recv_msgs=" in output and "Cannot complete" not in output, output
    # The same scheme with a wrong password, or an expired username, is refused.
    _, refused = await allocate(client, port, creds["username"], "d3Jvbmc=")
    assert "Cannot complete Allocation" in refused, refused
    expired = f"{int(time.time()) - 60}:{world.ids['member_id']}"
    signed = base64.b64encode(
        hmac.new(SECRET.encode(), expired.encode(), hashlib.sha1).digest()
    ).decode()
    _, stale = await allocate(client, port, expired, signed)
    assert "Cannot complete Allocation" in stale, stale
