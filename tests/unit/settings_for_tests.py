"""Django settings for the unit tier: production settings with a test secret, a private Redis and database.

The Redis port is chosen here, at import, because the channel layer reads REDIS_URL from
settings; the `redis_server` fixture starts redis-server on it, from the rendered deploy/redis
templates: the app logs in as the ACL user the targets give it (redis_app_user), so every unit test
runs with only the commands that user may run.
"""

import os
import socket
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REDIS_PORT = int(os.environ.setdefault("UNIT_REDIS_PORT", str(free_port())))
# The throwaway PostgreSQL cluster (postgresql_server.py) listens here; the tests that need
# PostgreSQL use it whatever the engine, and UNIT_DATABASE=postgresql points the app's own
# database at it too (make test-unit runs the tests marked `postgresql` that way).
POSTGRES_PORT = int(os.environ.setdefault("UNIT_POSTGRES_PORT", str(free_port())))
POSTGRES_PASSWORD = "unit-tests-only-" + "pg" * 8  # noqa: S105 (a throwaway cluster on loopback)
UNIT_DATABASE = os.environ.get("UNIT_DATABASE", "sqlite")
if UNIT_DATABASE == "postgresql":
    os.environ["DATABASE_URL"] = f"postgres://channels:{POSTGRES_PASSWORD}@127.0.0.1:{POSTGRES_PORT}/channels"
elif UNIT_DATABASE == "sqlite":
    os.environ.pop("DATABASE_URL", None)
else:
    raise ValueError(f"UNIT_DATABASE={UNIT_DATABASE!r}: expected sqlite or postgresql")
os.environ.setdefault("DJANGO_SECRET_KEY", "unit-tests-only-" + "k3y" * 20)
os.environ.setdefault("DJANGO_HTTPS", "0")
REDIS_APP_USER = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "defaults.yml").read_text())[
    "redis_app_user"
]
REDIS_APP_PASSWORD = "unit-tests-only-redis"  # noqa: S105 (the unit tier's own redis-server)
os.environ["REDIS_URL"] = f"redis://{REDIS_APP_USER}:{REDIS_APP_PASSWORD}@127.0.0.1:{REDIS_PORT}/0"

from config.settings import *  # noqa: E402,F403

# Collected (hashed) static files exist only after collectstatic; templates render plain names here.
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
JOB_STEP_SECONDS = 0.01
if UNIT_DATABASE == "postgresql":
    # Persistent connections stay open in asgiref's worker threads after a test, and PostgreSQL
    # refuses to drop pytest-django's test database while they do; production keeps them (settings).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
