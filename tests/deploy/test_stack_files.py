"""The production stack in deploy/, checked without Docker: the compose file, .env.example,
the Dockerfile, nginx's and coturn's configuration agree with each other and with Huddle's
settings. (tests/deploy/test_nginx.py runs the nginx configuration for real.)"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from huddle.config import Settings
from huddle.core.middleware import HSTS, SECURITY_HEADERS
from huddle.documents.routes import _MULTIPART_OVERHEAD
from tests.deploy.stack import (
    DEPLOY,
    Directive,
    compose,
    dockerfile_instructions,
    env_example,
    find,
    interpolate,
    interpolated_names,
    nginx_file,
    seconds,
    services,
    size_bytes,
)

HUDDLE_SERVICES = ("api1", "api2", "worker", "migrate")
API_SERVICES = ("api1", "api2")
SECRETS = ("POSTGRES_PASSWORD", "HUDDLE_SECRET_KEY", "HUDDLE_TURN_SECRET")
# In a container the API must listen beyond loopback, for nginx.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
_HUDDLE_VARIABLE = re.compile(r"\bHUDDLE_[A-Z0-9_]*[A-Z0-9]\b")


def setting_variables() -> set[str]:
    """The environment variables Settings reads (prefix HUDDLE_, or a field's own alias)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.add((alias or prefix + name).upper())
    return names


def long_running() -> dict[str, dict]:
    return {name: s for name, s in services().items() if s.get("restart") != "no"}


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def volume_sources(service: dict) -> list[tuple[str, str]]:
    """(source, target) of a service's mounts, in either of compose's two notations."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts.append((source, target))
    return mounts


# --- compose ----------------------------------------------------------------------------


class TestCompose:
    def test_the_stack_has_its_services(self):
        assert set(services()) == {
            "postgres",
            "redis",
            "migrate",
            "api1",
            "api2",
            "worker",
            "nginx",
            "ollama",
            "coturn",
            "dapr",
        }
        assert services()["postgres"]["image"].startswith("pgvector/pgvector:pg17")
        assert services()["dapr"]["profiles"] == ["dapr"]
        # Everything else starts with a plain `docker compose up`.
        assert [n for n, s in services().items() if s.get("profiles")] == ["dapr"]

    def test_every_long_running_service_has_a_health_check(self):
        one_shot = set(services()) - set(long_running())
        assert one_shot == {"migrate"}
        for name, service in long_running().items():
            check = service.get("healthcheck") or {}
            assert not check.get("disable"), f"{name}: health check disabled"
            test = check.get("test")
            assert isinstance(test, list) and len(test) > 1, f"{name}: no health check"
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
            assert service.get("restart") == "unless-stopped", name

    def test_the_api_health_check_asks_the_api(self):
        for name in API_SERVICES:
            check = " ".join(services()[name]["healthcheck"]["test"])
            assert "http://127.0.0.1:8000/health" in check, check

    def test_the_huddle_services_run_the_image_built_from_deploy_dockerfile(self):
        for name in HUDDLE_SERVICES:
            build = services()[name]["build"]
            dockerfile = (DEPLOY / build["context"] / build["dockerfile"]).resolve()
            assert dockerfile == DEPLOY / "Dockerfile", name
            assert services()[name]["env_file"] in (".env", [".env"]), name
        assert command_of(services()["migrate"]) == ["migrate"]
        assert command_of(services()["worker"]) == ["worker"]
        for name in API_SERVICES:
            command = command_of(services()[name])
            assert command[0] == "serve", command
            assert command[command.index("--host") + 1] == ALL_INTERFACES, command

    def test_migrations_run_once_before_the_api_and_the_worker(self):
        assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        for name in (*API_SERVICES, "worker"):
            depends = services()[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["postgres"]["condition"] == "service_healthy", name
            assert depends["redis"]["condition"] == "service_healthy", name
        nginx = services()["nginx"]["depends_on"]
        for name in API_SERVICES:
            assert nginx[name]["condition"] == "service_healthy", name

    def test_the_api_replicas_leave_dispatching_to_the_worker(self):
        for name in API_SERVICES:
            environment = services()[name]["environment"]
            assert environment["HUDDLE_EMBEDDED_WORKER"] == "false", name
            assert environment["HUDDLE_REDIS_URL"], name
        assert "HUDDLE_EMBEDDED_WORKER" not in services()["worker"]["environment"]

    def test_data_lives_in_named_volumes(self):
        declared = set(compose()["volumes"])
        named = {
            source
            for service in services().values()
            for source, _ in volume_sources(service)
            if not source.startswith((".", "/"))
        }
        assert named == declared, "every named volume used is declared, and every one is used"
        mounts = {name: dict(volume_sources(s)) for name, s in services().items()}
        assert mounts["postgres"]["pgdata"] == "/var/lib/postgresql/data"
        assert mounts["redis"]["redis-data"] == "/data"
        assert mounts["ollama"]["ollama"] == "/root/.ollama"
        for name in HUDDLE_SERVICES:
            # One data directory (uploads) shared by every replica, where the image has it.
            assert mounts[name]["huddle-data"] == "/var/lib/huddle", name

    def test_the_dapr_component_is_the_shared_one_pointed_at_the_redis_service(self):
        dapr = services()["dapr"]
        [config] = dapr["configs"]
        component = yaml.safe_load(compose()["configs"][config["source"]]["content"])
        assert config["target"].startswith("/components/")
        assert "/components" in command_of(dapr)
        shared = yaml.safe_load((DEPLOY / "dapr" / "pubsub.yaml").read_text())
        assert component["metadata"]["name"] == Settings.model_fields["dapr_pubsub_name"].default
        assert component["spec"]["type"] == shared["spec"]["type"]
        metadata = {m["name"]: m["value"] for m in component["spec"]["metadata"]}
        assert metadata["redisHost"] == "redis:6379"
        assert "redis" in dapr["depends_on"]


# --- variables --------------------------------------------------------------------------


class TestVariables:
    def test_every_huddle_variable_named_in_deploy_is_a_setting(self):
        known = setting_variables()
        named: dict[str, set[str]] = {}
        for path in sorted(DEPLOY.rglob("*")):
            # Not an operator's own .env, nor certificates.
            if path.is_file() and path.name != ".env" and "certs" not in path.parts:
                for name in _HUDDLE_VARIABLE.findall(path.read_text()):
                    named.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
        unknown = {name: files for name, files in named.items() if name not in known}
        assert unknown == {}, "not settings of huddle.config.Settings"
        # The scan saw the files it is about.
        places = set().union(*named.values())
        assert {"docker-compose.yml", ".env.example", "Dockerfile"} <= places

    def test_every_variable_the_compose_file_uses_is_in_env_example(self):
        text = (DEPLOY / "docker-compose.yml").read_text()
        used = interpolated_names(text) | set(_HUDDLE_VARIABLE.findall(text))
        assert {"POSTGRES_PASSWORD", "HUDDLE_TURN_SECRET"} <= used
        missing = used - env_example().documented
        assert missing == set(), "add these to deploy/.env.example"

    def test_secrets_in_env_example_are_placeholders(self):
        active = env_example().active
        for name in SECRETS:
            assert "change-me" in active[name], name

    def test_the_example_settings_are_valid_settings(self, monkeypatch: pytest.MonkeyPatch):
        """What an API replica and the worker get from .env.example and the compose file
        loads: nothing in it makes Huddle refuse to start."""
        example = env_example().active
        for name in ("api1", "worker"):
            environment = {
                key: interpolate(str(value), example)
                for key, value in services()[name]["environment"].items()
            }
            env = {k: v for k, v in example.items() if k.startswith("HUDDLE_")} | environment
            for key in list(os.environ):
                if key.startswith("HUDDLE_"):
                    monkeypatch.delenv(key)
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            settings = Settings(_env_file=None)
            assert settings.database_url == (
                "postgresql://huddle:change-me-postgres-password@postgres:5432/huddle"
            )
            assert settings.redis_url == "redis://redis:6379/0"
            assert settings.embedded_worker is (name == "worker")
            assert len(settings.signing_key) >= 32
            assert settings.turn_secret and settings.turn_uris
            nginx_address = services()["nginx"]["networks"]["backend"]["ipv4_address"]
            assert settings.trusted_proxies == [nginx_address]


# --- Dockerfile -------------------------------------------------------------------------


class TestDockerfile:
    def stages(self) -> list[list[tuple[str, str]]]:
        stages: list[list[tuple[str, str]]] = []
        for instruction in dockerfile_instructions():
            if instruction[0] == "FROM":
                stages.append([])
            if stages:
                stages[-1].append(instruction)
        return stages

    def test_a_builder_stage_and_a_slim_runtime_stage(self):
        instructions = dockerfile_instructions()
        arguments = dict(
            arg.split("=", 1) for keyword, arg in instructions if keyword == "ARG" and "=" in arg
        )
        stages = self.stages()
        assert len(stages) >= 2
        images = [interpolate(stage[0][1].split()[0], arguments) for stage in stages]
        assert images[-1] == "python:3.11-slim"
        builder = " ".join(arg for _, arg in stages[0])
        assert "pyproject.toml" in builder and "pip wheel" in builder
        runtime = stages[-1]
        assert any(k == "COPY" and arg.startswith("--from=builder") for k, arg in runtime)
        assert not any(k == "RUN" and "pip install" in arg for k, arg in runtime)

    def test_the_runtime_runs_as_an_unprivileged_user(self):
        users = [arg for keyword, arg in self.stages()[-1] if keyword == "USER"]
        assert users, "no USER in the runtime stage"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), user

    def test_health_check_and_entrypoint(self):
        runtime = dict(self.stages()[-1])
        assert "http://127.0.0.1:8000/health" in runtime["HEALTHCHECK"]
        assert not runtime["HEALTHCHECK"].startswith("NONE")
        entrypoint = yaml.safe_load(runtime["ENTRYPOINT"])
        command = yaml.safe_load(runtime["CMD"])
        assert entrypoint == ["huddle"]
        assert command[:3] == ["serve", "--host", ALL_INTERFACES]
        assert command[command.index("--port") + 1] == "8000"


# --- nginx ------------------------------------------------------------------------------

REQUIRED_LOCATIONS = [
    ("/api/",),
    ("=", "/ws"),
    ("/mcp",),
    ("/admin",),
    ("=", "/health"),
    ("=", "/ready"),
    ("=", "/docs"),
    ("=", "/openapi.json"),
]


def locations() -> list[Directive]:
    return find(nginx_file("huddle/locations.conf"), "location")


def location(*args: str) -> Directive:
    [found] = [d for d in locations() if tuple(d.args) == args]
    return found


def value_of(directives: list[Directive], name: str, *args: str) -> list[str]:
    [directive] = find(directives, name, *args)
    return directive.args


class TestNginx:
    def test_the_public_routes_go_to_huddle(self):
        for args in REQUIRED_LOCATIONS:
            assert location(*args).child("proxy_pass").args == ["http://huddle"], args
        # Nothing else reaches Huddle (/metrics, /dapr/*): the catch-all answers itself.
        fallback = location("/")
        assert not fallback.children("proxy_pass")
        assert fallback.child("return").args[0] == "404"

    def test_headers_are_set_once_for_every_location(self):
        server = nginx_file("huddle/locations.conf")
        headers = {d.args[0]: d.args[1] for d in find(server, "proxy_set_header")}
        assert headers["Upgrade"] == "$http_upgrade"
        assert headers["Connection"] == "$connection_upgrade"
        assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
        assert headers["X-Forwarded-Proto"] == "$scheme"
        assert headers["X-Request-ID"] == "$huddle_request_id"
        assert headers["Host"] == "$host"
        assert value_of(server, "proxy_http_version") == ["1.1"]
        # A location with its own proxy_set_header or add_header silently loses every
        # one set above it.
        for directive in locations():
            assert not directive.children("proxy_set_header"), directive.args
            assert not directive.children("add_header"), directive.args

    def test_the_websocket_upgrade_map(self):
        http = nginx_file("huddle/http.conf")
        [upgrade] = find(http, "map", "$http_upgrade", "$connection_upgrade")
        assert upgrade.child("default").args == ["upgrade"]
        assert upgrade.child("").args == [""]  # no upgrade: no Connection header (keepalive)
        [request_id] = find(http, "map", "$http_x_request_id", "$huddle_request_id")
        assert request_id.child("default").args == ["$request_id"]

    def test_long_lived_connections_are_not_cut_or_buffered(self):
        heartbeat = Settings.model_fields["ws_heartbeat"].default
        ws = location("=", "/ws")
        for name in ("proxy_read_timeout", "proxy_send_timeout"):
            assert seconds(ws.child(name).args[0]) >= 3600 >= 10 * heartbeat
        mcp = location("/mcp")
        assert mcp.child("proxy_buffering").args == ["off"]
        assert seconds(mcp.child("proxy_read_timeout").args[0]) >= 3600
        assert location("/api/ai/").child("proxy_buffering").args == ["off"]

    def test_security_headers_are_huddle_s_where_huddle_sent_none(self):
        """nginx's answers carry Huddle's security headers, with Huddle's values, and an
        answer from Huddle keeps its own (none is sent twice)."""
        [http] = find(nginx_file("nginx.conf"), "http")
        [tls] = [s for s in http.children("server") if s.children("listen", "443", "ssl")]
        added = {
            d.args[0]: d.args[1:]
            for d in [
                *find(nginx_file("huddle/locations.conf"), "add_header"),
                *tls.children("add_header"),
            ]
        }
        expected = {**dict(SECURITY_HEADERS), "Strict-Transport-Security": HSTS}
        assert set(added) == set(expected)
        maps = {d.args[1]: d for d in find(nginx_file("huddle/http.conf"), "map")}
        for name, value in expected.items():
            variable, always = added[name]
            assert always == "always", name
            fallback = maps[variable]
            assert fallback.args[0] == "$upstream_http_" + name.lower().replace("-", "_")
            assert fallback.child("").args == [value], name  # the upstream sent none
            assert fallback.child("default").args == [""], name  # it did: add nothing
        # HSTS only over TLS.
        assert "Strict-Transport-Security" not in {
            d.args[0] for d in find(nginx_file("huddle/locations.conf"), "add_header")
        }

    def test_the_body_limit_lets_the_largest_upload_through(self):
        limit = size_bytes(value_of(nginx_file("huddle/locations.conf"), "client_max_body_size")[0])
        default_mb = Settings.model_fields["max_upload_mb"].default
        assert default_mb == 25
        assert limit == default_mb * 1024 * 1024 + _MULTIPART_OVERHEAD
        assert env_example().active.get("HUDDLE_MAX_UPLOAD_MB", str(default_mb)) == "25"

    def test_the_upstream_list_is_included_and_names_the_api_replicas(self):
        [upstream] = find(nginx_file("huddle/http.conf"), "upstream", "huddle")
        assert upstream.child("include").args == ["huddle/upstreams.conf"]
        servers = [d.args[0] for d in find(nginx_file("huddle/upstreams.conf"), "server")]
        assert servers == [f"{name}:8000" for name in API_SERVICES]

    def test_http_redirects_to_https_except_acme_challenges(self):
        [http] = find(nginx_file("nginx.conf"), "http")
        [plain] = [s for s in http.children("server") if s.children("listen", "80")]
        assert plain.child("location", "/.well-known/acme-challenge/").child("root").args
        assert plain.child("location", "/").child("return").args == [
            "301",
            "https://$host$request_uri",
        ]
        assert not plain.children("include", "huddle/locations.conf")

    def test_the_tls_server_serves_the_locations_with_hsts(self):
        [http] = find(nginx_file("nginx.conf"), "http")
        assert http.child("include").args == ["huddle/http.conf"]
        [tls] = [s for s in http.children("server") if s.children("listen", "443", "ssl")]
        assert tls.child("include").args == ["huddle/locations.conf"]
        assert tls.child("ssl_certificate").args and tls.child("ssl_certificate_key").args
        assert tls.children("add_header", "Strict-Transport-Security")

    def test_compose_mounts_what_nginx_conf_includes(self):
        mounts = dict(volume_sources(services()["nginx"]))
        assert mounts["./nginx/nginx.conf"] == "/etc/nginx/nginx.conf"
        assert mounts["./nginx/huddle"] == "/etc/nginx/huddle"
        [http] = find(nginx_file("nginx.conf"), "http")
        [tls] = [s for s in http.children("server") if s.children("listen", "443", "ssl")]
        certificate = Path(tls.child("ssl_certificate").args[0])
        assert mounts["./nginx/certs"] == str(certificate.parent)
        plain = next(s for s in http.children("server") if s.children("listen", "80"))
        acme = plain.child("location", "/.well-known/acme-challenge/").child("root").args[0]
        assert acme == "/var/www/acme" and mounts["acme"] == acme
        health = " ".join(services()["nginx"]["healthcheck"]["test"])
        assert plain.child("location", "=", "/nginx-health") and "/nginx-health" in health


# --- coturn -----------------------------------------------------------------------------


def turnserver_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in (DEPLOY / "coturn" / "turnserver.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options.setdefault(name.strip(), []).append(value.strip())
    return options


class TestCoturn:
    def test_credentials_are_huddle_s_rest_api_scheme(self):
        options = turnserver_options()
        assert "use-auth-secret" in options
        assert "lt-cred-mech" not in options
        # The secret is not written in the file: compose passes HUDDLE_TURN_SECRET.
        assert "static-auth-secret" not in options
        command = command_of(services()["coturn"])
        assert "--static-auth-secret=${HUDDLE_TURN_SECRET:?set HUDDLE_TURN_SECRET in .env}" in (
            command
        )
        config = command[command.index("-c") + 1]
        assert dict(volume_sources(services()["coturn"]))["./coturn/turnserver.conf"] == config

    def test_hardening(self):
        options = turnserver_options()
        for flag in ("no-cli", "no-multicast-peers", "fingerprint"):
            assert flag in options, flag
        assert options["realm"] and options["listening-port"] == ["3478"]
        assert int(options["min-port"][0]) < int(options["max-port"][0])
        denied = options["denied-peer-ip"]
        for network in ("10.0.0.0-", "127.0.0.0-", "172.16.0.0-", "192.168.0.0-"):
            assert any(d.startswith(network) for d in denied), network
        assert "allow-loopback-peers" not in options
