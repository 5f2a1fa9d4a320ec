"""deploy_mode (issue 14): what the templates, the compose healthcheck, the variables check and the
test harness make of split, asgi and wsgi. Nginx's routing is proven by a real Nginx in front of two
upstreams that say which one they are (Gunicorn's port and Daphne's)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from listeners import free_port
from nginx_server import render_site, running_nginx, tagged_site_variables, tagged_upstreams
from test_deploy_configs import nginx_check, supervisor_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness import deploy  # noqa: E402

MODES = ("split", "asgi", "wsgi")
DAPHNES = ["daphne-8100", "daphne-8101"]
WORKERS = ["worker-0", "worker-1"]


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("mode", "groups"),
    [
        (
            "split",
            {"gunicorn": ["gunicorn"], "daphne": ["daphne-8100", "daphne-8101"], "worker": ["worker-0", "worker-1"]},
        ),
        ("asgi", {"daphne": ["daphne-8100", "daphne-8101"], "worker": ["worker-0", "worker-1"]}),
        ("wsgi", {"gunicorn": ["gunicorn"], "worker": ["worker-0", "worker-1"]}),
    ],
)
def test_supervisor_runs_the_programs_of_each_mode_and_no_others(tmp_path, mode, groups):
    """Tests that split runs Gunicorn and Daphne, asgi no Gunicorn, wsgi no Daphne (and the listener in all)."""
    options = supervisor_config(tmp_path, f"deploy_mode={mode}")
    found = {group.name: [p.name for p in group.process_configs] for group in options.process_group_configs}
    assert found == {**groups, "fatal-retry": ["fatal-retry"]}


@pytest.mark.parametrize(
    ("mode", "worker_command"), [("split", "runworker jobs"), ("asgi", "runworker jobs"), ("wsgi", "pollworker jobs")]
)
def test_every_program_gets_deploy_mode_and_workers_poll_only_in_wsgi(tmp_path, mode, worker_command):
    """Tests that each program's environment says DEPLOY_MODE and wsgi's workers poll the database."""
    options = supervisor_config(tmp_path, f"deploy_mode={mode}")
    for group in options.process_group_configs:
        for program in group.process_configs:
            if group.name != "fatal-retry":
                assert program.environment["DEPLOY_MODE"] == mode, program.name
            if group.name == "worker":
                assert program.command.endswith(f"manage.py {worker_command}"), program.command


@pytest.mark.parametrize("mode", MODES)
def test_nginx_accepts_the_site_in_each_mode(tmp_path, mode):
    """Tests that `nginx -t` accepts the main config and the site (with TLS) rendered in each mode."""
    check, conf_dir = nginx_check(tmp_path, f"deploy_mode={mode}")
    assert check.returncode == 0, check.stderr
    site = (conf_dir / "conf.d" / "channels-stack.conf").read_text()
    assert ("upstream channels_stack_gunicorn" in site) == (mode != "asgi")
    assert ("upstream channels_stack_daphne" in site) == (mode != "wsgi")


@pytest.fixture(scope="module")
def upstreams():
    """Two upstreams on ports of their own: "gunicorn" and "daphne"; yields {name: port}."""
    with tagged_upstreams("gunicorn", "daphne") as ports:
        yield ports


# Path -> who answers it through Nginx in each mode: an upstream's name, or a status from Nginx itself.
ROUTES = {
    "split": {
        "/": "gunicorn",
        "/api/messages?after=0": "gunicorn",
        "/api/messages/wait?after=0": "daphne",
        "/healthz": "gunicorn",
        "/ws/healthz": "daphne",
        "/ws/board/": "daphne",
    },
    "asgi": {
        "/": "daphne",
        "/api/messages?after=0": "daphne",
        "/api/messages/wait?after=0": "daphne",
        "/healthz": "daphne",
        "/ws/healthz": "daphne",
        "/ws/board/": "daphne",
    },
    "wsgi": {
        "/": "gunicorn",
        "/api/messages?after=0": "gunicorn",
        "/api/messages/wait?after=0": "gunicorn",
        "/healthz": "gunicorn",
        "/ws/healthz": 404,
        "/ws/board/": 404,
    },
}


@pytest.mark.parametrize("mode", MODES)
def test_nginx_routes_each_path_to_the_server_the_mode_says(tmp_path, upstreams, mode):
    """Tests the mode's routing through a real Nginx: split splits, asgi sends all to Daphne, wsgi has no /ws/."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (apt-get install nginx)")
    port = free_port()
    conf_dir = tmp_path / "nginx"
    render_site([*tagged_site_variables(conf_dir, port, upstreams, tmp_path), f"deploy_mode={mode}"])
    answered = {}
    with running_nginx(tmp_path, conf_dir, port):
        for path in ROUTES[mode]:
            response = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"}, timeout=5)
            answered[path] = response.json()["upstream"] if response.status_code == 200 else response.status_code
    assert answered == ROUTES[mode]


