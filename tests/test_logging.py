"""WHOP_LOG=info|debug: the library's log on stderr with no logging set-up, never the key."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

KEY = "sk_live_logged_nowhere_0123"

#: A program that sends one notification through a 503, to an emulator of its own.
PROGRAM = textwrap.dedent(
    f"""
    import asyncio, logging, sys
    from whop_async import AsyncWhop, Backoff
    from whop_async.testing import WhopEmulator

    async def main() -> None:
        if "--configured" in sys.argv:
            logging.basicConfig(stream=sys.stdout, level=logging.WARNING)
        async with WhopEmulator(api_key={KEY!r}) as server:
            server.fail_next(1, status=503)
            async with AsyncWhop({KEY!r}, base_url=server.base_url, backoff=Backoff.instant()) as c:
                await c.notifications.create(account_id="biz_1", title="Hi", content="Hello")

    asyncio.run(main())
    """
)


def run(whop_log: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "WHOP_LOG"}
    if whop_log is not None:
        env["WHOP_LOG"] = whop_log
    return subprocess.run(  # noqa: S603 - this interpreter running this file's program
        [sys.executable, "-c", PROGRAM, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_without_whop_log_the_library_writes_nothing() -> None:
    assert run(None).stderr == ""


def test_info_shows_retries_but_not_every_attempt() -> None:
    stderr = run("info").stderr

    assert "INFO whop_async] Retrying POST" in stderr
    assert "-> 200" not in stderr
    assert KEY not in stderr


def test_debug_shows_every_attempt() -> None:
    stderr = run("debug").stderr

    assert "-> 503 (attempt 1 of 3" in stderr
    assert "-> 200 (attempt 2 of 3" in stderr
    assert KEY not in stderr
    assert "Bearer" not in stderr


def test_an_application_that_configured_logging_keeps_control() -> None:
    ran = run("debug", "--configured")

    assert ran.stderr == ""  # no handler of ours: the application's, at WARNING, got nothing
    assert "Retrying" not in ran.stdout


@pytest.mark.parametrize("value", ["verbose", "2"])
def test_an_unknown_value_is_named_once_and_ignored(value: str) -> None:
    stderr = run(value).stderr

    assert f"WHOP_LOG={value!r} is not one of ['debug', 'info']" in stderr
    assert "Retrying" not in stderr
