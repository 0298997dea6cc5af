"""Outbound requests connect to the address the SSRF guard checked, and to nothing else.

The attacks of issue 14: a host name that resolves to a public address when checked and to
127.0.0.1 when connected to (DNS rebinding), on the first request or on a redirect hop, and IPv6
forms that carry an internal IPv4. The "public" address here is 127.0.0.2, allow-listed so that a
test can run a server on it; the internal one is 127.0.0.1, not allow-listed. A host name the
system resolves to 127.0.0.1 (`localhost`) is what the unpinned client would have reached.

TLS: a real HTTPS server on loopback with a certificate from a test CA for a name no DNS knows;
the pinned client reaches it only through the checked address, sends the name as SNI and
verifies the certificate against it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk import netguard, secretbox
from kiosk.netguard import UnsafeURL, check_url, parse_allow_list, pinned_client
from kiosk.schedules import executor, store

PUBLIC = "127.0.0.2"  # stands for a public address: allow-listed below
ALLOWED = parse_allow_list(PUBLIC)
NO_KEYS = secretbox.Keyring([])


class Resolver:
    """Answers each lookup with the next list of addresses (the last one repeats); counts calls."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[netguard.IPAddress]:
        self.calls.append(host)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


class Server:
    """An HTTP server on one address that records the paths it was asked for.

    /redirect answers 302 to /next on the same origin; anything else 200 "<name> <path>".
    """

    def __init__(
        self, name: str, address: str, port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.name, self.paths, self.hosts = name, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.paths.append(self.path)
                server.hosts.append(self.headers.get("Host"))
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/next")
                    body = b""
                else:
                    self.send_response(200)
                    body = f"{server.name} {self.path}".encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """(public on 127.0.0.2, internal on 127.0.0.1), on the same port."""
    internal = Server("internal", "127.0.0.1")
    public = Server("public", PUBLIC, internal.port)
    yield public, internal
    public.close()
    internal.close()


def claimed(url: str, timeout: float = 5) -> store.ClaimedRun:
    return store.ClaimedRun(
        run_id=1,
        schedule_id=1,
        trigger="manual",
        scheduled_for=dt.datetime.now(dt.UTC),
        attempts=1,
        method="GET",
        url=url,
        headers={},
        secrets=None,
        timeout_seconds=timeout,
        max_attempts=1,
    )


# --- addresses that carry an IPv4 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
        "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254 (cloud metadata)
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[64:ff9b:1::808:808]/",  # local-use NAT64: never global
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
        "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
    ],
)
async def test_ipv6_forms_carrying_an_internal_ipv4_are_refused(url):
    with pytest.raises(UnsafeURL, match="internal address"):
        await check_url(url, frozenset())


@pytest.mark.parametrize("url", ["http://[2002:808:808::1]/", "http://[64:ff9b::808:808]/"])
async def test_ipv6_forms_carrying_a_public_ipv4_are_allowed(url):
    assert await check_url(url, frozenset())


def test_embedded_ipv4_of_each_form():
    def carried(text: str) -> list[str]:
        return [str(a) for a in netguard.embedded_ipv4(ipaddress.ip_address(text))]

    assert carried("2002:a00:1::") == ["10.0.0.1"]
    assert carried("64:ff9b::c000:201") == ["192.0.2.1"]
    assert carried("::ffff:10.1.2.3") == ["10.1.2.3"]
    assert carried("2001:0:4136:e378:8000:63bf:80ff:fffe") == ["65.54.227.120", "127.0.0.1"]
    assert carried("2606:4700::1111") == [] and carried("8.8.8.8") == []


# --- DNS rebinding --------------------------------------------------------------------------------


async def test_a_name_rebinding_to_loopback_between_check_and_connect_is_not_reached(servers):
    public, internal = servers
    resolver = Resolver([PUBLIC], ["127.0.0.1"])
    attempt = await executor.perform(
        claimed(f"http://localhost:{public.port}/data"),
        allowed=ALLOWED,
        cap=65536,
        keys=NO_KEYS,
        resolver=resolver,
    )
    assert internal.paths == []
    assert public.paths == ["/data"] and public.hosts == [f"localhost:{public.port}"]
    assert attempt.kind == "success" and attempt.excerpt == "public /data"
    assert resolver.calls == ["localhost"]  # one resolution, and the connection used it


async def test_a_redirect_hop_is_checked_again_and_pinned(servers):
    public, internal = servers
    rebinding = Resolver([PUBLIC], ["127.0.0.1"])
    attempt = await executor.perform(
        claimed(f"http://localhost:{public.port}/redirect"),
        allowed=ALLOWED,
        cap=65536,
        keys=NO_KEYS,
        resolver=rebinding,
    )
    assert attempt.kind == "refused" and "127.0.0.1, an internal address" in attempt.error
    assert internal.paths == [] and public.paths == ["/redirect"]

    steady = Resolver([PUBLIC])
    attempt = await executor.perform(
        claimed(f"http://localhost:{public.port}/redirect"),
        allowed=ALLOWED,
        cap=65536,
        keys=NO_KEYS,
        resolver=steady,
    )
    assert attempt.kind == "success" and attempt.excerpt == "public /next"
    assert internal.paths == [] and public.paths == ["/redirect", "/redirect", "/next"]
    assert steady.calls == ["localhost", "localhost"]


