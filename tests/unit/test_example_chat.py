"""Tests that the chat example (examples/chat) passes its own tests and Django's deploy checks, each in a
process of its own: its settings are not the board's, which this tier's Django is set up with."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat"


def run_in_example(*args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_", "APP_"))}
    return subprocess.run(
        [sys.executable, *args], cwd=EXAMPLE, env={**env, **environment}, capture_output=True, text=True, timeout=300
    )


def test_the_example_passes_its_own_tests(tmp_path):
    """Tests that the chat example's consumer, archive worker and views pass examples/chat/chat/tests.py."""
    result = run_in_example(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds=chatsite.settings", "chat/tests.py",
        DJANGO_DEBUG="1", DJANGO_HTTPS="0", APP_DATA_DIR=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_the_example_passes_djangos_deploy_checks(tmp_path):
    """Tests that `manage.py check --deploy --fail-level WARNING` passes with the stack's production environment."""
    result = run_in_example(
        "manage.py", "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_SECRET_KEY="k" * 20 + os.urandom(16).hex(), DJANGO_HSTS_SECONDS="31536000",
        APP_DATA_DIR=str(tmp_path), DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
