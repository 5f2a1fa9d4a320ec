"""Bad input through Nginx is refused with the right answer, and leaves the stack healthy."""

import json

import pytest
import requests
from websockets.exceptions import InvalidStatus

# Over Nginx's client_max_body_size (16k in deploy/defaults.yml) and under Django's own limit (64 KiB),
# so it is Nginx that refuses it.
OVERSIZED_TEXT = "x" * 32 * 1024


def post_oversized_body(site):
    return site.post("/api/messages", json.dumps({"text": OVERSIZED_TEXT})).status_code


def post_invalid_json(site):
    return site.post("/api/messages", "{not json").status_code


def post_blank_text(site):
    return site.post_json("/api/messages", {"text": "   "}).status_code


def post_text_of_wrong_type(site):
    return site.post_json("/api/messages", {"text": ["a", "list"]}).status_code


def post_job_with_too_many_steps(site):
    return site.post_json("/api/jobs", {"steps": 51}).status_code


def post_job_with_steps_as_text(site):
    return site.post_json("/api/jobs", {"steps": "5"}).status_code


def post_without_csrf_token(site):
    fresh = requests.post(site.url("/api/messages"), json={"text": "no token"}, timeout=10, verify=site.http.verify)
    return fresh.status_code


def post_with_cookie_but_no_csrf_header(site):
    return site.post("/api/messages", json.dumps({"text": "no header"}), csrf=False).status_code


def open_socket_from_foreign_origin(site):
    try:
        site.websocket("/ws/board/", origin="http://evil.example").close()
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


def get_with_unknown_host(site):
    """Nginx's default server closes the connection without an answer (444): no status at all."""
    try:
        return requests.get(
            site.url("/"), headers={"Host": "evil.example"}, timeout=10, verify=site.http.verify
        ).status_code
    except requests.ConnectionError:
        return None


@pytest.mark.parametrize(
    ("send", "expected_status"),
    [
        pytest.param(post_oversized_body, 413, id="body-over-size-limit-413"),
        pytest.param(post_invalid_json, 400, id="invalid-json-400"),
        pytest.param(post_blank_text, 400, id="blank-text-400"),
        pytest.param(post_text_of_wrong_type, 400, id="text-not-a-string-400"),
        pytest.param(post_job_with_too_many_steps, 400, id="job-steps-out-of-range-400"),
        pytest.param(post_job_with_steps_as_text, 400, id="job-steps-not-an-integer-400"),
        pytest.param(post_without_csrf_token, 403, id="no-csrf-cookie-nor-token-403"),
        pytest.param(post_with_cookie_but_no_csrf_header, 403, id="csrf-cookie-without-token-403"),
        pytest.param(open_socket_from_foreign_origin, 403, id="websocket-foreign-origin-403"),
        pytest.param(get_with_unknown_host, None, id="unknown-host-dropped"),
    ],
)
def test_bad_input_is_refused_and_the_stack_stays_healthy(site, send, expected_status):
    """Tests that each kind of bad request gets its refusal and the stack answers its health probes after."""
    assert send(site) == expected_status
    assert site.get("/healthz").json()["status"] == "ok"
    assert site.get("/ws/healthz").json()["status"] == "ok"
    # A good request still works after the bad one.
    assert site.post_message("still working after bad input")["id"] > 0
