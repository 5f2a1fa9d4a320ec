"""The rendered Nginx site, run by a real Nginx in front of an upstream that echoes what reaches it:
which Host headers get through, and which forwarding headers Gunicorn and Daphne receive."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]

# Every header a client may send to make Gunicorn, Daphne or Django believe something about the
# connection; Nginx must replace or drop each of them.
FORGED = {
    "X-Forwarded-For": "203.0.113.77",
    "X-Forwarded-Port": "4444",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Protocol": "ssl",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Host": "evil.example",
    "Forwarded": "for=203.0.113.77;proto=https;host=evil.example",
    "X-Real-IP": "203.0.113.77",
    "Daphne-Root-Path": "/evil",
    "SCRIPT_NAME": "/evil",
}
DROPPED = ["x-forwarded-protocol", "x-forwarded-ssl", "x-forwarded-host", "forwarded", "x-real-ip", "daphne-root-path"]


class Echo(BaseHTTPRequestHandler):
    """Answers every request with JSON of its path and headers, as the upstream received them."""

    def answer(self):
        body = json.dumps({"path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Site:
    """Nginx on 127.0.0.1:port with the rendered channels-stack site; both upstreams are the echo."""

    def __init__(self, port: int):
        self.port = port

    def raw(self, request: bytes) -> tuple[int | None, dict | None]:
        """Send request bytes as they are; (status, echoed request) or (None, None) when Nginx closed
        the connection without an answer (444)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        if not data:
            return None, None
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        echoed = json.loads(body) if b"application/json" in head else None
        return status, echoed

    def get(self, path: str = "/", host: bytes | None = b"localhost", headers: dict | None = None) -> tuple:
        lines = [f"GET {path} HTTP/1.1".encode()]
        if host is not None:
            lines.append(b"Host: " + host)
        lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        lines.append(b"Connection: close")
        return self.raw(b"\r\n".join(lines) + b"\r\n\r\n")


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def start_site(tmp_path: Path, echo_port: int, *sets: str):
    """Render the site with both upstreams pointing at the echo, run it in Nginx; yields a Site."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (apt-get install nginx)")
    port = free_port()
    conf_dir = tmp_path / "nginx"
    variables = [
        f"nginx_conf_dir={conf_dir}",
        f"nginx_listen_port={port}",
        f"gunicorn_port={echo_port}",
        f"daphne_base_port={echo_port}",
        "daphne_processes=1",
        f"app_static_root={tmp_path}",
        *sets,
    ]
    result = subprocess.run(
        [*RENDER, "--root", "/", "--only", "nginx/channels-stack", *[a for v in variables for a in ("--set", v)]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # A main config of its own: the deploy nginx.conf names /run/nginx.pid and Debian's log paths.
    temp_paths = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy"))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {tmp_path}/access.log;\n{temp_paths}"
        f"    include {conf_dir}/conf.d/channels-stack.conf;\n}}\n"
    )
    process = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(main)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"nginx did not start: {process.communicate()[1]}")
            time.sleep(0.05)
    try:
        yield Site(port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def site(tmp_path, echo):
    """The site with the defaults: no trusted proxy in front."""
    yield from start_site(tmp_path, echo)


@pytest.fixture
def site_behind_proxy(tmp_path, echo):
    """The site behind a trusted proxy: the test client's 127.0.0.1 is in nginx_trusted_proxies."""
    yield from start_site(tmp_path, echo, "nginx_trusted_proxies=[10.1.2.0/24, 127.0.0.1]")


def header(echoed: dict, name: str) -> list[str]:
    return [value for key, value in echoed["headers"] if key == name]


@pytest.mark.parametrize(
    "host",
    [b"localhost", b"localhost:8080", b"127.0.0.1", b"127.0.0.1:8080", b"LocalHost:80", b"localhost:65535"],
)
def test_host_that_is_one_of_the_server_names_with_an_optional_port_reaches_the_app_unchanged(site, host):
    """Tests that a served name, with or without a port, is passed to the app exactly as sent."""
    status, echoed = site.get("/", host=host)
    assert status == 200
    assert header(echoed, "host") == [host.decode()]


def test_whitespace_around_the_host_value_is_not_part_of_it(site):
    """Tests that "Host:  127.0.0.1:8080 " is the name and port (HTTP strips the spaces around a value)."""
    status, echoed = site.get("/", host=b" 127.0.0.1:8080 ")
    assert status == 200
    assert header(echoed, "host") == ["127.0.0.1:8080"]


