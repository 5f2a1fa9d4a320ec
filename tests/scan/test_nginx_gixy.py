"""Tests that gixy (gixy-ng, the maintained fork of Yandex's Nginx analyser) finds nothing in the Nginx
configuration each running target actually serves: the files copied out of the compose nginx container
and off the test host, includes and Debian's mime.types as installed, every check on but the one
tests/scan/gixy.cfg skips and says why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness.deploy import render

REPO = Path(__file__).resolve().parents[2]
GIXY = REPO / ".venv" / "bin" / "gixy"
CONFIG = Path(__file__).with_name("gixy.cfg")


def nginx_container(target) -> str:
    """The container whose /etc/nginx Nginx reads: the compose nginx service's, or the test host."""
    spec = target.nginx_host_spec()
    assert spec.startswith("docker://"), spec
    return spec.removeprefix("docker://")


def gixy_findings(conf_dir: Path) -> list[dict]:
    """gixy's findings (its JSON report: one dict per finding, with `plugin`, `severity`, `summary`,
    `config`) for conf_dir/nginx.conf, with tests/scan/gixy.cfg; AssertionError when gixy fails."""
    result = subprocess.run(
        [str(GIXY), "-c", str(CONFIG), "-f", "json", str(conf_dir / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=conf_dir,
    )
    # gixy exits 1 when it reports findings; anything else it could not read the config.
    assert result.returncode in (0, 1), f"gixy exited {result.returncode}: {result.stderr[-2000:]}"
    return json.loads(result.stdout or "[]")


def served_config(target, tmp_path: Path) -> Path:
    """A copy of the target's /etc/nginx as Nginx reads it, with includes rewritten to the copy."""
    subprocess.run(
        ["docker", "cp", "--follow-link", f"{nginx_container(target)}:/etc/nginx", str(tmp_path)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    conf_dir = tmp_path / "nginx"
    # Absolute includes (sites-enabled, modules-enabled, mime.types) must resolve inside the copy.
    for path in conf_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in ("", ".conf"):
            text = path.read_text(errors="replace")
            if "/etc/nginx/" in text:
                path.write_text(text.replace("/etc/nginx/", f"{conf_dir}/"))
    return conf_dir


def staging_allowances(target) -> set[str]:
    """gixy checks a target may fail by design: hsts_header (max-age under six months) where the target
    shortens HSTS below the production default (staging and the test host: 3600 s, because a browser
    applies a localhost HSTS to every port, README "HTTPS"). `make lint` runs gixy on the production
    default (deploy/defaults.yml), so the check stays on for what is deployed."""
    default = render.load_vars([])["nginx_hsts_max_age"]
    return {"hsts_header"} if target.variables["nginx_hsts_max_age"] < default else set()


def test_gixy_finds_nothing_in_the_served_nginx_config(target, tmp_path):
    """Tests that gixy reports no finding, of any severity, on the Nginx configuration the target runs
    (but a staging HSTS shorter than production's, on purpose: staging_allowances)."""
    conf_dir = served_config(target, tmp_path)
    assert (conf_dir / "nginx.conf").is_file(), sorted(p.name for p in conf_dir.iterdir())

    allowed = staging_allowances(target)
    findings = [finding for finding in gixy_findings(conf_dir) if finding.get("plugin") not in allowed]

    assert findings == [], "\n".join(
        f"{f.get('severity')} {f.get('plugin')}: {f.get('summary')} in {f.get('config', '').strip()[:200]}"
        for f in findings
    )


@pytest.mark.usefixtures("with_compose_session")
def test_gixy_reports_a_known_bad_directive(tmp_path):
    """Tests that the gixy run above would fail: a site with an `add_header` redefinition and an
    unanchored `valid_referers none` is reported, so an empty report means a clean config."""
    (tmp_path / "nginx.conf").write_text(
        "http {\n"
        "  server {\n"
        "    listen 80;\n"
        "    add_header X-Frame-Options DENY;\n"
        "    location / {\n"
        "      add_header X-Content-Type-Options nosniff;\n"
        "      valid_referers none server_names *.example.com;\n"
        "      if ($invalid_referer) { return 403; }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )

    plugins = {finding["plugin"] for finding in gixy_findings(tmp_path)}

    assert {"add_header_redefinition", "valid_referers"} <= plugins, plugins
