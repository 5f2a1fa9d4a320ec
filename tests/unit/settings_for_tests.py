"""Django settings for the unit tier: production settings with a test secret and a private Redis.

The Redis port is chosen here, at import, because the channel layer reads REDIS_URL from
settings; the `redis_server` fixture starts redis-server on it.
"""

import os
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REDIS_PORT = int(os.environ.setdefault("UNIT_REDIS_PORT", str(free_port())))
os.environ.setdefault("DJANGO_SECRET_KEY", "unit-tests-only-" + "k3y" * 20)
os.environ.setdefault("DJANGO_HTTPS", "0")
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"

from config.settings import *  # noqa: E402,F403

# Collected (hashed) static files exist only after collectstatic; templates render plain names here.
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
JOB_STEP_SECONDS = 0.01
