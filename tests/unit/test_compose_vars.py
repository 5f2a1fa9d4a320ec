"""Tests that `make up VARS=file` variables are checked (docker/vars.py) and reach the rendered configs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compose_vars", REPO / "docker" / "vars.py")
compose_vars = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compose_vars)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vars.yml"
    path.write_text(text)
    return path


def test_known_variables_are_accepted(tmp_path):
    """Tests that variables of deploy/defaults.yml with values of the right kind pass."""
    path = write(tmp_path, "nginx_ws_rate: 500r/s\ngunicorn_workers: 5\nnginx_server_names: [a.example]\n")
    assert compose_vars.check(path) == {
        "nginx_ws_rate": "500r/s",
        "gunicorn_workers": 5,
        "nginx_server_names": ["a.example"],
    }


def test_an_empty_file_is_no_variables(tmp_path):
    """Tests that an empty file means no variables, not an error."""
    assert compose_vars.check(write(tmp_path, "# nothing yet\n")) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [\n", "not valid YAML"),
        ("- nginx_ws_rate\n", "expected a mapping"),
        ("nginx_ws_brust: 5\n", "unknown variable 'nginx_ws_brust' (did you mean nginx_ws_burst?)"),
        ("gunicorn_workers: many\n", "gunicorn_workers: expected a number"),
        ("nginx_server_names: a.example\n", "nginx_server_names: expected a list"),
        ("nginx_listen_port: 81\n", "nginx_listen_port: the compose stack cannot change it"),
        ("app_redis_host: 10.0.0.5\n", "app_redis_host: the compose stack cannot change it"),
        ("app_data_dir: /data\n", "app_data_dir: the compose stack cannot change it"),
    ],
)
def test_bad_variables_are_refused_with_the_reason(tmp_path, text, message):
    """Tests that bad YAML, a non-mapping, unknown names, wrong kinds and compose-fixed values are refused."""
    with pytest.raises(compose_vars.VarsError) as raised:
        compose_vars.check(write(tmp_path, text))
    assert message in str(raised.value)


def test_every_problem_is_named_at_once(tmp_path):
    """Tests that all problems of a file are reported together, not one per run."""
    with pytest.raises(compose_vars.VarsError) as raised:
        compose_vars.check(write(tmp_path, "nope: 1\ngunicorn_workers: x\n"))
    assert "nope" in str(raised.value) and "gunicorn_workers" in str(raised.value)


def test_a_compose_fixed_variable_at_its_compose_value_is_fine(tmp_path):
    """Tests that restating the value compose already uses is not refused."""
    assert compose_vars.check(write(tmp_path, "daphne_processes: 2\napp_bind_host: 0.0.0.0\n"))


def test_process_counts_and_app_ports_may_change(tmp_path):
    """Tests that daphne_processes and the app's ports pass: the healthchecks and REDIS_URL read the rendered values."""
    text = "daphne_processes: 4\ndaphne_base_port: 9100\ngunicorn_port: 9000\nredis_port: 6390\napp_redis_port: 6390\n"
    assert compose_vars.check(write(tmp_path, text))["daphne_processes"] == 4


def test_the_e2e_tiers_variables_are_valid_vars():
    """Tests that docker/e2e-vars.yml (make test-compose, make test-vm) passes the same check as a user's VARS."""
    assert compose_vars.check(REPO / "docker" / "e2e-vars.yml") == {"daphne_processes": 3}


def test_missing_file_fails_before_anything_is_written(tmp_path):
    """Tests that a missing VARS file exits 2 with its name and writes no staged file."""
    out = tmp_path / "staged.yml"
    result = subprocess.run(
        [sys.executable, str(REPO / "docker" / "vars.py"), str(tmp_path / "nope.yml"), str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "nope.yml: no such file" in result.stderr
    assert not out.exists()


def test_staged_variables_reach_the_rendered_nginx_site(tmp_path):
    """Tests that a staged file, rendered over docker/deploy-vars.yml as the Dockerfile does, wins."""
    staged = tmp_path / "staged.yml"
    source = write(tmp_path, "nginx_ws_rate: 777r/s\n")
    subprocess.run([sys.executable, str(REPO / "docker" / "vars.py"), str(source), str(staged)], check=True)
    root = tmp_path / "root"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "deploy" / "render.py"),
            "--root",
            str(root),
            "--only",
            "nginx/",
            "--vars",
            str(REPO / "docker" / "deploy-vars.yml"),
            "--vars",
            str(staged),
        ],
        check=True,
    )
    site = (root / "etc" / "nginx" / "conf.d" / "channels-stack.conf").read_text()
    assert "rate=777r/s" in site


def test_the_bench_profile_is_valid_vars():
    """Tests that bench/profile.yml passes the same check as a user's VARS file."""
    assert compose_vars.check(REPO / "bench" / "profile.yml")


def test_compose_build_arg_fallbacks_are_the_deploy_defaults():
    """Tests that docker-compose.yml's APP_PROJECT_DIR and APP_REQUIREMENTS fallbacks (for compose run by
    hand; docker/up.sh sets both from the variables) are deploy/defaults.yml's, for every image."""
    defaults = yaml.safe_load((REPO / "deploy" / "defaults.yml").read_text())
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    expected = {
        "APP_PROJECT_DIR": f"${{APP_PROJECT_DIR:-{defaults['app_project_dir']}}}",
        "APP_REQUIREMENTS": f"${{APP_REQUIREMENTS:-{defaults['app_requirements']}}}",
    }
    for name, service in services.items():
        args = service["build"]["args"]
        assert {key: args.get(key) for key in expected} == expected, name
