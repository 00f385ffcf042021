"""Webhooks: signed POSTs of events to the URLs a workspace's admins registered.

Path of an event: the dispatcher marks a batch published and, in the same transaction,
:meth:`WebhookSender.enqueue` writes one ``WebhookDelivery`` per matching webhook (so a
published event always has its deliveries, and the unique (webhook, event) pair keeps a
republished event from getting two). The sender — in the API process, or in ``huddle
worker`` — claims due deliveries, POSTs the envelope and records the outcome:

* 2xx → ``succeeded``; anything else (3xx included: redirects are not followed), a
  timeout or a refused address → retried after ``HUDDLE_WEBHOOK_RETRY_BASE_S`` * 2^(n-1)
  (±10 %), up to ``HUDDLE_WEBHOOK_MAX_ATTEMPTS`` attempts, then ``failed``;
* a claim pushes ``next_attempt_at`` past the request timeout (a lease): a sender that
  dies mid-request leaves the delivery due again later, never lost; on PostgreSQL
  claims use ``FOR UPDATE SKIP LOCKED`` so several senders never take the same one.

Each POST carries ``Huddle-Event-Id`` (the event's id: deduplicate on it),
``Huddle-Timestamp`` (unix seconds) and ``Huddle-Signature: sha256=<hex HMAC-SHA256
(secret, "<timestamp>.<body>")>``. A receiver checks the signature over the raw body
and refuses old timestamps.

SSRF: a webhook's host must resolve only to public addresses (no loopback, private,
link-local, shared, reserved or multicast ones; IPv4-mapped IPv6 is unwrapped), checked
when the URL is saved and again at every delivery, and the request goes to the address
that was checked (Host header and TLS server name kept), so a DNS answer that changes
in between (rebinding) cannot redirect it. ``HUDDLE_WEBHOOK_ALLOW_PRIVATE=true`` lifts
this for receivers on a private network.

Which events: those of the webhook's workspace that its admins may read — workspace,
admin and project topics, and public channels (not private channels, DMs or personal
``mention`` events) — and whose type matches one of its ``event_types``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huddle import __version__
from huddle.chat.models import Channel
from huddle.config import Settings
from huddle.core.background import stop_task
from huddle.core.db import Database, after_commit
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.catalog import CATALOG
from huddle.events.models import Event, Webhook, WebhookDelivery
from huddle.events.service import envelope
from huddle.events.webhook_targets import UrlRefused, checked_address, parse_url

log = logging.getLogger("huddle.webhooks")

TEST_EVENT = "webhook.test"
_CLAIM = 20  # webhooks posted to at once (one delivery each) per pass
_CLAIM_SCAN = 500  # due deliveries looked at per pass to find each webhook's oldest
_RESOLVE_TIMEOUT = 5.0  # seconds for the address check (DNS) of one attempt
_ERROR_LEN = 500

# --- matching -----------------------------------------------------------------------------


def valid_event_type(pattern: str) -> bool:
    """``*``, a catalog type, or ``family.*`` of an existing family."""
    if pattern == "*" or pattern in CATALOG:
        return True
    if pattern.endswith(".*"):
        family = pattern[:-1]
        return any(name.startswith(family) for name in CATALOG)
    return False


def matches(patterns: Sequence[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# --- signing ------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def new_secret() -> str:
    return "whsec_" + uuid.uuid4().hex + uuid.uuid4().hex


# --- enqueueing and sending -----------------------------------------------------------------


async def _public_channels(session: AsyncSession, events: Sequence[Event]) -> set[str]:
    ids = set()
    for event in events:
        parsed = topics.parse(event.topic)
        if parsed is not None and parsed[0] == "channel":
            ids.add(parsed[1])
    if not ids:
        return set()
    rows = await session.scalars(
        select(Channel.id).where(
            Channel.id.in_(ids), Channel.is_private.is_(False), Channel.dm_key.is_(None)
        )
    )
    return {topics.channel(channel_id) for channel_id in rows}


def _readable_by_admins(topic: str, public_channels: set[str]) -> bool:
    parsed = topics.parse(topic)
    if parsed is None:
        return False
    kind = parsed[0]
    if kind == "channel":
        return topic in public_channels
    return kind in ("workspace", "workspace_admin", "project")


def body_of(event_json: str) -> bytes:
    return event_json.encode()


class WebhookSender:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._postgres = db.engine.dialect.name == "postgresql"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._client: httpx.AsyncClient | None = None
        # An attempt never outlives this (address check, connect, answer); a claim's
        # lease is longer, so a claim cannot expire while its attempt is running.
        self._attempt_limit = settings.webhook_timeout + _RESOLVE_TIMEOUT
        self._lease = timedelta(seconds=self._attempt_limit + 30)

    # The dispatcher's hook, in its "mark published" transaction.
    async def enqueue(self, session: AsyncSession, events: Sequence[Event]) -> None:
        workspaces = {e.workspace_id for e in events if e.workspace_id is not None}
        if not workspaces:
            return
        hooks = list(
            await session.scalars(
                select(Webhook).where(Webhook.workspace_id.in_(workspaces), Webhook.active)
            )
        )
        if not hooks:
            return
        by_workspace: dict[uuid.UUID, list[Webhook]] = defaultdict(list)
        for hook in hooks:
            by_workspace[hook.workspace_id].append(hook)
        public_channels = await _public_channels(session, events)
        now = utcnow()
        added = 0
        for event in events:
            if event.workspace_id is None or not _readable_by_admins(event.topic, public_channels):
                continue
            for hook in by_workspace.get(event.workspace_id, ()):
                # A webhook gets what happens from its creation on, not older events
                # that happened to be published after it.
                if event.created_at >= hook.created_at and matches(hook.event_types, event.type):
                    session.add(
                        WebhookDelivery(
                            webhook_id=hook.id,
                            event_seq=event.seq,
                            event_type=event.type,
                            next_attempt_at=now,
                        )
                    )
                    added += 1
        if added:
            await session.flush()

            async def wake() -> None:
                self._wake.set()

            after_commit(session, wake, key="huddle.webhooks.wake")

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="huddle-webhooks")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, self._attempt_limit + 5)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._settings.webhook_timeout,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": f"Huddle-Webhooks/{__version__}"},
                # No reuse: a pooled connection is keyed by the (checked) address, not
                # the host name, so another host on the same address would ride on a TLS
                # session whose certificate was verified for the first one.
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                while await self.send_due() and not self._stopping:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sending webhooks failed; retrying")
            if self._stopping:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_interval)

    async def send_due(self) -> int:
        """Claim due deliveries — the oldest of each webhook, so one webhook's events go
        out one at a time and in seq order — post them at once, record the outcomes."""
        claimed = await self._claim()
        if claimed:
            await asyncio.gather(*(self._attempt_claimed(d) for d in claimed))
        return len(claimed)

    async def _attempt_claimed(self, delivery: WebhookDelivery) -> None:
        with suppress(LookupError):  # its webhook was deleted meanwhile
            await self.attempt(delivery.id, claimed_attempts=delivery.attempts)

    async def _claim(self) -> list[WebhookDelivery]:
        now = utcnow()
        async with self._db.write_session() as session:
            query = (
                select(WebhookDelivery)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    Webhook.active,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_seq)
                .limit(_CLAIM_SCAN)
            )
            if self._postgres:
                query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
            firsts: dict[uuid.UUID, WebhookDelivery] = {}
            for delivery in await session.scalars(query):
                current = firsts.get(delivery.webhook_id)
                if current is None or _order(delivery) < _order(current):
                    firsts[delivery.webhook_id] = delivery
            claimed = sorted(firsts.values(), key=_order)[:_CLAIM]
            if claimed:
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([d.id for d in claimed]))
                    .values(next_attempt_at=now + self._lease)
                )
            await session.commit()
        return claimed

    async def attempt(
        self, delivery_id: uuid.UUID, *, retry: bool = True, claimed_attempts: int | None = None
    ) -> WebhookDelivery:
        """Post one delivery now and record the outcome (with a retry unless ``retry`` is
        false, as for test pings). With ``claimed_attempts`` the outcome is recorded only
        if nobody recorded another attempt since the claim."""
        async with self._db.read_session() as session:
            row = (
                await session.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.id == delivery_id)
                )
            ).first()
            if row is None:
                raise LookupError(delivery_id)
            delivery, hook = row
            payload = delivery.payload
            if payload is None and delivery.event_seq is not None:
                event = await session.scalar(select(Event).where(Event.seq == delivery.event_seq))
                payload = envelope(event).model_dump_json() if event is not None else None
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        if payload is None:
            error, retry = "the event no longer exists", False
        else:
            try:
                async with asyncio.timeout(self._attempt_limit):
                    status_code = await self._post(hook, delivery, payload.encode())
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
                    if 300 <= status_code < 400:
                        error += " (redirects are not followed)"
            except UrlRefused as exc:
                error = str(exc)
            except (httpx.TimeoutException, TimeoutError):
                error = f"timed out after {self._settings.webhook_timeout:g} s"
            except Exception as exc:  # any failure is this attempt's outcome, never a loop
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration = int((time.monotonic() - started) * 1000)
        return await self._record(
            delivery.id, status_code, error, duration, retry, claimed_attempts
        )

    async def _post(self, hook: Webhook, delivery: WebhookDelivery, body: bytes) -> int:
        url = parse_url(hook.url)
        address = await checked_address(url, self._settings.webhook_allow_private)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Huddle-Event-Id": str(delivery.event_seq if delivery.event_seq is not None else 0),
            "Huddle-Event-Type": delivery.event_type,
            "Huddle-Delivery-Id": str(delivery.id),
            "Huddle-Timestamp": timestamp,
            "Huddle-Signature": sign(hook.secret, timestamp, body),
        }
        extensions: dict[str, Any] = {}
        target = url
        if address is not None:
            # Connect to the address just checked; the server still sees its own name.
            target = url.copy_with(host=address)
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
        request = self.client.build_request(
            "POST", target, content=body, headers=headers, extensions=extensions
        )
        # Only the status matters: the body is never read (a receiver could stream one
        # forever, or a huge one).
        response = await self.client.send(request, stream=True)
        await response.aclose()
        return response.status_code

    async def _record(
        self,
        delivery_id: uuid.UUID,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry: bool,
        claimed_attempts: int | None,
    ) -> WebhookDelivery:
        now = utcnow()
        async with self._db.write_session() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None:  # the webhook was deleted meanwhile
                raise LookupError(delivery_id)
            if claimed_attempts is not None and delivery.attempts != claimed_attempts:
                # Another sender recorded an attempt since our claim (our lease ran out,
                # or an admin asked for a redelivery): its outcome stands.
                session.expunge(delivery)
                return delivery
            delivery.attempts += 1
            delivery.last_attempt_at = now
            delivery.last_status_code = status_code
            delivery.last_duration_ms = duration_ms
            delivery.last_error = error[:_ERROR_LEN] if error else None
            if error is None:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                    "succeeded",
                    now,
                    None,
                )
            elif retry and delivery.attempts < self._settings.webhook_max_attempts:
                delivery.status = "pending"
                delivery.next_attempt_at = now + self.backoff(delivery.attempts)
            else:
                delivery.status, delivery.next_attempt_at = "failed", None
            await session.commit()
            await session.refresh(delivery)
            session.expunge(delivery)
        if error is not None:
            log.info(
                "webhook delivery %s failed (attempt %d): %s", delivery_id, delivery.attempts, error
            )
        return delivery

    def backoff(self, attempts: int) -> timedelta:
        base = self._settings.webhook_retry_base_s * 2 ** (attempts - 1)
        return timedelta(seconds=base * random.uniform(0.9, 1.1))  # noqa: S311 - jitter


def _order(delivery: WebhookDelivery) -> tuple[bool, int, datetime]:
    return (delivery.event_seq is None, delivery.event_seq or 0, delivery.created_at)
