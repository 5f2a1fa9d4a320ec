#!/usr/bin/env python3
"""Healthcheck of the app container: every URL given answers 200 with {"status": "ok"}.

docker-compose.yml passes Gunicorn's /healthz and each Daphne process's /ws/healthz, so the check
covers the WSGI and the ASGI side (and, through their checks, the database and Redis).
Exit 0 when all are healthy, 1 otherwise with one line per failure (shown by `docker inspect`).
"""

import json
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3


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
        print("usage: channels-stack-healthcheck URL...", file=sys.stderr)
        return 2
    problems = [p for p in map(problem, urls) if p]
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
