"""A target's site through its Nginx, as a browser uses it: HTTP with the CSRF cookie, and WebSockets."""

from __future__ import annotations

import json

import requests
from websockets.sync.client import ClientConnection, connect

from .tls import ca_file, client_context

HTTP_TIMEOUT = 10
WS_OPEN_TIMEOUT = 10
HEALTH_PATHS = ("/healthz", "/ws/healthz")


def unhealthy_probes(
    base_url: str, timeout: float = HTTP_TIMEOUT, paths: tuple[str, ...] = HEALTH_PATHS
) -> dict[str, str]:
    """The health probes through Nginx (`paths`: app_health_path and app_ws_health_path, by default the
    board's /healthz and /ws/healthz) that do not answer 200 "ok", each with what it answered instead
    (status and body, or the error); {} when both tiers are healthy. `timeout` in seconds per probe."""
    verify = ca_file() if base_url.startswith("https://") else True
    failing = {}
    for path in paths:
        try:
            response = requests.get(base_url + path, timeout=timeout, verify=verify)
        except requests.RequestException as exc:
            failing[path] = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code != 200 or response.json().get("status") != "ok":
            failing[path] = f"{response.status_code} {response.text[:200]}"
    return failing


def healthy(base_url: str, timeout: float = HTTP_TIMEOUT, paths: tuple[str, ...] = HEALTH_PATHS) -> bool:
    """True when both tiers (Gunicorn's and Daphne's health paths, app_health_path and
    app_ws_health_path, by default the board's) answer 200 "ok" through Nginx."""
    return not unhealthy_probes(base_url, timeout, paths)


class Site:
    """The site of a target (anything with base_url, ws_url and host_origin): a session with the CSRF
    cookie and headers a page of the site would send, trusting the local CA over HTTPS. Raises
    requests' errors when / does not answer."""

    def __init__(self, target):
        self.target = target
        self.base_url = target.base_url
        self.http = requests.Session()
        if self.base_url.startswith("https://"):
            self.http.verify = ca_file()
            # Else REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment would win over the session's
            # verify (requests' merge_environment_settings); the site is on this machine, no proxy.
            self.http.trust_env = False
        response = self.http.get(self.base_url + "/", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        self.csrf_token = self.http.cookies["csrftoken"]

    def url(self, path: str) -> str:
        return self.base_url + path

    def csrf_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.csrf_token, "Origin": self.base_url, "Referer": self.base_url + "/"}

    def post(self, path: str, body: bytes | str, *, csrf: bool = True, **headers: str) -> requests.Response:
        all_headers = {"Content-Type": "application/json", **(self.csrf_headers() if csrf else {}), **headers}
        return self.http.post(self.url(path), data=body, headers=all_headers, timeout=HTTP_TIMEOUT)

    def post_json(self, path: str, data: dict) -> requests.Response:
        return self.post(path, json.dumps(data))

    def post_message(self, text: str) -> dict:
        """POST /api/messages; the stored message, AssertionError unless 201."""
        response = self.post_json("/api/messages", {"text": text})
        assert response.status_code == 201, response.text
        return response.json()

    def post_job(self, steps: int) -> dict:
        """POST /api/jobs; the queued job, AssertionError unless 202."""
        response = self.post_json("/api/jobs", {"steps": steps})
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.url(path), timeout=HTTP_TIMEOUT, **kwargs)

    def websocket(self, path: str, origin: str | None = None, headers: dict | None = None) -> ClientConnection:
        return connect(
            self.target.ws_url + path,
            origin=origin or self.target.host_origin,
            additional_headers=headers,
            open_timeout=WS_OPEN_TIMEOUT,
            close_timeout=2,
            ssl=client_context() if self.target.ws_url.startswith("wss://") else None,
        )

    def healthy(self) -> bool:
        """True when both tiers answer their health probe through Nginx."""
        return self.target.healthy()

    def unhealthy_probes(self) -> dict[str, str]:
        """The failing health probes with their answers (Target.unhealthy_probes); {} when healthy."""
        return self.target.unhealthy_probes()
