"""A real forward HTTP proxy on loopback, for the tests of ``AsyncWhop(proxy=..., trust_env=...)``.

Import the fixtures into a test module (``from proxy_fixtures import forward_proxy, ...``).
``forward_proxy`` runs `proxy.py <https://pypi.org/project/proxy.py/>`_ (from the test
requirements) on a port of 127.0.0.1 the kernel picks, once per module;
``authenticating_proxy`` runs a second one that answers 407 to a request without its basic-auth
credentials. Both are stopped at the end of the module.

Every plain-http request either proxy forwards reaches the server with ``X-Test-Proxy: NAME``
(``MARK_HEADER``; NAME is ``open`` or ``auth``) and without ``Proxy-Authorization``: the
``MarkForwardedRequests`` plugin below does that for each request of a kept-alive connection.
(proxy.py's own ``Via`` header, and its removal of ``Proxy-Authorization``, apply to the first
request of a connection only.) An ``https://`` target goes through a CONNECT tunnel the proxy
cannot read: ``ForwardProxy.access_log()`` shows those. Without proxy.py the tests skip, naming
it, except under CI (the ``CI`` environment variable set), where they fail: CI must run them.

proxy.py binds 127.0.0.1 only, keeps its files in a temporary directory (not ``~/.proxy``), and
makes no connection of its own: it connects only where a client asks it to.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from proxy.http.parser import HttpParser
    from proxy.http.proxy import HttpProxyBasePlugin
except ImportError:  # proxy.py is missing: start_proxy() skips, or fails under CI
    HttpProxyBasePlugin = object  # type: ignore[assignment,misc]

__all__ = [
    "MARK_HEADER",
    "PROXY_PASSWORD",
    "PROXY_USER",
    "ForwardProxy",
    "MarkForwardedRequests",
    "authenticating_proxy",
    "forward_proxy",
    "start_proxy",
    "unused_port",
]

STARTUP_TIMEOUT = 20.0  # proxy.py imports in about half a second; CI runs it under coverage
STOP_TIMEOUT = 5.0

#: The credentials ``authenticating_proxy`` wants; the password is what must never be shown.
PROXY_USER = "proxy-user"
PROXY_PASSWORD = "pr0xy-s3cret-7d1f"

#: The header the proxy adds to every request it forwards; its value names the proxy.
MARK_HEADER = "X-Test-Proxy"
_NAME_VARIABLE = "PROXY_FIXTURES_NAME"

#: Runs proxy.py's command line with this module's directory at the end of ``sys.path``, so that
#: proxy.py can load the plugin below and nothing in tests/ can shadow a module it imports.
_BOOT = "import sys; sys.path.append(sys.argv.pop(1)); from proxy.proxy import main; main()"

_ACCESS_LINE = re.compile(r"server\.access_log:\d+ - (?P<line>.*)$")


class MarkForwardedRequests(HttpProxyBasePlugin):
    """A proxy.py plugin: mark every request forwarded upstream, and drop its proxy credentials.

    proxy.py calls ``handle_client_request`` for each request of a kept-alive connection; its own
    ``Via`` header and credential removal happen for the first one only. Runs inside proxy.py.
    """

    def handle_client_request(self, request: HttpParser) -> HttpParser | None:
        request.del_header(b"Proxy-Authorization")
        name = os.environ.get(_NAME_VARIABLE, "proxy").encode()
        request.add_header(MARK_HEADER.encode(), name)
        return request


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run the proxy tests (nox installs it)")
    pytest.skip(f"{what} is missing: the proxy tests need it")


def _proxy_py_version() -> str | None:
    """proxy.py's version if it is installed for this interpreter (its module is ``proxy``)."""
    try:
        return importlib.metadata.version("proxy.py")
    except importlib.metadata.PackageNotFoundError:
        return None


