"""The rendered Nginx site sends long polls (/api/messages/wait) to Daphne, and waits for them longer
than the longest wait the app allows; a real Nginx in front of two upstreams that say who they are."""

from __future__ import annotations

import re
import shutil

import pytest
from listeners import free_port
from nginx_server import render_site, running_nginx, tagged_site_variables, tagged_upstreams
from test_nginx_site import Site

from board import views


@pytest.fixture(scope="module")
def upstreams():
    with tagged_upstreams("gunicorn", "daphne") as ports:
        yield ports


@pytest.fixture
def site(tmp_path, upstreams):
    """The site rendered with the defaults, Gunicorn and Daphne being the two tagged upstreams."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (apt-get install nginx)")
    port = free_port()
    conf_dir = tmp_path / "nginx"
    render_site(tagged_site_variables(conf_dir, port, upstreams, tmp_path))
    with running_nginx(tmp_path, conf_dir, port):
        site = Site(port, tmp_path)
        site.conf = (conf_dir / "conf.d" / "channels-stack.conf").read_text()
        yield site


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/messages/wait?after=7&timeout=25", "daphne"),
        ("/api/messages?after=7", "gunicorn"),
        ("/api/messages/waiting", "gunicorn"),
        ("/api/jobs/1", "gunicorn"),
    ],
)
def test_long_poll_goes_to_daphne_and_the_rest_of_the_api_to_gunicorn(site, path, upstream):
    """Tests that Nginx sends exactly /api/messages/wait (query kept) to the Daphne upstream."""
    status, echoed = site.get(path)
    assert status == 200
    assert echoed == {"upstream": upstream, "path": path}


def long_poll_location(conf: str) -> str:
    match = re.search(r"location = /api/messages/wait \{(.*?)\n    \}", conf, re.S)
    assert match, "no location = /api/messages/wait in the rendered site"
    return match.group(1)


def test_nginx_waits_for_a_long_poll_longer_than_the_longest_wait_and_does_not_buffer_it(site):
    """Tests that the long poll's proxy_read_timeout is above the app's largest `timeout` (a request
    that waits its full time is not cut with a 504), its answer is not buffered, and it is rate limited
    like the API."""
    location = long_poll_location(site.conf)
    (timeout,) = re.findall(r"proxy_read_timeout (\d+)s;", location)
    assert int(timeout) > views.LONGPOLL_MAX_TIMEOUT
    assert "proxy_buffering off;" in location
    assert "limit_req zone=channels_stack_api " in location
