"""Protocol edge cases from field reports, through Nginx on each target: which origins may open a
socket, text the database cannot store, handshakes no route takes, forged forwarding headers, HEAD,
and Host headers that only resemble the site's."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from harness.tls import client_context
from websockets.exceptions import InvalidStatus

from .stack import read_until_ready, receive_json, wait_until

FORGED_ADDRESS = "203.0.113.77"
FORGED_PORT = "4444"
# Lines no bad input may leave in the app's log.
FAILURE_MARKERS = ("Traceback", " ERROR ", "DisallowedHost", "Invalid HTTP_HOST")


def handshake_status(site, path: str, **kwargs) -> int:
    """The HTTP status of a WebSocket handshake through Nginx: 101 when accepted."""
    try:
        with site.websocket(path, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if any(marker in line for marker in FAILURE_MARKERS)]


# --- 1. The socket's origin check is the HTTP POST's: scheme, host and port -----------------------


def other_port_origin(site) -> str:
    parts = urlsplit(site.base_url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port + 1}"


def other_scheme(site) -> str:
    """The scheme the site is not served by: http for an HTTPS site, else https."""
    return "http" if site.base_url.startswith("https://") else "https"


def test_socket_opens_from_the_sites_own_origin_and_not_from_another_port_of_the_same_host(site):
    """Tests that a handshake from the site's scheme://host:port is accepted, and from another port 403,
    like an HTTP POST from each."""
    foreign = other_port_origin(site)

    assert handshake_status(site, "/ws/board/") == 101
    assert handshake_status(site, "/ws/board/", origin=foreign) == 403
    other_scheme_origin = other_scheme(site) + "://" + urlsplit(site.base_url).netloc
    assert handshake_status(site, "/ws/board/", origin=other_scheme_origin) == 403
    headers = {**site.csrf_headers(), "Origin": foreign}
    assert site.post("/api/messages", json.dumps({"text": "from another port"}), **headers).status_code == 403


def test_forged_x_forwarded_proto_changes_neither_the_socket_nor_the_post_origin_check(site):
    """Tests that a client claiming the other scheme in X-Forwarded-Proto (http over HTTPS, https over
    plain HTTP) is still taken by both checks as what it connected with."""
    forged = {"X-Forwarded-Proto": other_scheme(site)}
    with site.websocket("/ws/board/", headers=forged) as ws:
        assert read_until_ready(ws)["type"] == "ready"
    response = site.post("/api/messages", json.dumps({"text": "forged scheme"}), **forged)
    assert response.status_code == 201, response.text


# --- 2. Text the database cannot store is refused; any other text round-trips -------------------

UNICODE_TEXTS = [
    "party 🎉👍🏽 family 👩‍👩‍👧 flag 🇺🇦",
    "שלום עולם",
    "مرحبا بالعالم",
    "abc \u200fשלום\u200e 123 عربى",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_emoji_and_right_to_left_text_round_trip_over_http_and_the_socket(site, text):
    """Tests that a post over HTTP and one over the socket both come back unchanged, to the poster and the list."""
    with site.websocket("/ws/board/") as ws:
        read_until_ready(ws)
        over_http = site.post_message(text)
        assert over_http["text"] == text
        assert receive_json(ws, 10)["text"] == text
        ws.send(json.dumps({"type": "post", "text": text}))
        over_socket = receive_json(ws, 10)
    assert over_socket["text"] == text
    listed = site.get(f"/api/messages?after={over_http['id'] - 1}").json()["messages"]
    assert [m["text"] for m in listed] == [text, text]


@pytest.mark.parametrize(
    ("raw_text", "error"),
    [("\\ud800", "lone surrogate"), ("ok \\udfff ok", "lone surrogate"), ("a\\u0000b", "NUL")],
    ids=["lone-high-surrogate", "lone-low-surrogate", "nul"],
)
def test_text_the_database_cannot_store_is_refused_over_http_and_the_socket_stays_open(site, app_log, raw_text, error):
    """Tests that unstorable text gets 400 over HTTP and an error frame over the socket, which stays
    open and usable, with no error in the app's log."""
    body = '{"text": "' + raw_text + '"}'
    response = site.post("/api/messages", body)
    assert response.status_code == 400 and error in response.json()["error"]

    with site.websocket("/ws/board/") as ws:
        read_until_ready(ws)
        ws.send('{"type": "post", "text": "' + raw_text + '"}')
        reply = receive_json(ws, 10)
        assert reply["type"] == "error" and error in reply["error"]
        ws.send(json.dumps({"type": "post", "text": "still open"}))
        assert receive_json(ws, 10)["text"] == "still open"
    assert not failures(app_log.lines())


