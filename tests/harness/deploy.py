"""The deploy variables a stack is rendered with, read with deploy/render.py's own loader.

Ports, process counts and paths of every target come from here, never from constants in the tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deploy_render", REPO / "deploy" / "render.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)

VM_INVENTORY_VARS = REPO / "ansible" / "inventories" / "local-vm" / "group_vars" / "channels_stack" / "main.yml"
CLUSTER_INVENTORY_VARS = REPO / "ansible" / "inventories" / "local-cluster" / "group_vars" / "channels_stack"
CLUSTER_INVENTORY_VARS /= "main.yml"


def repo_path(name: str | os.PathLike) -> Path:
    """name as an absolute path; a relative one is taken from the repository root."""
    path = Path(name)
    return path if path.is_absolute() else REPO / path


def compose_vars(extra: str | None = None) -> dict:
    """The compose images' variables: deploy/defaults.yml, docker/deploy-vars.yml, then `extra` (the
    EXTRA_VARS file the images are built with; default: $EXTRA_VARS, else none)."""
    extra = extra or os.environ.get("EXTRA_VARS") or "docker/no-vars.yml"
    return render.load_vars([REPO / "docker" / "deploy-vars.yml", repo_path(extra)])


def vm_vars(extra: str | None = None) -> dict:
    """The test host's variables: deploy/defaults.yml, the local-vm inventory's deploy variables (its
    other values are Ansible expressions), then `extra` (the playbook's --extra-vars file; default:
    $VM_VARS, else none)."""
    return inventory_vars(VM_INVENTORY_VARS, extra or os.environ.get("VM_VARS"))


def cluster_vars(extra: str | None = None) -> dict:
    """The cluster's app hosts' variables, like vm_vars with the local-cluster inventory (default
    extra: $CLUSTER_VARS, else none). Values the inventory computes per host (addresses) are not here."""
    return inventory_vars(CLUSTER_INVENTORY_VARS, extra or os.environ.get("CLUSTER_VARS"))


def inventory_vars(group_vars: Path, extra: str | None) -> dict:
    """deploy/defaults.yml, the plain deploy variables of an inventory's group_vars file (its Ansible
    expressions left out), then the file `extra`."""
    defaults = render.load_vars([])
    inventory = yaml.safe_load(group_vars.read_text()) or {}
    plain = {k: v for k, v in inventory.items() if k in defaults and not (isinstance(v, str) and "{{" in v)}
    return render.load_vars([repo_path(extra)] if extra else [], extra=plain)


def deploy_vars(kind: str) -> dict:
    """The deploy variables target kind `kind` ("compose", "vm") is rendered with; ValueError otherwise.

    Read at collection time too: tests are parametrized by them.
    """
    loaders = {"compose": compose_vars, "vm": vm_vars, "cluster": cluster_vars}
    if kind not in loaders:
        raise ValueError(f"unknown target {kind!r}; known: {', '.join(sorted(loaders))}")
    return loaders[kind]()


def mode(variables: dict) -> str:
    """The deploy_mode of the variables: "split", "asgi" or "wsgi" (README "Deploy modes")."""
    return variables.get("deploy_mode", "split")


def has_gunicorn(variables: dict) -> bool:
    """Whether the mode runs Gunicorn (split, wsgi), as deploy/supervisor/programs.conf.j2 has it."""
    return mode(variables) in ("split", "wsgi")


def has_daphne(variables: dict) -> bool:
    """Whether the mode runs Daphne processes (split, asgi)."""
    return mode(variables) in ("split", "asgi")


def http_interface(variables: dict) -> str:
    """Which interface answers pages, the API and app_health_path through Nginx: "asgi" (Daphne) in
    deploy_mode asgi, else "wsgi" (Gunicorn); /healthz's "interface" field says the same."""
    return "asgi" if mode(variables) == "asgi" else "wsgi"


def daphne_ports(variables: dict) -> tuple[int, ...]:
    """One port per Daphne process: daphne_base_port + n, as deploy/supervisor/programs.conf.j2 has it;
    none in deploy_mode wsgi."""
    if not has_daphne(variables):
        return ()
    return tuple(variables["daphne_base_port"] + n for n in range(variables["daphne_processes"]))


def workers(variables: dict) -> tuple[str, ...]:
    """The worker programs (group:name) of worker_channels: <program>:<program>-N for each channel's
    processes, program defaulting to worker-<channel>, as deploy/supervisor/programs.conf.j2 has it."""
    names = []
    for worker in variables["worker_channels"]:
        program = worker.get("program", f"worker-{worker['channel']}")
        names.extend(f"{program}:{program}-{n}" for n in range(worker["processes"]))
    return tuple(names)


def health_paths(variables: dict) -> tuple[str, ...]:
    """The health paths Nginx serves in the variables' mode: app_health_path (Gunicorn's; Daphne's in
    asgi) and app_ws_health_path (Daphne's), the latter not in wsgi (no Daphne: 404)."""
    paths = (variables["app_health_path"], variables["app_ws_health_path"])
    return paths if has_daphne(variables) else paths[:1]


def programs(variables: dict) -> tuple[str, ...]:
    """Every supervisor program (group:name) the variables make the stack run (the mode decides
    whether Gunicorn and the Daphne processes are among them)."""
    gunicorn = ("gunicorn",) if has_gunicorn(variables) else ()
    return (*gunicorn, *(f"daphne:daphne-{port}" for port in daphne_ports(variables)), *workers(variables))


def app_ports(variables: dict) -> tuple[int, ...]:
    """Gunicorn's port (when the mode runs it), then each Daphne's."""
    gunicorn = (variables["gunicorn_port"],) if has_gunicorn(variables) else ()
    return (*gunicorn, *daphne_ports(variables))
