"""Compose staging scales out (issue 11, item 5): `docker compose up --scale app=3` (or `make up
APP_REPLICAS=3`) runs three app containers behind the one Nginx, which finds them by itself
(docker/nginx/entrypoint.sh reloads it when the addresses behind `app` change), and back to one."""

import contextlib
import re
import uuid

import pytest

from .stack import NginxLog, TimedOut, frames_until_quiet, read_until_ready, wait_until

REPLICAS = 3
# The watcher resolves every 3 s; a reload and the new containers' first requests come on top.
FOUND_SECONDS = 30
MAX_SOCKETS = 30
UPSTREAM = re.compile(r"upstream=([0-9.]+):[0-9]+")


@pytest.fixture(scope="module")
def scaled_app(target):
    """The compose target with REPLICAS app containers (their edge addresses), for this file's tests
    (one scale-up for both); scaled back to one after."""
    if not target.compose:
        pytest.skip(f"{target.name}: compose stack only")
    ids = target.scale("app", REPLICAS)
    try:
        yield target, {target.address(container, "edge") for container in ids}
    finally:
        target.scale("app", 1)


def upstreams_of(lines: list[str]) -> set[str]:
    """The upstream addresses (no port) of the access log lines."""
    return {match.group(1) for line in lines for match in UPSTREAM.finditer(line)}


def test_every_app_container_serves_http_and_websockets_and_shares_every_message(scaled_app, site):
    """Tests that with three app containers Nginx sends HTTP requests and new sockets to each of them
    without an edit, and a message posted through any reaches sockets held by all three once, in order."""
    target, replicas = scaled_app
    log = NginxLog(target)

    def http_reaches_every_replica() -> set[str] | None:
        log.mark()
        for _ in range(4 * REPLICAS):
            assert site.get("/api/messages").status_code == 200
        seen = upstreams_of(log.lines())
        return seen if seen == replicas else None

    wait_until(http_reaches_every_replica, FOUND_SECONDS, f"GETs answered by each of {sorted(replicas)}", interval=1)

    with contextlib.ExitStack() as stack:
        sockets: list[tuple[str, object]] = []

        def sockets_on_every_replica() -> bool:
            if len(sockets) >= MAX_SOCKETS:
                raise TimedOut(f"{MAX_SOCKETS} sockets, served by {sorted({host for host, _ in sockets})} only")
            socket = stack.enter_context(site.websocket("/ws/board/"))
            sockets.append((read_until_ready(socket)["served_by"].rpartition(":")[0], socket))
            return {host for host, _ in sockets} == replicas

        wait_until(sockets_on_every_replica, FOUND_SECONDS, "sockets on every app container", interval=0.2)

        tag = uuid.uuid4().hex[:8]
        posted = [site.post_message(f"scaled {tag} #{n}") for n in range(3)]
        expected = [(message["id"], message["text"]) for message in posted]
        wrong = {}
        for host, socket in sockets:
            frames = frames_until_quiet(socket, quiet=1.5, limit=10)
            got = [(frame["id"], frame["text"]) for frame in frames if frame["type"] == "message"]
            if got != expected:
                wrong[host] = got
        assert not wrong, f"every socket should get exactly {expected}; sockets on these containers got: {wrong}"


def test_scaled_back_to_one_nginx_drops_the_removed_containers_by_itself(scaled_app, site):
    """Tests that after scaling from three app containers back to one, every request is answered 200
    by the one left: Nginx stops sending to the removed ones without an edit."""
    target, _ = scaled_app
    (remaining,) = target.scale("app", 1)
    address = target.address(remaining, "edge")
    log = NginxLog(target)

    def only_the_one_left() -> bool:
        log.mark()
        statuses = [site.get("/api/messages").status_code for _ in range(6)]
        return statuses == [200] * 6 and upstreams_of(log.lines()) == {address}

    wait_until(only_the_one_left, FOUND_SECONDS, f"every GET answered 200 by {address} alone", interval=1)
