"""Tests that the project variables (issue 13, README "Use it for your project") reach the rendered
configs of both targets, are checked for compose, and that the deploy files never name the example."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_deploy_configs import supervisor_config

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]
EXAMPLE_VARS = REPO / "examples" / "chat" / "deploy-vars.yml"
_spec = importlib.util.spec_from_file_location("compose_vars", REPO / "docker" / "vars.py")
compose_vars = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compose_vars)

# What would name the example: its folder, its Python packages, its worker channel, its health paths.
EXAMPLE_NAMES = re.compile(r"examples/|\bchat(site)?\b|chat-archive|/status\b", re.IGNORECASE)


def tracked_files(*folders: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", *folders], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split()]


def test_no_file_under_deploy_or_the_roles_names_the_example():
    """Tests that deploy/ and ansible/roles/ hold nothing of the chat example: it is deployed by its vars file alone."""
    files = tracked_files("deploy", "ansible/roles")
    assert files, "git ls-files found no deploy files"
    naming = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if EXAMPLE_NAMES.search(line)
    ]
    assert not naming, "these lines name the example:\n" + "\n".join(naming)


def test_supervisor_runs_one_program_group_per_worker_channel_with_its_process_count(tmp_path):
    """Tests that each worker_channels entry becomes a group of `processes` runworker processes of its channel."""
    channels = '[{"channel": "thumbs", "processes": 3}, {"channel": "mail", "processes": 1, "program": "mailer"}]'
    options = supervisor_config(tmp_path, f"worker_channels={channels}")
    groups = {g.name: g.process_configs for g in options.process_group_configs}
    assert [p.name for p in groups["worker-thumbs"]] == ["worker-thumbs-0", "worker-thumbs-1", "worker-thumbs-2"]
    assert [p.name for p in groups["mailer"]] == ["mailer-0"]
    assert groups["worker-thumbs"][0].command.endswith("manage.py runworker thumbs")
    assert groups["mailer"][0].command.endswith("manage.py runworker mail")
    assert "worker" not in groups


def test_no_worker_channels_means_no_worker_programs(tmp_path):
    """Tests that an empty worker_channels leaves only Gunicorn, Daphne and the fatal-retry listener."""
    options = supervisor_config(tmp_path, "worker_channels=[]")
    assert sorted(g.name for g in options.process_group_configs) == ["daphne", "fatal-retry", "gunicorn"]


def test_programs_get_the_projects_applications_settings_and_extra_environment(tmp_path):
    """Tests that Gunicorn and Daphne serve the configured WSGI/ASGI paths, and every program gets
    DJANGO_SETTINGS_MODULE and app_extra_environment."""
    options = supervisor_config(
        tmp_path,
        "app_wsgi_application=site.wsgi:app",
        "app_asgi_application=site.asgi:app",
        "app_settings_module=site.settings",
        'app_extra_environment={"FEATURE": "on", "LEVEL": "2"}',
    )
    programs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    assert programs["gunicorn"].command.endswith(" site.wsgi:app")
    assert programs["daphne-8100"].command.endswith(" site.asgi:app")
    for name in ("gunicorn", "daphne-8100", "worker-0"):
        environment = programs[name].environment
        assert environment["DJANGO_SETTINGS_MODULE"] == "site.settings", name
        assert (environment["FEATURE"], environment["LEVEL"]) == ("on", "2"), name
    assert programs["fatal-retry"].directory == "/srv/channels-stack/tools"


def test_nginx_routes_the_configured_health_paths(tmp_path):
    """Tests that the site's health locations follow app_health_path and app_ws_health_path."""
    subprocess.run([*RENDER, "--root", str(tmp_path), "--only", "nginx/", "--vars", str(EXAMPLE_VARS)], check=True)
    site = (tmp_path / "etc/nginx/conf.d/channels-stack.conf").read_text()
    assert "location = /status {" in site and "location = /ws/status {" in site
    assert "healthz" not in re.sub(r"#.*", "", site)


def test_render_get_prints_one_resolved_variable_and_refuses_lists():
    """Tests that render.py --get prints a scalar (what docker/up.sh builds with) and refuses a list."""
    got = subprocess.run(
        [*RENDER, "--vars", str(EXAMPLE_VARS), "--get", "app_project_dir"], capture_output=True, text=True
    )
    assert (got.returncode, got.stdout) == (0, "examples/chat\n")
    refused = subprocess.run([*RENDER, "--get", "worker_channels"], capture_output=True, text=True)
    assert refused.returncode == 2 and "not a scalar" in refused.stderr


def test_the_example_vars_file_passes_the_compose_check():
    """Tests that examples/chat/deploy-vars.yml passes docker/vars.py (what `make up VARS=...` runs)."""
    assert compose_vars.check(EXAMPLE_VARS) == yaml.safe_load(EXAMPLE_VARS.read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worker_channels: [jobs]\n", "worker_channels[0]: expected a mapping"),
        ("worker_channels: [{channel: a, processes: 0}]\n", "processes must be a whole number, 1 or more"),
        ("worker_channels: [{processes: 1}]\n", "channel must be a channel name"),
        ("app_project_dir: no/such/dir\n", "not a path inside the repository"),
        ("app_requirements: ../requirements.txt\n", "not a path inside the repository"),
        ("app_ws_health_path: /health\n", "must be a path under /ws/"),
        ("app_health_path: health\n", "must be a path starting with /"),
        ("app_tools_dir: /opt/tools\n", "the compose stack cannot change it"),
        ("app_extra_environment: {RATE: 50%}\n", "app_extra_environment: RATE='50%'"),
        ("app_extra_environment: {bad-name: x}\n", "app_extra_environment: bad-name='x'"),
    ],
)
def test_bad_project_variables_are_refused_for_compose_with_the_reason(tmp_path, text, message):
    """Tests that docker/vars.py refuses malformed worker channels, project paths and health paths."""
    path = tmp_path / "vars.yml"
    path.write_text(text)
    with pytest.raises(compose_vars.VarsError) as raised:
        compose_vars.check(path)
    assert message in str(raised.value)
