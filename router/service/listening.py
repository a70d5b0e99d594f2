"""Where the HTTP listener listens, and how: its address, whether that is
loopback (no token needed there), and its TLS. The rule that tokens never
travel in clear off loopback unless the admin says so is kept here
(``HttpServer`` refuses to start otherwise)."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a bind address."""
    host, sep, port = str(value).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def tls_context(cert: Any, key: Any) -> ssl.SSLContext:
    """The listener's TLS: its certificate chain and key (PEM files).
    RuntimeError, in words, when they cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"TLS: cannot use {cert} and {key}: {exc}") from None
    return context


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything, so it is not loopback


def tls_of(config: Any, given: Any = None) -> Any:
    """The listener's TLS context, from ``--tls-cert``/``--tls-key``
    (``given``) or router.toml's ``tls_cert``/``tls_key``; None without."""
    cert, key = given or (config.tls_cert, config.tls_key)
    if bool(cert) != bool(key):
        raise RuntimeError("TLS needs both tls_cert and tls_key")
    return tls_context(cert, key) if cert else None
