"""HTTPS end to end on each target (issue 12): what a client of the published ports sees (the redirect
from plain HTTP and what it spares, HSTS, secure cookies), and Django's own deployment check inside
the running app, with the environment its programs run with."""

from __future__ import annotations

import json
import shlex

import pytest
import requests
from harness.tls import verify


@pytest.fixture(autouse=True)
def _tls_only(target):
    if not target.tls:
        pytest.skip("the target serves plain HTTP (nginx_tls off)")


def test_plain_http_redirects_to_the_published_https_port(target):
    """Tests that a page asked for over plain HTTP is sent (301) to the same path on the HTTPS port
    published on this machine, which then serves it."""
    response = requests.get(target.http_url + "/api/messages?after=0", timeout=10, allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == target.base_url + "/api/messages?after=0"
    followed = requests.get(target.http_url + "/api/messages?after=0", timeout=10, verify=verify(target.base_url))
    assert followed.status_code == 200 and followed.url.startswith(target.base_url)


@pytest.mark.parametrize(("path", "interface"), [("/healthz", "wsgi"), ("/ws/healthz", "asgi")])
def test_health_probes_answer_over_plain_http(target, path, interface):
    """Tests that both health probes answer 200 over plain HTTP, unredirected (the compose healthchecks,
    load balancers)."""
    response = requests.get(target.http_url + path, timeout=10, allow_redirects=False)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["interface"]) == ("ok", interface)


def test_https_answers_carry_hsts_and_cookies_are_secure(target):
    """Tests that the page over HTTPS has exactly one HSTS header, with nginx_hsts_max_age, and that its
    CSRF cookie is Secure (DJANGO_HTTPS=1)."""
    response = requests.get(target.base_url + "/", timeout=10, verify=verify(target.base_url))
    hsts = response.raw.headers.getlist("Strict-Transport-Security")
    assert hsts == [f"max-age={target.variables['nginx_hsts_max_age']}; includeSubDomains"]
    cookie = next(c for c in response.cookies if c.name == "csrftoken")
    assert cookie.secure


# The programs' environment, read from the running Gunicorn (/proc/<pid>/environ), then Django's
# deployment check run with exactly that environment: what the app runs with, secrets included, and
# nothing of the shell's.
DEPLOY_CHECK = """
import json, subprocess, sys
raw = open("/proc/{pid}/environ", "rb").read().split(b"\\0")
env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
run = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                     env=env, capture_output=True, text=True)
print(json.dumps({{"rc": run.returncode, "output": run.stdout + run.stderr, "https": env.get("DJANGO_HTTPS")}}))
"""


def test_django_deploy_check_passes_at_warning_level_inside_the_running_app(target):
    """Tests that `manage.py check --deploy --fail-level WARNING` passes in the app host with the
    environment the running programs have (DJANGO_HTTPS=1): no warning at all."""
    pid = target.supervisor().status()["gunicorn"].pid
    script = DEPLOY_CHECK.format(pid=pid)
    command = f"cd {shlex.quote(target.variables['app_code_dir'])} && {target.python} -c {shlex.quote(script)}"
    result = target.run_as_app_user(f"sh -c {shlex.quote(command)}")
    assert result.rc == 0, result.stderr
    check = json.loads(result.stdout)
    assert check["https"] == "1"
    assert check["rc"] == 0, check["output"]
    assert "System check identified no issues" in check["output"], check["output"]
