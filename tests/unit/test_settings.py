"""Production settings: refused misconfigurations, the deploy check, and SQLite's mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "app"
STRONG_KEY = "p7$Wq2!vL9#xR4&mZ8*cT1^bN6(yH3)jK5-fD0_sG+eA?uI<oP>"


def manage(*args: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "UNIT_"))}
    base.update({"APP_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}, **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=APP_DIR, env=base, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    """Tests that a missing DJANGO_SECRET_KEY stops the app with a message naming it."""
    result = manage("check", env={}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_wildcard_allowed_host(tmp_path):
    """Tests that ALLOWED_HOSTS=* is refused outside debug."""
    result = manage("check", env={"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_ALLOWED_HOSTS": "*"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "'*' is refused" in result.stderr


def test_a_malformed_boolean_setting_is_refused_with_its_name(tmp_path):
    """Tests that DJANGO_HTTPS=maybe is an error that names the variable."""
    result = manage("check", env={"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_HTTPS": "maybe"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DJANGO_HTTPS='maybe'" in result.stderr


def deploy_check(tmp_path: Path, https: str) -> subprocess.CompletedProcess:
    env = {"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_HTTPS": https}
    return manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)


def test_https_production_settings_pass_the_deploy_check_at_warning_level(tmp_path):
    """Tests that `check --deploy --fail-level WARNING` passes for the HTTPS production profile."""
    result = deploy_check(tmp_path, https="1")
    assert result.returncode == 0, result.stderr


def test_plain_http_settings_fail_the_deploy_check(tmp_path):
    """Tests that the gate can fail: without HTTPS the deploy check reports the insecure cookies."""
    result = deploy_check(tmp_path, https="0")
    assert result.returncode != 0
    assert "SESSION_COOKIE_SECURE" in result.stderr


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    """Tests that the shared SQLite file is in WAL mode and writers wait for the lock."""
    script = (
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "print(c.execute('PRAGMA journal_mode').fetchone()[0], c.execute('PRAGMA busy_timeout').fetchone()[0])"
    )
    result = manage("shell", "-v", "0", "-c", script, env={"DJANGO_SECRET_KEY": STRONG_KEY}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "20000"]
    assert (tmp_path / "db.sqlite3").exists()


@pytest.mark.parametrize("variable", ["JOB_LEASE_SECONDS", "DJANGO_HSTS_SECONDS"])
def test_a_non_numeric_number_setting_is_refused_with_its_name(tmp_path, variable):
    """Tests that a number setting given as text is an error naming the variable."""
    result = manage(
        "check", env={"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_HTTPS": "1", variable: "soon"}, tmp_path=tmp_path
    )
    assert result.returncode != 0
    assert f"{variable}='soon'" in result.stderr
