"""AsyncWhop: configuration from arguments and the environment, and the client's lifecycle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from whop_async import (
    DEFAULT_BASE_URL,
    NOT_GIVEN,
    AsyncWhop,
    Backoff,
    ClientClosedError,
    InvalidParamsError,
    NotificationCreateResponse,
    WhopError,
)
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def turns_of_the_loop(turns: int = 20) -> None:
    """Let every task that can run without I/O do so until it waits (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WHOP_API_KEY", "WHOP_BASE_URL", "WHOP_APP_ID"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_key_construction_fails_naming_the_variable() -> None:
    with pytest.raises(WhopError, match="WHOP_API_KEY"):
        AsyncWhop()


def test_a_blank_key_counts_as_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHOP_API_KEY", "  ")

    with pytest.raises(WhopError, match="WHOP_API_KEY"):
        AsyncWhop()


def test_defaults_without_any_environment() -> None:
    client = AsyncWhop("sk_1")

    assert str(client.base_url) == DEFAULT_BASE_URL
    assert client.timeout == 60.0
    assert client.max_retries == 2
    assert client.session is None


async def test_key_base_url_and_app_id_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, whop_emulator: WhopEmulator
) -> None:
    monkeypatch.setenv("WHOP_API_KEY", whop_emulator.api_key or "")
    monkeypatch.setenv("WHOP_BASE_URL", whop_emulator.base_url)
    monkeypatch.setenv("WHOP_APP_ID", "app_env")

    async with AsyncWhop() as client:
        await client.notifications.create(**SEND)

    (seen,) = whop_emulator.requests
    assert seen.headers["Authorization"] == f"Bearer {whop_emulator.api_key}"
    assert seen.headers["X-Whop-App-Id"] == "app_env"
    assert str(client.base_url) == whop_emulator.base_url


async def test_arguments_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, whop_emulator: WhopEmulator
) -> None:
    monkeypatch.setenv("WHOP_API_KEY", "sk_from_env")
    monkeypatch.setenv("WHOP_BASE_URL", "http://127.0.0.1:9/nowhere")
    monkeypatch.setenv("WHOP_APP_ID", "app_env")

    async with AsyncWhop(
        whop_emulator.api_key, base_url=whop_emulator.base_url + "/", app_id="app_arg"
    ) as client:
        await client.notifications.create(**SEND)

    (seen,) = whop_emulator.requests
    assert seen.headers["X-Whop-App-Id"] == "app_arg"
    assert str(client.base_url) == whop_emulator.base_url


async def test_no_app_id_means_no_app_id_header(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    await make_client().notifications.create(**SEND)

    assert "X-Whop-App-Id" not in whop_emulator.requests[0].headers


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"base_url": "api.whop.com/api/v1"}, "base_url"),
        ({"base_url": "ftp://api.whop.com"}, "base_url"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"app_id": "app\n1"}, "app_id"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"connection_limit": 0}, "connection_limit"),
        ({"connection_limit": True}, "connection_limit"),
        ({"session": object()}, "session"),
        ({"backoff": 0.5}, "backoff"),
    ],
)
def test_bad_settings_are_refused_at_construction(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        AsyncWhop("sk_1", **options)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_no_timeout_is_allowed() -> None:
    assert AsyncWhop("sk_1", timeout=None).timeout is None


@pytest.fixture
def emulator_in_a_thread() -> Iterator[WhopEmulator]:
    """An emulator serving from its own event loop in another thread, for sync tests."""
    server = WhopEmulator()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=5)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_a_client_built_outside_any_loop_opens_its_session_in_the_loop_that_uses_it(
    emulator_in_a_thread: WhopEmulator,
) -> None:
    client = AsyncWhop(emulator_in_a_thread.api_key, base_url=emulator_in_a_thread.base_url)
    assert client.session is None

    async def use() -> aiohttp.ClientSession | None:
        async with client:
            await client.notifications.create(**SEND)
            return client.session

    session = asyncio.run(use(), debug=True)

    assert isinstance(session, aiohttp.ClientSession)
    assert session.closed
    assert len(emulator_in_a_thread.notifications) == 1


