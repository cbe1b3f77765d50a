"""A private ``redis-server`` for the tests of ``whop_async.redis`` and ``whop_async.taskiq``.

Import the fixtures into a test module (``from redis_fixtures import redis_server, redis_url``).
``redis_server`` starts Debian's ``redis-server`` on a free port of 127.0.0.1, in a temporary
directory, without persistence, once per module, and stops it afterwards; ``redis_url`` gives a
test its URL and empties the database after it. Without ``redis-server`` on ``PATH`` (or without
the ``redis`` package) the tests skip, naming what is missing, except under CI (the ``CI``
environment variable set), where they fail: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import optional
import pytest

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url", "require", "start_redis"]

STARTUP_TIMEOUT = 10.0


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run the Redis tests (.ci/run installs it)")
    pytest.skip(f"{what} is missing: the Redis tests need it")


def require(module: str) -> ModuleType:
    """Import ``module`` of the redis or taskiq extra, or skip (see ``optional.require``)."""
    return optional.require(module, "pip install 'whop-async[redis,taskiq]'")


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A running ``redis-server`` process on 127.0.0.1."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, directory: Path) -> None:
        self.process = process
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (add ``/DB``)."""
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                self.process.kill()
                self.process.wait()


def start_redis(directory: Path, *, port: int | None = None) -> RedisServer:
    """Start a private ``redis-server`` in ``directory`` and wait until it answers PING.

    Skips (fails under CI) when ``redis-server`` is not on ``PATH``.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        _missing("redis-server (apt-get install redis-server)")
    assert executable is not None
    for _ in range(3):  # a free port can be taken between asking and binding
        chosen = port or free_port()
        log = (directory / f"redis-{chosen}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - redis-server from PATH
            [executable, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--daemonize", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(chosen):
                return RedisServer(process, chosen, directory)
            time.sleep(0.02)
        RedisServer(process, chosen, directory).stop()
        if port is not None:
            break
    log_text = "".join(path.read_text() for path in directory.glob("redis-*.log"))
    raise RuntimeError(f"redis-server did not start:\n{log_text[-2000:]}")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the test module, stopped at its end."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of database 0 of the module's server, emptied after the test."""
    yield f"{redis_server.url}/0"
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")
