"""Where a webhook may send: the SSRF guard (see :mod:`huddle.events.webhooks`).

A webhook's host must resolve only to public addresses: loopback, private, link-local
(cloud metadata), shared, reserved, multicast, unspecified and IPv6 site-local ones are
refused, and IPv4 wrapped in IPv6 (mapped, 6to4) is unwrapped first. The check runs when
a URL is saved and before every attempt, and the sender connects to the address that
passed it, so a DNS answer that changes in between (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """The webhook URL is malformed or points where Huddle must not send requests."""


def refused_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                return refused_address(embedded)
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or site_local
    )


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (patched in tests to play DNS tricks)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused("the URL must start with http:// or https://")
    if not parsed.host:
        raise UrlRefused("the URL has no host")
    if parsed.userinfo:
        raise UrlRefused("credentials in the URL are not supported: sign with the secret")
    return parsed


async def checked_address(url: httpx.URL, allow_private: bool) -> str | None:
    """The address to connect to for ``url``: one that was checked, or None to let the
    client resolve (only with private addresses allowed). Raises :class:`UrlRefused`."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        else:
            try:
                addresses = [ipaddress.ip_address(a) for a in await resolve_host(host, port)]
            except (OSError, TimeoutError, ValueError) as exc:
                if allow_private:
                    return None
                raise UrlRefused(f"{host} does not resolve") from exc
    if allow_private:
        return None
    bad = [str(a) for a in addresses if refused_address(a)]
    if bad or not addresses:
        raise UrlRefused(
            f"{host} resolves to {', '.join(bad) or 'nothing'}: loopback, private and "
            "other non-public addresses are refused (HUDDLE_WEBHOOK_ALLOW_PRIVATE)"
        )
    return str(addresses[0])


async def check_url(url: str, allow_private: bool) -> None:
    await checked_address(parse_url(url), allow_private)
