"""The provisioned test host seen from inside with testinfra: services, supervisor programs,
listening sockets, Redis' access control, file modes of the secrets and the systemd unit's sandbox."""

import pytest
import requests
import yaml
from harness.deploy import programs, vm_vars
from harness.tls import verify

DEPLOY = vm_vars()
PROGRAMS = programs(DEPLOY)
UNIT = f"{DEPLOY['app_name']}.service"
SUPERVISORCTL_PATH = f"{DEPLOY['app_venv']}/bin/supervisorctl"
SUPERVISORD_CONF = f"{DEPLOY['app_config_dir']}/supervisord.conf"

APP_USER = DEPLOY["app_user"]
SECRETS_FILE = f"{DEPLOY['app_config_dir']}/secrets.yml"
LOOPBACK = {"127.0.0.1", "::1"}


def journal(host, unit: str) -> str:
    return host.run(f"journalctl --unit {unit} --no-pager --lines 40").stdout


def listening_addresses(host, port: int) -> set[str]:
    """Addresses with a TCP socket listening on port (`ss`)."""
    return {
        address.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
        for address in host.socket.get_listening_sockets()
        if address.startswith("tcp://") and address.endswith(f":{port}")
    }


@pytest.mark.parametrize("name", ["nginx", "redis-server", UNIT])
def test_service_is_running_and_enabled(host, name):
    """Tests that Nginx, Redis and the app's service run now and start at boot."""
    service = host.service(name)
    assert service.is_running, journal(host, name)
    assert service.is_enabled


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_is_running_as_the_app_user(host, program):
    """Tests that each supervisor program is RUNNING in a process owned by the app user."""
    status = host.supervisor(program, SUPERVISORCTL_PATH, SUPERVISORD_CONF)
    assert status.is_running, f"{program}: {status.status}\n{journal(host, UNIT)}"
    assert host.process.get(pid=status.pid).user == APP_USER


def test_supervisord_runs_as_the_app_user_under_systemd(host):
    """Tests that supervisord is the unit's main process, a child of systemd, not running as root."""
    main_pid = int(host.service(UNIT).systemd_properties["MainPID"])
    supervisord = host.process.get(pid=main_pid)
    assert (supervisord.comm, supervisord.user, supervisord.ppid) == ("supervisord", APP_USER, 1)


@pytest.mark.parametrize("program", ["gunicorn", f"daphne:daphne-{DEPLOY['daphne_base_port']}"])
def test_programs_run_without_new_privileges(host, program):
    """Tests that the unit's NoNewPrivileges reaches the programs (the kernel's no_new_privs flag)."""
    pid = host.supervisor(program, SUPERVISORCTL_PATH, SUPERVISORD_CONF).pid
    assert "NoNewPrivs:\t1" in host.file(f"/proc/{pid}/status").content_string


def test_nginx_listens_on_port_80(host):
    """Tests that Nginx listens on port 80 of every address (the container's port published on loopback)."""
    assert host.socket("tcp://0.0.0.0:80").is_listening


@pytest.mark.parametrize(
    "port",
    [DEPLOY["gunicorn_port"], *(DEPLOY["daphne_base_port"] + n for n in range(DEPLOY["daphne_processes"]))],
)
def test_app_server_listens_on_loopback_only(host, port):
    """Tests that Gunicorn and each Daphne process are reachable only from the host itself (via Nginx)."""
    assert listening_addresses(host, port) == {"127.0.0.1"}


def test_redis_listens_on_loopback_only(host):
    """Tests that Redis listens on loopback addresses and on nothing else."""
    addresses = listening_addresses(host, DEPLOY["redis_port"])
    assert addresses and addresses <= LOOPBACK, addresses


