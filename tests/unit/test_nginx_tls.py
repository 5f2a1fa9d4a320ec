"""The rendered Nginx site with TLS on (nginx_tls, issue 12), run by a real Nginx with a certificate
from a local CA of the test's own (deploy/local_ca.py), in front of an upstream that echoes what
reaches it and sends an HSTS header of its own: the redirect from plain HTTP and what it spares, the
TLS versions, ALPN (HTTP/2 and HTTP/1.1), HSTS, and the scheme the app is told."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from listeners import free_port
from nginx_server import held_as_websocket, render_site, running_nginx

REPO = Path(__file__).resolve().parents[2]
LOCAL_CA = [sys.executable, str(REPO / "deploy" / "local_ca.py")]
PUBLIC_PORT = 8443
HSTS_MAX_AGE = 1234


class Upstream(BaseHTTPRequestHandler):
    """Answers with JSON of the request's headers and, over HTTPS, an HSTS header of its own (as Django's
    SecurityMiddleware sends one); a WebSocket upgrade gets 101 and the connection is held open."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's name)
        if held_as_websocket(self):
            return
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.headers.get("X-Forwarded-Proto") == "https":
            self.send_header("Strict-Transport-Security", "max-age=1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class TlsSite:
    """Nginx with the site: plain HTTP on http_port, HTTPS on https_port; ca is the CA's certificate."""

    def __init__(self, http_port: int, https_port: int, ca: Path):
        self.http_port, self.https_port, self.ca = http_port, https_port, ca

    def context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client context that trusts the test's CA only and checks the host name."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    def tls_connect(self, context: ssl.SSLContext | None = None, name: str = "localhost") -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.https_port), timeout=5)
        return (context or self.context()).wrap_socket(sock, server_hostname=name)

    def request(self, path: str, tls: bool, headers: dict | None = None) -> tuple[bytes, bytes]:
        """An HTTP/1.1 GET with Host localhost; (head, body) of the answer."""
        lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        sock = self.tls_connect() if tls else socket.create_connection(("127.0.0.1", self.http_port), timeout=5)
        with sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body


def header_values(head: bytes, name: str) -> list[str]:
    prefix = name.lower().encode() + b":"
    return [line[len(prefix) :].strip().decode() for line in head.split(b"\r\n") if line.lower().startswith(prefix)]


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory, upstream):
    """The site rendered with TLS on (public HTTPS port PUBLIC_PORT, HSTS HSTS_MAX_AGE) in a real Nginx."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (apt-get install nginx)")
    tmp = tmp_path_factory.mktemp("tls-site")
    issued = subprocess.run(
        [*LOCAL_CA, "issue", "--ca-dir", str(tmp / "ca"), "--out", str(tmp / "site")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    http_port, https_port = free_port(), free_port()
    conf_dir = tmp / "nginx"
    variables = [
        f"nginx_conf_dir={conf_dir}",
        "nginx_tls=true",
        f"nginx_listen_port={http_port}",
        f"nginx_https_port={https_port}",
        f"nginx_https_public_port={PUBLIC_PORT}",
        f"nginx_tls_certificate={tmp}/site/cert.pem",
        f"nginx_tls_certificate_key={tmp}/site/key.pem",
        f"nginx_hsts_max_age={HSTS_MAX_AGE}",
        f"nginx_acme_webroot={tmp}/acme",
        f"gunicorn_port={upstream}",
        f"daphne_base_port={upstream}",
        "daphne_processes=1",
        f"app_static_root={tmp}",
    ]
    render_site(variables)
    (tmp / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True)
    (tmp / "acme" / ".well-known" / "acme-challenge" / "token-1").write_text("token-1.thumbprint")
    with running_nginx(tmp, conf_dir, https_port, workers_as_root=True):
        yield TlsSite(http_port, https_port, tmp / "ca" / "ca.pem")


def test_plain_http_redirects_to_https_on_the_public_port_with_path_and_query(tls_site):
    """Tests that a plain-HTTP request gets 301 to the same name, path and query over HTTPS on the
    port clients reach HTTPS on (nginx_https_public_port)."""
    head, _ = tls_site.request("/api/messages?after=3", tls=False)
    assert head.startswith(b"HTTP/1.1 301 ")
    assert header_values(head, "Location") == [f"https://localhost:{PUBLIC_PORT}/api/messages?after=3"]


@pytest.mark.parametrize("path", ["/healthz", "/ws/healthz"])
def test_health_probes_are_served_over_plain_http_without_a_redirect(tls_site, path):
    """Tests that the health probes reach the app over plain HTTP (load balancers, compose healthchecks)."""
    head, body = tls_site.request(path, tls=False)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "http"


def test_acme_challenge_is_served_from_the_webroot_over_plain_http(tls_site):
    """Tests that certbot's HTTP-01 challenge file is served from nginx_acme_webroot, not redirected."""
    head, body = tls_site.request("/.well-known/acme-challenge/token-1", tls=False)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"token-1.thumbprint"


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_https_certificate_verifies_against_the_local_ca_for_each_server_name(tls_site, name):
    """Tests that a client trusting only the CA accepts the certificate for each of nginx_server_names."""
    with tls_site.tls_connect(name=name) as sock:
        assert sock.version() in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_https_accepts_tls_1_2_and_1_3(tls_site, version):
    """Tests that each of Mozilla intermediate's versions completes a handshake."""
    context = tls_site.context()
    context.minimum_version = context.maximum_version = version
    with tls_site.tls_connect(context) as sock:
        assert sock.version() == version.name.replace("_", ".")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_https_refuses_tls_1_0_and_1_1(tls_site, version):
    """Tests that Nginx itself refuses TLS 1.0 and 1.1 (a protocol_version alert), with a client that
    would take them (OpenSSL's security level 0)."""
    context = tls_site.context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the very versions under test
        context.minimum_version = context.maximum_version = version
    with pytest.raises(ssl.SSLError, match="(?i)alert protocol version"):
        tls_site.tls_connect(context).close()


