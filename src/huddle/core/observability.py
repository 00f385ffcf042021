"""Metrics, database timing and the slow-query log, and error reports.

* **Prometheus** series live in one registry (:data:`REGISTRY`), served at ``/metrics``
  (:mod:`huddle.health`): HTTP requests by route template, method and status, their
  latency and database time; open WebSocket connections; events dispatched and how long
  they waited for dispatch; background job runs by job and outcome. Under a process
  manager that forks workers, set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
  multiprocess mode) and ``/metrics`` adds up every worker.
* **Database time**: every statement's duration is added to the current request's
  tally (see :func:`request_timing`); statements slower than
  ``HUDDLE_SLOW_QUERY_MS`` are logged (``huddle.slow_query``; the SQL without its
  parameters, which may hold user data).
* **Error reports**: with ``HUDDLE_SENTRY_DSN`` set, unhandled errors go to Sentry (or a
  server that speaks its protocol, such as GlitchTip), tagged with the request id.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("huddle.slow_query")

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "huddle_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "huddle_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ("route", "method"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
HTTP_DB_TIME = Histogram(
    "huddle_http_request_db_seconds",
    "Database time spent by one HTTP request (sum of its statements), by route template.",
    ("route", "method"),
    buckets=(0.001, 0.0025, *_LATENCY_BUCKETS),
    registry=REGISTRY,
)
DB_STATEMENTS = Counter(
    "huddle_db_statements",
    "SQL statements executed (all of the process, requests or not).",
    registry=REGISTRY,
)
SLOW_STATEMENTS = Counter(
    "huddle_db_slow_statements",
    "SQL statements slower than HUDDLE_SLOW_QUERY_MS.",
    registry=REGISTRY,
)
WEBSOCKETS = Gauge(
    "huddle_websocket_connections",
    "Open WebSocket connections (authenticated sessions).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
EVENTS_DISPATCHED = Counter(
    "huddle_events_dispatched",
    "Events handed to the bus (numbered, published and marked).",
    registry=REGISTRY,
)
DISPATCH_LAG = Histogram(
    "huddle_event_dispatch_lag_seconds",
    "Time from an event's commit to its publication on the bus.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
JOB_RUNS = Counter(
    "huddle_background_job_runs",
    "Background jobs finished, by job and outcome (ok, failed).",
    ("job", "outcome"),
    registry=REGISTRY,
)

_ID_TAIL = re.compile(r"[-_ ]?([0-9a-f]{8}-[0-9a-f-]{27,}|\d+)$", re.IGNORECASE)


def job_ran(name: str, ok: bool) -> None:
    """Count one run of a background job (``name`` without its ids: ``ai-turn-<id>`` is
    ``ai-turn``; ``mail to <address>`` is ``mail``)."""
    job = _ID_TAIL.sub("", name.split(" ", 1)[0]) or "unnamed"
    JOB_RUNS.labels(job=job, outcome="ok" if ok else "failed").inc()


def render_metrics() -> bytes:
    """The Prometheus text exposition: this process's series, or every worker's in
    multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


# --- database time --------------------------------------------------------------------


@dataclass
class Timing:
    """The database time and statement count of one request."""

    db_seconds: float = 0.0
    statements: int = 0


_timing: contextvars.ContextVar[Timing | None] = contextvars.ContextVar(
    "huddle_request_timing", default=None
)


def request_timing() -> tuple[Timing, contextvars.Token[Timing | None]]:
    """Start counting the current request's database time."""
    timing = Timing()
    return timing, _timing.set(timing)


def end_request_timing(token: contextvars.Token[Timing | None]) -> None:
    _timing.reset(token)


_STARTED = "huddle_started"
_MAX_SQL = 2000


def instrument_engine(engine: AsyncEngine, slow_query_ms: float) -> None:
    """Time every statement of ``engine``; log the ones slower than ``slow_query_ms``."""
    slow = slow_query_ms / 1000.0

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.get(_STARTED)
        if not started:
            return
        elapsed = time.perf_counter() - started.pop()
        DB_STATEMENTS.inc()
        timing = _timing.get()
        if timing is not None:
            timing.db_seconds += elapsed
            timing.statements += 1
        if slow_query_ms > 0 and elapsed >= slow:
            SLOW_STATEMENTS.inc()
            log.warning(
                "slow query: %.1f ms: %s",
                elapsed * 1000,
                " ".join(statement.split())[:_MAX_SQL],
                extra={"duration_ms": round(elapsed * 1000, 1)},
            )

    def failed(context: Any) -> None:
        started = context.connection.info.get(_STARTED) if context.connection else None
        if started:
            started.pop()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)


# --- error reports ----------------------------------------------------------------------


def init_error_reports(dsn: str | None, environment: str, release: str) -> bool:
    """Send unhandled errors to ``dsn`` (Sentry's protocol); False when not configured."""
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=None,  # errors only, no tracing (and no PII: the default)
    )
    return True


def report_error(exc: BaseException, request_id: str) -> None:
    """Report an unhandled error (a no-op unless :func:`init_error_reports` ran)."""
    import sentry_sdk

    if not sentry_sdk.is_initialized():
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("request_id", request_id)
        sentry_sdk.capture_exception(exc)