async def test_a_name_with_one_internal_address_is_refused_before_connecting(servers):
    public, internal = servers
    resolver = Resolver([PUBLIC, "127.0.0.1"])
    attempt = await executor.perform(
        claimed(f"http://localhost:{public.port}/x"),
        allowed=ALLOWED,
        cap=65536,
        keys=NO_KEYS,
        resolver=resolver,
    )
    assert attempt.kind == "refused"
    assert public.paths == [] and internal.paths == []


async def test_an_address_that_refuses_the_connection_falls_through_to_the_next_checked_one(
    servers,
):
    public, internal = servers
    dead = Server("dead", "127.0.0.3")
    port = dead.port
    dead.close()  # nothing listens on 127.0.0.3:port any more
    moved = Server("public", PUBLIC, port)
    try:
        resolver = Resolver(["127.0.0.3", PUBLIC])
        async with pinned_client(
            parse_allow_list("127.0.0.2,127.0.0.3"),
            timeout=5,
            verify=ssl.create_default_context(),
            resolver=resolver,
        ) as client:
            response = await client.get(f"http://localhost:{port}/fallback")
        assert response.text == "public /fallback" and moved.paths == ["/fallback"]
    finally:
        moved.close()


async def test_unresolvable_hosts_are_a_retryable_error():
    async def nothing(host: str, port: int) -> list[netguard.IPAddress]:
        raise netguard.Unresolvable(f"cannot resolve host {host!r}: test")

    attempt = await executor.perform(
        claimed("http://nowhere.invalid/"),
        allowed=frozenset(),
        cap=1024,
        keys=NO_KEYS,
        resolver=nothing,
    )
    assert attempt.kind == "error" and "cannot resolve" in attempt.error


# --- TLS to the pinned address --------------------------------------------------------------------

NAME = "pinned.kiosk.invalid"  # .invalid never resolves: only the pinned address reaches the server


def _certificate(subject: str, issuer_key, issuer_name, public_key, *, ca: bool, names: list[str]):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory) -> dict:
    """A CA, and server certificates for NAME and for another name, as PEM files."""
    directory: Path = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiosk test CA")])
    ca_cert = _certificate("kiosk test CA", ca_key, ca_name, ca_key.public_key(), ca=True, names=[])
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files = {"ca": directory / "ca.pem"}
    for label, name in (("right", NAME), ("wrong", "other.kiosk.invalid")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, ca_key, ca_name, key.public_key(), ca=False, names=[name])
        path = directory / f"{label}.pem"
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[label] = path
    return files


def tls_server(certificate: Path, seen_sni: list[str | None]) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate)
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    return Server("tls", "127.0.0.1", tls=context)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def test_tls_checks_the_host_name_sni_and_certificate_while_connecting_to_the_pinned_address(
    test_ca,
):
    sni: list[str | None] = []
    server = tls_server(test_ca["right"], sni)
    resolver = Resolver(["127.0.0.1"])
    try:
        # KIOSK_OUTBOUND_ALLOW_HOSTS=127.0.0.1 lets the test reach its loopback server.
        async with pinned_client(
            parse_allow_list("127.0.0.1"),
            timeout=5,
            verify=trusting(test_ca["ca"]),
            resolver=resolver,
        ) as client:
            response = await client.get(f"https://{NAME}:{server.port}/secure")
        assert response.status_code == 200 and response.text == "tls /secure"
        assert sni == [NAME]
        assert server.hosts == [f"{NAME}:{server.port}"]
        assert str(response.request.url) == f"https://{NAME}:{server.port}/secure"

        # Not allow-listed: refused before any connection.
        with pytest.raises(UnsafeURL, match="internal address"):
            async with pinned_client(
                frozenset(), timeout=5, verify=trusting(test_ca["ca"]), resolver=resolver
            ) as client:
                await client.get(f"https://{NAME}:{server.port}/secure")
        # Without the test CA the certificate is not trusted.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            async with pinned_client(
                parse_allow_list("127.0.0.1"),
                timeout=5,
                verify=ssl.create_default_context(),
                resolver=resolver,
            ) as client:
                await client.get(f"https://{NAME}:{server.port}/secure")
        assert server.paths == ["/secure"]
    finally:
        server.close()


async def test_a_certificate_for_another_name_is_refused(test_ca):
    sni: list[str | None] = []
    server = tls_server(test_ca["wrong"], sni)
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
            async with pinned_client(
                parse_allow_list("127.0.0.1"),
                timeout=5,
                verify=trusting(test_ca["ca"]),
                resolver=Resolver(["127.0.0.1"]),
            ) as client:
                await client.get(f"https://{NAME}:{server.port}/secure")
        assert sni == [NAME] and server.paths == []
    finally:
        server.close()
