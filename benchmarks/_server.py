"""The local HTTP server the benchmark sends to: nginx when installed, else a small asyncio one.

Both answer ``POST /api/v1/notifications`` with ``200 {"success":true}`` on keep-alive
connections, 404 for any other path, and ``GET /__status`` with nginx's ``stub_status`` text,
whose third number counts every request served (the status requests included). The server
process is pinned to one core so that it never competes with the client being measured.

Run as ``python _server.py PORT`` to start the asyncio server by hand.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

__all__ = ["Server", "free_port", "start_server"]

API_PATH = "/api/v1/notifications"
STATUS_PATH = "/__status"

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location = {api_path} {{
            default_type application/json;
            return 200 '{{"success":true}}';
        }}
        location = {status_path} {{ stub_status; }}
        location / {{ return 404; }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pin_to(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


class Server:
    """A running server process: its kind, its base URL and its request counter."""

    def __init__(self, kind: str, process: subprocess.Popen[bytes], port: int, tmp: Path) -> None:
        self.kind = kind
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/api/v1"
        self._process = process
        self._tmp = tmp

    def requests_served(self) -> int:
        """Requests served so far, this status request included (nginx's ``stub_status``)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", STATUS_PATH)
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        return int(text.splitlines()[2].split()[2])

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll the status page until the server answers, or raise ``RuntimeError``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self._process.returncode}")
            try:
                self.requests_served()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} did not start on port {self.port}") from None
                time.sleep(0.05)
            else:
                return

    def stop(self) -> None:
        """Stop the server process we started and remove its temporary directory."""
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)


def start_server(kind: str = "auto", *, core: int | None = 0) -> Server:
    """Start nginx (``kind="nginx"``, or ``"auto"`` when it is on PATH) or the asyncio server."""
    nginx = shutil.which("nginx")
    if kind == "nginx" and nginx is None:
        raise RuntimeError("nginx is not on PATH; use --server python")
    tmp = Path(tempfile.mkdtemp(prefix="whop-bench-"))
    port = free_port()
    if nginx is not None and kind in ("auto", "nginx"):
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(tmp=tmp, port=port, api_path=API_PATH, status_path=STATUS_PATH)
        )
        command = [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        server_kind = "nginx"
    else:
        command = [sys.executable, str(Path(__file__).resolve()), str(port)]
        server_kind = "python-asyncio" + ("+uvloop" if _has_uvloop() else "")
    process = subprocess.Popen(command, preexec_fn=lambda: _pin_to(core))
    server = Server(server_kind, process, port, tmp)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# The asyncio fallback server.

_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
    b'{"success":true}'
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Counter:
    served = 0


def _status_response() -> bytes:
    served = _Counter.served
    body = (
        f"Active connections: 0 \nserver accepts handled requests\n 0 0 {served} \n"
        "Reading: 0 Writing: 0 Waiting: 0 \n"
    ).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _content_length(head: bytes) -> int | None:
    """The Content-Length of a request head; None when the body is chunked (unsupported)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            return None
    return length


class _HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive with incremental parsing: pipelined requests are answered in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        replies: list[bytes] = []
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(self._buffer[:end])
            length = _content_length(head)
            if length is None:
                replies.append(_BAD_REQUEST)
                self._transport.write(b"".join(replies))
                self._transport.close()
                return
            total = end + 4 + length
            if len(self._buffer) < total:
                break
            del self._buffer[:total]
            _Counter.served += 1
            replies.append(_reply(head))
        if replies:
            self._transport.write(b"".join(replies))


def _reply(head: bytes) -> bytes:
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0].decode("latin-1")
    if method == b"POST" and path == API_PATH:
        return _OK
    if method == b"GET" and path == STATUS_PATH:
        return _status_response()
    return _NOT_FOUND


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HTTPProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve on 127.0.0.1:PORT until terminated, with uvloop when it is installed."""
    port = int(sys.argv[1])
    if _has_uvloop():
        import uvloop

        uvloop.run(_serve(port))
    else:
        asyncio.run(_serve(port))


if __name__ == "__main__":
    main()
