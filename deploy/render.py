#!/usr/bin/env python3
"""Render the deploy templates (deploy/**/*.j2) into a root directory.

Each rendered file names its installed path on its first line (``# /etc/nginx/nginx.conf``); the
file is written to ROOT + that path. Variables: deploy/defaults.yml, overlaid by each --vars file
in order, then by --set key=value (value parsed as YAML). Ansible renders the same templates with
its template module; this script is how the compose images and the tests render them.

    python3 deploy/render.py --root / --vars docker/deploy-vars.yml
    python3 deploy/render.py --root / --only nginx/ --vars docker/nginx-vars.yml
    python3 deploy/render.py --list
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jinja2
import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
DEFAULTS = DEPLOY_DIR / "defaults.yml"
MANAGED = "Managed by channels-stack (deploy/render.py): local changes will be overwritten."


class RenderError(Exception):
    """A template or a variable file that cannot be rendered; the message says which and why."""


def load_vars(files: list[Path], overrides: list[str]) -> dict:
    """Return defaults.yml overlaid by each file, then by key=value overrides."""
    variables: dict = {}
    for path in [DEFAULTS, *files]:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RenderError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise RenderError(f"{path}: expected a mapping of variables, got {type(data).__name__}")
        variables.update(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RenderError(f"--set {item!r}: expected key=value")
        variables[key] = yaml.safe_load(value)
    variables.setdefault("ansible_managed", MANAGED)
    return variables


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
    args = parser.parse_args(argv)
    if not args.list and args.root is None:
        parser.error("--root or --list is required")
    try:
        rendered = render_all(load_vars(args.vars, args.set), args.only)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
