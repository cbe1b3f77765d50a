"""The ``whop-async`` command line, run as a real process against the emulator over real sockets.

Each test starts a ``WhopEmulator`` in its own loop and runs ``python -m whop_async`` with
``asyncio.create_subprocess_exec``, so the emulator keeps serving while the command runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs
import pytest

from whop_async import API_VERSION, RateLimit, derive_idempotency_key
from whop_async.testing import ScriptedResponse, WhopEmulator

SECRET_KEY = "sk_cli_test_0123456789abcdef"
RUN_TIMEOUT = 30.0
#: How much later than it started a request may reach the emulator on a busy machine.
ARRIVAL_JITTER = 0.1


@attrs.frozen
class Ran:
    status: int
    stdout: str
    stderr: str


@pytest.fixture
async def server() -> AsyncIterator[WhopEmulator]:
    async with WhopEmulator(api_key=SECRET_KEY) as emulator:
        yield emulator


@pytest.fixture
async def slow_server() -> AsyncIterator[WhopEmulator]:
    """A healthy server that takes 50 ms per answer, so that a run can be stopped mid-way."""
    async with WhopEmulator(api_key=SECRET_KEY, response_delay=0.05) as emulator:
        yield emulator


def _env(server: WhopEmulator | None, extra: Mapping[str, str | None] = {}) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("WHOP_API_KEY", "WHOP_BASE_URL", "WHOP_APP_ID", "WHOP_API_VERSION")
    }
    if server is not None:
        env["WHOP_API_KEY"] = SECRET_KEY
        env["WHOP_BASE_URL"] = server.base_url
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


async def start(
    *args: str | Path, server: WhopEmulator | None, env: Mapping[str, str | None] = {}
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whop_async",
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(server, env),
    )


async def finish(process: asyncio.subprocess.Process, stdin: bytes = b"") -> Ran:
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), RUN_TIMEOUT)
    assert process.returncode is not None
    ran = Ran(process.returncode, stdout.decode(), stderr.decode())
    assert SECRET_KEY not in ran.stdout + ran.stderr, "the API key was printed"
    return ran


async def run(
    *args: str | Path,
    server: WhopEmulator | None,
    stdin: bytes = b"",
    env: Mapping[str, str | None] = {},
) -> Ran:
    return await finish(await start(*args, server=server, env=env), stdin)


def jsonl(*rows: Mapping[str, object]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def titles(server: WhopEmulator) -> list[str]:
    return [str(notification.body["title"]) for notification in server.notifications]


def summary(ran: Ran) -> dict[str, str]:
    """The summary table on stdout, as label -> first word of the value."""
    table = {}
    for line in ran.stdout.splitlines():
        label, _, value = line.partition("  ")
        if value.strip():
            table[label.strip()] = value.split()[0]
    return table


# send


async def test_send_prints_the_outcome_and_sends_every_flag(server: WhopEmulator) -> None:
    ran = await run(
        "send",
        "--company-id",
        "biz_1",
        "--title",
        "Hello",
        "--content",
        "World",
        "--user-id",
        "user_1",
        "--user-id",
        "user_2",
        "--subtitle",
        "Sub",
        "--rest-path",
        "/billing",
        "--idempotency-key",
        "send-key-1",
        server=server,
    )

    assert ran.status == 0, ran.stderr
    assert "sent: success=true" in ran.stdout
    assert "send-key-1" in ran.stdout
    [notification] = server.notifications
    assert notification.body == {
        "company_id": "biz_1",
        "title": "Hello",
        "content": "World",
        "user_ids": ["user_1", "user_2"],
        "subtitle": "Sub",
        "rest_path": "/billing",
    }
    assert notification.idempotency_key == "send-key-1"


async def test_send_refused_by_whop_exits_1_with_the_key_to_retry(server: WhopEmulator) -> None:
    server.fail_next(1, status=400, headers={"X-Request-Id": "req_cli_400"})

    ran = await run(
        "send", "--experience-id", "exp_1", "--title", "T", "--content", "C", server=server
    )

    assert ran.status == 1
    assert "400" in ran.stderr
    assert "(request id req_cli_400)" in ran.stderr
    assert "Idempotency-Key:" in ran.stderr


async def test_send_to_an_account_with_a_pinned_api_version(server: WhopEmulator) -> None:
    ran = await run(
        "send",
        "--account-id",
        "biz_1",
        "--title",
        "T",
        "--content",
        "C",
        "--api-version",
        "2026-09-22-3",
        server=server,
        env={"WHOP_API_VERSION": "2026-08-21"},
    )

    assert ran.status == 0, ran.stderr
    [request] = server.requests
    assert json.loads(request.body) == {"account_id": "biz_1", "title": "T", "content": "C"}
    assert request.headers["Api-Version-Date"] == "2026-09-22-3"  # the flag wins


async def test_send_takes_the_api_version_from_the_flag_the_environment_or_the_pin(
    server: WhopEmulator,
) -> None:
    args = ("send", "--experience-id", "exp_1", "--title", "T", "--content", "C")

    pinned = await run(*args, server=server, env={"WHOP_API_VERSION": "2026-08-21"})
    default = await run(*args, server=server)
    unpinned = await run(*args, "--api-version", "none", server=server)

    assert (pinned.status, default.status, unpinned.status) == (0, 0, 0)
    assert server.requests[0].headers["Api-Version-Date"] == "2026-08-21"
    assert server.requests[1].headers["Api-Version-Date"] == API_VERSION
    assert "Api-Version-Date" not in server.requests[2].headers


async def test_send_that_whop_reports_unsuccessful_exits_1(server: WhopEmulator) -> None:
    server.script(ScriptedResponse(body={"success": False}))

    ran = await run(
        "send", "--company-id", "biz_1", "--title", "T", "--content", "C", server=server
    )

    assert ran.status == 1
    assert "sent: success=false" in ran.stdout
    assert server.request_count == 1


async def test_send_says_when_whop_replayed_the_first_answer_to_its_key(
    server: WhopEmulator,
) -> None:
    args = ("send", "--account-id", "biz_1", "--title", "T", "--content", "C")

    first = await run(*args, "--idempotency-key", "same-key", server=server)
    second = await run(*args, "--idempotency-key", "same-key", server=server)
    fresh = await run(*args, server=server)

    assert (first.status, second.status, fresh.status) == (0, 0, 0)
    assert "replayed" not in first.stdout
    assert "replayed: Whop answered from the key's first request" in second.stdout
    assert len(server.notifications) == 2
    generated = fresh.stdout.split("idempotency key: ")[1].split()[0]
    assert generated == server.requests[-1].headers["Idempotency-Key"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0  # 32 hex digits, as --help says


async def test_a_403_of_a_send_is_a_failure_of_that_send_with_its_key(
    server: WhopEmulator,
) -> None:
    server.fail_next(1, status=403)

    ran = await run(
        "send", "--experience-id", "exp_1", "--title", "T", "--content", "C", server=server
    )

    assert ran.status == 1  # not 2: the key works, this experience is closed to it
    assert "403" in ran.stderr
    assert f"Idempotency-Key: {server.requests[0].headers['Idempotency-Key']}" in ran.stderr


async def test_send_without_an_api_key_is_a_usage_error(server: WhopEmulator) -> None:
    ran = await run(
        "send",
        "--company-id",
        "biz_1",
        "--title",
        "T",
        "--content",
        "C",
        server=server,
        env={"WHOP_API_KEY": None},
    )

    assert ran.status == 2
    assert "WHOP_API_KEY" in ran.stderr
    assert server.request_count == 0


async def test_a_wrong_key_given_as_a_flag_is_never_printed(server: WhopEmulator) -> None:
    wrong = "sk_wrong_key_do_not_print"
    ran = await run(
        "send",
        "--company-id",
        "biz_1",
        "--title",
        "T",
        "--content",
        "C",
        "--api-key",
        wrong,
        "-vv",
        server=server,
    )

    assert ran.status == 2
    assert "401" in ran.stderr
    assert "POST" in ran.stderr  # the -vv log of the attempt
    assert wrong not in ran.stdout + ran.stderr


# bulk: the happy paths


async def test_bulk_csv_sends_every_row_with_keys_from_ids(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "id,company_id,title,content,user_ids\n"
        "a1,biz_1,First,Hello,user_1;user_2\n"
        "a2,biz_1,Second,Hello,user_3 user_4\n"
        "a3,biz_1,Third,Hello,\n"
    )

    ran = await run("bulk", rows, server=server)

    assert ran.status == 0, ran.stderr
    assert sorted(titles(server)) == ["First", "Second", "Third"]
    bodies = {n.body["title"]: n.body for n in server.notifications}
    assert bodies["First"]["user_ids"] == ["user_1", "user_2"]
    assert bodies["Second"]["user_ids"] == ["user_3", "user_4"]
    assert "user_ids" not in bodies["Third"]
    assert all("id" not in body for body in bodies.values())
    assert set(server.idempotency_keys()) == {derive_idempotency_key(f"a{n}") for n in (1, 2, 3)}
    table = summary(ran)
    assert (table["sent"], table["failed"]) == ("3", "0")
    assert {"elapsed", "rate", "retries", "429s"} <= table.keys()
    assert "rate limit  600 per 60 s" in ran.stdout  # Whop's, by default
    # stderr is a pipe, not a terminal: plain progress lines, not a bar.
    assert "progress: 3/3 done (3 sent, 0 failed)" in ran.stderr


async def test_bulk_jsonl_file(server: WhopEmulator, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        jsonl(
            {"experience_id": "exp_1", "title": "One", "content": "C", "user_ids": ["u1"]},
            {"experience_id": "exp_1", "title": "Two", "content": "C", "icon_user_id": "u2"},
        )
    )

    ran = await run("bulk", rows, "--concurrency", "2", server=server)

    assert ran.status == 0, ran.stderr
    assert sorted(titles(server)) == ["One", "Two"]
    assert len(set(server.idempotency_keys())) == 2


async def test_bulk_from_stdin_reads_jsonl_by_default_and_csv_when_told(
    server: WhopEmulator,
) -> None:
    ran = await run(
        "bulk",
        "-",
        server=server,
        stdin=jsonl(
            *({"company_id": "biz_1", "title": f"Piped {n}", "content": "C"} for n in [1, 2])
        ).encode(),
    )
    assert ran.status == 0, ran.stderr

    ran = await run(
        "bulk",
        "-",
        "--format",
        "csv",
        server=server,
        stdin=b"company_id,title,content\nbiz_1,Piped 3,C\n",
    )
    assert ran.status == 0, ran.stderr

    assert sorted(titles(server)) == ["Piped 1", "Piped 2", "Piped 3"]
    assert "progress: 1 done (1 sent, 0 failed)" in ran.stderr  # no total for stdin


async def test_bulk_sends_each_rows_audience_under_its_own_name_with_the_api_version(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "account_id,experience_id,company_id,title,content\n"
        "biz_1,,,Team,C\n"
        ",exp_1,,Members,C\n"
        ",,biz_2,Old name,C\n"
    )

    ran = await run(
        "bulk", rows, "--concurrency", "1", "--api-version", "2026-08-21", server=server
    )

    assert ran.status == 0, ran.stderr
    audiences = [
        {name: value for name, value in json.loads(request.body).items() if name.endswith("_id")}
        for request in server.requests
    ]
    assert audiences == [
        {"account_id": "biz_1"},
        {"experience_id": "exp_1"},
        {"company_id": "biz_2"},
    ]
    assert {request.headers["Api-Version-Date"] for request in server.requests} == {"2026-08-21"}


async def test_bulk_keeps_to_the_rate_limit_and_its_eta_comes_from_it(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    _campaign(rows, 12)

    async with WhopEmulator(api_key=SECRET_KEY, rate_limit=RateLimit(5, per=1.0)) as server:
        ran = await run("bulk", rows, "--rate-limit", "5/1", server=server)

    assert ran.status == 0, ran.stderr
    # Before the first request, the time 12 rows take at 5 a second.
    assert ran.stderr.splitlines()[0] == "progress: 0/12 done (0 sent, 0 failed), 0.0/s, ETA 0:02"
    # The client kept to the server's limit: no more than 5 arrived in any second, less the
    # delay a busy machine adds on the way (how many 429s that delay causes is timing).
    assert server.busiest_window(1.0 - ARRIVAL_JITTER) <= 5
    assert len(set(server.idempotency_keys())) == len(server.notifications) == 12
    assert "rate limit  5 per 1 s" in ran.stdout
    assert float(summary(ran)["elapsed"]) >= 2.0  # 5 now, 5 a second later, 2 a second later


async def test_bulk_with_the_rate_limit_off_goes_as_fast_as_it_can(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    _campaign(rows, 3)

    ran = await run("bulk", rows, "--rate-limit", "off", server=server)

    assert ran.status == 0, ran.stderr
    assert "rate limit  off" in ran.stdout
    assert ran.stderr.startswith("progress: 3/3 done")  # no ETA before the first request


async def test_rerunning_a_file_sends_the_same_keys(server: WhopEmulator, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(*({"company_id": "b", "title": f"T{n}", "content": "C"} for n in [1, 2])))

    first = await run("bulk", rows, server=server)
    second = await run("bulk", rows, server=server)

    assert (first.status, second.status) == (0, 0)
    assert len(server.notifications) == 2  # the second run was replayed, not stored again
    keys = [request.headers["Idempotency-Key"] for request in server.requests]
    assert len(keys) == 4
    assert sorted(keys[:2]) == sorted(keys[2:])


async def test_replays_are_shown_in_the_summary_and_the_journal(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows, journal = tmp_path / "rows.jsonl", tmp_path / "journal.jsonl"
    _campaign(rows, 3)
    first = await run("bulk", rows, server=server)  # no journal: a re-run sends them again

    again = await run("bulk", rows, "--journal", journal, server=server)

    assert (first.status, again.status) == (0, 0)
    assert (summary(first)["sent"], summary(first)["replayed"]) == ("3", "0")
    assert (summary(again)["sent"], summary(again)["replayed"]) == ("3", "3")
    assert len(server.notifications) == 3  # Whop notified once per row
    records = read_jsonl(journal)
    assert len(records) == 3
    assert all(record["replayed"] is True for record in records)
    assert {str(record["key"]) for record in records} == set(server.idempotency_keys())


async def test_a_403_fails_its_audience_and_the_other_audiences_go_on(
    server: WhopEmulator, tmp_path: Path
) -> None:
    # Whop answers 403 for an experience the key cannot reach; the key works for the rest.
    rows, failures = tmp_path / "rows.jsonl", tmp_path / "failures.jsonl"
    rows.write_text(
        jsonl(
            {"id": "a", "experience_id": "exp_closed", "title": "A1", "content": "C"},
            {"id": "b", "experience_id": "exp_open", "title": "B1", "content": "C"},
            {"id": "c", "experience_id": "exp_closed", "title": "A2", "content": "C"},
            {"id": "d", "account_id": "biz_1", "title": "Team", "content": "C"},
        )
    )
    server.fail_next(1, status=403)  # the first request: line 1, one request at a time

    ran = await run("bulk", rows, "--failures", failures, "--concurrency", "1", server=server)

    assert ran.status == 1  # some rows failed; not 2: the key itself is fine
    assert "check the API key" not in ran.stderr
    assert "line 1: Error code: 403" in ran.stderr
    assert "line 3: Error code: 403" in ran.stderr  # failed with it, without a request
    assert (summary(ran)["sent"], summary(ran)["failed"]) == ("2", "2")
    assert sorted(titles(server)) == ["B1", "Team"]
    assert server.request_count == 3
    failed = read_jsonl(failures)
    assert [record["_line"] for record in failed] == [1, 3]
    # Whop replays a 403 to its key for 24 hours: the failures file gives each row a new key.
    assert [record["idempotency_key"] for record in failed] == [
        derive_idempotency_key(derive_idempotency_key(row_id), namespace="whop-async resend")
        for row_id in ("a", "c")
    ]


# bulk: bad files and dry runs


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", "company_id,content\nbiz_1,C\n", "missing column 'title'"),
        ("unknown.csv", "company_id,title,content,colour\nbiz_1,T,C,red\n", "'colour'"),
        (
            "bad.jsonl",
            '{"company_id": "b", "title": "T", "content": "C"}\n{"company_id": oops}\n',
            "line 2: not valid JSON",
        ),
        (
            "unknown.jsonl",
            '{"company_id": "b", "title": "T", "content": "C"}\n\n'
            '{"company_id": "b", "title": "T", "content": "C", "colour": "red"}\n',
            "line 3: unknown key 'colour'",
        ),
        ("empty.csv", "", "no rows"),
        ("empty.jsonl", "\n\n", "no rows"),
        ("header-only.csv", "company_id,title,content\n", "no rows"),
        ("rows.txt", "company_id,title,content\n", "--format"),
    ],
)
async def test_a_bad_file_sends_nothing_and_exits_2(
    server: WhopEmulator, tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)

    ran = await run("bulk", path, server=server)

    assert ran.status == 2
    assert expected in ran.stderr
    assert server.request_count == 0


async def test_a_missing_file_exits_2(server: WhopEmulator, tmp_path: Path) -> None:
    ran = await run("bulk", tmp_path / "nope.csv", server=server)

    assert ran.status == 2
    assert "no such file" in ran.stderr


async def test_a_bad_line_on_stdin_stops_the_run_there(server: WhopEmulator) -> None:
    good = {"company_id": "b", "title": "Good", "content": "C"}

    ran = await run(
        "bulk", "-", "--concurrency", "1", server=server, stdin=(jsonl(good) + "[1]\n").encode()
    )

    assert ran.status == 2
    assert "line 2: must be a JSON object" in ran.stderr
    assert titles(server) == ["Good"]


async def test_dry_run_reports_every_bad_row_and_sends_nothing(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "company_id,experience_id,title,content\n"
        "biz_1,,Fine,C\n"
        "biz_1,,,C\n"
        "biz_1,exp_1,Both,C\n"
        ",,Neither,C\n"
    )

    ran = await run("bulk", rows, "--dry-run", server=server, env={"WHOP_API_KEY": None})

    assert ran.status == 1
    assert "line 3: title: is required" in ran.stderr
    assert "line 4: company_id: exactly one" in ran.stderr
    assert "line 5: account_id: exactly one" in ran.stderr
    assert "line 2" not in ran.stderr
    assert "4 rows, 1 valid, 3 invalid" in ran.stdout
    assert server.request_count == 0


async def test_dry_run_of_a_good_file_exits_0(server: WhopEmulator, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl({"company_id": "b", "title": "T", "content": "C"}))

    ran = await run("bulk", rows, "--dry-run", server=server)

    assert ran.status == 0
    assert "nothing was sent" in ran.stdout
    assert server.request_count == 0


# bulk: failures


async def test_failed_rows_go_to_the_failures_file_and_can_be_sent_again(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        jsonl(
            {"id": 1, "company_id": "b", "title": "Rejected", "content": "C"},
            {"id": 2, "company_id": "b", "title": "No content"},
            {"id": 3, "company_id": "b", "title": "Fine", "content": "C"},
            {"company_id": "b", "title": "Also fine", "content": "C"},
        )
    )
    failures = tmp_path / "failures.jsonl"
    server.fail_next(1, status=400)  # the first request: line 1, with one request at a time

    ran = await run("bulk", rows, "--failures", failures, "--concurrency", "1", server=server)

    assert ran.status == 1
    assert "line 1: Error code: 400" in ran.stderr
    assert "line 2: content: is required" in ran.stderr
    assert summary(ran)["failed"] == "2"
    failed = read_jsonl(failures)
    assert [(record["_line"], record["title"]) for record in failed] == [
        (2, "No content"),  # caught while reading, before line 1's answer came back
        (1, "Rejected"),
    ] or [(record["_line"], record["title"]) for record in failed] == [
        (1, "Rejected"),
        (2, "No content"),
    ]
    assert all("_error" in record for record in failed)
    assert {"_field": "content"}.items() <= next(r for r in failed if r["_line"] == 2).items()
    assert sorted(titles(server)) == ["Also fine", "Fine"]

    # Fix the bad row and feed the failures back: both go through.
    fixed = [{**record, "content": record.get("content", "Now with content")} for record in failed]
    failures.write_text(jsonl(*fixed))
    again = await run("bulk", failures, server=server)

    assert again.status == 0, again.stderr
    assert sorted(titles(server)) == ["Also fine", "Fine", "No content", "Rejected"]
    rejected_key = server.requests[0].headers["Idempotency-Key"]
    assert rejected_key == derive_idempotency_key(1)
    # The row that never reached Whop keeps its key. The row Whop refused gets a new one, derived
    # from the old: Whop replays a 4xx to its key, and refuses that key with a corrected body.
    assert {request.headers["Idempotency-Key"] for request in server.requests[-2:]} == {
        derive_idempotency_key(2),
        derive_idempotency_key(rejected_key, namespace="whop-async resend"),
    }
    assert len(set(server.idempotency_keys())) == 4


async def test_a_wrong_key_stops_the_bulk_send_at_once_and_exits_2(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    _campaign(rows, 30)

    ran = await run(
        "bulk", rows, "--concurrency", "1", server=server, env={"WHOP_API_KEY": "sk_wrong_key"}
    )

    assert ran.status == 2
    assert "check the API key and its permissions" in ran.stderr
    assert "line 1:" not in ran.stderr  # reported once, at the end, not per row
    assert summary(ran)["sent"] == "0"
    assert server.request_count < 30
    assert server.notifications == []


async def test_many_bad_rows_are_reported_up_to_twenty_and_all_written(
    server: WhopEmulator, tmp_path: Path
) -> None:
    rows, failures = tmp_path / "rows.jsonl", tmp_path / "failures.jsonl"
    rows.write_text(jsonl(*({"company_id": "b", "title": f"T{n}"} for n in range(25))))

    ran = await run("bulk", rows, "--failures", failures, server=server)

    assert ran.status == 1
    assert ran.stderr.count("content: is required") == 20
    assert f"... more failures are not shown (all are in {failures})" in ran.stderr
    assert len(read_jsonl(failures)) == 25
    assert summary(ran)["failures"] == "written"
    assert server.request_count == 0


async def test_stdin_that_turns_out_not_utf8_stops_the_run_there(server: WhopEmulator) -> None:
    good = jsonl({"company_id": "b", "title": "Good", "content": "C"}).encode()

    ran = await run("bulk", "-", server=server, stdin=good + b'{"title": "caf\xe9"}\n')

    assert ran.status == 2
    assert "not UTF-8 text" in ran.stderr
    assert "stopped reading there" in ran.stderr


# bulk: stdin read as it comes


def _stdin(process: asyncio.subprocess.Process) -> asyncio.StreamWriter:
    assert process.stdin is not None
    return process.stdin


async def _exit_status(process: asyncio.subprocess.Process) -> Ran:
    """Wait for the process to end by itself, its stdin still open."""
    await asyncio.wait_for(process.wait(), RUN_TIMEOUT)
    return await finish(process)


async def test_stdin_rows_are_sent_and_confirmed_while_the_pipe_stays_open(
    server: WhopEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    process = await start("bulk", "-", "--journal", journal, server=server)

    _stdin(process).write(jsonl({"account_id": "biz_1", "title": "First", "content": "C"}).encode())
    await _stdin(process).drain()
    # Sent, answered and recorded while the pipe is open and quiet: reading waits, sending not.
    await _wait_for_lines(journal, 1)
    assert titles(server) == ["First"]

    _stdin(process).write(
        jsonl({"account_id": "biz_1", "title": "Second", "content": "C"}).encode()
    )
    await _wait_for_lines(journal, 2)
    ran = await finish(process)  # closes stdin

    assert ran.status == 0, ran.stderr
    assert titles(server) == ["First", "Second"]
    assert summary(ran)["sent"] == "2"


async def test_a_wrong_key_ends_the_run_without_waiting_for_a_quiet_pipe(
    server: WhopEmulator,
) -> None:
    process = await start("bulk", "-", server=server, env={"WHOP_API_KEY": "sk_wrong_key"})
    _stdin(process).write(jsonl({"account_id": "biz_1", "title": "T", "content": "C"}).encode())

    ran = await _exit_status(process)

    assert ran.status == 2
    assert "check the API key and its permissions" in ran.stderr


async def test_ctrl_c_ends_the_run_without_waiting_for_a_quiet_pipe(server: WhopEmulator) -> None:
    process = await start("bulk", "-", server=server)
    _stdin(process).write(jsonl({"account_id": "biz_1", "title": "T", "content": "C"}).encode())
    await _wait_for_requests(server, 1)
    await asyncio.sleep(0.1)  # its answer is in
    process.send_signal(signal.SIGINT)

    ran = await _exit_status(process)

    assert ran.status == 130
    assert summary(ran)["sent"] == "1"


# bulk: journal, kill and Ctrl-C


def _campaign(path: Path, count: int) -> None:
    path.write_text(
        jsonl(*({"company_id": "biz_1", "title": f"Row {n}", "content": "C"} for n in range(count)))
    )


async def _wait_for_lines(path: Path, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + RUN_TIMEOUT
    while not path.exists() or len(path.read_text().splitlines()) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{path} never reached {count} lines"
        await asyncio.sleep(0.02)


def _journal_keys(path: Path) -> set[str]:
    return {str(record["key"]) for record in read_jsonl(path)}


async def test_a_killed_run_resumes_from_its_journal_without_resending(
    slow_server: WhopEmulator, tmp_path: Path
) -> None:
    rows, journal = tmp_path / "rows.jsonl", tmp_path / "journal.jsonl"
    _campaign(rows, 120)
    args = ("bulk", rows, "--journal", journal, "--concurrency", "4")

    process = await start(*args, server=slow_server)
    await _wait_for_lines(journal, 20)
    process.kill()
    await finish(process)
    assert process.returncode == -signal.SIGKILL
    confirmed = _journal_keys(journal)
    assert 20 <= len(confirmed) < 120
    requests_before = slow_server.request_count

    ran = await run(*args, server=slow_server)

    assert ran.status == 0, ran.stderr
    assert summary(ran)["skipped"] == str(len(confirmed))
    # Every row accepted exactly once: nothing lost, nothing stored twice.
    assert sorted(titles(slow_server)) == sorted(f"Row {n}" for n in range(120))
    assert len(set(slow_server.idempotency_keys())) == 120
    # Nothing the journal had confirmed was sent again.
    resent = slow_server.requests[requests_before:]
    assert len(resent) == 120 - len(confirmed)
    assert not {request.headers["Idempotency-Key"] for request in resent} & confirmed
    assert _journal_keys(journal) == set(slow_server.idempotency_keys())


async def test_ctrl_c_stops_cleanly_and_leaves_a_consistent_journal(
    slow_server: WhopEmulator, tmp_path: Path
) -> None:
    rows, journal = tmp_path / "rows.jsonl", tmp_path / "journal.jsonl"
    _campaign(rows, 200)

    process = await start(
        "bulk", rows, "--journal", journal, "--concurrency", "4", server=slow_server
    )
    await _wait_for_lines(journal, 10)
    process.send_signal(signal.SIGINT)
    ran = await finish(process)

    assert ran.status == 130
    assert "Interrupted:" in ran.stderr
    assert "journal" in ran.stderr
    sent = int(summary(ran)["sent"])
    assert 10 <= sent < 200
    # The rows in flight were let finish: the journal holds exactly what the server accepted.
    assert len(read_jsonl(journal)) == sent
    assert _journal_keys(journal) == set(slow_server.idempotency_keys())


async def test_a_second_ctrl_c_aborts_the_requests_in_flight(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    _campaign(rows, 20)
    async with WhopEmulator(api_key=SECRET_KEY, response_delay=5.0) as server:
        process = await start("bulk", rows, "--concurrency", "4", server=server)
        await _wait_for_requests(server, 4)
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)  # the first asks to stop, and waits for the four in flight
        process.send_signal(signal.SIGINT)
        ran = await finish(process)

    assert ran.status == 130
    assert "Stopping: no new requests" in ran.stderr
    assert "re-running resends them with the same idempotency keys" in ran.stderr
    assert summary(ran)["sent"] == "0"
    assert server.request_count == 4


async def test_the_first_ctrl_c_stops_through_the_library_without_waiting_for_the_limit(
    tmp_path: Path,
) -> None:
    # Two may start a minute: two are sent, two more wait for the limiter. The first Ctrl-C
    # lets the two sent finish and ends the two waiting at once, unsent, instead of sending
    # them a minute later.
    rows, journal, failures = (tmp_path / name for name in ("rows.jsonl", "j.jsonl", "f.jsonl"))
    _campaign(rows, 20)
    async with WhopEmulator(api_key=SECRET_KEY, response_delay=1.0) as server:
        process = await start(
            "bulk",
            rows,
            "--journal",
            journal,
            "--failures",
            failures,
            "--concurrency",
            "4",
            "--rate-limit",
            "2/60",
            server=server,
        )
        await _wait_for_requests(server, 2)
        process.send_signal(signal.SIGINT)
        ran = await finish(process)

    assert ran.status == 130
    assert "Stopping: no new requests" in ran.stderr
    assert server.request_count == 2
    table = summary(ran)
    assert (table["sent"], table["failed"], table["interrupted"]) == ("2", "0", "2")
    # The two in flight finished and were journaled; the two never sent were not.
    assert _journal_keys(journal) == set(server.idempotency_keys())
    assert len(read_jsonl(journal)) == 2
    unsent = read_jsonl(failures)
    assert len(unsent) == 2
    assert all("Not sent" in str(record["_error"]) for record in unsent)
    # Never sent, so safe to send again as they are, with their own keys.
    assert not {str(record["idempotency_key"]) for record in unsent} & set(
        server.idempotency_keys()
    )


async def test_a_second_ctrl_c_keeps_the_rows_in_flight_in_the_failures_file_with_their_keys(
    tmp_path: Path,
) -> None:
    rows, failures = tmp_path / "rows.jsonl", tmp_path / "failures.jsonl"
    _campaign(rows, 20)
    async with WhopEmulator(api_key=SECRET_KEY, response_delay=5.0) as server:
        process = await start(
            "bulk", rows, "--failures", failures, "--concurrency", "4", server=server
        )
        await _wait_for_requests(server, 4)
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)
        process.send_signal(signal.SIGINT)
        ran = await finish(process)
        sent_keys = [request.headers["Idempotency-Key"] for request in server.requests]

    assert ran.status == 130
    table = summary(ran)
    assert (table["sent"], table["failed"], table["interrupted"]) == ("0", "0", "4")
    in_flight = read_jsonl(failures)
    assert len(in_flight) == 4
    assert all("may or may not" in str(record["_error"]) for record in in_flight)
    # The keys they were sent with: a re-run of this file gets Whop's first answer, not a
    # second notification.
    assert sorted(str(record["idempotency_key"]) for record in in_flight) == sorted(sent_keys)
    assert f"The 4 unanswered are in {failures}, keys kept." in ran.stderr

    async with WhopEmulator(api_key=SECRET_KEY) as fresh:
        again = await run("bulk", failures, server=fresh)
    assert again.status == 0, again.stderr
    assert sorted(map(str, fresh.idempotency_keys())) == sorted(sent_keys)


async def _wait_for_requests(server: WhopEmulator, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + RUN_TIMEOUT
    while server.request_count < count:
        assert asyncio.get_running_loop().time() < deadline, f"never got {count} requests"
        await asyncio.sleep(0.02)


# demo


async def test_demo_needs_no_account_and_reports_what_the_emulator_got() -> None:
    ran = await run("demo", "--count", "200", server=None)

    assert ran.status == 0, ran.stderr
    assert "accepted       200 notifications" in ran.stdout
    assert "distinct keys  200" in ran.stdout
    assert "statuses       200: 200" in ran.stdout
    assert summary(ran)["sent"] == "200"
    assert "progress: 200/200 done" in ran.stderr


async def test_demo_shows_the_pacing_at_the_server_with_no_429() -> None:
    ran = await run("demo", "--count", "250", "--rate-limit", "100/1", server=None)

    assert ran.status == 0, ran.stderr
    assert "(5 ms per answer, 100 per 1 s)" in ran.stderr
    assert ran.stderr.splitlines()[1].endswith("ETA 0:02")  # 250 at 100 a second
    busiest = next(line for line in ran.stdout.splitlines() if "busiest window" in line)
    assert 90 <= int(busiest.split()[2]) <= 100, busiest  # the limit, used to the full
    assert busiest.endswith("(limit 100 per 1 s)")
    assert "statuses       200: 250" in ran.stdout
    assert summary(ran)["429s"] == "0"
    assert float(summary(ran)["elapsed"]) >= 2.0


async def test_demo_with_faults_retries_its_way_through() -> None:
    ran = await run("demo", "--count", "100", "--faults", "0.1", server=None)

    assert ran.status == 0, ran.stderr
    assert "accepted       100 notifications" in ran.stdout
    assert "distinct keys  100" in ran.stdout
    table = summary(ran)
    assert int(table["retries"]) + int(table["429s"]) > 0


async def test_demo_reports_the_notifications_that_could_not_be_sent() -> None:
    ran = await run("demo", "--count", "7", "--faults", "1", "--concurrency", "7", server=None)

    assert ran.status == 1
    reported = [line for line in ran.stderr.splitlines() if line.startswith("notification ")]
    assert len(reported) == 5  # five are shown, the rest only counted
    assert summary(ran)["failed"] == "7"


async def test_demo_stops_on_ctrl_c() -> None:
    process = await start("demo", "--count", "1000000", server=None)
    assert process.stderr is not None
    assert (await process.stderr.readline()).startswith(b"Emulator on ")
    await asyncio.sleep(0.2)
    process.send_signal(signal.SIGINT)
    ran = await finish(process)

    assert ran.status == 130
    assert "Interrupted after" in ran.stderr
    assert 0 < int(summary(ran)["sent"]) < 1000000


async def test_demo_aborts_on_a_second_ctrl_c() -> None:
    # Every request is faulty: each one retries for a second or two, so some are in flight.
    process = await start("demo", "--count", "100", "--faults", "1", server=None)
    assert process.stderr is not None
    assert (await process.stderr.readline()).startswith(b"Emulator on ")
    process.send_signal(signal.SIGINT)
    await asyncio.sleep(0.2)
    process.send_signal(signal.SIGINT)
    ran = await finish(process)

    assert ran.status == 130
    assert "Stopping: no new requests" in ran.stderr
    assert "Interrupted after 0 notifications" in ran.stderr


async def test_usage_errors_exit_2() -> None:
    ran = await run("bulk", server=None)
    assert ran.status == 2
    ran = await run("demo", "--count", "0", server=None)
    assert ran.status == 2
    assert "at least 1" in ran.stderr
    ran = await run("bulk", "-", "--rate-limit", "600 a minute", server=None)
    assert ran.status == 2
    assert "must look like REQUESTS/SECONDS" in ran.stderr
