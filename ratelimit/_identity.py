"""Who a request counts against: `user:<id>` for a signed-in user, else `ip:<address>`.

The address is the TCP peer's, unless the peer is a trusted proxy: then `X-Forwarded-For`
is read from the right, skipping trusted proxies, and the first address that is not one is
the client (the left-most entries are whatever the client chose to send). IPv6 clients are
grouped by prefix (/64 by default): one subscriber usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._errors import RateLimitConfigError

if TYPE_CHECKING:
    from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def user_identity(user_id: str) -> str:
    return f"user:{user_id}"


def parse_networks(values: Iterable[str | Network] | str) -> tuple[Network, ...]:
    """CIDRs from strings (a comma-separated string is accepted, as in TRUSTED_PROXIES)."""
    if isinstance(values, str):
        values = [v for v in (p.strip() for p in values.split(",")) if v]
    networks: list[Network] = []
    for value in values:
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(value)
            continue
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise RateLimitConfigError(
                f"trusted proxies: {value!r} is not an IP network (CIDR)"
            ) from exc
    return tuple(networks)


class ClientIdentifier:
    """Turns a request (and maybe a user id) into the identity its limits are kept under."""

    def __init__(self, trusted_proxies: Iterable[Network] = (), *, ipv6_prefix: int = 64) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        if not 1 <= ipv6_prefix <= 128:
            raise RateLimitConfigError("ipv6_prefix must be between 1 and 128")
        self.ipv6_prefix = ipv6_prefix

    def identify(self, request: Request, user_id: str | None) -> str:
        if user_id is not None:
            return f"user:{user_id}"
        client = request.client
        peer = client.host if client is not None else ""
        if self.trusted_proxies:
            peer = self._client_behind_proxies(peer, request.headers.getlist("x-forwarded-for"))
        return f"ip:{self._group(peer)}"

    def _is_trusted(self, address: Address) -> bool:
        return any(address in net for net in self.trusted_proxies)

    def _client_behind_proxies(self, peer: str, forwarded: list[str]) -> str:
        try:
            hop = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if not self._is_trusted(hop):
            return peer
        chain = [p.strip() for header in forwarded for p in header.split(",")]
        for entry in reversed(chain):
            try:
                address = ipaddress.ip_address(entry)
            except ValueError:
                # Not an address: a trusted proxy would never append this, so the client
                # wrote it; count the request against the last hop we can vouch for.
                return str(hop)
            if not self._is_trusted(address):
                return str(address)
            hop = address
        return str(hop)

    def _group(self, host: str) -> str:
        if ":" not in host:
            return host or "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.ip_network(f"{address}/{self.ipv6_prefix}", strict=False))
        return str(address)
