"""The postgresql role on the test host (testinfra): installed only when the host opts in, listening
on loopback only, pg_hba allowing the app's role by SCRAM password only, and the app connected.

`make test-vm` provisions SQLite (the single-host default); `make test-vm
VM_TEST_VARS=tests/vm/postgresql-vars.yml` provisions PostgreSQL on the same host.
"""

import pytest
from harness.deploy import vm_vars

DEPLOY = vm_vars()

ON_POSTGRESQL = DEPLOY.get("app_database", "sqlite") == "postgresql"
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="the host was provisioned with SQLite")
HBA = f"/etc/postgresql/{DEPLOY['postgresql_version']}/main/pg_hba.conf"


def psql(host, sql: str) -> str:
    """Run SQL as the postgres superuser over the local socket (peer); return the unaligned output."""
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {DEPLOY['postgresql_database']} -c {sql!r}")


def app_env(host) -> dict[str, str]:
    lines = host.file(DEPLOY["app_env_file"]).content_string.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.mark.skipif(ON_POSTGRESQL, reason="the host was provisioned with PostgreSQL")
def test_a_sqlite_host_runs_no_postgresql_and_the_app_uses_its_sqlite_file(host):
    """Tests that the single-host default installs no PostgreSQL and gives the app no DATABASE_URL."""
    assert not host.package(f"postgresql-{DEPLOY['postgresql_version']}").is_installed
    assert "DATABASE_URL" not in app_env(host)
    assert host.file(f"{DEPLOY['app_data_dir']}/db.sqlite3").exists


@postgresql_only
def test_postgresql_running_and_enabled(host):
    """Tests that the main cluster runs, and PostgreSQL starts at boot."""
    assert host.service(f"postgresql@{DEPLOY['postgresql_version']}-main").is_running
    assert host.service("postgresql").is_enabled


@postgresql_only
def test_postgresql_listens_on_loopback_only(host):
    """Tests that PostgreSQL's port is open on 127.0.0.1 and on no other address."""
    port = DEPLOY["postgresql_port"]
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{port}")]
    assert listening == [f"tcp://127.0.0.1:{port}"], listening


@postgresql_only
def test_pg_hba_lets_only_the_app_role_in_from_the_app_hosts_with_scram(host):
    """Tests that pg_hba.conf has one network rule that accepts: the app's role, to its database,
    from loopback, by scram-sha-256; everything else over the network is rejected."""
    rules = psql(host, "SELECT type, database, user_name, address, auth_method, error FROM pg_hba_file_rules")
    rows = [row.split("|") for row in rules.splitlines()]
    assert [row for row in rows if row[5]] == [], "pg_hba.conf has lines PostgreSQL cannot read"
    accepting = [row[:5] for row in rows if row[0] == "host" and row[4] != "reject"]
    db, user = DEPLOY["postgresql_database"], DEPLOY["postgresql_user"]
    assert accepting == [["host", f"{{{db}}}", f"{{{user}}}", "127.0.0.1", "scram-sha-256"]]
    assert host.file(HBA).user == "postgres" and host.file(HBA).mode == 0o640


@postgresql_only
def test_the_app_role_has_a_scram_password_and_no_special_rights(host):
    """Tests that the app's role stores a SCRAM verifier (never md5) and is not a superuser."""
    user = DEPLOY["postgresql_user"]
    # The names are deploy variables, not input.
    query = (
        f"SELECT rolsuper, rolcreatedb, rolcreaterole, left(rolpassword, 14) FROM pg_authid WHERE rolname = '{user}'"  # noqa: S608, E501
    )
    row = psql(host, query)
    assert row == "f|f|f|SCRAM-SHA-256$"


@postgresql_only
def test_a_wrong_password_is_refused(host):
    """Tests that the app's role with a wrong password cannot connect over TCP."""
    db, user, port = DEPLOY["postgresql_database"], DEPLOY["postgresql_user"], DEPLOY["postgresql_port"]
    url = f"postgresql://{user}:wrong@127.0.0.1:{port}/{db}"
    result = host.run(f"runuser -u nobody -- psql {url!r} -c 'SELECT 1'")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


@postgresql_only
def test_the_app_is_connected_to_postgresql_and_migrated(host):
    """Tests that the app's environment points at PostgreSQL, its migrations are recorded there, and
    its programs hold connections to the app's database as the app's role."""
    assert app_env(host)["DATABASE_URL"].startswith(f"postgres://{DEPLOY['postgresql_user']}:")
    assert int(psql(host, "SELECT count(*) FROM django_migrations WHERE app = 'board'")) >= 1
    # Gunicorn answers /healthz from the database (CONN_MAX_AGE keeps its connection open after).
    health = f"http://127.0.0.1:{DEPLOY['gunicorn_port']}/healthz"
    host.check_output(f"python3 -c 'import urllib.request; urllib.request.urlopen(\"{health}\")'")
    sessions = psql(
        host,
        f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{DEPLOY['postgresql_user']}'"  # noqa: S608
        f" AND datname = '{DEPLOY['postgresql_database']}' AND client_addr = '127.0.0.1'",
    )
    assert int(sessions) >= 1, "no app connection on the test host"
    assert not host.file(f"{DEPLOY['app_data_dir']}/db.sqlite3").exists
