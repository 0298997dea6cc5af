"""Server-side request forgery guard for every URL the kiosk fetches on someone's behalf.

By default a target that resolves to a loopback, private, link-local (cloud metadata lives there),
multicast, reserved or unspecified address is refused, unless its host is listed in
`KIOSK_OUTBOUND_ALLOW_HOSTS` (host names, IP addresses or CIDR networks, comma-separated).
Every resolved address is checked, so a name with one public and one private record is refused.
IPv6 forms that carry an IPv4 address are checked by that IPv4: IPv4-mapped and NAT64
(`64:ff9b::/96`) by it alone, 6to4 (`2002::/16`), Teredo (`2001::/32`, server and client) and
IPv4-compatible (`::/96`) by it as well as by the IPv6 address itself. The local-use NAT64 prefix
`64:ff9b:1::/48` is not globally reachable and always counts as internal.

Checking is half of it: the connection must go to the address that was checked, or a name that
answers a public address to the check and 127.0.0.1 to the connection (DNS rebinding) walks
past the guard. `PinnedTransport` does both in one step for each request a client sends, every
redirect hop included: it resolves the host once, checks the addresses, and connects to one of
them, keeping the host name for TLS (SNI and the certificate check) and in the `Host` header.
Build outbound clients with `pinned_client`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the host's addresses, in the order to try them; raises Unresolvable.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class UnsafeURL(ValueError):
    """The URL is malformed or points somewhere the kiosk must not reach."""


class Unresolvable(UnsafeURL):
    """The host does not resolve (now): a network problem rather than a refusal, worth a retry."""


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


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        return list(address.teredo)  # (server, client): both must be public
    if address in _NAT64:
        return [low32]
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1, checked as they are
        return [low32]
    return []


def is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:0:0/96 is "private" and 64:ff9b::/96 "reserved" as a whole (so says ipaddress),
        # yet they reach whatever IPv4 they carry: judge that IPv4 alone.
        if address.ipv4_mapped or address in _NAT64:
            return is_internal(embedded_ipv4(address)[0])
        if address in _NAT64_LOCAL:
            return True
        if any(is_internal(inner) for inner in embedded_ipv4(address)):
            return True
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


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system's answer (getaddrinfo), in its order of preference, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unresolvable(f"cannot resolve host {host!r}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return list(dict.fromkeys(addresses))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def check_url(
    url: str, allowed: frozenset[str], *, resolver: Resolver | None = None
) -> list[IPAddress]:
    """Resolve the URL's host and refuse internal targets; the addresses checked, to connect to.

    Every address must pass, so the caller may connect to any of them (in the order given).
    """
    _, host, port = split_url(url)
    literal = _literal(host)
    if literal is not None:
        addresses: Sequence[IPAddress] = [literal]
    else:
        addresses = await (resolver or system_resolver)(host, port)
        if not addresses:
            raise Unresolvable(f"cannot resolve host {host!r}: no address")
    for address in addresses:
        if is_internal(address) and not _allowed(host, address, allowed):
            raise UnsafeURL(
                f"{host} resolves to {address}, an internal address; add the host to "
                "KIOSK_OUTBOUND_ALLOW_HOSTS to allow it"
            )
    return list(addresses)


class PinnedTransport(httpx.AsyncBaseTransport):
    """Checks each request's host and connects to the checked address, and to nothing else.

    The request goes out with its URL's host replaced by the address, its `Host` header as the
    client built it from the real URL, and the `sni_hostname` extension set to the host name:
    httpcore sends that name as SNI and verifies the certificate against it. The response keeps
    the client's request (httpx sets it), so redirects are computed from the real URL and come
    back here to be checked and pinned again. If connecting to an address fails (nothing was
    sent), the next checked address is tried. Raises UnsafeURL (Unresolvable for DNS trouble).
    """

    def __init__(
        self, allowed: frozenset[str], *, verify: ssl.SSLContext, resolver: Resolver | None = None
    ) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self._inner = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await check_url(str(request.url), self._allowed, resolver=self._resolver)
        host = request.url.raw_host.decode("ascii")  # IDNA-encoded, as TLS wants it
        if _literal(host) is not None:
            return await self._inner.handle_async_request(request)
        for index, address in enumerate(addresses):
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,  # Host is already set from the real URL
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
            try:
                return await self._inner.handle_async_request(pinned)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
        raise AssertionError("unreachable: check_url returns at least one address")

    async def aclose(self) -> None:
        await self._inner.aclose()


def pinned_client(
    allowed: frozenset[str],
    *,
    timeout: httpx.Timeout | float,
    verify: ssl.SSLContext,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every request is checked and pinned; no proxy, no redirects followed.

    `trust_env=False`: a proxy from the environment would connect on its own terms.
    """
    return httpx.AsyncClient(
        transport=PinnedTransport(allowed, verify=verify, resolver=resolver),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
    )
