"""Trust in the stacks' HTTPS: the local CA of deploy/local_ca.py, whose certificate is .tls/ca.pem at
the repository root (made by the first compose or test-host bring-up). Clients of the tests verify
every certificate against it, hostname included, as a browser that trusts the CA does; nothing here
turns verification off."""

from __future__ import annotations

import ssl

from .deploy import REPO

CA_FILE = REPO / ".tls" / "ca.pem"


def ca_file() -> str:
    """The CA certificate's path, for requests' `verify=`; FileNotFoundError naming how to make it."""
    if not CA_FILE.exists():
        raise FileNotFoundError(f"{CA_FILE} does not exist: bring a stack up first (make up, make vm, or --fresh)")
    return str(CA_FILE)


def client_context() -> ssl.SSLContext:
    """A client SSLContext that trusts the local CA only and checks host names (websockets' `ssl=`,
    raw sockets)."""
    return ssl.create_default_context(cafile=ca_file())


def ws_ssl(url: str) -> ssl.SSLContext | None:
    """websockets' `ssl=` for url: client_context() for wss://, None for ws://."""
    return client_context() if url.startswith("wss://") else None


def verify(url: str) -> str | bool:
    """requests' `verify=` for url: the local CA for https://, True (unused) for http://."""
    return ca_file() if url.startswith("https://") else True
