"""Trust in the stacks' HTTPS: the local CA of deploy/local_ca.py, whose certificate is .tls/ca.pem at
the repository root (made by the first compose or test-host bring-up). Clients of the tests verify
every certificate against it, hostname included, as a browser that trusts the CA does; nothing here
turns verification off."""

from __future__ import annotations

import select
import ssl
import threading
import time

from .deploy import REPO

CA_FILE = REPO / ".tls" / "ca.pem"


def ca_file() -> str:
    """The CA certificate's path, for requests' `verify=`; FileNotFoundError naming how to make it."""
    if not CA_FILE.exists():
        raise FileNotFoundError(f"{CA_FILE} does not exist: bring a stack up first (make up, make vm, or --fresh)")
    return str(CA_FILE)


# How long a read waits for the socket between two tries, so a socket closed by another thread is
# noticed (seconds).
READ_POLL_SECONDS = 0.1


class SerializedSSLSocket(ssl.SSLSocket):
    """An SSLSocket that one thread may read while another writes, as websockets' sync client does (a
    background thread reads while the caller sends; its handshake request goes out while that thread
    processes the TLS 1.3 session tickets Nginx sends right after the TLS handshake).

    OpenSSL forbids two threads in one TLS session at once, and Python's ssl module does not serialize
    them (python/cpython#76714; the same race in python-engineio#461 and python-socketio#1568): about one
    handshake in 130 through Nginx lost its request, the client timed out after open_timeout and then
    waited 60 s more for Nginx's client_header_timeout to close the connection. Here every read and
    write of the session holds one lock, and a read never holds it while it waits for the network: it
    tries without blocking and waits for readability outside the lock (python-engineio#461's pattern).
    Writes hold the lock while they block, which is fine for the small frames of the tests.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is made by SSLContext.wrap_socket (sslsocket_class)")

    @property
    def _session_lock(self) -> threading.RLock:
        # Made on first use: SSLSocket._create calls settimeout() before any __init__ of ours could
        # run. setdefault is atomic, so two threads get the same lock. RLock: sendall() calls send().
        lock = self.__dict__.get("_session_lock_instance")
        return lock if lock is not None else self.__dict__.setdefault("_session_lock_instance", threading.RLock())

    def settimeout(self, value: float | None) -> None:
        with self._session_lock:
            super().settimeout(value)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """Like SSLSocket.recv (socket.timeout after the socket's timeout), without blocking writers."""
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._session_lock:
                super().settimeout(0.0)
                try:
                    return super().recv(buflen, flags)
                except ssl.SSLWantReadError:
                    pass
                finally:
                    super().settimeout(timeout)
            remaining = READ_POLL_SECONDS if deadline is None else min(READ_POLL_SECONDS, deadline - time.monotonic())
            if remaining <= 0:
                raise TimeoutError("timed out")
            if self.fileno() == -1:
                raise OSError("the socket is closed")
            select.select([self], [], [], remaining)

    def sendall(self, data, flags: int = 0) -> None:
        with self._session_lock:
            super().sendall(data, flags)

    def send(self, data, flags: int = 0) -> int:
        with self._session_lock:
            return super().send(data, flags)


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    """A client SSLContext that trusts the local CA only (or `cafile`) and checks host names
    (websockets' `ssl=`, raw sockets). Its sockets are SerializedSSLSocket: safe to read in one
    thread and write in another."""
    context = ssl.create_default_context(cafile=cafile or ca_file())
    context.sslsocket_class = SerializedSSLSocket  # documented: ssl "SSLContext.sslsocket_class"
    return context


def ws_ssl(url: str) -> ssl.SSLContext | None:
    """websockets' `ssl=` for url: client_context() for wss://, None for ws://."""
    return client_context() if url.startswith("wss://") else None


def verify(url: str) -> str | bool:
    """requests' `verify=` for url: the local CA for https://, True (unused) for http://."""
    return ca_file() if url.startswith("https://") else True
