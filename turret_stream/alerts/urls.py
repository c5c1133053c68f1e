"""Which webhook URLs turret-stream may call.

A webhook URL makes the server send requests where a user says: without care, to the
cloud's metadata service (169.254.169.254), to localhost admin ports or to the private
network. So, by default, a URL is refused unless

- its scheme is https (or http, ``alerts.allow_http``), it names no user or password;
- its host matches ``alerts.allowed_hosts`` ("*" any, "*.example.com", exact names);
- **every** address the host resolves to is public: not loopback, private, link-local
  (cloud metadata), shared (100.64/10), multicast, reserved or unspecified, IPv4-mapped
  IPv6 included, unless inside ``alerts.allowed_networks`` (CIDR).

The address check is made when a rule is saved (a clear 400) and again by the resolver of
every delivery's connection (``GuardedResolver``), so a host whose DNS changes after the
rule was saved (DNS rebinding) is refused at delivery. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from turret_stream.settings import AlertSettings

MAX_URL_CHARS = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlNotAllowed(ValueError):
    """A webhook URL the settings do not allow; the message says why."""


def _networks(settings: AlertSettings) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.allowed_networks]


def address_allowed(address: str, settings: AlertSettings) -> bool:
    """A public address, or one inside ``allowed_networks``."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _networks(settings)):
        return True
    return ip.is_global and not ip.is_multicast


def host_allowed(host: str, settings: AlertSettings) -> bool:
    host = host.lower().rstrip(".")
    return any(
        pattern == "*" or fnmatch.fnmatchcase(host, pattern.lower())
        for pattern in settings.allowed_hosts
    )


def check_url(url: object, settings: AlertSettings) -> tuple[str, int]:
    """The URL's host and port when its form is allowed (addresses are checked by
    ``resolve_allowed``); UrlNotAllowed otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("must be an http(s) URL")
    if len(url) > MAX_URL_CHARS:
        raise UrlNotAllowed(f"must be at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed(f"is not a valid URL ({exc})") from None
    schemes = ("https", "http") if settings.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UrlNotAllowed(f"scheme must be {' or '.join(schemes)}")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("must not carry a user or password (the body is signed instead)")
    host = parts.hostname
    if not host:
        raise UrlNotAllowed("has no host")
    if not host_allowed(host, settings):
        raise UrlNotAllowed(f"host {host!r} is not in alerts.allowed_hosts")
    return host, port or (443 if parts.scheme == "https" else 80)


async def resolve_allowed(host: str, port: int, settings: AlertSettings) -> list[str]:
    """Every address of ``host``; UrlNotAllowed when it resolves to none or to any that
    is not allowed (one bad address among good ones refuses the host)."""
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result of a
        # lookup that completes as the task is cancelled, losing the cancellation (a
        # webhook sender then outlived the worker's shutdown).
        async with asyncio.timeout(settings.timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except TimeoutError:
        raise UrlNotAllowed(f"host {host!r} did not resolve in {settings.timeout_s} s") from None
    except (OSError, UnicodeError) as exc:
        raise UrlNotAllowed(f"host {host!r} does not resolve ({exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise UrlNotAllowed(f"host {host!r} does not resolve")
    refused = [a for a in addresses if not address_allowed(a, settings)]
    if refused:
        raise UrlNotAllowed(
            f"host {host!r} resolves to {', '.join(refused)}: loopback, private, link-local "
            "and metadata addresses are refused unless in alerts.allowed_networks"
        )
    return addresses


async def check_url_resolved(url: object, settings: AlertSettings) -> None:
    host, port = check_url(url, settings)
    await resolve_allowed(host, port, settings)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing hosts with any address that is not allowed: every
    connection of a delivery goes through it, so what was checked is what is called."""

    def __init__(self, settings: AlertSettings) -> None:
        self._settings = settings
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[dict[str, Any]]:
        if not host_allowed(host, self._settings):
            raise OSError(f"host {host!r} is not in alerts.allowed_hosts")
        found: Sequence[dict[str, Any]] = await self._inner.resolve(host, port, family)
        refused = [r["host"] for r in found if not address_allowed(r["host"], self._settings)]
        if refused or not found:
            raise OSError(f"host {host!r} resolves to a refused address ({', '.join(refused)})")
        return list(found)

    async def close(self) -> None:
        await self._inner.close()
