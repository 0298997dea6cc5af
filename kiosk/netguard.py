"""Server-side request forgery guard for every URL the kiosk fetches on someone's behalf.

By default a target that resolves to a loopback, private, link-local (cloud metadata lives there),
multicast, reserved or unspecified address is refused, unless its host is listed in
`KIOSK_OUTBOUND_ALLOW_HOSTS` (host names, IP addresses or CIDR networks, comma-separated).
Every resolved address is checked, so a name with one public and one private record is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """The URL is malformed or points somewhere the kiosk must not reach."""


def parse_allow_list(value: str | Iterable[str]) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else value
    allowed = frozenset(item.strip().lower() for item in items if item.strip())
    for item in allowed:
        if "/" in item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a valid network") from exc
    return allowed


def is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _allowed(host: str, address: IPAddress | None, allowed: frozenset[str]) -> bool:
    if host in allowed:
        return True
    if address is None:
        return False
    for item in allowed:
        if "/" in item and address in ipaddress.ip_network(item, strict=False):
            return True
        if item == str(address):
            return True
    return False


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, lower-case host and port of an http(s) URL, or UnsafeURL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not allowed; use a header")
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, allowed: frozenset[str]) -> list[IPAddress]:
    """Resolve the URL's host and refuse internal targets; return the addresses checked."""
    _, host, port = split_url(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UnsafeURL(f"cannot resolve host {host!r}: {exc.strerror}") from None
        addresses = sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)
    for address in addresses:
        if is_internal(address) and not _allowed(host, address, allowed):
            raise UnsafeURL(
                f"{host} resolves to {address}, an internal address; add the host to "
                "KIOSK_OUTBOUND_ALLOW_HOSTS to allow it"
            )
    return addresses
