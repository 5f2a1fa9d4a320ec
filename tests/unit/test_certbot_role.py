"""The certbot role's rendered files, rendered by Ansible's own template module and run for real: the
settings file certbot reads (by Debian's certbot itself, against an ACME server address where none
answers: no ACME server is reachable from here) and the deploy hook that hands a new certificate to
Nginx (by sh, on a lineage directory laid out as certbot's live/)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "certbot"
BIN = Path(sys.executable).parent


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """cli.ini and the deploy hook rendered by ansible-playbook (template module) with the role's
    defaults overridden where they name the host's paths; (directory, variables)."""
    tmp = tmp_path_factory.mktemp("certbot")
    variables = {
        # This very interpreter on the "host" (localhost), not whichever python3 discovery finds.
        "ansible_python_interpreter": sys.executable,
        "ansible_managed": "Managed by the test",
        "certbot_email": "hostmaster@example.com",
        "certbot_webroot": str(tmp / "webroot"),
        "certbot_cert_name": "channels-stack",
        # Nothing listens there: certbot fails at its first request, after reading every option.
        "certbot_server": f"https://127.0.0.1:{unused_port()}/directory",
        "certbot_reload_command": f"touch {tmp / 'reloaded'}",
        "nginx_tls_certificate": str(tmp / "installed" / "fullchain.pem"),
        "nginx_tls_certificate_key": str(tmp / "installed" / "privkey.pem"),
        "_certbot_deploy_hook": str(tmp / "deploy-hook.sh"),
    }
    playbook = tmp / "render.yml"
    tasks = [
        {
            "name": f"Render {src}",
            "ansible.builtin.template": {"src": str(ROLE / "templates" / src), "dest": dest, "mode": mode},
        }
        for src, dest, mode in [
            ("cli.ini.j2", str(tmp / "cli.ini"), "0644"),
            ("deploy-hook.sh.j2", variables["_certbot_deploy_hook"], "0755"),
        ]
    ]
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps(variables)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    (tmp / "webroot").mkdir()
    return tmp, variables


def test_certbot_reads_the_rendered_settings_and_goes_to_the_configured_acme_server(rendered):
    """Tests that Debian's certbot accepts every option of cli.ini (webroot authenticator, key type,
    account e-mail, terms) and gets as far as asking the configured ACME server for its directory."""
    if shutil.which("certbot") is None:
        pytest.fail("certbot is not installed (apt-get install certbot)")
    tmp, variables = rendered
    output = run_certbot(tmp, tmp / "cli.ini", variables)
    # certbot names the server without its port.
    assert "Requesting 127.0.0.1/directory: Connection refused" in output, output


def test_certbot_refuses_a_settings_file_with_an_option_it_does_not_know(rendered, tmp_path):
    """Tests that the check above can fail: cli.ini with one unknown option stops certbot before any request."""
    if shutil.which("certbot") is None:
        pytest.fail("certbot is not installed (apt-get install certbot)")
    tmp, variables = rendered
    broken = tmp_path / "cli.ini"
    broken.write_text((tmp / "cli.ini").read_text() + "web-root = /nowhere\n")
    output = run_certbot(tmp, broken, variables)
    assert "Requesting" not in output and "web-root" in output, output


def run_certbot(tmp: Path, cli_ini: Path, variables: dict) -> str:
    """certbot certonly with the settings file cli_ini and its state under tmp; its output (it fails:
    no ACME server answers)."""
    state = [f"--{kind}-dir={tmp / kind}" for kind in ("config", "work", "logs")]
    result = subprocess.run(
        ["certbot", "--config", str(cli_ini), *state, "certonly", "--cert-name", "channels-stack",
         "--domain", "board.example.com", "--deploy-hook", variables["_certbot_deploy_hook"]],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_deploy_hook_installs_the_new_certificate_for_nginx_and_reloads_it(rendered):
    """Tests that the hook, run as certbot runs it (RENEWED_LINEAGE=live/<name>), installs fullchain.pem
    (0644) and privkey.pem (0640, group www-data) where Nginx reads them, then runs the reload command."""
    tmp, variables = rendered
    if os.geteuid() != 0:
        pytest.skip("the hook gives the key to www-data: root only")
    lineage = tmp / "live" / "channels-stack"
    lineage.mkdir(parents=True)
    (lineage / "fullchain.pem").write_text("CERTIFICATE CHAIN\n")
    (lineage / "privkey.pem").write_text("PRIVATE KEY\n")
    result = subprocess.run(
        [variables["_certbot_deploy_hook"]],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "RENEWED_LINEAGE": str(lineage)},
        capture_output=True,
        text=True,
        check=False,
    )
    # The hook checks Nginx's configuration (nginx -t) before the reload; on this machine that is
    # Debian's own configuration, which passes.
    assert result.returncode == 0, result.stderr
    cert, key = Path(variables["nginx_tls_certificate"]), Path(variables["nginx_tls_certificate_key"])
    assert cert.read_text() == "CERTIFICATE CHAIN\n" and stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert key.read_text() == "PRIVATE KEY\n" and stat.S_IMODE(key.stat().st_mode) == 0o640
    assert key.group() == "www-data"
    assert (tmp / "reloaded").exists()


def test_deploy_hook_leaves_other_certificates_of_the_host_alone(rendered, tmp_path):
    """Tests that a renewal of another lineage on the same host installs nothing and reloads nothing."""
    tmp, variables = rendered
    other = tmp_path / "live" / "mail.example.com"
    other.mkdir(parents=True)
    marker = tmp / "reloaded"
    marker.unlink(missing_ok=True)
    installed = Path(variables["nginx_tls_certificate"])
    before = installed.read_bytes() if installed.exists() else None
    result = subprocess.run(
        [variables["_certbot_deploy_hook"]], env={"PATH": "/usr/bin:/bin", "RENEWED_LINEAGE": str(other)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert (installed.read_bytes() if installed.exists() else None) == before