async def test_the_session_is_created_lazily_with_the_connection_limit(
    make_client: MakeClient,
) -> None:
    client = make_client(connection_limit=3)
    assert client.session is None
    assert "state=unopened" in repr(client)

    await client.notifications.create(**SEND)

    assert client.session is not None
    assert client.session.connector is not None
    assert client.session.connector.limit == 3
    assert "state=open" in repr(client)


async def test_a_callers_session_is_used_and_never_closed(whop_emulator: WhopEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with AsyncWhop(
            whop_emulator.api_key, base_url=whop_emulator.base_url, session=session
        ) as client:
            assert client.session is session
            await client.notifications.create(**SEND)

        assert not session.closed
        assert client.is_closed
        assert len(whop_emulator.notifications) == 1


async def test_an_own_and_a_callers_session_send_the_same_headers(
    whop_emulator: WhopEmulator,
) -> None:
    # A session the client creates carries the fixed headers itself; one of yours is sent them
    # with each request. Either way, and through a with_options copy, the wire is the same.
    def make(session: aiohttp.ClientSession | None = None) -> AsyncWhop:
        return AsyncWhop(
            whop_emulator.api_key,
            base_url=whop_emulator.base_url,
            app_id="app_1",
            api_version="2026-08-21",
            session=session,
        )

    async with make() as client:
        await client.notifications.create(**SEND)
        await client.with_options(api_version="2026-09-22").notifications.create(**SEND)
    async with aiohttp.ClientSession() as session, make(session) as client:
        await client.notifications.create(**SEND)

    own, own_copy, callers = whop_emulator.requests
    for seen in (own, own_copy, callers):
        assert seen.headers["Authorization"] == f"Bearer {whop_emulator.api_key}"
        assert seen.headers["X-Whop-App-Id"] == "app_1"
        assert seen.headers["User-Agent"].startswith("whop-async/")
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["Accept"] == "application/json"
    versions = [seen.headers.get("Api-Version-Date") for seen in (own, own_copy, callers)]
    assert versions == ["2026-08-21", "2026-09-22", "2026-08-21"]


async def test_a_closed_callers_session_is_reported_as_a_closed_client(
    whop_emulator: WhopEmulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncWhop(whop_emulator.api_key, base_url=whop_emulator.base_url, session=session)
        await client.notifications.create(**SEND)
    assert session.closed

    with pytest.raises(ClientClosedError, match="session under this client was closed"):
        await client.notifications.create(**SEND)
    await client.close()


async def test_async_with_closes_the_session_and_close_is_idempotent(
    whop_emulator: WhopEmulator,
) -> None:
    async with AsyncWhop(whop_emulator.api_key, base_url=whop_emulator.base_url) as client:
        await client.notifications.create(**SEND)
        session = client.session
    assert session is not None
    assert session.closed
    assert client.is_closed
    assert "state=closed" in repr(client)

    await client.close()
    await client.close()

    assert client.is_closed


async def test_a_call_after_close_fails_at_once_without_io(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    await client.close()

    with pytest.raises(ClientClosedError, match="closed") as caught:
        await client.notifications.create(**SEND)

    assert isinstance(caught.value, WhopError)
    assert whop_emulator.request_count == 0


async def test_a_client_closed_mid_request_reports_it(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))
    sending = asyncio.create_task(client.notifications.create(**SEND))
    await until(lambda: whop_emulator.in_flight == 1)

    await client.close()

    with pytest.raises(ClientClosedError):
        await sending
    assert whop_emulator.request_count == 1


def test_the_client_is_not_a_sync_context_manager() -> None:
    client = AsyncWhop("sk_1")

    with pytest.raises(TypeError, match="async with"), client:  # type: ignore[attr-defined]
        pass


def test_repr_shows_the_base_url_and_never_the_key() -> None:
    client = AsyncWhop("sk_live_very_secret", base_url="https://api.example.com/v1")

    text = repr(client)

    assert "https://api.example.com/v1" in text
    assert "sk_live_very_secret" not in text
    assert "sk_live_very_secret" not in repr(client._config)


async def test_with_options_shares_the_pool_and_changes_only_its_settings(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2, timeout=5.0)
    strict = client.with_options(max_retries=0, timeout=1.0)
    whop_emulator.fail_next(1, status=503)

    with pytest.raises(WhopError):
        await strict.notifications.create(**SEND)
    await client.notifications.create(**SEND)

    assert (strict.max_retries, strict.timeout) == (0, 1.0)
    assert (client.max_retries, client.timeout) == (2, 5.0)
    assert strict.session is client.session
    assert strict.base_url == client.base_url
    assert whop_emulator.request_count == 2


async def test_with_options_keeps_what_is_not_given(make_client: MakeClient) -> None:
    client = make_client(max_retries=4, timeout=3.0)

    same = client.with_options()
    backoff = Backoff(initial=0.01)

    assert (same.max_retries, same.timeout) == (4, 3.0)
    assert client.with_options(timeout=None).timeout is None
    assert client.with_options(backoff=backoff)._config.backoff is backoff


def test_with_options_validates_like_the_constructor() -> None:
    with pytest.raises(InvalidParamsError, match="max_retries"):
        AsyncWhop("sk_1").with_options(max_retries=-1)


async def test_closing_a_derived_client_leaves_the_pool_open(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    derived = client.with_options(timeout=2.0)
    await derived.notifications.create(**SEND)

    await derived.close()

    assert derived.is_closed
    with pytest.raises(ClientClosedError):
        await derived.notifications.create(**SEND)
    response = await client.notifications.create(**SEND)
    assert isinstance(response, NotificationCreateResponse)
    assert client.session is not None
    assert not client.session.closed


async def test_closing_the_original_closes_its_derived_clients(make_client: MakeClient) -> None:
    client = make_client()
    derived = client.with_options(max_retries=0)
    await derived.notifications.create(**SEND)

    await client.close()

    assert derived.is_closed
    with pytest.raises(ClientClosedError):
        await derived.notifications.create(**SEND)


async def test_one_client_in_two_event_loops_is_refused(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    await client.notifications.create(**SEND)

    async def from_another_loop() -> None:
        await client.notifications.create(**SEND)

    with pytest.raises(ClientClosedError, match="another event loop"):
        await asyncio.to_thread(asyncio.run, from_another_loop())
    assert whop_emulator.request_count == 1


def test_the_notifications_resource_is_created_once() -> None:
    client = AsyncWhop("sk_1")

    assert client.notifications is client.notifications


@pytest.mark.parametrize(
    ("options", "field"),
    [({"api_key": 12345}, "api_key"), ({"api_key": "sk_1", "app_id": 7}, "app_id")],
)
def test_a_key_or_app_id_that_is_not_a_string_is_refused(
    options: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidParamsError, match="must be a string, got int") as caught:
        AsyncWhop(**options)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_an_empty_app_id_in_the_environment_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHOP_APP_ID", "")

    client = AsyncWhop("sk_1")

    assert "X-Whop-App-Id" not in client._config.headers


def test_not_given_reads_as_itself() -> None:
    assert repr(NOT_GIVEN) == "NOT_GIVEN"


async def test_a_callers_unlimited_connector_is_not_throttled(
    whop_emulator: WhopEmulator,
) -> None:
    whop_emulator.response_delay = 0.05
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        client = AsyncWhop(whop_emulator.api_key, base_url=whop_emulator.base_url, session=session)
        await asyncio.gather(*(client.notifications.create(**SEND) for _ in range(6)))
        await client.close()

    assert whop_emulator.peak_in_flight == 6


async def test_a_call_waiting_for_a_connection_when_the_client_closes_is_told_so(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=1, max_retries=0)
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))
    first = asyncio.create_task(client.notifications.create(**SEND))
    await until(lambda: whop_emulator.in_flight == 1)
    waiting = asyncio.create_task(client.notifications.create(**SEND))
    await turns_of_the_loop()  # no I/O stands between the call and the pool's queue

    await client.close()

    with pytest.raises(WhopError):
        await first
    with pytest.raises(ClientClosedError, match="closed while a request was under way"):
        await waiting
    assert whop_emulator.request_count == 1
