#!/usr/bin/env python3
"""Render the deploy templates (deploy/**/*.j2) into a root directory.

Each rendered file names its installed path on its first line (``# /etc/nginx/nginx.conf``); the
file is written to ROOT + that path. Variables: deploy/defaults.yml, overlaid by each --vars file
in order, then by --set key=value (value parsed as YAML). A value may name others, as in Ansible
(`app_redis_port: "{{ redis_port }}"`): it is resolved after every override, so it follows them.
Ansible renders the same templates with its template module; this script is how the compose images
and the tests render them, and --write-vars leaves the resolved variables where the compose images'
scripts and the tests read them.

    python3 deploy/render.py --root / --vars docker/deploy-vars.yml
    python3 deploy/render.py --root / --only nginx/ --vars docker/nginx-vars.yml
    python3 deploy/render.py --list
    python3 deploy/render.py --root /rendered --write-vars /rendered/etc/channels-stack/deploy-vars.yml
    python3 deploy/render.py --vars docker/deploy-vars.yml --get app_project_dir
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import jinja2
import jinja2.nativetypes
import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
DEFAULTS = DEPLOY_DIR / "defaults.yml"
MANAGED = "Managed by channels-stack (deploy/render.py): local changes will be overwritten."


class RenderError(Exception):
    """A template or a variable file that cannot be rendered; the message says which and why."""


def load_vars(files: list[Path], overrides: list[str] = (), extra: dict | None = None) -> dict:
    """Return defaults.yml overlaid by each file, then by the extra mapping, then by key=value overrides."""
    variables: dict = {}
    for path in [DEFAULTS, *files]:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RenderError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise RenderError(f"{path}: expected a mapping of variables, got {type(data).__name__}")
        variables.update(data)
    variables.update(extra or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RenderError(f"--set {item!r}: expected key=value")
        variables[key] = yaml.safe_load(value)
    variables.setdefault("ansible_managed", MANAGED)
    return resolve(variables)


# Deeper than any chain of variables naming variables here (app_redis_url -> app_redis_port -> redis_port).
_RESOLVE_ROUNDS = 10


def resolve(variables: dict) -> dict:
    """Return variables with every "{{ ... }}" string value rendered from the others, like Ansible.

    Native types, as Ansible gives them: "{{ redis_port }}" becomes the number 6379, not "6379".
    """
    env = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    resolved = dict(variables)
    for _ in range(_RESOLVE_ROUNDS):
        pending = {k: v for k, v in resolved.items() if isinstance(v, str) and "{{" in v}
        if not pending:
            return resolved
        for key, value in pending.items():
            try:
                resolved[key] = env.from_string(value).render(resolved)
            except jinja2.TemplateError as exc:
                raise RenderError(f"{key}: {value!r}: {exc}") from exc
    raise RenderError(f"variables still name variables after {_RESOLVE_ROUNDS} rounds: {', '.join(pending)}")


def dump_vars(variables: dict) -> str:
    """The resolved variables as YAML (ansible_managed left out: it is the renderer's, not the stack's)."""
    public = {k: v for k, v in variables.items() if k != "ansible_managed"}
    header = "# The deploy variables these configs were rendered with (deploy/render.py --write-vars).\n"
    return header + yaml.safe_dump(public, default_flow_style=False, sort_keys=True)


def get_scalar(variables: dict, name: str) -> str:
    """The resolved variable `name` as text, for a shell (docker/up.sh); RenderError when it is not
    defined or is a list or mapping."""
    if name not in variables:
        raise RenderError(f"--get {name}: no such variable (deploy/defaults.yml defines them)")
    value = variables[name]
    if isinstance(value, list | dict):
        raise RenderError(f"--get {name}: a {type(value).__name__}, not a scalar")
    return str(value)


def templates(only: list[str] | None = None) -> list[Path]:
    found = sorted(DEPLOY_DIR.rglob("*.j2"))
    if only:
        found = [t for t in found if t.relative_to(DEPLOY_DIR).as_posix().startswith(tuple(only))]
        if not found:
            raise RenderError(f"--only {' '.join(only)}: no template matches")
    return found


def render_all(variables: dict, only: list[str] | None = None) -> dict[Path, tuple[Path, str]]:
    """Render every template; map template -> (absolute destination, text)."""
    # Config files, not HTML: escaping would corrupt them.
    env = jinja2.Environment(  # noqa: S701
        loader=jinja2.FileSystemLoader(str(DEPLOY_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Ansible's filter of the same name (re_type "python"), so both renderers write the same files.
    env.filters["regex_escape"] = re.escape
    env.filters["dirname"] = os.path.dirname
    rendered = {}
    for template in templates(only):
        name = template.relative_to(DEPLOY_DIR).as_posix()
        try:
            text = env.get_template(name).render(variables)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from exc
        first_line = text.split("\n", 1)[0]
        destination = first_line.removeprefix("#").strip()
        if not first_line.startswith("#") or not destination.startswith("/"):
            raise RenderError(f"{name}: first line must be '# /installed/path', got {first_line!r}")
        rendered[template] = (Path(destination), text)
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="directory the absolute destinations are written under")
    parser.add_argument("--vars", type=Path, action="append", default=[], help="YAML file of variables")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one variable")
    parser.add_argument("--only", action="append", metavar="PREFIX", help="only templates under PREFIX (nginx/)")
    parser.add_argument("--list", action="store_true", help="print template -> destination and exit")
    parser.add_argument("--get", metavar="NAME", help="print one resolved variable (a scalar) and exit")
    parser.add_argument("--write-vars", type=Path, metavar="FILE", help="also write the resolved variables (YAML)")
    args = parser.parse_args(argv)
    if not args.list and args.get is None and args.root is None:
        parser.error("--root, --list or --get is required")
    try:
        variables = load_vars(args.vars, args.set)
        if args.get is not None:
            print(get_scalar(variables, args.get))
            return 0
        rendered = render_all(variables, args.only)
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    for template, (destination, text) in rendered.items():
        if args.list:
            print(f"{template.relative_to(DEPLOY_DIR)} -> {destination}")
            continue
        target = args.root / destination.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if args.write_vars and not args.list:
        args.write_vars.parent.mkdir(parents=True, exist_ok=True)
        args.write_vars.write_text(dump_vars(variables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