@pytest.mark.parametrize(
    "body",
    ["[" * 10_000, '{"text": ' + "9" * 5000 + "}"],
    ids=["nested-too-deeply", "integer-over-digit-limit"],
)
def test_json_python_cannot_parse_is_refused_with_400_on_both_endpoints(site, body):
    """Tests that JSON json.loads raises on (not JSONDecodeError) is a 400, not a 500."""
    for path in ("/api/messages", "/api/jobs"):
        response = site.post(path, body)
        assert response.status_code == 400, (path, response.text)
        assert "invalid JSON" in response.json()["error"]


# --- 3. A handshake no route takes is refused, with a warning, not a 500 ------------------------


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/ws/nope/", "no route for path '/ws/nope/'"),
        ("/ws/board", "no route for path '/ws/board'"),
        ("/ws/%ff/", "no route for path"),
        ("/ws/board/?after=abc", "after must be an integer"),
        ("/ws/board/?after=99999999999999999999", "after must be between"),
    ],
)
def test_handshake_no_route_or_resume_point_takes_is_refused_403_with_one_warning(site, app_log, path, logged):
    """Tests that such a handshake gets 403 (Daphne has no denial-response extension for a 404), one
    WARNING line with its request id, no traceback, and the stack stays healthy."""
    request_id = f"e2e-{uuid.uuid4().hex[:12]}"
    assert handshake_status(site, path, headers={"X-Request-ID": request_id}) == 403

    def warning() -> list[str]:
        return [line for line in app_log.lines() if f"request_id={request_id}" in line]

    lines = wait_until(warning, 10, "the refusal's log line")
    assert len(lines) == 1 and " WARNING " in lines[0] and logged in lines[0], lines
    assert not failures(app_log.lines())
    assert site.healthy()


# --- 4. Only Nginx says who the client is ------------------------------------------------------


def test_client_cannot_choose_the_address_nginx_gunicorn_daphne_and_the_consumer_log(site, app_log, nginx_log):
    """Tests that X-Forwarded-For and X-Forwarded-Port sent by a client change no logged address: Nginx's
    access log, Gunicorn's and Daphne's access lines and the consumer's line all name the connection's
    own peer, which for a client on this machine is the Docker network's gateway (no trusted proxy)."""
    request_id = f"e2e-{uuid.uuid4().hex[:12]}"
    forged = {"X-Forwarded-For": FORGED_ADDRESS, "X-Forwarded-Port": FORGED_PORT, "X-Request-ID": request_id}
    with site.websocket("/ws/board/", headers=forged) as ws:
        read_until_ready(ws)
    probe = uuid.uuid4().hex
    assert site.get(f"/ws/healthz?probe={probe}", headers=forged).status_code == 200
    assert site.get(f"/api/messages?limit=1&probe={probe}", headers=forged).status_code == 200

    def logged() -> tuple[list[str], list[str], list[str], list[str]] | None:
        lines = app_log.lines()
        opened = [line for line in lines if f"request_id={request_id}" in line and "board socket open" in line]
        daphne = [line for line in lines if f"/ws/healthz?probe={probe}" in line]
        gunicorn = [line for line in lines if "gunicorn access" in line and probe in line]
        nginx = [line for line in nginx_log.lines() if f"request_id={request_id}" in line]
        return (opened, daphne, gunicorn, nginx) if opened and daphne and gunicorn and len(nginx) == 3 else None

    opened, daphne, gunicorn, nginx = wait_until(logged, 10, "the consumer's, Daphne's, Gunicorn's and Nginx's lines")
    # Nginx: $remote_addr first, the connection's peer in peer=; without a trusted proxy they are one.
    addresses = {line.split(" ", 1)[0] for line in nginx}
    assert len(addresses) == 1, nginx
    address = addresses.pop()
    assert address != FORGED_ADDRESS and all(line.endswith(f" peer={address}") for line in nginx), nginx
    assert address in nginx_log.gateways(), (address, nginx_log.gateways())
    host, port = opened[0].rsplit("client=", 1)[1].rsplit(":", 1)
    assert (host, port == FORGED_PORT) == (address, False), opened
    assert f"{address}:" in daphne[0] and FORGED_ADDRESS not in daphne[0], daphne
    assert f":{FORGED_PORT} " not in daphne[0], daphne
    assert f"gunicorn access {address} " in gunicorn[0] and FORGED_ADDRESS not in gunicorn[0], gunicorn


