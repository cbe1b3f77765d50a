"""HTTP proxies: ``AsyncWhop(proxy=...)``, ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (on unless
``trust_env=False``), proxy credentials, and ``whop-async --proxy``.

Every request goes through a real forward proxy, proxy.py, on 127.0.0.1 (``proxy_fixtures``).
The emulator tells whether a request came through it, and through which: the proxy adds
``X-Test-Proxy: open`` (or ``auth``) to each request it forwards and strips
``Proxy-Authorization``. The ``auth`` proxy wants basic-auth credentials: without them it
answers 407 itself and the emulator sees nothing. An ``https://`` base URL goes through the
proxy as a CONNECT tunnel, which the proxy cannot mark: those tests read its access log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
import trustme
from proxy_fixtures import (
    MARK_HEADER,
    PROXY_PASSWORD,
    PROXY_USER,
    ForwardProxy,
    authenticating_proxy,
    forward_proxy,
    unused_port,
)
from yarl import URL

from whop_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AsyncWhop,
    AttemptEvent,
    Backoff,
    InvalidParamsError,
    WhopEvent,
)
from whop_async.testing import ReceivedRequest, WhopEmulator

__all__ = ["authenticating_proxy", "forward_proxy"]  # fixtures used by name

MakeClient = Callable[..., AsyncWhop]
SEND = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}
WRONG_PASSWORD = "wr0ng-pr0xy-pa55"
LOG_WAIT = 5.0  # seconds for proxy.py's access-log line (written when a connection ends)

#: Every variable ``urllib.request.getproxies()`` or ``proxy_bypass()`` reads on Linux, in either
#: case; ``REQUEST_METHOD`` (a CGI environment) makes it ignore ``HTTP_PROXY``.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy setting of the machine's (a developer's NO_PROXY, CI's HTTP_PROXY) leaks in."""
    for name in list(os.environ):
        if name.lower() in _PROXY_VARIABLES or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name in ("WHOP_API_KEY", "WHOP_BASE_URL", "WHOP_APP_ID", "WHOP_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def header(request: ReceivedRequest, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def proxied(request: ReceivedRequest) -> bool:
    """Whether the emulator got ``request`` from one of the test proxies."""
    return header(request, MARK_HEADER) is not None


def assert_all_proxied(server: WhopEmulator, count: int = 1, *, by: ForwardProxy) -> None:
    assert len(server.requests) == count
    assert [header(request, MARK_HEADER) for request in server.requests] == [by.name] * count
    # The proxy's credentials stop at the proxy; Whop's bearer token goes on to Whop.
    assert all(header(request, "Proxy-Authorization") is None for request in server.requests)
    assert all(
        header(request, "Authorization") == f"Bearer {server.api_key}"
        for request in server.requests
    )


def assert_none_proxied(server: WhopEmulator, count: int = 1) -> None:
    assert len(server.requests) == count
    assert not any(proxied(request) for request in server.requests), server.requests


def assert_never_shown(secret: str, client: AsyncWhop, records: list[logging.LogRecord]) -> None:
    """``secret`` is in neither ``repr(client)`` nor any record, its traceback included."""
    assert secret not in repr(client)
    formatter = logging.Formatter()
    shown = [text for text in map(formatter.format, records) if secret in text]
    assert not shown, f"the proxy password appeared in log records: {shown}"


def attempts_of(events: list[WhopEvent]) -> list[AttemptEvent]:
    return [event for event in events if isinstance(event, AttemptEvent)]


async def wait_for_access_log(proxy: ForwardProxy, text: str) -> list[str]:
    """The proxy's access-log lines containing ``text``, waiting (bounded) for one to appear."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        lines = [line for line in proxy.access_log() if text in line]
        if lines or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.05)


# An explicit proxy


@pytest.mark.parametrize("as_type", [str, URL], ids=["str", "URL"])
async def test_an_explicit_proxy_carries_every_request(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
    as_type: Callable[[str], str | URL],
) -> None:
    client = make_client(proxy=as_type(forward_proxy.url))

    for _ in range(3):  # over one kept-alive connection to the proxy
        response = await client.notifications.create(**SEND)
        assert response.success is True

    assert_all_proxied(whop_emulator, count=3, by=forward_proxy)
    assert len(whop_emulator.notifications) == 3


async def test_an_explicit_proxy_wins_over_the_environment_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
) -> None:
    # The environment names a proxy that is down and exempts the host: neither applies.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = make_client(proxy=forward_proxy.url)

    await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=forward_proxy)


async def test_an_explicit_proxy_applies_to_a_session_of_your_own(
    whop_emulator: WhopEmulator, forward_proxy: ForwardProxy
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        AsyncWhop(
            whop_emulator.api_key,
            base_url=whop_emulator.base_url,
            session=session,
            proxy=forward_proxy.url,
        ) as client,
    ):
        await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=forward_proxy)


async def test_derived_clients_keep_the_proxy(
    make_client: MakeClient, whop_emulator: WhopEmulator, forward_proxy: ForwardProxy
) -> None:
    client = make_client(proxy=forward_proxy.url)

    await client.with_options(max_retries=0).notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=forward_proxy)


@pytest.mark.parametrize(
    "proxy",
    ["socks5://user:hunter2@127.0.0.1:1080", "127.0.0.1:3128", "http://", "ftp://127.0.0.1"],
)
def test_a_proxy_that_is_not_an_http_url_is_refused_without_showing_it(proxy: str) -> None:
    with pytest.raises(InvalidParamsError, match="proxy") as caught:
        AsyncWhop("sk_test", proxy=proxy)

    assert "hunter2" not in str(caught.value)


def test_trust_env_must_be_a_bool() -> None:
    with pytest.raises(InvalidParamsError, match="trust_env"):
        AsyncWhop("sk_test", trust_env="no")  # type: ignore[arg-type]


# The environment


@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy"])
async def test_http_proxy_in_the_environment_is_honoured_by_default(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
    name: str,
) -> None:
    monkeypatch.setenv(name, forward_proxy.url)
    client = make_client()

    await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=forward_proxy)


async def test_trust_env_false_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)
    client = make_client(trust_env=False)

    await client.notifications.create(**SEND)

    assert_none_proxied(whop_emulator)


async def test_https_proxy_is_not_used_for_a_plain_http_base_url(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)
    client = make_client()

    await client.notifications.create(**SEND)

    assert_none_proxied(whop_emulator)


@pytest.mark.parametrize("name", ["NO_PROXY", "no_proxy"])
@pytest.mark.parametrize(
    "value", ["127.0.0.1", "*", "example.com,127.0.0.1", " .example.com , 127.0.0.1 "]
)
async def test_no_proxy_naming_the_host_bypasses_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv(name, value)
    client = make_client()

    await client.notifications.create(**SEND)

    assert_none_proxied(whop_emulator)


@pytest.mark.parametrize("value", ["example.com", "localhost", "127.0.0.0/8"])
async def test_no_proxy_naming_other_hosts_leaves_the_proxy_on(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
    value: str,
) -> None:
    # Loopback is not exempt by itself, "localhost" does not match 127.0.0.1 and CIDR ranges
    # are not understood: the standard library's rules, which aiohttp and this client share.
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("NO_PROXY", value)
    client = make_client()

    await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=forward_proxy)


async def test_the_environment_is_read_when_the_client_is_made(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
) -> None:
    client = make_client()
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)

    await client.notifications.create(**SEND)

    assert_none_proxied(whop_emulator)


@pytest.mark.parametrize("session_trusts_env", [False, True])
async def test_a_session_of_your_own_decides_about_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    whop_emulator: WhopEmulator,
    forward_proxy: ForwardProxy,
    session_trusts_env: bool,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    async with (
        aiohttp.ClientSession(trust_env=session_trusts_env) as session,
        AsyncWhop(whop_emulator.api_key, base_url=whop_emulator.base_url, session=session) as c,
    ):
        await c.notifications.create(**SEND)

    assert len(whop_emulator.requests) == 1
    assert proxied(whop_emulator.requests[0]) is session_trusts_env


async def test_a_netrc_entry_for_the_host_does_not_replace_the_bearer_token(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
) -> None:
    # aiohttp's own trust_env reads ~/.netrc (or $NETRC) for the target host: aiohttp 3.9 to
    # 3.13.0 then sends Basic credentials instead of our Bearer token (a 401), 3.13.1 and later
    # raise ValueError. The client's trust_env is about proxies only.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = make_client()

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert header(whop_emulator.requests[0], "Authorization") == f"Bearer {whop_emulator.api_key}"


# Proxy credentials


async def test_credentials_in_the_proxy_url_go_to_the_proxy_only(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    authenticating_proxy: ForwardProxy,
    whop_logs: list[logging.LogRecord],
) -> None:
    client = make_client(proxy=authenticating_proxy.url_with_credentials)

    await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=authenticating_proxy)
    assert_never_shown(PROXY_PASSWORD, client, whop_logs)
    assert f"127.0.0.1:{authenticating_proxy.port}" in repr(client)
    assert PROXY_USER not in repr(client)


async def test_credentials_in_the_environment_proxy_url_are_used_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    authenticating_proxy: ForwardProxy,
    whop_logs: list[logging.LogRecord],
) -> None:
    monkeypatch.setenv("HTTP_PROXY", authenticating_proxy.url_with_credentials)
    client = make_client()

    await client.notifications.create(**SEND)

    assert_all_proxied(whop_emulator, by=authenticating_proxy)
    assert_never_shown(PROXY_PASSWORD, client, whop_logs)
    assert_never_shown(PROXY_PASSWORD, client.with_options(max_retries=0), whop_logs)


@pytest.mark.parametrize("password", [None, WRONG_PASSWORD], ids=["none", "wrong"])
async def test_a_proxy_that_wants_credentials_answers_407_once_and_nothing_reaches_whop(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    authenticating_proxy: ForwardProxy,
    whop_logs: list[logging.LogRecord],
    password: str | None,
) -> None:
    # On a plain-http target the proxy's 407 is an ordinary response, so aiohttp raises nothing:
    # it is an APIStatusError, and like any 4xx but 408, 409 and 429 it is not retried.
    port = authenticating_proxy.port
    proxy = (
        f"http://127.0.0.1:{port}" if password is None else f"http://u:{password}@127.0.0.1:{port}"
    )
    events: list[WhopEvent] = []
    client = make_client(proxy=proxy, max_retries=2, on_event=events.append)

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.status_code == 407
    assert [event.status for event in attempts_of(events)] == [407]
    assert whop_emulator.requests == []
    assert WRONG_PASSWORD not in str(caught.value)
    assert_never_shown(WRONG_PASSWORD, client, whop_logs)


async def test_an_unreachable_proxy_is_a_connection_error_that_shows_no_password(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    whop_logs: list[logging.LogRecord],
) -> None:
    client = make_client(
        proxy=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{unused_port()}", max_retries=1
    )

    with pytest.raises(APIConnectionError) as caught:
        await client.notifications.create(**SEND)

    assert whop_emulator.requests == []
    assert PROXY_PASSWORD not in str(caught.value)
    assert_never_shown(PROXY_PASSWORD, client, whop_logs)  # the retry's log line included


# https:// through the proxy: a CONNECT tunnel


@pytest.fixture
def tls_emulator_contexts(
    certificate_authority: trustme.CA,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a TLS emulator on 127.0.0.1 under the private CA."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    return server_context, client_context


async def test_https_proxy_in_the_environment_tunnels_an_https_base_url(
    monkeypatch: pytest.MonkeyPatch,
    tls_emulator_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    authenticating_proxy: ForwardProxy,
    whop_logs: list[logging.LogRecord],
) -> None:
    server_context, client_context = tls_emulator_contexts
    monkeypatch.setenv("HTTPS_PROXY", authenticating_proxy.url_with_credentials)
    async with WhopEmulator(ssl_context=server_context) as server:
        client = AsyncWhop(server.api_key, base_url=server.base_url, ssl=client_context)
        async with client:
            response = await client.notifications.create(**SEND)
            assert_never_shown(PROXY_PASSWORD, client, whop_logs)

    assert response.success is True
    assert len(server.requests) == 1
    assert await wait_for_access_log(authenticating_proxy, f"CONNECT 127.0.0.1:{server.port}")


@pytest.mark.parametrize("password", [None, WRONG_PASSWORD], ids=["none", "wrong"])
async def test_a_tunnel_refused_for_want_of_credentials_is_not_retried_and_shows_no_password(
    tls_emulator_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    authenticating_proxy: ForwardProxy,
    whop_logs: list[logging.LogRecord],
    password: str | None,
) -> None:
    # aiohttp raises ClientHttpProxyError for a CONNECT answered 407, and its text names the
    # proxy URL with the password in it. The 407 stays a 407 whatever the error class.
    server_context, client_context = tls_emulator_contexts
    port = authenticating_proxy.port
    proxy = (
        f"http://127.0.0.1:{port}" if password is None else f"http://u:{password}@127.0.0.1:{port}"
    )
    events: list[WhopEvent] = []
    async with WhopEmulator(ssl_context=server_context) as server:
        client = AsyncWhop(
            server.api_key,
            base_url=server.base_url,
            ssl=client_context,
            proxy=proxy,
            max_retries=2,
            backoff=Backoff.instant(),
            on_event=events.append,
        )
        async with client:
            with pytest.raises(APIError) as caught:
                await client.notifications.create(**SEND)
            assert_never_shown(WRONG_PASSWORD, client, whop_logs)

    assert server.requests == []
    assert "407" in str(caught.value)
    assert len(attempts_of(events)) == 1
    assert WRONG_PASSWORD not in str(caught.value)
    assert WRONG_PASSWORD not in "".join(traceback.format_exception(caught.value))


async def test_a_tunnel_the_proxy_cannot_open_shows_no_password(
    authenticating_proxy: ForwardProxy, whop_logs: list[logging.LogRecord]
) -> None:
    # The right credentials, and nothing listening behind the proxy: it answers the CONNECT with
    # 502, and aiohttp's ClientHttpProxyError text carries the proxy URL, password included.
    client = AsyncWhop(
        "sk_test_proxy",
        base_url=f"https://127.0.0.1:{unused_port()}/api/v1",
        proxy=authenticating_proxy.url_with_credentials,
        max_retries=1,
        backoff=Backoff.instant(),
        timeout=5.0,
    )
    async with client:
        with pytest.raises(APIConnectionError) as caught:
            await client.notifications.create(**SEND)
        assert_never_shown(PROXY_PASSWORD, client, whop_logs)  # the retry's log line included

    assert "502" in str(caught.value)
    assert PROXY_PASSWORD not in str(caught.value)
    assert PROXY_PASSWORD not in "".join(traceback.format_exception(caught.value))


# The command line


async def run_cli(*args: str, server: WhopEmulator, env: Mapping[str, str] = {}) -> tuple[int, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("WHOP_")
    }
    environment.update(
        {"WHOP_API_KEY": server.api_key or "", "WHOP_BASE_URL": server.base_url, **env}
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whop_async",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


CLI_SEND = ("send", "--company-id", "biz_1", "--title", "Hi", "--content", "Hello")


async def test_the_cli_proxy_flag(
    whop_emulator: WhopEmulator, authenticating_proxy: ForwardProxy
) -> None:
    status, output = await run_cli(
        *CLI_SEND, "--proxy", authenticating_proxy.url_with_credentials, server=whop_emulator
    )

    assert status == 0, output
    assert_all_proxied(whop_emulator, by=authenticating_proxy)
    assert PROXY_PASSWORD not in output


async def test_the_cli_honours_http_proxy(
    whop_emulator: WhopEmulator, forward_proxy: ForwardProxy
) -> None:
    status, output = await run_cli(
        *CLI_SEND, server=whop_emulator, env={"HTTP_PROXY": forward_proxy.url}
    )

    assert status == 0, output
    assert_all_proxied(whop_emulator, by=forward_proxy)


async def test_the_cli_names_no_password_when_the_proxy_refuses(
    whop_emulator: WhopEmulator, authenticating_proxy: ForwardProxy
) -> None:
    proxy = f"http://u:{WRONG_PASSWORD}@127.0.0.1:{authenticating_proxy.port}"

    status, output = await run_cli(*CLI_SEND, "--proxy", proxy, server=whop_emulator)

    assert status != 0
    assert "407" in output
    assert WRONG_PASSWORD not in output
    assert whop_emulator.requests == []