def test_redis_refuses_commands_without_the_password(host):
    """Tests that Redis answers NOAUTH to a client without the password."""
    result = host.run(f"redis-cli -h 127.0.0.1 -p {DEPLOY['redis_port']} set probe 1")
    assert "NOAUTH" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("protected-mode", "yes"),
        ("maxmemory-policy", "noeviction"),
        # deploy/redis/channels-stack.conf.j2, the compose image's settings too, reached the VM.
        ("maxmemory", DEPLOY["redis_maxmemory"]),
        # The ACL: Redis' default user disabled (the app logs in as its own user).
        ("user", "default off resetpass nocommands resetkeys resetchannels"),
    ],
)
def test_redis_runs_with_the_required_setting(host, setting, expected):
    """Tests Redis' protected mode, eviction policy and disabled default user in the settings file
    redis.conf includes (CONFIG GET is refused to the app's user, the only one that can log in; the
    unit tier asks a redis-server started from the same file, and tests/e2e/test_redis_acl.py the running one)."""
    lines = host.file("/etc/redis/channels-stack.conf").content_string.splitlines()
    assert f"{setting} {expected}" in lines
    assert "include /etc/redis/channels-stack.conf" in host.file("/etc/redis/redis.conf").content_string.splitlines()


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        (DEPLOY["app_env_file"], "root", "root", 0o600),
        (SECRETS_FILE, "root", "root", 0o600),
        ("/etc/redis/channels-stack.conf", "root", "redis", 0o640),
        ("/etc/redis/channels-stack-auth.conf", "root", "redis", 0o640),
        (f"{DEPLOY['app_config_dir']}/supervisord.conf", "root", DEPLOY["app_group"], 0o640),
        (DEPLOY["app_data_dir"], APP_USER, DEPLOY["app_group"], 0o750),
        # The site's TLS key (local_ca role): the Nginx master runs as www-data.
        (DEPLOY["nginx_tls_certificate_key"], "root", "www-data", 0o640),
        (DEPLOY["nginx_tls_certificate"], "root", "root", 0o644),
    ],
)
def test_sensitive_file_has_owner_and_mode(host, path, owner, group, mode):
    """Tests that the files holding secrets (and the data) are readable only by those who need them."""
    file = host.file(path)
    assert (file.user, file.group, oct(file.mode)) == (owner, group, oct(mode))


@pytest.mark.parametrize(
    "key",
    ["DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS", "DJANGO_HTTPS", "APP_DATA_DIR", "REDIS_URL"],
)
def test_environment_file_sets_the_app_setting(host, key):
    """Tests that the environment file systemd hands to supervisord sets each setting the app reads."""
    values = dict(
        line.split("=", 1) for line in host.file(DEPLOY["app_env_file"]).content_string.splitlines() if "=" in line
    )
    assert values.get(key), f"{key} missing or empty"


def test_app_user_cannot_change_the_code(host):
    """Tests that the release the programs run is read-only for the app user."""
    code = f"{DEPLOY['app_code_dir']}/manage.py"
    assert host.file(code).exists
    assert host.run(f"sudo -u {APP_USER} test -w {code}").rc == 1


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("Restart", "always"),
        ("User", APP_USER),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("KillMode", "mixed"),
        ("UnitFileState", "enabled"),
        ("EnvironmentFiles", f"{DEPLOY['app_env_file']} (ignore_errors=no)"),
    ],
)
def test_unit_has_systemd_property(host, prop, expected):
    """Tests the restart policy, the user and the sandbox of the app's systemd unit, as systemd loaded it."""
    assert host.service(UNIT).systemd_properties[prop] == expected


def test_unit_starts_after_redis_and_the_network(host):
    """Tests that the app starts only after Redis and the network are up (boot order)."""
    after = host.service(UNIT).systemd_properties["After"].split()
    assert {"redis-server.service", "network-online.target"} <= set(after)


def test_site_is_served_through_nginx_on_the_published_port(vm):
    """Tests that the board page and both health probes answer through Nginx on 127.0.0.1:VM_HTTPS_PORT
    (HTTPS, trusting the local CA)."""
    page = requests.get(vm.base_url + "/", timeout=10, verify=verify(vm.base_url))
    probes = [
        requests.get(vm.base_url + path, timeout=10, verify=verify(vm.base_url)).json()
        for path in ("/healthz", "/ws/healthz")
    ]
    assert page.status_code == 200 and "csrftoken" in page.cookies
    assert [(p["status"], p["interface"]) for p in probes] == [("ok", "wsgi"), ("ok", "asgi")]


def test_static_files_are_served_by_nginx(host, vm):
    """Tests that a collected static file is served by Nginx itself, with a cache lifetime."""
    manifest = host.file(f"{DEPLOY['app_static_root']}/staticfiles.json").content_string
    css = yaml.safe_load(manifest)["paths"]["board/board.css"]
    response = requests.get(f"{vm.base_url}/static/{css}", timeout=10, verify=verify(vm.base_url))
    assert response.status_code == 200 and "max-age=3600" in response.headers.get("Cache-Control", "")