def unused_port() -> int:
    """A port of 127.0.0.1 nothing listens on (at the moment of asking): a proxy that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ForwardProxy:
    """A running proxy.py on 127.0.0.1 (its process, port and log)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        directory: Path,
        credentials: tuple[str, str] | None,
        name: str,
    ) -> None:
        self.name = name
        """What ``MARK_HEADER`` says on the requests this proxy forwards."""
        self.process = process
        self.port = port
        self.directory = directory
        self.credentials = credentials

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """``http://USER:PASSWORD@127.0.0.1:PORT`` (only for a proxy started with credentials)."""
        assert self.credentials is not None, "this proxy takes no credentials"
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "proxy.log"

    def access_log(self) -> list[str]:
        """One line per client connection the proxy served, naming its first request:
        ``127.0.0.1:51234 - POST 127.0.0.1:40123/api/v1/notifications - 200 OK - ...``, or
        ``CONNECT 127.0.0.1:40123 - ...`` for a tunnel (``None:None`` when refused with 407).

        The worker writes the line when the connection closes, a moment after the client closed
        it: poll for it (bounded), and count requests with ``MARK_HEADER`` instead.
        """
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [m["line"] for m in map(_ACCESS_LINE.search, lines) if m is not None]

    def stop(self) -> None:
        """Stop the proxy and wait for it: on SIGTERM it ends its worker and exits (~1 s)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck proxy
            # Its worker is in the process group started for it, whose id is the proxy's pid
            # (not yet reaped, so not reused): end the group, then reap.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_proxy(
    directory: Path, *, name: str = "proxy", credentials: tuple[str, str] | None = None
) -> ForwardProxy:
    """Start proxy.py on a free port of 127.0.0.1 and wait until it accepts connections.

    ``name`` is what ``MARK_HEADER`` says on the requests it forwards; ``credentials`` (user,
    password) makes it answer 407 to requests without them. Skips (fails under CI) when
    proxy.py is not installed for this interpreter.
    """
    if _proxy_py_version() is None:
        _missing("proxy.py (pip install proxy.py)")
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-c", _BOOT, str(Path(__file__).resolve().parent),
        "--hostname", "127.0.0.1",
        "--port", "0",  # the kernel picks the port: no race between asking and binding
        "--port-file", str(port_file),
        "--num-acceptors", "1",
        "--num-workers", "1",
        "--data-dir", str(directory / "data"),
        "--cache-dir", str(directory / "cache"),
        "--log-file", str(directory / "proxy.log"),
        "--log-level", "INFO",  # INFO: the access log (a line per connection)
        "--timeout", "10",
        "--plugins", f"{Path(__file__).stem}.{MarkForwardedRequests.__qualname__}",
    ]  # fmt: skip
    if credentials is not None:
        command += ["--basic-auth", ":".join(credentials)]
    output = (directory / "proxy.out").open("wb")
    process = subprocess.Popen(  # noqa: S603 - proxy.py of this interpreter
        command,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=directory,
        env={**os.environ, _NAME_VARIABLE: name},
        start_new_session=True,  # its own process group, so stop() can end its worker too
    )
    output.close()
    server = ForwardProxy(process, 0, directory, credentials, name)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        text = port_file.read_text().strip() if port_file.exists() else ""
        if text.isdigit() and _accepts(int(text)):
            server.port = int(text)
            return server
        time.sleep(0.05)
    server.stop()
    log = "".join(
        path.read_text(errors="replace")
        for path in (directory / "proxy.out", directory / "proxy.log")
        if path.exists()
    )
    raise RuntimeError(f"proxy.py did not start within {STARTUP_TIMEOUT:g} s:\n{log[-2000:]}")


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """An open forward proxy on 127.0.0.1 for the test module, stopped at its end."""
    server = start_proxy(tmp_path_factory.mktemp("proxy"), name="open")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def authenticating_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """A forward proxy that wants ``PROXY_USER``/``PROXY_PASSWORD`` (else 407), for the module."""
    server = start_proxy(
        tmp_path_factory.mktemp("proxy-auth"), name="auth", credentials=(PROXY_USER, PROXY_PASSWORD)
    )
    try:
        yield server
    finally:
        server.stop()
