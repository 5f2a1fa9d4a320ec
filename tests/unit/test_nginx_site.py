"""The rendered Nginx site, run by a real Nginx in front of an upstream that echoes what reaches it:
which Host headers get through, which forwarding headers Gunicorn and Daphne receive, whose address
Nginx takes as the client's, and the WebSocket handshake limits (per address, for the whole site,
open sockets per address). Clients bind to several loopback addresses (127.0.0.2, ...) to be
different clients; rate-limit tests count requests within a burst, at rates of 1 per minute, so no
request's fate depends on how fast the test runs."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from app_processes import wait_for
from listeners import free_port
from nginx_server import held_as_websocket, render_site, running_nginx

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
    """Answers every request with JSON of its path and headers, as the upstream received them; a
    WebSocket upgrade gets 101 and the connection is held open, as Daphne holds a socket, until the
    other end closes it."""

    def answer(self):
        if held_as_websocket(self):
            return
        body = json.dumps({"path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


class Site:
    """Nginx on 127.0.0.1:port with the rendered channels-stack site; both upstreams are the echo."""

    def __init__(self, port: int, logs: Path):
        self.port = port
        self.logs = logs

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        """A connection to Nginx from the loopback address `source`, which Nginx sees as the peer."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(source, 0))

    def raw(self, request: bytes, source: str = "127.0.0.1") -> tuple[int | None, dict | None]:
        """Send request bytes as they are; (status, echoed request) or (None, None) when Nginx closed
        the connection without an answer (444)."""
        with self.connect(source) as sock:
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

    def get(
        self, path: str = "/", host: bytes | None = b"localhost", headers: dict | None = None, source: str = "127.0.0.1"
    ) -> tuple:
        lines = [f"GET {path} HTTP/1.1".encode()]
        if host is not None:
            lines.append(b"Host: " + host)
        lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        lines.append(b"Connection: close")
        return self.raw(b"\r\n".join(lines) + b"\r\n\r\n", source)

    def handshake(self, source: str = "127.0.0.1", headers: dict | None = None) -> int:
        """Status of a request to the board socket's path (a handshake as far as the limits go): 200
        when it reached the upstream (the echo answers a plain GET), 429 when a limit refused it."""
        status, _ = self.get("/ws/board/", headers=headers, source=source)
        return status

    def upgrade(self, source: str = "127.0.0.1") -> socket.socket:
        """Start a WebSocket handshake and leave its connection open; read the answer with status()."""
        sock = self.connect(source)
        sock.sendall(
            b"GET /ws/board/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        return sock

    def error_log(self) -> str:
        path = self.logs / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log_addresses(self) -> list[str]:
        """The client address of each access log line so far ($remote_addr, the first field)."""
        path = self.logs / "access.log"
        return [line.split(" ", 1)[0] for line in path.read_text().splitlines()] if path.exists() else []


def status(sock: socket.socket, timeout: float = 5) -> int | None:
    """The HTTP status Nginx answered on sock, or None when nothing came within timeout seconds."""
    sock.settimeout(timeout)
    head = b""
    try:
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        return None
    return int(head.split(b" ", 2)[1]) if head else None


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
        # The site's own server as plain HTTP; with TLS it is the same block behind TLS
        # (tests/unit/test_nginx_tls.py).
        "nginx_tls=false",
        *sets,
    ]
    render_site(variables)
    with running_nginx(tmp_path, conf_dir, port):
        yield Site(port, tmp_path)


# The same, for a `with` block in a test that renders the site with variables of its own.
running_site = contextlib.contextmanager(start_site)


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


# --- WebSocket handshake limits (README "Handshake limits") ---------------------------------------
# At 1 request per minute a bucket drains 1/60 of a request per second, far less than one request
# while a test runs: with burst=B exactly the first request plus B more are let through.
SLOW = "1r/m"


def limits(**variables) -> list[str]:
    """--set arguments for the site's limit variables (nginx_<name>=value)."""
    return [f"nginx_{name}={value}" for name, value in variables.items()]


def test_handshakes_from_one_address_pass_up_to_the_burst_and_the_next_gets_429(tmp_path, echo):
    """Tests that one address gets its first handshake plus `burst` more, the next one 429, and that
    another address is not affected."""
    with running_site(tmp_path, echo, *limits(ws_rate=SLOW, ws_burst=5, ws_delay=5)) as site:
        assert [site.handshake("127.0.0.2") for _ in range(6)] == [200] * 6
        assert site.handshake("127.0.0.2") == 429
        assert site.handshake("127.0.0.3") == 200
        assert "limiting requests" in site.error_log()


def test_handshakes_past_the_delay_wait_in_nginx_and_past_the_burst_get_429(tmp_path, echo):
    """Tests the two stages of one address's limit: handshakes up to `delay` pass at once, the next
    ones up to `burst` are held by Nginx (not refused), and the one after them gets 429 at once."""
    with running_site(tmp_path, echo, *limits(ws_rate=SLOW, ws_delay=2, ws_burst=4)) as site:
        assert [site.handshake("127.0.0.2") for _ in range(3)] == [200] * 3
        held = []
        for n in (1, 2):
            held.append(site.upgrade("127.0.0.2"))
            wait_for(lambda n=n: site.error_log().count("delaying request") == n, 10, f"{n} handshake(s) delayed")
        assert site.handshake("127.0.0.2") == 429
        # Released at 1 per minute: still waiting, neither answered nor refused.
        assert [status(sock, timeout=0.5) for sock in held] == [None, None]
        for sock in held:
            sock.close()