# --- 5. HEAD is answered like GET, without a body ----------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/healthz", "/ws/healthz", "/api/messages?limit=1", "/api/jobs/{job}", "/static/board/board.css"],
)
def test_head_on_every_get_endpoint_answers_gets_status_without_a_body(site, path):
    """Tests that HEAD through Nginx gets the GET's status and Content-Type, and no body."""
    url = site.url(path.format(job=site.post_job(1)["id"] if "{job}" in path else ""))
    got = site.http.get(url, timeout=10)
    head = site.http.head(url, timeout=10)
    assert got.status_code == 200, got.text
    assert head.status_code == got.status_code
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.content == b""


# --- 6. A Host that is not exactly the site's never reaches Django -----------------------------


def raw_request(site, request: bytes) -> bytes:
    """Send request bytes to Nginx as they are; what came back (b"" when Nginx closed without answering)."""
    parts = urlsplit(site.base_url)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(socket.create_connection((parts.hostname, parts.port), timeout=10))
        if parts.scheme == "https":
            conn = stack.enter_context(client_context().wrap_socket(conn, server_hostname=parts.hostname))
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "host_line",
    [
        b"Host: localhost:{port}@evil.example",
        b"Host: 127.0.0.1:{port}@evil.example",
        b"Host: 127.0.0.1:{port} evil.example",
        b"Host: 127.0.0.1:{port}:{port}",
        b"Host: 127.0.0.1:{port}\t",
        b"Host: ",
        b"",
    ],
    ids=["at-sign", "at-sign-ip", "space-and-more", "two-ports", "tab", "empty", "absent"],
)
def test_host_that_is_not_exactly_a_served_name_is_dropped_by_nginx(site, app_log, host_line):
    """Tests that such a request gets no answer (or Nginx's own 400), never reaches Gunicorn or Django,
    and that the site's own Host still works."""
    probe = uuid.uuid4().hex
    port = str(urlsplit(site.base_url).port).encode()
    lines = [f"GET /?probe={probe} HTTP/1.1".encode(), host_line.replace(b"{port}", port), b"Connection: close"]
    answer = raw_request(site, b"\r\n".join(line for line in lines if line) + b"\r\n\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]

    own_host = b"Host: " + urlsplit(site.base_url).netloc.encode()
    good = raw_request(site, b"GET /healthz HTTP/1.1\r\n" + own_host + b"\r\nConnection: close\r\n\r\n")
    assert good.startswith(b"HTTP/1.1 200 "), good[:200]
    logged = app_log.lines()
    assert not [line for line in logged if probe in line], "the request reached the app"
    assert not failures(logged)


def test_a_request_for_the_sites_own_host_with_its_port_is_served(site):
    """Tests that the Host the browser sends (name and published port) still gets the page."""
    response = requests.get(site.url("/"), timeout=10, verify=site.http.verify)
    assert response.status_code == 200 and "Live board" in response.text
