"""Image URLs from users must point at the public internet.

A host that is, or resolves to, a loopback, private, link-local, multicast, reserved or
otherwise non-public address is refused (400) before anything is written; the fetch
checks the address it connects to again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Final
from urllib.parse import SplitResult, urlsplit

from .._errors import FetchRefused

Resolver = Callable[[str, int], Awaitable[list[str]]]

_RESOLVE_TIMEOUT_S: Final = 5.0
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet, also the IPv4 address hidden in an
    IPv6 one (mapped, 6to4, NAT64); Teredo and IPv4-compatible forms are never public."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded.is_global and not embedded.is_multicast
        if ip.teredo is not None or int(ip) >> 32 == 0:
            return False
    return ip.is_global and not ip.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host`, from the system's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_image_url(url: str) -> SplitResult:
    """The parts of an image URL: http(s), a host, a valid port, no credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise FetchRefused(f"{url[:100]!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"{url[:100]!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise FetchRefused("image URLs must not carry credentials")
    return parts


async def public_addresses(
    parts: SplitResult, *, allow_private: bool = False, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses of the URL's host, every one of them public unless `allow_private`."""
    host = parts.hostname or ""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
                addresses = await resolver(host, parts.port or _DEFAULT_PORTS[parts.scheme])
        except (OSError, TimeoutError):
            raise FetchRefused(f"the host {host!r} cannot be resolved") from None
    if not addresses:
        raise FetchRefused(f"the host {host!r} cannot be resolved")
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise FetchRefused(f"the host {host!r} is not a public internet address")
    return addresses


async def check_public_urls(
    urls: Iterable[str], *, allow_private: bool = False, resolver: Resolver = system_resolver
) -> None:
    """400 unless every URL is an http(s) URL of a public host (resolved, unless private
    hosts are allowed)."""

    async def check(url: str) -> None:
        parts = parse_image_url(url)
        if not allow_private:
            await public_addresses(parts, resolver=resolver)

    await asyncio.gather(*(check(url) for url in urls))
