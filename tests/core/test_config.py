"""Settings: the HUDDLE_ prefix, rates, and the generated secret key."""

import logging
import os
import stat

import pytest
from pydantic import ValidationError

from huddle.config import Rate, Settings


def test_settings_come_from_huddle_prefixed_env(monkeypatch):
    monkeypatch.setenv("HUDDLE_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("HUDDLE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("HUDDLE_REDIS_URL", "")
    settings = Settings(_env_file=None)
    assert settings.access_token_ttl == 120
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.redis_url is None
    assert settings.database_url == "sqlite+aiosqlite:///./huddle.db"


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/15m", Rate(10, 900)),
        ("20/1h", Rate(20, 3600)),
        ("60/m", Rate(60, 60)),
        ("5/30s", Rate(5, 30)),
        ("3 / 2d", Rate(3, 172800)),
    ],
)
def test_rate_parsing(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["10", "ten/1m", "10/0m", "0/1m", "10/1y", ""])
def test_bad_rates_are_refused_at_startup(text):
    with pytest.raises(ValidationError):
        Settings(_env_file=None, rate_login=text)


def test_secret_key_is_generated_once_and_kept(tmp_path, caplog):
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="huddle"):
        first = Settings(_env_file=None, data_dir=data_dir).signing_key
    assert len(first) >= 32
    key_file = data_dir / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert any("HUDDLE_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    second = Settings(_env_file=None, data_dir=data_dir).signing_key
    assert second == first
    assert not caplog.records


def test_explicit_secret_key_wins_and_must_be_long(tmp_path):
    key = "k" * 40
    assert Settings(_env_file=None, data_dir=tmp_path, secret_key=key).signing_key == key
    assert not (tmp_path / "secret_key").exists()
    with pytest.raises(ValueError, match="at least 32"):
        _ = Settings(_env_file=None, secret_key="short").signing_key
