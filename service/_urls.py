"""Image URLs from users must point at the public internet.

A host that is, or resolves to, a loopback, private, link-local, multicast, reserved or
otherwise non-public address is refused (400) before anything is written; the fetch
checks the address it connects to again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ._errors import ValidationFailed

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


async def check_public_url(url: str, *, allow_private: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"{url[:100]!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise ValidationFailed("image URLs must not carry credentials")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(5):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, parts.port or (443 if parts.scheme == "https" else 80),
                    type=socket.SOCK_STREAM,
                )
        except (OSError, TimeoutError):
            raise ValidationFailed(f"the host {host!r} cannot be resolved") from None
        addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise ValidationFailed(f"the host {host!r} is not a public internet address")


async def check_public_urls(urls: Iterable[str], *, allow_private: bool = False) -> None:
    await asyncio.gather(*(check_public_url(u, allow_private=allow_private) for u in urls))
