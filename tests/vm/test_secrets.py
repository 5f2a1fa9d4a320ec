"""The playbook's secrets from Ansible Vault (ansible/README.md "Secrets"): an encrypted vars file
deploys with `--vault-password-file`, a wrong password stops the run before it touches the host, and
the Redis password is rotated through the playbook while clients are connected and posting, without
losing a message (README "Rotating the Redis password").

These tests leave the host on the Redis password of the rotation: a later run without the vault file
rotates it back to the host's generated one (secrets.yml), the same way."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from faults.traffic import Poster, Traffic
from harness.deploy import vm_vars
from harness.waiting import TimedOut, wait_until

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


# Traffic goes on through both playbook runs (each 1 to 5 minutes on a loaded 2-core machine).
ROTATION_SECONDS = 1200
# A client's one retry waits until the site is healthy again (Gunicorn's /healthz through Nginx), at most
# this long: the roll restarts the whole service (supervisord reads the env file only at start), so
# Nginx answers 502 until Gunicorn is back, for a few seconds on a quiet machine.
RETRY_WAIT_SECONDS = 60.0


class RetryingPoster(Poster):
    """A poster whose refused post is sent once more as soon as the site answers /healthz again (at
    most RETRY_WAIT_SECONDS later), as a client with one retry and backoff would; a post refused twice
    counts as failed (refused). first_refusals: (time, answer) of each first refusal; waits: seconds
    from a first refusal to its retry."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_refusals: list[tuple[float, str]] = []
        self.waits: list[float] = []

    def site_back(self) -> bool:
        try:
            return self.site.get("/healthz").status_code == 200
        except requests.RequestException:
            return False

    def post(self, number: int) -> None:
        refused = len(self.refused)
        super().post(number)
        if len(self.refused) > refused:
            self.first_refusals.append(self.refused.pop())
            with contextlib.suppress(TimedOut):
                wait_until(self.site_back, RETRY_WAIT_SECONDS, "the site answers /healthz", 0.5)
            self.waits.append(time.monotonic() - self.first_refusals[-1][0])
            super().post(number)


def test_redis_password_rotation_through_the_playbook_loses_no_message(vm, host, vault):
    """Tests the rotation of README "Rotating the Redis password" on the running host, with board
    clients connected and a message posted every 0.5 s through both runs: run 1 gives the ACL user the
    new password next to the old one and rolls the app to it, run 2 removes the old one; every post
    succeeds (one retry), every client shows every message once, the old password is refused at the end."""
    old = current_redis_password(host)
    new = secrets.token_hex(32)
    both = vault.encrypted_vars("rotate", vault_values(host, new, redis_previous_password=old))
    only_new = vault.encrypted_vars("rotated", vault_values(host, new))
    password_file = ["--vault-password-file", str(vault.password_file)]

    traffic = Traffic(vm, clients=4, spread=True, max_seconds=ROTATION_SECONDS)
    traffic.poster = RetryingPoster(vm, traffic.tag, 0.5, max_count=ROTATION_SECONDS * 2, max_seconds=ROTATION_SECONDS)
    with traffic:
        roll = vm.run_playbook(f"--extra-vars=@{both}", *password_file)
        assert roll.returncode == 0, roll.output[-3000:]
        during = redis_answers(host, old), redis_answers(host, new), current_redis_password(host)
        posts_before_finish = traffic.poster.attempts
        finish = vm.run_playbook(f"--extra-vars=@{only_new}", *password_file)
        assert finish.returncode == 0, finish.output[-3000:]
        traffic.run_for(3)
        posts_during_finish = traffic.poster.attempts - posts_before_finish
        delivery = traffic.finish()

    print(
        f"rotation: {delivery.posted} posts answered 201, {len(traffic.poster.first_refusals)} refused at first"
        f" and stored on the retry (after {max(traffic.poster.waits, default=0):.1f} s at most),"
        f" {delivery.refused} refused twice, {delivery.lost} lost;"
        f" playbook runs {roll.seconds:.0f} s and {finish.seconds:.0f} s"
    )
    assert posts_before_finish > 0 and posts_during_finish > 0, "the posts must span both runs"
    assert during == ("PONG", "PONG", new), "during the roll both passwords work and the app uses the new one"
    assert redis_answers(host, new) == "PONG"
    assert "WRONGPASS" in redis_answers(host, old)
    assert delivery.refused == 0, f"posts failed twice: {traffic.poster.refused}"
    assert delivery.posted > 0 and delivery.lost == 0 and not delivery.problems, delivery.problems
