"""WebSocket handshakes through the full ASGI application: which origins may open a socket (the same
ones Django's CSRF check lets POST), and paths no route takes."""

import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

# The site as the browser reaches it through Nginx's published port.
HOST = "localhost:8080"


def headers(host: str | None = HOST, origin: str | None = None, proto: str | None = None, request_id: str = ""):
    found = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        found.append((b"origin", origin.encode()))
    if proto is not None:
        found.append((b"x-forwarded-proto", proto.encode()))
    if request_id:
        found.append((b"x-request-id", request_id.encode()))
    return found


async def handshake_accepted(path: str = "/ws/board/?after=0", **kwargs) -> bool:
    """Connect through the whole application; True if the handshake was accepted. Always disconnects."""
    ws = WebsocketCommunicator(application, path, headers=headers(**kwargs))
    connected, _ = await ws.connect()
    await ws.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "proto", "accepted"),
    [
        pytest.param("http://localhost:8080", None, True, id="same-scheme-host-port"),
        pytest.param("http://localhost:8081", None, False, id="port-differs"),
        pytest.param("http://localhost", None, False, id="port-missing"),
        pytest.param("https://localhost:8080", None, False, id="scheme-differs"),
        pytest.param("http://127.0.0.1:8080", None, False, id="other-allowed-host"),
        pytest.param("https://localhost:8080", "https", True, id="https-behind-tls-proxy"),
        pytest.param("http://localhost:8080", "https", False, id="http-origin-on-https-site"),
        pytest.param("http://evil.example", None, False, id="foreign-host"),
        pytest.param("null", None, False, id="null"),
        pytest.param(None, None, False, id="missing"),
    ],
)
async def test_handshake_is_accepted_only_from_the_sites_own_scheme_host_and_port(origin, proto, accepted):
    """Tests that a socket opens only when Origin is the site's own scheme://host:port, as sent."""
    assert await handshake_accepted(origin=origin, proto=proto) is accepted


async def test_handshake_with_a_host_outside_allowed_hosts_is_refused_even_from_its_own_origin():
    """Tests that Origin matching a Host that is not in ALLOWED_HOSTS is still refused."""
    assert not await handshake_accepted(host="evil.example", origin="http://evil.example")


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        pytest.param("https://board.example.com", True, id="exact"),
        pytest.param("http://board.example.com", False, id="exact-but-other-scheme"),
        pytest.param("https://board.example.com:8443", False, id="exact-but-other-port"),
        pytest.param("https://app.example.org", True, id="wildcard-subdomain"),
        pytest.param("https://a.b.example.org", True, id="wildcard-deeper-subdomain"),
        pytest.param("https://example.org", True, id="wildcard-bare-domain"),
        pytest.param("http://app.example.org", False, id="wildcard-other-scheme"),
        pytest.param("https://app.example.org.evil.example", False, id="wildcard-suffix-trick"),
    ],
)
async def test_handshake_from_a_csrf_trusted_origin_is_accepted_by_the_same_rules(settings, origin, accepted):
    """Tests that CSRF_TRUSTED_ORIGINS admit sockets exactly, and by their https://*.domain form."""
    settings.CSRF_TRUSTED_ORIGINS = ["https://board.example.com", "https://*.example.org"]
    assert await handshake_accepted(origin=origin) is accepted


PARITY_CASES = [
    ("localhost:8080", "http://localhost:8080", None),
    ("localhost:8080", "http://localhost:8081", None),
    ("localhost:8080", "https://localhost:8080", None),
    ("localhost:8080", "https://localhost:8080", "https"),
    ("localhost:8080", "http://localhost:8080", "https"),
    ("127.0.0.1:8080", "http://127.0.0.1:8080", None),
    ("127.0.0.1:8080", "http://localhost:8080", None),
    ("localhost", "http://localhost", None),
    ("localhost", "http://localhost:80", None),
    ("evil.example", "http://evil.example", None),
    ("localhost:8080", "https://board.example.com", None),
    ("localhost:8080", "https://www.example.org", None),
    ("localhost:8080", "http://www.example.org", None),
    ("localhost:8080", "null", None),
]


def http_post_accepted(host: str, origin: str, proto: str | None) -> bool:
    """True when a browser-like POST (valid CSRF token) from origin is answered 201."""
    client = Client(enforce_csrf_checks=True)
    extra = {"HTTP_HOST": host, **({"HTTP_X_FORWARDED_PROTO": proto} if proto else {})}
    page = client.get("/", **extra)
    token = page.cookies["csrftoken"].value if page.status_code == 200 else "x" * 32
    response = client.post(
        "/api/messages",
        {"text": "parity"},
        content_type="application/json",
        HTTP_ORIGIN=origin,
        HTTP_X_CSRFTOKEN=token,
        **extra,
    )
    assert response.status_code in {201, 400, 403}, response.content
    return response.status_code == 201


@pytest.mark.parametrize(("host", "origin", "proto"), PARITY_CASES)
def test_socket_accepts_exactly_the_origins_an_http_post_is_accepted_from(settings, host, origin, proto):
    """Tests that for each Host, Origin and forwarded scheme the handshake and an HTTP POST agree."""
    from asgiref.sync import async_to_sync

    settings.CSRF_TRUSTED_ORIGINS = ["https://board.example.com", "https://*.example.org"]
    socket = async_to_sync(handshake_accepted)(host=host, origin=origin, proto=proto)
    assert socket is http_post_accepted(host, origin, proto)


async def test_refused_origin_is_logged_once_as_a_warning(caplog):
    """Tests that a refused handshake leaves one WARNING naming the origin and the request id."""
    with caplog.at_level(logging.INFO):
        assert not await handshake_accepted(origin="http://localhost:8081", request_id="origin-test-1")
    refusals = [r for r in caplog.records if "handshake refused" in r.getMessage()]
    assert [(r.levelname, r.request_id) for r in refusals] == [("WARNING", "origin-test-1")]
    assert "'http://localhost:8081'" in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "path",
    ["/ws/nope/", "/ws/board", "/ws/board/extra/", "/ws/jobs/abc/", "/ws/%ff/", "/ws/%00/", "/", "/ws/" + "x" * 4000],
)
async def test_handshake_to_a_path_no_route_takes_is_refused_with_one_warning(caplog, path):
    """Tests that an unrouted path is refused at the handshake (Daphne: 403), with a WARNING and no error."""
    ws = WebsocketCommunicator(application, path, headers=headers(origin="http://localhost:8080", request_id="nr-1"))
    with caplog.at_level(logging.INFO):
        connected, _ = await ws.connect()
        await ws.disconnect()
    assert connected is False
    refusals = [r for r in caplog.records if "no route for path" in r.getMessage()]
    assert [(r.levelname, r.request_id) for r in refusals] == [("WARNING", "nr-1")]
    assert len(refusals[0].getMessage()) < 300
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
