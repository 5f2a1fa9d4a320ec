"""The playbook's secrets from Ansible Vault (ansible/README.md "Secrets"): an encrypted vars file
deploys with `--vault-password-file`, a wrong password stops the run before it touches the host, and
the Redis password is rotated through the playbook while clients are connected and posting, without
losing a message (README "Rotating the Redis password").

These tests leave the host on the Redis password of the rotation: a later run without the vault file
rotates it back to the host's generated one (secrets.yml), the same way."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from faults.traffic import Poster, Traffic
from harness.deploy import vm_vars

DEPLOY = vm_vars()
SECRETS_FILE = f"{DEPLOY['app_config_dir']}/secrets.yml"
ENV_FILE = f"{DEPLOY['app_config_dir']}/env"
AUTH_FILE = "/etc/redis/channels-stack-auth.conf"
ANSIBLE_VAULT = str(Path(sys.executable).parent / "ansible-vault")
# Files that hold a secret on the host: none may change when the run is refused.
SECRET_FILES = (SECRETS_FILE, ENV_FILE, AUTH_FILE)


class Vault:
    """A vault password file and encrypted vars files made with it (ansible-vault encrypt)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.password_file = directory / "vault-password"
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)

    def encrypted_vars(self, name: str, values: dict) -> Path:
        """A vars file holding `values`, encrypted with this vault's password; its plain text is never kept."""
        path = self.directory / f"{name}.yml"
        path.write_text(yaml.safe_dump(values))
        subprocess.run(
            [ANSIBLE_VAULT, "encrypt", "--vault-password-file", str(self.password_file), str(path)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
        return path


@pytest.fixture
def vault(tmp_path):
    return Vault(tmp_path)


def host_secrets(host) -> dict:
    """The secrets the common role generated on the host (secrets.yml)."""
    return yaml.safe_load(host.file(SECRETS_FILE).content_string)


def vault_values(host, redis_password: str | None = None, **more) -> dict:
    """Inventory values that set every secret (so nothing is generated): the host's own, or a new Redis password."""
    generated = host_secrets(host)
    current = redis_password or current_redis_password(host) or generated["redis_password"]
    return {
        "common_django_secret_key": generated["django_secret_key"],
        "common_redis_password": current,
        "common_postgresql_password": generated["postgresql_password"],
        **more,
    }


def current_redis_password(host) -> str | None:
    """The password the app's REDIS_URL carries now (redis://user:password@...)."""
    for line in host.file(ENV_FILE).content_string.splitlines():
        if line.startswith("REDIS_URL="):
            return line.split("://", 1)[1].split("@", 1)[0].partition(":")[2] or None
    return None


def digests(host) -> dict[str, str]:
    return {path: hashlib.sha256(host.file(path).content).hexdigest() for path in SECRET_FILES}


def redis_answers(host, password: str) -> str:
    """What Redis answers the app's ACL user logging in with `password`: PONG, or the refusal."""
    result = host.run(
        "redis-cli --no-auth-warning --user %s --pass %s -p %s PING",
        DEPLOY["redis_app_user"],
        password,
        str(DEPLOY["redis_port"]),
    )
    return (result.stdout + result.stderr).strip()


def test_a_wrong_vault_password_fails_with_a_clear_error_and_changes_nothing(vm, host, vault, tmp_path):
    """Tests that a run whose vault password cannot decrypt the vars file stops with Ansible's
    "Decryption failed" before any task: no secret file, service or program changes."""
    encrypted = vault.encrypted_vars("vault", vault_values(host))
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    before = digests(host), vm.program_pids(), host.service("redis-server").systemd_properties["MainPID"]

    run = vm.run_playbook(f"--extra-vars=@{encrypted}", "--vault-password-file", str(wrong))

    assert run.returncode != 0
    assert "Decryption failed" in run.output, run.output[-2000:]
    assert "TASK [" not in run.output, "a task ran although the vars could not be decrypted"
    assert (digests(host), vm.program_pids(), host.service("redis-server").systemd_properties["MainPID"]) == before


def test_an_encrypted_vars_file_deploys_with_the_vault_password_file(vm, host, vault):
    """Tests that the playbook run with an encrypted vars file and --vault-password-file succeeds, uses
    the vault's values instead of generating any, and leaves the site healthy."""
    values = vault_values(host)
    encrypted = vault.encrypted_vars("vault", values)

    run = vm.run_playbook(f"--extra-vars=@{encrypted}", "--vault-password-file", str(vault.password_file))

    assert run.returncode == 0, run.output[-3000:]
    assert "Generate the host secrets that are missing" not in run.changed_tasks
    env = host.file(ENV_FILE).content_string
    assert f"DJANGO_SECRET_KEY={values['common_django_secret_key']}" in env.splitlines()
    assert redis_answers(host, values["common_redis_password"]) == "PONG"
    vm.wait_whole()


class RetryingPoster(Poster):
    """A poster that tries a refused post once more, as a client with one retry would; a post refused
    twice counts as failed."""

    def post(self, number: int) -> None:
        refused = len(self.refused)
        super().post(number)
        if len(self.refused) > refused:
            self.refused.pop()
            super().post(number)


def test_redis_password_rotation_through_the_playbook_loses_no_message(vm, host, vault):
    """Tests the rotation of README "Rotating the Redis password" on the running host, with board
    clients connected and a message posted every 0.25 s: run 1 gives the ACL user the new password
    next to the old one and rolls the app to it, run 2 removes the old one; every post succeeds (one
    retry), every client shows every message once, the old password is refused at the end."""
    old = current_redis_password(host)
    new = secrets.token_hex(32)
    both = vault.encrypted_vars("rotate", vault_values(host, new, redis_previous_password=old))
    only_new = vault.encrypted_vars("rotated", vault_values(host, new))
    password_file = ["--vault-password-file", str(vault.password_file)]

    traffic = Traffic(vm, clients=4, spread=True)
    traffic.poster = RetryingPoster(vm, traffic.tag, traffic.poster.interval)
    with traffic:
        roll = vm.run_playbook(f"--extra-vars=@{both}", *password_file)
        assert roll.returncode == 0, roll.output[-3000:]
        during = redis_answers(host, old), redis_answers(host, new), current_redis_password(host)
        finish = vm.run_playbook(f"--extra-vars=@{only_new}", *password_file)
        assert finish.returncode == 0, finish.output[-3000:]
        traffic.run_for(3)
        delivery = traffic.finish()

    assert during == ("PONG", "PONG", new), "during the roll both passwords work and the app uses the new one"
    assert redis_answers(host, new) == "PONG"
    assert "WRONGPASS" in redis_answers(host, old)
    assert delivery.refused == 0, f"posts failed twice: {traffic.poster.refused}"
    assert delivery.posted > 0 and delivery.lost == 0 and not delivery.problems, delivery.problems
