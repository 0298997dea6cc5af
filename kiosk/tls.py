"""TLS contexts of outbound connections, built once per process and shared.

httpx builds a new SSL context, loading certifi's CA bundle, for every client it creates; so does
`ssl.create_default_context()` with the system's CAs: 20-40 ms of CPU each on the 2-core machine,
more than all the rest of a payment job's Python (docs/benchmarks.md, "Where the time goes").
Jobs make a client per call (Mercado Pago, the notify hook, scheduled requests, receipt emails), so
they take these instead. A context is not changed after it is built, and is safe to share between
clients and threads.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def http(trust_env: bool = True) -> ssl.SSLContext:
    """What httpx would build for `verify=True` (SSL_CERT_FILE / SSL_CERT_DIR when `trust_env`)."""
    return httpx.create_ssl_context(trust_env=trust_env)


@functools.cache
def smtp() -> ssl.SSLContext:
    """The system's default client context, for SMTP STARTTLS."""
    return ssl.create_default_context()
