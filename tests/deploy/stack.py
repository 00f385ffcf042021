"""Readers for the files of deploy/: the compose file, .env.example, the Dockerfile and
nginx's configuration (parsed into blocks, so tests look at structure, not at text)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = DEPLOY / "nginx"

# ${NAME}, ${NAME:-default}, ${NAME:?message}; $${...} is an escaped dollar, not a variable.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def interpolated_names(text: str) -> set[str]:
    """The variables a compose file reads with ``${...}``."""
    return {match.group(1) for match in _INTERPOLATION.finditer(text)}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${...}`` substitution, as far as deploy/ uses it."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = env.get(name, "")
        if operator in (":-", "-") and not current:
            return argument or ""
        if operator in (":?", "?") and not current:
            raise AssertionError(f"{name} is required: {argument}")
        return current

    return _INTERPOLATION.sub(substitute, value).replace("$$", "$")


@dataclass(frozen=True)
class EnvExample:
    active: dict[str, str]  # NAME=value lines
    documented: frozenset[str]  # those, and the commented-out `# NAME=value` lines


def env_example() -> EnvExample:
    active: dict[str, str] = {}
    documented: set[str] = set()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if not match:
            continue
        commented, name, value = match.groups()
        documented.add(name)
        if not commented:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            active[name] = value
    return EnvExample(active, frozenset(documented))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


# --- nginx ------------------------------------------------------------------------------

_NGINX_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#[^\n]*)|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'"""
    r"""|(?P<punct>[{};])|(?P<word>[^\s{};"']+)"""
)


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = field(default=None)

    def children(self, name: str, *args: str) -> list[Directive]:
        return find(self.block or [], name, *args)

    def child(self, name: str, *args: str) -> Directive:
        found = self.children(name, *args)
        assert len(found) == 1, f"expected one {name} {' '.join(args)} in {self.name}: {found}"
        return found[0]


def find(directives: list[Directive], name: str, *args: str) -> list[Directive]:
    """Directives called ``name`` whose arguments start with ``args``."""
    return [d for d in directives if d.name == name and d.args[: len(args)] == list(args)]


def parse_nginx(text: str) -> list[Directive]:
    """nginx's configuration syntax: ``name args;`` and ``name args { ... }``."""
    root: list[Directive] = []
    stack = [root]
    words: list[str] = []
    position = 0
    for match in _NGINX_TOKEN.finditer(text):
        assert match.start() == position, f"cannot parse nginx config at {text[position:][:40]!r}"
        position = match.end()
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        if kind in ("dq", "sq", "word"):
            words.append(match.group(kind))
            continue
        punct = match.group("punct")
        if punct == ";":
            assert words, "empty directive"
            stack[-1].append(Directive(words[0], words[1:]))
        elif punct == "{":
            directive = Directive(words[0], words[1:], [])
            stack[-1].append(directive)
            assert directive.block is not None
            stack.append(directive.block)
        else:
            assert not words and len(stack) > 1, "unbalanced }"
            stack.pop()
        words = []
    assert position == len(text) and not words and len(stack) == 1, "unterminated nginx config"
    return root


def nginx_file(relative: str) -> list[Directive]:
    return parse_nginx((NGINX / relative).read_text())


def seconds(value: str) -> float:
    """An nginx time (``60s``, ``1h``, ``3600``) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, value
    number, unit = match.groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit or "s"]


def size_bytes(value: str) -> int:
    """An nginx size (``25m``, ``25664k``, ``1024``) in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert match, value
    number, unit = match.groups()
    return int(number) * {"k": 1024, "m": 1024**2, "g": 1024**3, "": 1}[(unit or "").lower()]
