"""The deploy site (deploy/nginx/channels-stack.conf.j2) rendered with chosen variables and served by a
throwaway Nginx of this machine, for the unit tier's Nginx tests (test_nginx_site, test_nginx_tls)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from listeners import wait_until_listening

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]


def render_site(variables: list[str]) -> None:
    """Renders only the site with render.py's `--set NAME=VALUE` for each of `variables` (the site lands
    under the nginx_conf_dir they set); AssertionError with render.py's stderr when it fails."""
    result = subprocess.run(
        [*RENDER, "--root", "/", "--only", "nginx/channels-stack", *[a for v in variables for a in ("--set", v)]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def running_nginx(prefix: Path, conf_dir: Path, port: int, workers_as_root: bool = False) -> Iterator[Path]:
    """Runs Nginx with the site rendered into conf_dir, its pid, logs and temp dirs under prefix, until
    the block ends; returns once it listens on `port` (RuntimeError naming its stderr if it exits
    first). A main config of its own: the deploy nginx.conf names /run/nginx.pid and Debian's log paths.
    workers_as_root: run by root, Nginx's workers would be `nobody`, who cannot enter pytest's 0700
    temp directories (to read a webroot there). Yields the access log's path."""
    temp_paths = "".join(f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy"))
    user = "user root;\n" if workers_as_root and os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {prefix}/access.log;\n{temp_paths}"
        f"    include {conf_dir}/conf.d/channels-stack.conf;\n}}\n"
    )
    process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(main)], stderr=subprocess.PIPE, text=True)
    wait_until_listening(process, port, 10, "nginx")
    try:
        yield prefix / "access.log"
    finally:
        process.terminate()
        process.wait(timeout=10)


def held_as_websocket(handler: BaseHTTPRequestHandler) -> bool:
    """For a test upstream's handler: a WebSocket upgrade is answered 101 and the connection held until
    the other end closes it, as Daphne holds a socket (True); any other request is left to the
    handler (False)."""
    if handler.headers.get("Upgrade", "").lower() != "websocket":
        return False
    handler.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    handler.wfile.flush()
    while handler.connection.recv(65536):
        pass
    handler.close_connection = True
    return True


@contextlib.contextmanager
def tagged_upstreams(*names: str) -> Iterator[dict[str, int]]:
    """One HTTP server per name on a free loopback port, each answering GET and POST with
    {"upstream": name, "path": path}; yields {name: port} and shuts them down after."""
    servers = {}
    for name in names:

        class Handler(BaseHTTPRequestHandler):
            upstream = name

            def answer(self):
                body = json.dumps({"upstream": self.upstream, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        servers[name] = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=servers[name].serve_forever, daemon=True).start()
    try:
        yield {name: server.server_address[1] for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()


def tagged_site_variables(conf_dir: Path, port: int, upstreams: dict[str, int], static_root: Path) -> list[str]:
    """render_site's variables for the plain-HTTP site on `port` whose Gunicorn and one Daphne are the
    tagged upstreams (tagged_upstreams("gunicorn", "daphne"))."""
    return [
        f"nginx_conf_dir={conf_dir}",
        f"nginx_listen_port={port}",
        f"gunicorn_port={upstreams['gunicorn']}",
        f"daphne_base_port={upstreams['daphne']}",
        "daphne_processes=1",
        f"app_static_root={static_root}",
        "nginx_tls=false",
    ]
