#!/usr/bin/env python3
"""Healthcheck of the app container: Gunicorn's health path (app_health_path, /healthz) and every
Daphne process's (app_ws_health_path, /ws/healthz) answer 200 with {"status": "ok"}, for the servers
deploy_mode runs (split: both; asgi: every Daphne process, at both paths, since Nginx sends both there;
wsgi: Gunicorn alone).

The ports come from the deploy variables the image was rendered with (DEPLOY_VARS, written by
deploy/render.py --write-vars at build time): gunicorn_port, and daphne_base_port + n for each of
daphne_processes, and the two health paths. So `make up VARS=...` may change them, and no port is repeated in
docker-compose.yml. URLs given as arguments are checked instead (by hand, or another layout).
The check covers the WSGI and the ASGI side and, through their checks, the database and Redis.
Exit 0 when all are healthy, 1 otherwise with one line per failure (shown by `docker inspect`).
"""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

TIMEOUT_SECONDS = 3
DEPLOY_VARS = Path("/etc/channels-stack/deploy-vars.yml")


def urls_from(variables: dict) -> list[str]:
    """Every app server's health URL, from the deploy variables."""
    # The programs bind app_bind_host; a wildcard address is reached on loopback from inside.
    host = variables["app_bind_host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (compared, not bound)
    mode = variables.get("deploy_mode", "split")
    daphnes = [variables["daphne_base_port"] + n for n in range(variables["daphne_processes"])]
    gunicorn = [f"http://{host}:{variables['gunicorn_port']}{variables['app_health_path']}"]
    daphne_paths = [variables["app_ws_health_path"]]
    if mode == "asgi":
        daphne_paths.append(variables["app_health_path"])
    daphne = [f"http://{host}:{port}{path}" for port in daphnes for path in daphne_paths]
    return {"split": gunicorn + daphne, "asgi": daphne, "wsgi": gunicorn}[mode]


def problem(url: str) -> str | None:
    """Return why url is unhealthy, or None when it answers 200 with status ok."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (fixed local URLs)
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if body.get("status") != "ok":
        return f"{url}: {body}"
    return None


def main(urls: list[str]) -> int:
    if not urls:
        try:
            urls = urls_from(yaml.safe_load(DEPLOY_VARS.read_text()))
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            print(f"channels-stack-healthcheck: no URLs given and none from {DEPLOY_VARS}: {exc}", file=sys.stderr)
            return 2
    problems = [p for p in map(problem, urls) if p]
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
