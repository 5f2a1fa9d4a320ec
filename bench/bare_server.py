"""The reference: a bare in-memory asyncio broadcast server with the board's protocol.

    python -m bench.bare_server --ws-port 18201 --http-port 18202

WebSocket `/ws/board/?after=<id>`: the stored messages after `id` (none without `after`), then
``{"type": "ready", "last_id", "served_by"}``, then every new message as ``{"type": "message",
"id", "text", "created"}`` — the board's frames, so the same receivers read both. HTTP
``POST /api/messages`` ``{"text"}`` stores the message in a list and broadcasts it to every open
socket (websockets.broadcast: one write per socket, no awaiting), answering 201 ``{"id", "text",
"created"}``. ``GET /api/messages?after=<id>`` answers ``{"messages": [...], "has_more"}`` (at most
50), and ``GET /api/messages/wait?after=<id>&timeout=<s>`` the same at once when there are messages
after `id`, else when the next is posted or after `timeout` s (an empty list): the board's short
and long polls (issue 14), for the polling clients' loopback tests. ``GET /`` answers 200 (the
poster asks it for a CSRF cookie; there is none). No database, no channel layer, no proxy, one
process: the floor of what Python does with the same load on the same machine.

Binds loopback only. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import time
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

HOST = "127.0.0.1"


class Board:
    def __init__(self):
        self.messages: list[dict] = []
        self.sockets: set[ServerConnection] = set()
        self.posted = asyncio.Event()  # set and replaced at every post: wakes the long polls

    def page(self, after: int, limit: int = 50) -> dict:
        found = self.messages[after : after + limit + 1]
        return {"messages": found[:limit], "has_more": len(found) > limit}

    async def wait(self, after: int, timeout: float) -> dict:
        if len(self.messages) <= after:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.posted.wait(), timeout)
        return self.page(after)

    def post(self, text: str) -> dict:
        message = {"id": len(self.messages) + 1, "text": text, "created": time.time()}
        self.messages.append(message)
        broadcast(self.sockets, json.dumps({"type": "message", **message}))
        self.posted.set()
        self.posted = asyncio.Event()
        return message

    async def socket(self, connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path).query)
        try:
            after = int(query["after"][0]) if "after" in query else len(self.messages)
        except ValueError:
            await connection.close(4400, "bad after")
            return
        # Backlog, ready and joining with no await in between (broadcast() writes without awaiting),
        # so no message is missed or sent twice.
        for message in self.messages[after:]:
            broadcast([connection], json.dumps({"type": "message", **message}))
        broadcast([connection], json.dumps({"type": "ready", "last_id": len(self.messages), "served_by": "bare"}))
        self.sockets.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self.sockets.discard(connection)


async def http_client(board: Board, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive, just enough for GET / and POST /api/messages."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST" and target == "/api/messages":
                try:
                    text = json.loads(body)["text"]
                    status, payload = 201, board.post(str(text))
                except (ValueError, KeyError, TypeError):
                    status, payload = 400, {"error": 'expected {"text": ...}'}
            elif method == "GET" and urlsplit(target).path in ("/api/messages", "/api/messages/wait"):
                query = parse_qs(urlsplit(target).query)
                after = int(query.get("after", ["0"])[0])
                if urlsplit(target).path == "/api/messages":
                    status, payload = 200, board.page(after)
                else:
                    status, payload = 200, await board.wait(after, float(query.get("timeout", ["25"])[0]))
            elif method == "GET" and target == "/":
                status, payload = 200, {"server": "bare"}
            else:
                status, payload = 404, {"error": "not found"}
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(ws_port: int, http_port: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    board = Board()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    http = await asyncio.start_server(lambda r, w: http_client(board, r, w), HOST, http_port, backlog=1024)
    async with serve(board.socket, HOST, ws_port, compression=None, ping_interval=20, backlog=1024, max_queue=None):
        print(f"bare server: ws://{HOST}:{ws_port}/ws/board/ and http://{HOST}:{http_port}/", flush=True)
        await stop
    http.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ws-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.ws_port, args.http_port))
