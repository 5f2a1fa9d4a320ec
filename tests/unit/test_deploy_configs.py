"""The deploy templates, rendered with their defaults and checked by the tools that will read them."""

import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml
from acl_redis import redis_server_argv, render_redis, wait_until_up

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]
VENV_BIN = Path(sys.executable).parent


def render(root: Path, *sets: str) -> subprocess.CompletedProcess:
    args = [*RENDER, "--root", str(root)]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture
def rendered(tmp_path):
    """Every template rendered with defaults.yml into a scratch root."""
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_every_template_names_where_it_is_installed():
    """Tests that each template renders to the install path on its first line."""
    listing = subprocess.run([*RENDER, "--list"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert sorted(listing) == [
        "gunicorn/gunicorn.conf.py.j2 -> /etc/channels-stack/gunicorn.conf.py",
        "nginx/channels-stack.conf.j2 -> /etc/nginx/conf.d/channels-stack.conf",
        "nginx/nginx.conf.j2 -> /etc/nginx/nginx.conf",
        "postgresql/channels-stack.conf.j2 -> /etc/postgresql/15/main/conf.d/channels-stack.conf",
        "postgresql/pg_hba.conf.j2 -> /etc/postgresql/15/main/pg_hba.conf",
        "redis/app-user.acl.j2 -> /etc/redis/channels-stack-app-user.acl",
        "redis/channels-stack.conf.j2 -> /etc/redis/channels-stack.conf",
        "supervisor/programs.conf.j2 -> /etc/channels-stack/supervisor.d/programs.conf",
        "supervisor/supervisord.conf.j2 -> /etc/channels-stack/supervisord.conf",
        "systemd/channels-stack.service.j2 -> /etc/systemd/system/channels-stack.service",
        "systemd/nginx-sandbox.conf.j2 -> /etc/systemd/system/nginx.service.d/channels-stack.conf",
        "systemd/redis-sandbox.conf.j2 -> /etc/systemd/system/redis-server.service.d/channels-stack.conf",
        "systemd/tmpfiles.conf.j2 -> /etc/tmpfiles.d/channels-stack.conf",
    ]


def nginx_check(tmp_path: Path, *sets: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Render the nginx templates into tmp_path/nginx and run `nginx -t` on them."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (apt-get install nginx)")
    conf_dir = tmp_path / "nginx"
    # nginx -t loads the certificate: one from a local CA of the test's own (deploy/local_ca.py).
    tls = tmp_path / "tls"
    issued = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local_ca.py"), "issue", "--ca-dir", str(tls), "--out", str(tls)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    sets = (f"nginx_tls_certificate={tls}/cert.pem", f"nginx_tls_certificate_key={tls}/key.pem", *sets)
    result = subprocess.run(
        [
            *RENDER,
            "--root",
            "/",
            "--only",
            "nginx/",
            "--set",
            f"nginx_conf_dir={conf_dir}",
            "--set",
            f"nginx_error_log={tmp_path}/error.log",
            "--set",
            f"nginx_access_log={tmp_path}/access.log",
            *[arg for item in sets for arg in ("--set", item)],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shutil.copy("/etc/nginx/mime.types", conf_dir / "mime.types")
    (conf_dir / "modules-enabled").mkdir()
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf_dir / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    return check, conf_dir


@pytest.mark.parametrize("daphne_processes", [1, 2, 3])
def test_nginx_accepts_the_rendered_configuration(tmp_path, daphne_processes):
    """Tests that `nginx -t` accepts the rendered main config and site, for any number of Daphnes."""
    check, conf_dir = nginx_check(tmp_path, f"daphne_processes={daphne_processes}")
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    site = (conf_dir / "conf.d" / "channels-stack.conf").read_text()
    assert site.count(":810") == daphne_processes


def test_nginx_accepts_the_site_in_the_bench_profile(tmp_path):
    """Tests that `nginx -t` accepts the site with bench/profile.yml's lifted limits (make bench's stack)."""
    profile = yaml.safe_load((REPO / "bench" / "profile.yml").read_text())
    check, conf_dir = nginx_check(tmp_path, *(f"{key}={value}" for key, value in profile.items()))
    assert check.returncode == 0, check.stderr
    site = (conf_dir / "conf.d" / "channels-stack.conf").read_text()
    assert f"limit_conn channels_stack_ws_conn {profile['nginx_ws_conn_per_address']};" in site


def test_nginx_accepts_the_site_with_trusted_proxies_and_names_that_need_escaping(tmp_path):
    """Tests that `nginx -t` accepts trusted proxies (IPv4, IPv6 CIDRs) and names with regex characters."""
    check, conf_dir = nginx_check(
        tmp_path,
        'nginx_trusted_proxies=[10.0.0.0/8, 192.0.2.10, "2001:db8::/32"]',
        'nginx_server_names=[board.example.com, "[::1]", my-host.internal]',
    )
    assert check.returncode == 0, check.stderr
    site = (conf_dir / "conf.d" / "channels-stack.conf").read_text()
    assert "set_real_ip_from 2001:db8::/32;" in site
    assert "(?:board\\.example\\.com|\\[::1\\]|my\\-host\\.internal)" in site


@pytest.mark.parametrize("connections", [512, 16384])
def test_nginx_worker_connections_and_open_file_limit_follow_the_variable(tmp_path, connections):
    """Tests that nginx_worker_connections sets worker_connections, that worker_rlimit_nofile is it plus
    1024 (one descriptor per connection, upstream ones included, and room for files), and that `nginx -t`
    accepts both without warning that the connections exceed the open-file limit."""
    check, conf_dir = nginx_check(tmp_path, f"nginx_worker_connections={connections}")
    assert check.returncode == 0, check.stderr
    assert "exceed open file resource limit" not in check.stderr
    main = (conf_dir / "nginx.conf").read_text()
    assert f"\n    worker_connections {connections};\n" in main
    assert f"\nworker_rlimit_nofile {connections + 1024};\n" in main


def test_nginx_rejects_a_broken_rendering(tmp_path):
    """Tests that the nginx check can fail: a bad rate value is refused by `nginx -t`."""
    check, _ = nginx_check(tmp_path, "nginx_api_rate=lots")
    assert check.returncode != 0
    assert "rate" in check.stderr


def supervisor_config(tmp_path: Path, *sets: str):
    """Render the supervisor templates into tmp_path/conf and parse them the way supervisord does."""
    from supervisor.options import ServerOptions

    conf_dir = tmp_path / "conf"
    # supervisor follows [include] by absolute path, so the config dir itself is the scratch dir.
    subprocess.run(
        [
            *RENDER,
            "--root",
            "/",
            "--only",
            "supervisor/",
            "--set",
            f"app_config_dir={conf_dir}",
            "--set",
            f"app_run_dir={tmp_path}",
            "--set",
            f"app_log_dir={tmp_path}",
            # supervisor checks that the user exists; the test runner's user does.
            "--set",
            f"app_user={getpass.getuser()}",
            *[arg for item in sets for arg in ("--set", item)],
        ],
        check=True,
    )
    options = ServerOptions()
    options.realize(["-c", str(conf_dir / "supervisord.conf")])
    return options


def test_supervisor_reads_the_rendered_config_with_every_program(tmp_path):
    """Tests that supervisord parses the config into gunicorn, N daphnes and N workers."""
    options = supervisor_config(tmp_path, "daphne_processes=3")
    groups = {group.name: [p.name for p in group.process_configs] for group in options.process_group_configs}
    assert groups == {
        "gunicorn": ["gunicorn"],
        "daphne": ["daphne-8100", "daphne-8101", "daphne-8102"],
        "worker": ["worker-0", "worker-1"],
        "fatal-retry": ["fatal-retry"],
    }
    daphne = next(g for g in options.process_group_configs if g.name == "daphne").process_configs[2]
    assert "--port 8102" in daphne.command and "--proxy-headers" in daphne.command
    assert "--ping-interval 20" in daphne.command


def test_every_supervised_program_restarts_stops_as_a_group_and_runs_as_the_app_user(tmp_path):
    """Tests the supervisor settings that keep programs alive and stop them cleanly."""
    from supervisor.datatypes import RestartUnconditionally

    options = supervisor_config(tmp_path)
    for group in options.process_group_configs:
        for program in group.process_configs:
            assert program.autorestart is RestartUnconditionally, program.name
            assert program.stopasgroup and program.killasgroup, program.name
            assert program.uid == os.getuid(), program.name
            if group.name != "fatal-retry":
                assert program.startsecs == 5 and program.startretries == 5, program.name
    gunicorn = next(g for g in options.process_group_configs if g.name == "gunicorn").process_configs[0]
    assert gunicorn.stopwaitsecs == 30  # above gunicorn_graceful_timeout (20)


def test_systemd_accepts_the_rendered_unit(tmp_path):
    """Tests that `systemd-analyze verify` finds nothing wrong with channels-stack.service."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point the unit at this virtualenv's supervisord.
    render(tmp_path, f"app_venv={VENV_BIN.parent}", f"app_code_dir={REPO / 'app'}")
    unit = tmp_path / "etc/systemd/system/channels-stack.service"
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    problems = [line for line in result.stderr.splitlines() if "channels-stack.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_systemd_unit_restarts_always_and_is_hardened(rendered):
    """Tests the restart and hardening settings the VM relies on."""
    unit = (rendered / "etc/systemd/system/channels-stack.service").read_text()
    for setting in [
        "Restart=always",
        "User=channels",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StartLimitBurst=10",
        "EnvironmentFile=/etc/channels-stack/env",
        "Wants=network-online.target",
    ]:
        assert f"\n{setting}\n" in unit, setting


def test_gunicorn_accepts_the_rendered_config(tmp_path):
    """Tests that `gunicorn --check-config` loads the rendered config and the WSGI app."""
    render(tmp_path)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings_for_tests",
        "PYTHONPATH": f"{REPO / 'app'}:{Path(__file__).parent}",
    }
    result = subprocess.run(
        [
            str(VENV_BIN / "gunicorn"),
            "--config",
            str(tmp_path / "etc/channels-stack/gunicorn.conf.py"),
            "--check-config",
            "config.wsgi:application",
        ],
        cwd=REPO / "app",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "novalue"], "expected key=value"),
        (["--vars", "/nonexistent/vars.yml"], "No such file"),
    ],
)
def test_render_reports_bad_input_clearly_and_writes_nothing(tmp_path, args, message):
    """Tests that render.py exits 2 with a message, and writes no file, on bad variables."""
    result = subprocess.run([*RENDER, "--root", str(tmp_path / "out"), *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_vars_file_that_is_not_a_mapping(tmp_path):
    """Tests that a YAML list where variables belong is refused with the file named."""
    bad = tmp_path / "vars.yml"
    bad.write_text("- just\n- a list\n")
    result = subprocess.run(
        [*RENDER, "--root", str(tmp_path / "out"), "--vars", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{bad}: expected a mapping" in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("target_vars", [[], ["docker/deploy-vars.yml"]], ids=["vm", "compose"])
def test_redis_runs_the_rendered_settings_of_each_target(tmp_path, target_vars):
    """Tests that redis-server starts from the one rendered settings file with its maxmemory, policy and save."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    render_redis(tmp_path, port, *(REPO / path for path in target_vars))
    conf = tmp_path / "etc" / "redis" / "channels-stack.conf"
    assert not [line for line in conf.read_text().splitlines() if line.startswith("requirepass")]
    # CONFIG is refused to the app's user: this test asks as a user of its own.
    inspector = ["inspector", "on", ">inspector-password", "+config|get", "+ping"]
    argv = redis_server_argv(tmp_path, "app-password", inspector)
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, username="inspector", password="inspector-password", socket_connect_timeout=1)  # noqa: S106
        wait_until_up(client, server)
        variables = yaml.safe_load((REPO / "deploy" / "defaults.yml").read_text())
        for path in target_vars:
            variables.update(yaml.safe_load((REPO / path).read_text()))
        config = client.config_get("*")
        assert config["maxmemory"] == str(256 * 1024**2) and variables["redis_maxmemory"] == "256mb"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["save"] == variables["redis_save"]
        assert config["protected-mode"] == "yes"
    finally:
        server.terminate()
        server.wait(10)


def test_a_variable_naming_another_follows_it(tmp_path):
    """Tests that app_redis_port follows redis_port, and app_redis_url both, like Ansible's lazy variables."""
    out = tmp_path / "vars.yml"
    result = render(tmp_path, "redis_port=6390")
    assert result.returncode == 0, result.stderr
    subprocess.run([*RENDER, "--root", str(tmp_path), "--set", "redis_port=6390", "--write-vars", str(out)], check=True)
    variables = yaml.safe_load(out.read_text())
    assert (variables["app_redis_port"], variables["app_redis_url"]) == (
        6390,
        "redis://channels-stack@127.0.0.1:6390/0",
    )
    assert "port 6390" in (tmp_path / "etc" / "redis" / "channels-stack.conf").read_text().splitlines()


def test_three_daphnes_reach_supervisor_nginx_and_the_compose_healthcheck(tmp_path):
    """Tests that the e2e tiers' daphne_processes: 3 renders three Daphne programs, upstreams and health URLs."""
    out = tmp_path / "etc" / "channels-stack" / "deploy-vars.yml"
    subprocess.run(
        [
            *RENDER,
            "--root",
            str(tmp_path),
            "--vars",
            str(REPO / "docker" / "deploy-vars.yml"),
            "--vars",
            str(REPO / "docker" / "e2e-vars.yml"),
            "--write-vars",
            str(out),
        ],
        check=True,
    )
    spec = importlib.util.spec_from_file_location("app_healthcheck", REPO / "docker" / "app" / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    ports = [8100, 8101, 8102]

    assert healthcheck.urls_from(yaml.safe_load(out.read_text())) == [
        "http://127.0.0.1:8000/healthz",
        *(f"http://127.0.0.1:{port}/ws/healthz" for port in ports),
    ]
    site = (tmp_path / "etc" / "nginx" / "conf.d" / "channels-stack.conf").read_text()
    assert [f"server app:{port}" in site for port in ports] == [True] * 3 and "app:8103" not in site
    programs = (tmp_path / "etc" / "channels-stack" / "supervisor.d" / "programs.conf").read_text()
    assert "numprocs = 3" in programs
