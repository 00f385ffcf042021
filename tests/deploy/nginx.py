"""Run deploy/nginx/nginx.conf, the production configuration, with the real nginx.

Only what must differ on a test machine is swapped: listen addresses, file paths (logs,
pid, certificates, temporary files), the workers' user, and the upstream list
(huddle/upstreams.conf, written by the test). huddle/http.conf and huddle/locations.conf
are the deploy files themselves (symlinked).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import pwd
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import skip_or_fail
from tests.deploy.stack import NGINX
from tests.e2e.server import free_port

_SBIN = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary() -> str:
    """The nginx binary (Debian's package: ``apt-get install nginx``), or skip/fail."""
    found = shutil.which("nginx") or next((p for p in _SBIN if os.access(p, os.X_OK)), None)
    if found is None:
        skip_or_fail("nginx", "needs nginx (apt-get install nginx; .ci/run installs it)")
    assert found is not None
    return found


def self_signed_certificate(directory: Path) -> Path:
    """fullchain.pem / privkey.pem for 127.0.0.1 in ``directory``; returns the certificate
    (clients trust exactly it)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "huddle test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain = directory / "fullchain.pem"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain


class Nginx:
    """deploy/nginx/nginx.conf in front of ``upstreams`` (``host:port`` each)."""

    def __init__(self, binary: str, root: Path, upstreams: list[str], certificate: Path) -> None:
        self.root = root
        self.http_port = free_port()
        self.https_port = free_port()
        while self.https_port == self.http_port:
            self.https_port = free_port()
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.ws_url = f"wss://127.0.0.1:{self.https_port}/ws"
        self.plain_url = f"http://127.0.0.1:{self.http_port}"
        self.acme = root / "acme"
        self.access_log = root / "logs" / "access.log"
        self.error_log = root / "logs" / "error.log"
        self.ssl = ssl.create_default_context(cafile=str(certificate))
        conf = root / "conf"
        (conf / "huddle").mkdir(parents=True)
        (root / "logs").mkdir()
        (root / "temp").mkdir()
        self.acme.mkdir()
        for name in ("http.conf", "locations.conf"):
            (conf / "huddle" / name).symlink_to(NGINX / "huddle" / name)
        (conf / "huddle" / "upstreams.conf").write_text(
            "".join(f"server {address};\n" for address in upstreams)
        )
        (conf / "nginx.conf").write_text(self._swapped(certificate.parent))
        self._output = (root / "logs" / "nginx.out").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                "-p",
                str(root),
                "-c",
                str(conf / "nginx.conf"),
                "-e",
                str(self.error_log),
                "-g",
                "daemon off;",
            ],
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def _swapped(self, certificates: Path) -> str:
        temp = self.root / "temp"
        # Debian's nginx keeps temporary files under /var/lib/nginx: here, under the test's
        # own directory (whoever runs it).
        temp_paths = "".join(
            f"\n    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, nginx's workers would run as `nobody`, who cannot enter pytest's
        # private temporary directory.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        swaps = {
            "user nginx;": user,
            "pid /var/run/nginx.pid;": f"pid {self.root / 'nginx.pid'};",
            "/var/log/nginx/": f"{self.root / 'logs'}/",
            "listen 80;": f"listen 127.0.0.1:{self.http_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;",
            "/etc/nginx/certs/": f"{certificates}/",
            "/var/www/acme": str(self.acme),
            "http {": "http {" + temp_paths,
        }
        text = (NGINX / "nginx.conf").read_text()
        for old, new in swaps.items():
            assert text.count(old) >= 1, f"deploy/nginx/nginx.conf has no {old!r}: update the test"
            text = text.replace(old, new)
        return text

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.logs()}")
            try:
                answer = httpx.get(f"{self.plain_url}/nginx-health", timeout=1)
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"nginx not ready after {timeout} s: {self.logs()}")

    def logs(self) -> str:
        self._output.flush()
        parts = [self.root / "logs" / "nginx.out", self.error_log]
        return "\n".join(p.read_text()[-3000:] for p in parts if p.exists())

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    async def log_line(self, *needles: str, timeout: float = 5) -> str:
        """The access-log line holding every needle (nginx writes it after answering)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.access_lines():
                if all(needle in line for needle in needles):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no access-log line with {needles}: {self.access_lines()}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._output.close()
