"""Where the channel layers find Redis: one address (REDIS_URL), or the Sentinels that know the
current primary (REDIS_SENTINELS) — channels-redis' two kinds of `hosts` entry.

With Sentinels (several hosts, issue 11), the app never learns the primary's address by
configuration: each new connection asks a Sentinel for the primary of REDIS_SENTINEL_MASTER (redis-py's
SentinelConnectionPool, which channels-redis builds from a `{"sentinels", "master_name"}` entry), so
after a failover the next connection goes to the promoted replica. REDIS_URL then gives only the ACL
user, its password and the database number; its host and port are not used.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """ "host:port,host:port" -> [(host, port), ...]; [] for ""; ImproperlyConfigured naming a bad entry."""
    sentinels = []
    for entry in filter(None, (item.strip() for item in value.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"REDIS_SENTINELS: {entry!r} is not host:port")
        sentinels.append((host, int(port)))
    return sentinels


def redis_hosts(
    url: str,
    sentinels: list[tuple[str, int]],
    master: str,
    sentinel_password: str,
    *,
    connect_timeout: float,
    timeout: float,
) -> list[dict]:
    """channels-redis `hosts`: [{"address": url, ...}] without sentinels, else one Sentinel entry
    with url's user, password and database (seconds: connect_timeout, timeout for each read)."""
    if not sentinels:
        return [{"address": url, "socket_connect_timeout": connect_timeout, "socket_timeout": timeout}]
    if not master:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS")
    parts = urlsplit(url)
    return [
        {
            "sentinels": sentinels,
            "master_name": master,
            "sentinel_kwargs": {
                "password": sentinel_password or None,
                "socket_connect_timeout": connect_timeout,
                "socket_timeout": connect_timeout,
            },
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "db": int(parts.path.strip("/") or 0),
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": timeout,
        }
    ]


def sync_client(host: dict, timeout: float) -> redis.Redis:
    """A redis-py client of the primary that a `redis_hosts` entry names (the /healthz check)."""
    if "address" in host:
        return redis.Redis.from_url(host["address"], socket_connect_timeout=timeout, socket_timeout=timeout)
    sentinel = redis.sentinel.Sentinel(host["sentinels"], sentinel_kwargs=host["sentinel_kwargs"])
    return sentinel.master_for(
        host["master_name"],
        username=host["username"],
        password=host["password"],
        db=host["db"],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
