"""config.redis_hosts: REDIS_URL alone, or the Sentinels that know the primary (issue 11). The failover
itself, against real Sentinels, is proven by the cluster tier (tests/cluster)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.redis_hosts import parse_sentinels, redis_hosts, sync_client

URL = "redis://channels-stack:p%40ss@10.0.0.13:6379/2"


def test_parse_sentinels_reads_a_comma_list_of_host_port():
    """Tests that REDIS_SENTINELS "h:p,h:p" becomes (host, port) pairs, and "" none."""
    assert parse_sentinels("10.0.0.13:26379, 10.0.0.14:26379,") == [("10.0.0.13", 26379), ("10.0.0.14", 26379)]
    assert parse_sentinels("") == []


@pytest.mark.parametrize("value", ["10.0.0.13", "10.0.0.13:port", ":26379", "10.0.0.13:70000"])
def test_parse_sentinels_refuses_an_entry_that_is_not_host_port(value):
    """Tests that a bad REDIS_SENTINELS entry stops the app with an error naming it."""
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS"):
        parse_sentinels(value)


def test_without_sentinels_the_layers_use_redis_url_as_it_is():
    """Tests that without Sentinels the channel layers get REDIS_URL and the timeouts, as before."""
    hosts = redis_hosts(URL, [], "", "", connect_timeout=2, timeout=15)
    assert hosts == [{"address": URL, "socket_connect_timeout": 2, "socket_timeout": 15}]


def test_with_sentinels_the_layers_get_the_sentinel_entry_with_the_url_credentials():
    """Tests that with Sentinels the entry names them and the primary, with REDIS_URL's user, password, db."""
    [host] = redis_hosts(URL, [("10.0.0.13", 26379)], "channels-stack", "s3", connect_timeout=2, timeout=15)
    assert host["sentinels"] == [("10.0.0.13", 26379)]
    assert host["master_name"] == "channels-stack"
    assert host["sentinel_kwargs"]["password"] == "s3"  # noqa: S105 (a test value)
    assert (host["username"], host["password"], host["db"]) == ("channels-stack", "p@ss", 2)
    assert "address" not in host


def test_sentinels_without_a_primary_name_are_refused():
    """Tests that REDIS_SENTINELS without REDIS_SENTINEL_MASTER stops the app with an error."""
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINEL_MASTER"):
        redis_hosts(URL, [("10.0.0.13", 26379)], "", "", connect_timeout=2, timeout=15)


def test_health_client_of_a_sentinel_entry_asks_the_sentinels_for_the_primary():
    """Tests that the /healthz client of a Sentinel entry is a Sentinel-managed client of that primary."""
    [host] = redis_hosts(URL, [("127.0.0.1", 1)], "channels-stack", "", connect_timeout=1, timeout=1)
    client = sync_client(host, timeout=1)
    pool = client.connection_pool
    assert pool.service_name == "channels-stack"
    assert pool.connection_kwargs["username"] == "channels-stack"