@pytest.mark.parametrize(
    ("mode", "urls"),
    [
        ("split", ["8000/healthz", "8100/ws/healthz", "8101/ws/healthz"]),
        ("asgi", ["8100/ws/healthz", "8100/healthz", "8101/ws/healthz", "8101/healthz"]),
        ("wsgi", ["8000/healthz"]),
    ],
)
def test_compose_healthcheck_asks_the_servers_of_the_mode(tmp_path, mode, urls):
    """Tests that the app container's healthcheck probes Gunicorn and/or every Daphne as the mode runs them."""
    out = tmp_path / "deploy-vars.yml"
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "render.py"), "--root", str(tmp_path / "root")]
        + [
            "--vars",
            str(REPO / "docker" / "deploy-vars.yml"),
            "--set",
            f"deploy_mode={mode}",
            "--write-vars",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    healthcheck = load_module("app_healthcheck", REPO / "docker" / "app" / "healthcheck.py")
    assert healthcheck.urls_from(yaml.safe_load(out.read_text())) == [f"http://127.0.0.1:{url}" for url in urls]


def test_variables_check_refuses_an_unknown_mode(tmp_path):
    """Tests that `make up VARS=...` stops on a deploy_mode that is not split, asgi or wsgi, naming them."""
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("deploy_mode: grpc\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "docker" / "vars.py"), str(vars_file), str(tmp_path / "out.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "deploy_mode: 'grpc' is not one of split, asgi, wsgi" in result.stderr
    assert not (tmp_path / "out.yml").exists()


def test_settings_refuse_an_unknown_deploy_mode():
    """Tests that the app does not start with DEPLOY_MODE other than split, asgi or wsgi."""
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=REPO / "app",
        env={"DEPLOY_MODE": "grpc", "DJANGO_SECRET_KEY": "x" * 50, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "DEPLOY_MODE='grpc': expected one of split, asgi, wsgi" in result.stderr


@pytest.mark.parametrize(
    ("mode", "programs", "health", "interface"),
    [
        ("split", ("gunicorn", "daphne:daphne-8100", "daphne:daphne-8101"), ("/healthz", "/ws/healthz"), "wsgi"),
        ("asgi", ("daphne:daphne-8100", "daphne:daphne-8101"), ("/healthz", "/ws/healthz"), "asgi"),
        ("wsgi", ("gunicorn",), ("/healthz",), "wsgi"),
    ],
)
def test_harness_expects_the_programs_and_probes_of_the_mode(mode, programs, health, interface):
    """Tests that the test targets expect what the templates render for the mode (programs, health paths)."""
    variables = deploy.render.load_vars([], overrides=[f"deploy_mode={mode}"])
    assert deploy.programs(variables) == (*programs, "worker:worker-0", "worker:worker-1")
    assert deploy.health_paths(variables) == health
    assert deploy.http_interface(variables) == interface


@pytest.mark.parametrize("mode", ["asgi", "wsgi"])
def test_each_mode_has_a_vars_file_for_the_modes_tier(mode):
    """Tests that docker/modes/<mode>-vars.yml passes the variables check and sets its mode."""
    path = REPO / "docker" / "modes" / f"{mode}-vars.yml"
    checker = load_module("docker_vars", REPO / "docker" / "vars.py")
    assert checker.check(path)["deploy_mode"] == mode


def test_the_roles_refuse_an_unknown_mode_and_take_the_three(tmp_path):
    """Tests that the app, nginx and supervisor roles' argument_specs refuse deploy_mode grpc, naming the
    choices, and accept split, asgi and wsgi (Ansible's own validate_argument_spec)."""
    roles = ("app", "nginx", "supervisor")
    specs = {
        role: yaml.safe_load((REPO / "ansible" / "roles" / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]["main"]["options"]["deploy_mode"]
        for role in roles
    }
    tasks = [
        {
            "name": f"Validate {role} with {mode}",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": {"deploy_mode": specs[role]},
                "provided_arguments": {"deploy_mode": mode},
            },
            "ignore_errors": True,
        }
        for role in roles
        for mode in ("grpc", *MODES)
    ]
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "ANSIBLE_STDOUT_CALLBACK": "json", "HOME": str(tmp_path)},
        check=False,
        timeout=120,
    )
    (play,) = json.loads(result.stdout[result.stdout.index("{") :])["plays"]
    outcome = {task["task"]["name"]: task["hosts"]["localhost"] for task in play["tasks"]}
    for role in roles:
        refused = outcome[f"Validate {role} with grpc"]
        assert refused.get("failed"), refused
        assert "deploy_mode must be one of: split, asgi, wsgi" in refused["msg"] + str(refused.get("errors")), refused
        for mode in MODES:
            assert not outcome[f"Validate {role} with {mode}"].get("failed"), outcome[f"Validate {role} with {mode}"]