@pytest.mark.parametrize(
    "host",
    [
        b"localhost:8080@evil.example",
        b"127.0.0.1:8080@evil.example",
        b"localhost:8080:8080",
        b"localhost:",
        b"localhost:http",
        b"localhost:123456",
        b"localhost.evil.example",
        b"localhostx",
        b"xlocalhost",
        b"127a0a0a1",
        b"127.0.0.1.nip.io",
        b"evil.example",
        b"127.0.0.1:8080 evil.example",
        b"127.0.0.1 :8080",
        b"127.0.0.1:8080\t",
        b"localhost/evil",
        b"localhost\\evil",
        b"",
    ],
)
def test_host_that_is_not_exactly_a_server_name_is_dropped_before_the_app(site, host):
    """Tests that a Host only resembling a served name gets no answer (444), or Nginx's own 400."""
    status, echoed = site.get("/", host=host)
    assert echoed is None, f"reached the app: {echoed}"
    assert status in {None, 400}


@pytest.mark.parametrize("request_bytes", [b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"])
def test_request_without_a_host_header_never_reaches_the_app(site, request_bytes):
    """Tests that a request with no Host at all is dropped (HTTP/1.0) or refused by Nginx (HTTP/1.1)."""
    status, echoed = site.raw(request_bytes)
    assert echoed is None
    assert status in {None, 400}


def test_absolute_uri_naming_the_site_does_not_let_a_foreign_host_header_through(site):
    """Tests that "GET http://localhost/" with "Host: evil.example" is dropped: the Host header decides."""
    status, echoed = site.raw(b"GET http://localhost/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert (status, echoed) == (None, None)


@pytest.mark.parametrize("path", ["/", "/api/messages", "/ws/healthz"])
def test_forwarding_headers_sent_by_a_client_never_reach_the_app(site, path):
    """Tests that Gunicorn and Daphne get the client address, scheme and port from Nginx alone."""
    status, echoed = site.get(path, headers=FORGED)
    assert status == 200
    assert header(echoed, "x-forwarded-for") == ["127.0.0.1"]
    assert header(echoed, "x-forwarded-proto") == ["http"]
    assert header(echoed, "x-forwarded-port") == [str(site.port)]
    for name in DROPPED:
        assert header(echoed, name) == [], name
    assert not [key for key, _ in echoed["headers"] if "_" in key]


def test_trusted_proxy_supplies_the_client_address_and_scheme(site_behind_proxy):
    """Tests that behind a trusted proxy the client is the last untrusted X-Forwarded-For address, and
    the proxy's X-Forwarded-Proto counts."""
    # The client sent "X-Forwarded-For: 203.0.113.77" itself; the proxy appended what it saw.
    status, echoed = site_behind_proxy.get(
        "/ws/healthz", headers={"X-Forwarded-For": "203.0.113.77, 198.51.100.9, 10.1.2.3", "X-Forwarded-Proto": "https"}
    )
    assert status == 200
    assert header(echoed, "x-forwarded-for") == ["198.51.100.9"]
    assert header(echoed, "x-forwarded-proto") == ["https"]


@pytest.mark.parametrize("proto", ["https, http", "ftp", "https:", ""])
def test_trusted_proxy_scheme_other_than_exactly_http_or_https_is_ignored(site_behind_proxy, proto):
    """Tests that an odd X-Forwarded-Proto, even from a trusted proxy, leaves Nginx's own scheme."""
    _, echoed = site_behind_proxy.get("/", headers={"X-Forwarded-Proto": proto})
    assert header(echoed, "x-forwarded-proto") == ["http"]


def test_untrusted_peer_cannot_supply_address_or_scheme_even_with_proxies_configured(tmp_path, echo):
    """Tests that with trusted proxies configured, a peer not among them is still taken as the client."""
    for site in start_site(tmp_path, echo, "nginx_trusted_proxies=[10.1.2.0/24]"):
        _, echoed = site.get("/", headers={"X-Forwarded-For": "203.0.113.77", "X-Forwarded-Proto": "https"})
        assert header(echoed, "x-forwarded-for") == ["127.0.0.1"]
        assert header(echoed, "x-forwarded-proto") == ["http"]
