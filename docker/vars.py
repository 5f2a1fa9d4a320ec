#!/usr/bin/env python3
"""Check a user's template variables for the compose images and stage them for the build.

`make up VARS=my-vars.yml` runs this before anything is built:

    python3 docker/vars.py my-vars.yml docker/vars.local/channels-stack.yml

It exits 2 with one line per problem, and writes nothing, when the file is missing, is not YAML, is
not a mapping, names a variable deploy/defaults.yml does not define, gives a value of another kind
than the default's (a list for a number, ...), or changes a variable the compose files themselves
depend on (FIXED_IN_COMPOSE). Otherwise it writes the variables to OUT, which the Dockerfile renders
over docker/deploy-vars.yml (docker-compose.yml passes OUT as the build argument EXTRA_VARS).

Only PyYAML is needed (Debian's python3-yaml or the venv), so `make up` needs no virtualenv.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ROOT / "deploy" / "defaults.yml"
COMPOSE_VARS = ROOT / "docker" / "deploy-vars.yml"

# Variables the compose files depend on: changing only the rendered configs would leave a stack that
# never turns healthy (or serves nothing), so they are refused. The app's ports and process counts
# are not among them: the healthchecks and REDIS_URL read the variables the images were rendered
# with (docker/app/healthcheck.py, docker/app/entrypoint.sh, docker/redis/healthcheck.sh).
_PATHS = "docker/Dockerfile installs the programs, configs and volume at these paths"
_NETWORK = "the containers reach each other over the compose networks (docker/deploy-vars.yml)"
FIXED_IN_COMPOSE = {
    "nginx_listen_port": "docker-compose.yml publishes the nginx container's port 80 (HTTP_PORT is the host's)",
    "app_bind_host": _NETWORK,
    "app_upstream_host": "Nginx reaches the programs by the compose service name (docker/deploy-vars.yml)",
    "app_redis_host": "the app reaches Redis by the compose service name (docker/deploy-vars.yml)",
    "redis_bind_addresses": _NETWORK,
    "app_user": "docker/Dockerfile creates the user `channels` and runs as it",
    "app_group": "docker/Dockerfile creates the group `channels`",
    "app_code_dir": _PATHS,
    "app_tools_dir": _PATHS,
    "app_venv": _PATHS,
    "app_config_dir": _PATHS,
    "app_data_dir": _PATHS,
    "app_static_root": _PATHS,
    "app_log_dir": _PATHS,
    "app_run_dir": _PATHS,
    "nginx_conf_dir": _PATHS,
    "nginx_https_port": "docker-compose.yml publishes the nginx container's port 443 (HTTPS_PORT is the host's)",
    "nginx_https_public_port": "the redirect's port is HTTPS_PORT, the one docker-compose.yml publishes",
    "nginx_tls_certificate": "docker-compose.yml mounts the local CA's certificate there",
    "nginx_tls_certificate_key": "docker-compose.yml mounts the local CA's key there",
}


# deploy_mode's values (deploy/defaults.yml); the Ansible roles' argument_specs list the same choices.
DEPLOY_MODES = ("split", "asgi", "wsgi")


class VarsError(Exception):
    """The variables file cannot be used; the message names the file and every problem."""


def _load_mapping(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise VarsError(f"{path}: no such file") from exc
    except OSError as exc:
        raise VarsError(f"{path}: cannot read it: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VarsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VarsError(f"{path}: expected a mapping of variable: value, got a YAML {type(data).__name__}")
    return data


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _shape_problems(name: str, value) -> list[str]:
    """What is wrong with the value of a project variable (README "Use it for your project") beyond
    its kind: the checks of the Ansible roles' argument_specs and asserts, for the compose images."""
    if name == "worker_channels":
        problems = []
        for n, item in enumerate(value):
            where = f"worker_channels[{n}]"
            if not isinstance(item, dict) or set(item) - {"channel", "processes", "program"}:
                problems.append(f"{where}: expected a mapping of channel, processes and program (optional)")
            elif not isinstance(item.get("channel"), str) or not item["channel"]:
                problems.append(f"{where}: channel must be a channel name")
            elif type(item.get("processes")) is not int or item["processes"] < 1:
                problems.append(f"{where}: processes must be a whole number, 1 or more")
        return problems
    if name == "app_extra_environment":
        return [
            f"app_extra_environment: {key}={value!r}: a name of letters, digits and _; no quotes, newlines or %"
            for key, value in value.items()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) or re.search(r"[\"'\n%]", str(value))
        ]
    paths = ("app_project_dir", "app_requirements")
    if name in paths and (value.startswith("/") or ".." in value.split("/") or not (ROOT / value).exists()):
        return [f"{name}: {value!r} is not a path inside the repository (the build context)"]
    if name == "deploy_mode" and value not in DEPLOY_MODES:
        return [f'deploy_mode: {value!r} is not one of {", ".join(DEPLOY_MODES)} (README "Deploy modes")']
    if name == "app_health_path" and not value.startswith("/"):
        return [f"{name}: {value!r} must be a path starting with /"]
    if name == "app_ws_health_path" and not value.startswith("/ws/"):
        return [f"{name}: {value!r} must be a path under /ws/ (Nginx sends /ws/ to Daphne)"]
    return []


def check(path: Path) -> dict:
    """Return the variables of `path` after checking them against deploy/defaults.yml.

    Raises VarsError naming every problem found (not just the first).
    """
    variables = _load_mapping(path)
    defaults = _load_mapping(DEFAULTS)
    compose = {**defaults, **_load_mapping(COMPOSE_VARS)}
    problems = []
    for name, value in variables.items():
        if not isinstance(name, str) or name not in defaults:
            close = difflib.get_close_matches(str(name), defaults, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown variable {name!r}{hint}: the variables are those of deploy/defaults.yml")
            continue
        expected = _kind(defaults[name])
        # A default that names other variables ("{{ redis_port }}") takes a value of any kind.
        derived = isinstance(defaults[name], str) and "{{" in defaults[name]
        if value is not None and not derived and _kind(value) != expected:
            problems.append(f"{name}: expected a {expected} like the default {defaults[name]!r}, got {value!r}")
            continue
        if value is not None:
            problems.extend(_shape_problems(name, value))
        if name in FIXED_IN_COMPOSE and value != compose[name]:
            problems.append(
                f"{name}: the compose stack cannot change it ({FIXED_IN_COMPOSE[name]}); "
                f"it stays {compose[name]!r} here (a VM takes it from inventory vars)"
            )
    if problems:
        raise VarsError(f"{path}:\n  " + "\n  ".join(problems))
    return variables


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: docker/vars.py VARS-FILE OUT-FILE", file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    try:
        variables = check(source)
    except VarsError as exc:
        print(f"VARS: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"---\n# Staged by docker/vars.py from {source} (git-ignored; rewritten by every make up VARS=...).\n"
    body = yaml.safe_dump(variables, default_flow_style=False, sort_keys=True) if variables else "{}\n"
    out.write_text(header + body)
    print(f"VARS: {len(variables)} variable(s) from {source}: {', '.join(sorted(variables)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