@pytest.mark.parametrize(("offered", "chosen"), [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")])
def test_https_negotiates_http2_and_falls_back_to_http1_1_by_alpn(tls_site, offered, chosen):
    """Tests that a client offering HTTP/2 gets it, and one offering only HTTP/1.1 (a browser's
    WebSocket connection, Nginx 1.22 having no RFC 8441) gets HTTP/1.1."""
    with tls_site.tls_connect(tls_site.context(offered)) as sock:
        assert sock.selected_alpn_protocol() == chosen


def test_websocket_upgrade_over_tls_reaches_the_upstream_as_http1_1(tls_site):
    """Tests that a WebSocket handshake over TLS (ALPN http/1.1) is proxied and switched (101)."""
    with tls_site.tls_connect(tls_site.context(["http/1.1"])) as sock:
        sock.sendall(
            b"GET /ws/board/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_https_tells_the_app_https_whatever_the_client_claims(tls_site):
    """Tests that the app is told X-Forwarded-Proto https over TLS, a client's "http" being replaced."""
    _, body = tls_site.request("/", tls=True, headers={"X-Forwarded-Proto": "http"})
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"


@pytest.mark.parametrize("path", ["/", "/static/missing.css"])
def test_https_sends_one_hsts_header_with_the_configured_max_age(tls_site, path):
    """Tests that every HTTPS answer (proxied, or Nginx's own 404) has exactly one HSTS header, Nginx's,
    with nginx_hsts_max_age: the app's own is dropped."""
    head, _ = tls_site.request(path, tls=True)
    assert header_values(head, "Strict-Transport-Security") == [f"max-age={HSTS_MAX_AGE}; includeSubDomains"]


def test_plain_http_sends_no_hsts_header(tls_site):
    """Tests that HSTS is not sent over plain HTTP (RFC 6797 section 7.2: browsers ignore it there)."""
    head, _ = tls_site.request("/healthz", tls=False)
    assert header_values(head, "Strict-Transport-Security") == []
