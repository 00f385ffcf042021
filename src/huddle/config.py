"""Settings: every option is an environment variable with the prefix ``HUDDLE_``.

The README lists them all; keep that table in step with this class.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger("huddle.config")

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./huddle.db"
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|m|min|h|d)\s*$")


@dataclass(frozen=True)
class Rate:
    """A limit of ``count`` events per ``window`` seconds (written ``10/15m``)."""

    count: int
    window: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"rate must look like '10/15m' (count/period), got {text!r}")
        count, amount, unit = match.groups()
        window = int(amount or 1) * _UNITS[unit]
        if int(count) < 1 or window < 1:
            raise ValueError(f"rate must be positive, got {text!r}")
        return cls(int(count), window)


class Settings(BaseSettings):
    """Huddle's configuration, read from ``HUDDLE_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="HUDDLE_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    # None = decide from the URL (off for hosts named "*-pooler*" or ?pgbouncer=true).
    database_statement_cache: bool | None = None
    database_echo: bool = False
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    redis_url: str | None = None
    redis_key_prefix: str = "huddle:"

    data_dir: Path = Path("./data")
    secret_key: str | None = None

    access_token_ttl: int = Field(default=900, ge=30, description="seconds")
    refresh_token_ttl: int = Field(default=30 * 86400, ge=60, description="seconds")

    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_cache_seconds: int = Field(default=300, ge=0)

    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    password_hash_workers: int = Field(default=0, ge=0, description="0 = number of CPUs")

    rate_login: str = "10/15m"
    rate_register: str = "20/1h"
    rate_messages: str = "60/1m"
    rate_ai: str = "30/1m"

    public_url: str = "http://127.0.0.1:8000"
    invitation_ttl_days: int = Field(default=7, ge=1, le=365)

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool | None = None  # None: let aiosmtplib upgrade when the server offers it
    smtp_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0)
    mail_from: str = "Huddle <huddle@localhost>"

    event_poll_interval: float = Field(default=1.0, gt=0, description="seconds")
    # None: ``redis`` when HUDDLE_REDIS_URL is set, else ``memory`` (see effective_event_bus).
    event_bus: Literal["memory", "redis", "dapr"] | None = None
    event_batch: int = Field(default=500, ge=1, le=10_000, description="events per pass")
    event_retry_max: float = Field(
        default=5.0, gt=0, description="longest wait (seconds) between retries of a down bus"
    )
    redis_stream_maxlen: int = Field(
        default=100_000, ge=100, description="entries the Redis event stream keeps (approx.)"
    )
    # The API process also runs the dispatcher and the webhook sender; set false when
    # ``huddle worker`` processes do it (they then need HUDDLE_REDIS_URL to reach the API).
    embedded_worker: bool = True
    role_cache_ttl: int = Field(default=300, ge=1, description="seconds")
    idempotency_ttl: int = Field(
        default=86400, ge=1, description="seconds an Idempotency-Key and its answer are kept"
    )

    # Webhooks
    webhook_retry_base_s: float = Field(
        default=10.0, gt=0, description="wait before the first retry; doubles after each"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_timeout: float = Field(default=10.0, gt=0, description="seconds per attempt")
    webhook_poll_interval: float = Field(default=1.0, gt=0, description="seconds")
    webhook_allow_private: bool = Field(
        default=False, description="allow URLs on loopback/private addresses (SSRF guard off)"
    )

    # WebSocket gateway (/ws)
    ws_auth_timeout: float = Field(default=5.0, gt=0, description="seconds to send auth")
    ws_send_queue: int = Field(default=1024, ge=8, description="frames queued per socket")
    ws_heartbeat: float = Field(default=25.0, gt=0, description="seconds between heartbeats")
    ws_replay_limit: int = Field(default=5000, ge=1, description="events a resume replays")
    ws_max_frame_kb: int = Field(default=64, ge=1, description="largest client frame")
    ws_max_subscriptions: int = Field(default=500, ge=1)
    ws_compression: bool = Field(
        default=False,
        description="permessage-deflate for WebSocket frames (each socket compresses "
        "every frame itself, which multiplies fan-out CPU)",
    )

    # Dapr sidecar: the event bus for other services (HUDDLE_EVENT_BUS=dapr), and commands
    # from them (inbound, enabled by dapr_app_api_token).
    dapr_http_endpoint: str = "http://127.0.0.1:3500"
    dapr_pubsub_name: str = "pubsub"
    dapr_api_token: str | None = None  # sent to the sidecar (its DAPR_API_TOKEN)
    dapr_app_api_token: str | None = None  # the sidecar sends it to us (its APP_API_TOKEN)
    dapr_inbound_topic: str = "huddle-commands"
    dapr_timeout: float = Field(default=5.0, gt=0, description="seconds per sidecar call")

    # Request bodies, uploads and documents
    max_body_kb: int = Field(
        default=1024, ge=1, description="largest request body, uploads excepted (413 above)"
    )
    max_upload_mb: int = Field(default=25, ge=1, le=10_240, description="largest upload")
    upload_dir: Path | None = None  # None: <data_dir>/uploads

    # Semantic search: the embedding model (the packaged local one, or a model served by an
    # OpenAI-compatible endpoint at llm_base_url), and the LLM endpoint the AI uses.
    embedding_model: str = "all-MiniLM-L6-v2"
    semantic_index: bool = Field(
        default=True, description="index documents, files and messages for /api/ai/search"
    )
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = None
    llm_timeout: float = Field(default=60.0, gt=0, description="seconds per LLM call")
    llm_max_retries: int = Field(
        default=3, ge=0, le=10, description="retries (with backoff) on 429, 5xx and timeouts"
    )
    # The assistant: how much history a conversation sends the model (tokens, estimated
    # as characters / 4), and how long a destructive action waits for confirmation.
    ai_context_tokens: int = Field(default=6000, ge=500)
    ai_action_ttl: int = Field(default=900, ge=10, description="seconds")
    ai_max_turns: int = Field(default=8, ge=1, le=50, description="model calls per reply")
    ai_max_output_tokens: int = Field(
        default=1024, ge=16, le=32_768, description="longest answer one model call may write"
    )

    # TURN (coturn REST API credentials for WebRTC calls)
    turn_secret: str | None = None
    turn_uris: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_ttl: int = Field(default=86400, ge=60, le=7 * 86400, description="seconds")

    # Data protection. Encryption at rest: comma-separated Fernet keys, the first encrypts,
    # every one decrypts (unset: content is stored in clear). Retention: content older than
    # this many days is deleted by a background job (unset: kept forever); a workspace
    # admin may set a shorter limit for their workspace. Licensing: a signed license token
    # (unset: open-source mode).
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    encryption_batch: int = Field(default=500, ge=1, le=10_000, description="rows per step")
    data_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    retention_interval: float = Field(
        default=3600.0, gt=0, description="seconds between retention passes"
    )
    retention_batch: int = Field(default=1000, ge=1, le=100_000, description="rows per step")
    retention_delete_files: bool = Field(
        default=False, description="also delete uploaded files older than the limit"
    )
    retention_job: bool = Field(
        default=True, description="run the retention job in this process (app or worker)"
    )
    license_key: str | None = None

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Addresses/networks of reverse proxies whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line (for log shippers)"
    )
    access_log: bool = Field(
        default=True, description="one huddle.access line per HTTP request (INFO)"
    )
    slow_query_ms: float = Field(
        default=500.0, ge=0, description="log statements slower than this (0: never)"
    )
    sentry_dsn: str | None = Field(
        default=None, description="send unhandled errors to this Sentry (or GlitchTip) DSN"
    )
    sentry_environment: str = "production"
    cookie_secure: bool = Field(
        default=True,
        description="the admin panel's cookie is Secure (HTTPS only); false only for local HTTP",
    )
    metrics_token: str | None = Field(
        default=None, description="when set, GET /metrics needs Authorization: Bearer <it>"
    )

    @field_validator(
        "cors_origins", "trusted_proxies", "turn_uris", "encryption_keys", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_login", "rate_register", "rate_messages", "rate_ai")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    @field_validator(
        "redis_url",
        "jwt_jwks_url",
        "jwt_issuer",
        "jwt_audience",
        "secret_key",
        "smtp_host",
        "smtp_username",
        "smtp_password",
        "turn_secret",
        "dapr_api_token",
        "dapr_app_api_token",
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        "license_key",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("data_retention_days", mode="before")
    @classmethod
    def _blank_days(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("encryption_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        from cryptography.fernet import Fernet

        for position, key in enumerate(value, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ValueError(
                    f"key {position} of HUDDLE_ENCRYPTION_KEYS is not a Fernet key (32 "
                    "url-safe base64-encoded bytes; `huddle encryption keygen` makes one)"
                ) from None
        if len(set(value)) != len(value):
            raise ValueError("HUDDLE_ENCRYPTION_KEYS lists the same key twice")
        return value

    @model_validator(mode="after")
    def _check_event_bus(self) -> Self:
        if self.event_bus == "redis" and not self.redis_url:
            raise ValueError("HUDDLE_EVENT_BUS=redis needs HUDDLE_REDIS_URL")
        if self.event_bus == "memory" and self.redis_url:
            raise ValueError(
                "HUDDLE_EVENT_BUS=memory cannot reach other processes while HUDDLE_REDIS_URL "
                "is set: use redis (or leave HUDDLE_EVENT_BUS unset)"
            )
        if self.embedding_model not in ("all-MiniLM-L6-v2", "local") and not self.llm_base_url:
            raise ValueError(
                f"HUDDLE_EMBEDDING_MODEL={self.embedding_model} is not the packaged model "
                "(all-MiniLM-L6-v2): set HUDDLE_LLM_BASE_URL to an OpenAI-compatible "
                "endpoint that serves it"
            )
        if not self.embedded_worker and not self.redis_url:
            raise ValueError(
                "HUDDLE_EMBEDDED_WORKER=false needs HUDDLE_REDIS_URL: events published by "
                "`huddle worker` reach the API's WebSocket clients through Redis"
            )
        return self

    @cached_property
    def login_rate(self) -> Rate:
        return Rate.parse(self.rate_login)

    @cached_property
    def register_rate(self) -> Rate:
        return Rate.parse(self.rate_register)

    @cached_property
    def message_rate(self) -> Rate:
        return Rate.parse(self.rate_messages)

    @cached_property
    def ai_rate(self) -> Rate:
        return Rate.parse(self.rate_ai)

    @property
    def llm_configured(self) -> bool:
        """A model is named and there is an endpoint (or an OpenAI key) to ask it."""
        return bool(self.llm_model and (self.llm_base_url or self.llm_api_key))

    @property
    def effective_event_bus(self) -> str:
        return self.event_bus or ("redis" if self.redis_url else "memory")

    @property
    def upload_path(self) -> Path:
        return self.upload_dir or self.data_dir / "uploads"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def external_jwt_enabled(self) -> bool:
        return self.jwt_jwks_url is not None

    @cached_property
    def signing_key(self) -> str:
        """The JWT signing key: ``HUDDLE_SECRET_KEY``, or one generated and kept in the data dir."""
        if self.secret_key:
            if len(self.secret_key) < 32:
                raise ValueError("HUDDLE_SECRET_KEY must be at least 32 characters long")
            return self.secret_key
        return load_or_create_secret_key(self.data_dir)


def load_or_create_secret_key(data_dir: Path) -> str:
    """Read ``<data_dir>/secret_key``, creating it (mode 0600) on first use.

    Creation uses O_EXCL so concurrent workers agree on one key.
    """
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            log.warning(
                "HUDDLE_SECRET_KEY is not set: generated one and stored it in %s. "
                "Back up that file, or set HUDDLE_SECRET_KEY, or every token dies with it.",
                path,
            )
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds a key shorter than 32 characters")
    return key