def test_site_wide_cap_holds_across_client_addresses(tmp_path, echo):
    """Tests that the whole site gets its first handshake plus `burst` more, whichever addresses they
    come from, and the next one gets 429 from an address that has sent nothing yet."""
    with running_site(tmp_path, echo, *limits(ws_site_rate=SLOW, ws_site_burst=3, ws_site_delay=3)) as site:
        assert [site.handshake(f"127.0.0.{n}") for n in range(2, 6)] == [200] * 4
        assert site.handshake("127.0.0.6") == 429
        assert site.handshake("127.0.0.2") == 429


def test_address_over_its_own_limit_does_not_use_up_the_sites_budget(tmp_path, echo):
    """Tests that handshakes one address had refused count against nothing of the site's: the other
    addresses still get the site's whole burst."""
    variables = limits(ws_rate=SLOW, ws_burst=1, ws_delay=1, ws_site_rate=SLOW, ws_site_burst=4, ws_site_delay=4)
    with running_site(tmp_path, echo, *variables) as site:
        assert [site.handshake("127.0.0.2") for _ in range(10)] == [200] * 2 + [429] * 8
        assert [site.handshake(f"127.0.0.{n}") for n in range(3, 6)] == [200] * 3
        assert site.handshake("127.0.0.6") == 429


def test_open_websockets_per_address_are_capped_and_a_closed_one_frees_its_place(tmp_path, echo):
    """Tests that an address holding `ws_conn_per_address` open sockets gets 429 for the next, that
    another address does not, and that once one is closed the address can open another."""
    with running_site(tmp_path, echo, *limits(ws_conn_per_address=3)) as site:
        sockets = [site.upgrade("127.0.0.2") for _ in range(3)]
        assert [status(sock) for sock in sockets] == [101] * 3
        refused = site.upgrade("127.0.0.2")
        assert status(refused) == 429
        refused.close()
        other = site.upgrade("127.0.0.3")
        assert status(other) == 101
        assert "limiting connections" in site.error_log()

        sockets.pop().close()

        def reopened() -> bool:
            sock = site.upgrade("127.0.0.2")
            if status(sock) == 101:
                sockets.append(sock)
                return True
            sock.close()
            return False

        wait_for(reopened, 10, "a socket from 127.0.0.2 accepted after one of its three closed")
        for sock in [*sockets, other]:
            sock.close()


def test_handshake_held_by_the_rate_limit_does_not_yet_count_as_an_open_socket(tmp_path, echo):
    """Tests that limit_req runs before limit_conn: a handshake Nginx holds is not refused for the
    address's open sockets, while one passed at once is."""
    variables = limits(ws_conn_per_address=1, ws_rate=SLOW, ws_delay=1, ws_burst=3)
    with running_site(tmp_path, echo, *variables) as site:
        opened = site.upgrade("127.0.0.2")
        assert status(opened) == 101
        assert site.handshake("127.0.0.2") == 429
        held = site.upgrade("127.0.0.2")
        wait_for(lambda: "delaying request" in site.error_log(), 10, "the third handshake delayed")
        assert status(held, timeout=0.5) is None
        assert site.error_log().count("limiting connections") == 1
        held.close()
        opened.close()


def test_health_probe_does_not_queue_behind_handshakes(tmp_path, echo):
    """Tests that /ws/healthz still answers while the handshake limits refuse handshakes: a load
    balancer's probe must not fail because clients are reconnecting."""
    with running_site(tmp_path, echo, *limits(ws_site_rate=SLOW, ws_site_burst=1, ws_site_delay=1)) as site:
        assert [site.handshake() for _ in range(3)] == [200, 200, 429]
        assert [site.get("/ws/healthz")[0] for _ in range(5)] == [200] * 5


# --- Whose address the limits, the logs and the upstreams see -------------------------------------


def test_trusted_proxy_gives_each_client_behind_it_its_own_bucket_log_line_and_forwarded_address(tmp_path, echo):
    """Tests that behind a trusted proxy the limit key ($binary_remote_addr after realip), the access
    log and X-Forwarded-For are the client the proxy names, not the proxy."""
    variables = ["nginx_trusted_proxies=[127.0.0.1]", *limits(ws_rate=SLOW, ws_burst=1, ws_delay=1)]
    with running_site(tmp_path, echo, *variables) as site:
        first, second = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
        assert [site.handshake(headers=first) for _ in range(3)] == [200, 200, 429]
        assert site.handshake(headers=second) == 200
        _, echoed = site.get("/", headers=second)
        assert header(echoed, "x-forwarded-for") == ["198.51.100.2"]
        assert site.access_log_addresses() == ["198.51.100.1"] * 3 + ["198.51.100.2"] * 2


@pytest.mark.parametrize(
    "trusted",
    [[], ["127.0.0.1"]],
    ids=["no-trusted-proxy", "client-is-not-the-trusted-proxy"],
)
def test_forged_x_forwarded_for_from_an_untrusted_client_changes_nothing(tmp_path, echo, trusted):
    """Tests that a client not among nginx_trusted_proxies that sends a new X-Forwarded-For with each
    handshake stays in its own bucket, is logged, and is forwarded as its own address."""
    variables = [f"nginx_trusted_proxies={json.dumps(trusted)}", *limits(ws_rate=SLOW, ws_burst=1, ws_delay=1)]
    with running_site(tmp_path, echo, *variables) as site:
        forged = [{"X-Forwarded-For": f"203.0.113.{n}, 127.0.0.1"} for n in range(1, 4)]
        assert [site.handshake("127.0.0.2", headers=headers) for headers in forged] == [200, 200, 429]
        _, echoed = site.get("/", headers=forged[0], source="127.0.0.2")
        assert header(echoed, "x-forwarded-for") == ["127.0.0.2"]
        assert site.access_log_addresses() == ["127.0.0.2"] * 4
