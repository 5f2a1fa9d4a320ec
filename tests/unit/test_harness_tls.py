"""The tests' TLS client socket (tests/harness/tls.py SerializedSSLSocket), against a real TLS 1.3
server with a certificate of deploy/local_ca.py: a read waiting in one thread never holds up a write
in another (websockets' sync client reads in a background thread while it sends), and a read still
times out like a socket's."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.tls import SerializedSSLSocket, client_context  # noqa: E402


@pytest.fixture
def tls_server(tmp_path):
    """(port, CA file) of a TLS 1.3 server that answers b"pong" to b"ping", then waits for EOF."""
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local_ca.py"), "issue", "--ca-dir", str(tmp_path / "ca"),
         "--out", str(tmp_path / "site")],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tmp_path / "site" / "cert.pem", tmp_path / "site" / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with context.wrap_socket(connection, server_side=True) as tls:
            if tls.recv(4) == b"ping":
                tls.sendall(b"pong")
            tls.recv(4)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield listener.getsockname()[1], str(tmp_path / "ca" / "ca.pem")
    listener.close()
    server.join(timeout=5)


def connect(port: int, cafile: str) -> SerializedSSLSocket:
    tls = client_context(cafile).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                             server_hostname="127.0.0.1")  # fmt: skip
    assert isinstance(tls, SerializedSSLSocket) and tls.version() == "TLSv1.3"
    return tls


def test_a_write_goes_out_while_another_thread_waits_in_a_read_of_the_same_session(tls_server):
    """Tests that with one thread blocked in recv() (no timeout) another thread's sendall() goes out
    and the reply reaches the reading thread: the session lock is not held while a read waits."""
    port, cafile = tls_server
    tls = connect(port, cafile)
    tls.settimeout(None)
    received = []
    reader = threading.Thread(target=lambda: received.append(tls.recv(4)), daemon=True)
    reader.start()
    reader.join(timeout=0.5)
    assert reader.is_alive(), "recv() returned before the server had anything to send"
    writer = threading.Thread(target=tls.sendall, args=(b"ping",), daemon=True)
    writer.start()
    writer.join(timeout=5)
    assert not writer.is_alive(), "sendall() waited for the read in the other thread"
    reader.join(timeout=5)
    assert received == [b"pong"]
    tls.close()


def test_a_read_with_nothing_to_read_times_out_after_the_sockets_timeout(tls_server):
    """Tests that recv() on a socket with a 0.3 s timeout and no data raises TimeoutError, as
    socket.recv does, and the socket's timeout is unchanged afterwards."""
    port, cafile = tls_server
    tls = connect(port, cafile)
    tls.settimeout(0.3)
    with pytest.raises(TimeoutError):
        tls.recv(4)
    assert tls.gettimeout() == 0.3
    tls.sendall(b"ping")
    assert tls.recv(4) == b"pong"
    tls.close()
