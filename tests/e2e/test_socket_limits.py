"""Abuse limits on sockets through Nginx, on each target (deploy/defaults.yml: daphne_ws_post_burst,
daphne_ws_post_rate, daphne_ws_max_message_size): a socket posting over its rate gets a rate-limit
error frame and stays open; a message over the size limit closes that socket with 1009; other
sockets and the server stay healthy; a client posting within the rate is never limited."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from .stack import read_until_ready, receive_json


def post(ws, text: str) -> dict:
    """Send a post frame; the socket's answer (its own message coming back, or an error)."""
    ws.send(json.dumps({"type": "post", "text": text}))
    while True:
        frame = receive_json(ws, 10)
        # Another client's message may arrive first; the answer is the error or this text.
        if frame["type"] == "error" or frame.get("text") == text:
            return frame


def frames_until_closed(ws) -> None:
    """Read frames until the socket closes (raises ConnectionClosed), at most 10 s for each."""
    while True:
        receive_json(ws, 10)


def answers_to(ws, texts: list[str]) -> list[dict]:
    """Send every post at once, then read one answer per post (its message back, or an error), in order."""
    for text in texts:
        ws.send(json.dumps({"type": "post", "text": text}))
    pending, answers = set(texts), []
    while len(answers) < len(texts):
        frame = receive_json(ws, 10)
        if frame["type"] == "error":
            answers.append(frame)
        elif frame.get("text") in pending:  # not another client's message
            pending.discard(frame["text"])
            answers.append(frame)
    return answers


def test_posts_over_a_sockets_rate_get_an_error_frame_and_the_socket_stays_open(target, site):
    """Tests that posts sent at once past the burst are refused with a rate-limit error frame (at most
    the burst, plus what the rate refilled meanwhile, get through), that a second socket posts
    meanwhile, and that the limited socket posts again after retry_after."""
    burst, rate = target.variables["daphne_ws_post_burst"], target.variables["daphne_ws_post_rate"]
    tag = uuid.uuid4().hex[:8]
    with site.websocket("/ws/board/") as flooder, site.websocket("/ws/board/") as other:
        # Stored before the flood: the check below reads what came after (not the oldest 200 messages).
        before = read_until_ready(flooder)["last_id"]
        read_until_ready(other)
        started = time.monotonic()
        answers = answers_to(flooder, [f"{tag} flood {n}" for n in range(3 * burst)])
        elapsed = time.monotonic() - started
        accepted = [a for a in answers if a["type"] == "message"]
        refused = [a for a in answers if a["type"] == "error"]
        # The error frames come straight back, the accepted posts through the channel layer: the order of
        # the answers is not the order of the posts. The first `burst` posts are always accepted.
        assert {f"{tag} flood {n}" for n in range(burst)} <= {a["text"] for a in accepted}, answers
        assert refused and burst <= len(accepted) <= burst + int(elapsed * rate) + 1, (len(accepted), elapsed)
        assert refused[0]["error"].startswith(f"rate limited: at most {burst} posts at once"), refused[0]
        assert post(other, f"{tag} other")["type"] == "message"
        time.sleep(refused[0]["retry_after"] * 1.5)
        assert post(flooder, f"{tag} after the wait")["type"] == "message"
    stored = {m["text"] for m in site.get(f"/api/messages?limit=200&after={before}").json()["messages"]}
    assert {a["text"] for a in accepted} <= stored
    assert len({f"{tag} flood {n}" for n in range(3 * burst)} & stored) == len(accepted)
    assert site.healthy()


def test_a_message_over_the_size_limit_closes_its_socket_with_1009(target, site):
    """Tests that a message over daphne_ws_max_message_size closes that socket with 1009 "message too
    big" through Nginx, while another socket keeps posting and the site stays healthy."""
    size = target.variables["daphne_ws_max_message_size"]
    with site.websocket("/ws/board/") as big, site.websocket("/ws/board/") as other:
        read_until_ready(big)
        read_until_ready(other)
        big.send(json.dumps({"type": "post", "text": "x" * size}))
        with pytest.raises(ConnectionClosed) as closed:
            frames_until_closed(big)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
        assert post(other, f"after a big one {uuid.uuid4().hex[:8]}")["type"] == "message"
    assert site.healthy()


def test_a_client_posting_within_the_rate_is_never_limited(target, site):
    """Tests that more posts than the burst, sent no faster than daphne_ws_post_rate, all go through."""
    burst, rate = target.variables["daphne_ws_post_burst"], target.variables["daphne_ws_post_rate"]
    tag = uuid.uuid4().hex[:8]
    with site.websocket("/ws/board/") as ws:
        read_until_ready(ws)
        for n in range(burst + 2):
            assert post(ws, f"{tag} steady {n}")["type"] == "message"
            time.sleep(1.1 / rate)
