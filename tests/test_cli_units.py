"""The parts of the command line that do no network I/O, tested in-process.

Argument parsing, file reading, the journal, the progress displays, key redaction, and every
way ``bulk`` can refuse a run before it sends anything. What needs a server is in ``test_cli.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from whop_async import (
    API_VERSION,
    DEFAULT_RATE_LIMIT,
    APITimeoutError,
    InvalidParamsError,
    RateLimit,
    WhopError,
    derive_idempotency_key,
)
from whop_async._exceptions import status_error
from whop_async.cli import _bulk as cli_bulk
from whop_async.cli import main
from whop_async.cli._app import DEMO_RATE_LIMIT, build_parser
from whop_async.cli._journal import Journal
from whop_async.cli._progress import Progress, format_duration
from whop_async.cli._rows import (
    CONTENT_KEY_NAMESPACE,
    FileProblem,
    Format,
    Input,
    ReadError,
    Row,
    file_identity,
    guess_format,
    in_thread,
    read_rows,
)
from whop_async.cli._shared import Output, UsageError, best_rate, make_client

UNIT_KEY = "sk_cli_unit_0123456789abcdef"
#: Nothing listens here, and nothing below gets far enough to connect.
UNREACHABLE = "http://127.0.0.1:9"


class Ran:
    """What an in-process ``main()`` returned and printed."""

    def __init__(self, status: int, stdout: str, stderr: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr


@pytest.fixture(autouse=True)
def _no_whop_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WHOP_API_KEY", "WHOP_BASE_URL", "WHOP_APP_ID", "WHOP_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str | Path) -> Ran:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main([str(arg) for arg in args], stdout=stdout, stderr=stderr)
    ran = Ran(status, stdout.getvalue(), stderr.getvalue())
    assert UNIT_KEY not in ran.stdout + ran.stderr, "the API key was printed"
    return ran


def jsonl(*rows: Mapping[str, object]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


GOOD_ROW = {"company_id": "biz_1", "title": "T", "content": "C"}


# argument types


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "--count", "ten"], "must be an integer, at least 1, got 'ten'"),
        (["demo", "--count", "0"], "must be an integer, at least 1, got '0'"),
        (["demo", "--concurrency", "many"], "invalid int value: 'many'"),
        (["demo", "--max-rate", "fast"], "invalid float value: 'fast'"),
        (["demo", "--faults", "1.5"], "must be a number between 0 and 1, got '1.5'"),
        (["demo", "--faults", "-0.1"], "must be a number between 0 and 1, got '-0.1'"),
        (["demo", "--faults", "nan"], "must be a number between 0 and 1, got 'nan'"),
        (["demo", "--faults", "lots"], "must be a number between 0 and 1, got 'lots'"),
        (["bulk", "rows.csv", "--max-retries", "some"], "invalid int value: 'some'"),
        (["bulk", "rows.csv", "--timeout", "soon"], "invalid float value: 'soon'"),
        (["bulk", "rows.csv", "--format", "xml"], "invalid choice: 'xml'"),
        (["bulk", "rows.csv", "--rate-limit", "fast"], "must look like REQUESTS/SECONDS"),
        (["bulk", "rows.csv", "--rate-limit", "0/60"], "must be an integer >= 1, got 0"),
        (["demo", "--rate-limit", "10/0"], "must be a number of seconds > 0"),
        (
            ["send", "--title", "T", "--content", "C"],
            "one of the arguments --account-id --experience-id --company-id is required",
        ),
        (
            ["send", "--account-id", "b", "--company-id", "b", "--title", "T", "--content", "C"],
            "not allowed with argument",
        ),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_a_bad_argument_exits_2_naming_the_problem(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--concurrency", "0"], "concurrency: must be an integer >= 1, got 0"),
        (["--max-rate", "0"], "max_rate: must be a number > 0"),
        (["--max-rate", "nan"], "max_rate: must be a number > 0"),
        (["--max-retries", "-1"], "max_retries: must be an integer >= 0, got -1"),
        (["--timeout", "0"], "timeout: must be a number of seconds > 0"),
    ],
)
def test_a_value_the_library_refuses_exits_2_naming_it_before_anything_is_sent(
    tmp_path: Path, flags: list[str], expected: str
) -> None:
    # The library checks these (policy lives once); nothing listens at UNREACHABLE, so a run
    # that got as far as sending would fail differently.
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(GOOD_ROW))

    ran = run("bulk", rows, *flags, "--api-key", UNIT_KEY, "--base-url", UNREACHABLE)

    assert ran.status == 2
    assert f"whop-async: error: {expected}" in ran.stderr
    demo = run("demo", "--concurrency", "-3", "--no-progress")
    assert demo.status == 2
    assert "concurrency: must be an integer >= 1, got -3" in demo.stderr


def test_good_arguments_parse_to_their_values() -> None:
    args = build_parser().parse_args(
        ["demo", "--faults", "--count", "7", "--max-rate", "2.5", "--concurrency", "3"]
    )
    assert (args.faults, args.count, args.max_rate, args.concurrency) == (0.05, 7, 2.5, 3)

    args = build_parser().parse_args(["bulk", "-", "--max-retries", "0", "--timeout", "0.5"])
    assert (args.max_retries, args.timeout, args.format) == (0, 0.5, None)
    assert (args.rate_limit, args.api_version) == (DEFAULT_RATE_LIMIT, None)

    args = build_parser().parse_args(["bulk", "-", "--rate-limit", "60/6", "--api-version", "v"])
    assert (args.rate_limit, args.api_version) == (RateLimit(60, per=6.0), "v")
    args = build_parser().parse_args(["bulk", "-", "--rate-limit", "OFF"])
    assert args.rate_limit is None
    assert build_parser().parse_args(["demo"]).rate_limit == DEMO_RATE_LIMIT

    args = build_parser().parse_args(
        ["send", "--account-id", "biz_1", "--title", "T", "--content", "C"]
    )
    assert (args.account_id, args.company_id, args.experience_id) == ("biz_1", None, None)


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("whop-async ")


# send: what is refused before anything is sent


def test_send_of_an_invalid_notification_is_a_usage_error() -> None:
    ran = run("send", "--company-id", "biz_1", "--title", "", "--content", "C")

    assert ran.status == 2
    assert "invalid notification" in ran.stderr
    assert "title" in ran.stderr


def test_a_base_url_the_client_rejects_is_a_usage_error() -> None:
    ran = run(
        "send",
        "--company-id",
        "biz_1",
        "--title",
        "T",
        "--content",
        "C",
        "--api-key",
        UNIT_KEY,
        "--base-url",
        "ftp://example.com",
    )

    assert ran.status == 2
    assert "base_url" in ran.stderr


def test_a_blank_api_key_is_no_api_key() -> None:
    args = build_parser().parse_args(
        ["send", "--company-id", "b", "--title", "T", "--content", "C", "--api-key", "   "]
    )

    with pytest.raises(UsageError, match="no API key"):
        make_client(args)


# bulk: what is refused before anything is sent


def test_ctrl_c_while_reading_stdin_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    class Interrupted:
        """stdin with no file descriptor, where the person pressed Ctrl-C mid-read."""

        def __iter__(self) -> Interrupted:
            return self

        def __next__(self) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupted())

    ran = run("bulk", "-", "--dry-run")

    assert ran.status == 130
    assert "Interrupted." in ran.stderr


def test_dry_run_reads_stdin_that_is_not_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDescriptor(io.StringIO):
        def fileno(self) -> int:
            raise io.UnsupportedOperation("fileno")

    monkeypatch.setattr(sys, "stdin", NoDescriptor(jsonl(GOOD_ROW, {**GOOD_ROW, "title": ""})))

    ran = run("bulk", "-", "--dry-run")

    assert ran.status == 1
    assert "2 rows, 1 valid, 1 invalid" in ran.stdout
    assert "-: line 2: title" in ran.stderr


def test_a_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"company_id,title,content\nbiz_1,caf\xe9,C\n")

    ran = run("bulk", rows, "--dry-run")

    assert ran.status == 2
    assert "not UTF-8 text" in ran.stderr


def test_dry_run_with_unreadable_lines_exits_2_and_reports_each(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(GOOD_ROW) + "not json\n" + "[1, 2]\n")

    ran = run("bulk", rows, "--dry-run")

    assert ran.status == 2
    assert "line 2: not valid JSON" in ran.stderr
    assert "line 3: must be a JSON object, got list" in ran.stderr
    assert "1 rows, 1 valid, 0 invalid, 2 unreadable line(s)" in ran.stdout


def test_many_unreadable_lines_are_counted_after_the_first_twenty(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(GOOD_ROW) + "oops\n" * 25)

    ran = run("bulk", rows, "--api-key", UNIT_KEY, "--base-url", UNREACHABLE)

    assert ran.status == 2
    assert ran.stderr.count("not valid JSON") == cli_bulk.MAX_REPORTED
    assert "line 21: not valid JSON" in ran.stderr
    assert "line 22:" not in ran.stderr
    assert "25 unreadable line(s); nothing was sent" in ran.stderr


def test_dry_run_counts_rows_already_in_the_journal(tmp_path: Path) -> None:
    rows, journal_path = tmp_path / "rows.jsonl", tmp_path / "journal.jsonl"
    rows.write_text(jsonl({**GOOD_ROW, "id": "a"}, {**GOOD_ROW, "id": "b"}))
    journal_path.write_text(jsonl({"key": derive_idempotency_key("a"), "line": 1}))

    ran = run("bulk", rows, "--dry-run", "--journal", journal_path)

    assert ran.status == 0
    assert "2 rows, 2 valid, 0 invalid, 0 unreadable line(s), 1 already in the journal" in (
        ran.stdout
    )


def test_a_journal_that_is_not_a_journal_is_a_usage_error(tmp_path: Path) -> None:
    rows, journal_path = tmp_path / "rows.jsonl", tmp_path / "other.jsonl"
    rows.write_text(jsonl(GOOD_ROW))
    journal_path.write_text(jsonl(GOOD_ROW, GOOD_ROW))

    ran = run("bulk", rows, "--dry-run", "--journal", journal_path)

    assert ran.status == 2
    assert "line 1: not a journal record" in ran.stderr


@pytest.mark.parametrize("option", ["--journal", "--failures"])
def test_the_input_file_cannot_be_its_own_journal_or_failures_file(
    tmp_path: Path, option: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(GOOD_ROW))
    before = rows.read_text()

    ran = run("bulk", rows, option, tmp_path / "." / "rows.jsonl", "--api-key", UNIT_KEY)

    assert ran.status == 2
    assert f"{option} must not be the input file itself" in ran.stderr
    assert rows.read_text() == before


def test_a_journal_that_cannot_be_created_is_a_usage_error(tmp_path: Path) -> None:
    rows, failures = tmp_path / "rows.jsonl", tmp_path / "failures.jsonl"
    rows.write_text(jsonl(GOOD_ROW))

    ran = run(
        "bulk",
        rows,
        "--journal",
        tmp_path / "missing-dir" / "journal.jsonl",
        "--failures",
        failures,
        "--api-key",
        UNIT_KEY,
        "--base-url",
        UNREACHABLE,
    )

    assert ran.status == 2
    assert "cannot write the journal" in ran.stderr


def test_a_failures_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(jsonl(GOOD_ROW))

    ran = run(
        "bulk",
        rows,
        "--failures",
        tmp_path,  # a directory
        "--journal",
        tmp_path / "journal.jsonl",
        "--api-key",
        UNIT_KEY,
        "--base-url",
        UNREACHABLE,
    )

    assert ran.status == 2
    assert "cannot write the failures file" in ran.stderr


# bulk: the failures file


@pytest.mark.parametrize(
    ("error", "new_key"),
    [
        (status_error(400, {}, b'{"error": {"code": "bad_request", "message": "no"}}'), True),
        (status_error(422, {}, b""), True),
        (status_error(409, {}, b""), False),  # the first request may still be under way
        (status_error(429, {}, b""), False),
        (status_error(503, {}, b""), False),  # Whop may have queued it: the key must stay
        (status_error(503, {"x-should-retry": "false"}, b""), True),  # the client's retry rule
        (APITimeoutError(), False),
        (InvalidParamsError("content", "is required"), False),  # never reached Whop
    ],
)
def test_a_failed_row_keeps_its_key_unless_whop_refused_it(
    tmp_path: Path, error: WhopError, new_key: bool
) -> None:
    [row] = _rows(jsonl({**GOOD_ROW, "id": "a"}), "jsonl")
    assert isinstance(row, Row)
    failures = cli_bulk._Failures(str(tmp_path / "failures.jsonl"))

    failures.write(row, error)
    failures.close()

    [record] = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    renewed = derive_idempotency_key(row.idempotency_key, namespace=cli_bulk.RESEND_KEY_NAMESPACE)
    assert record["idempotency_key"] == (renewed if new_key else row.idempotency_key)
    assert (record["id"], record["_line"], record["_error"]) == ("a", 1, str(error))


# bulk: reading stdin as it comes


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for end in (read_end, write_end):
        with contextlib.suppress(OSError):  # closed by the test already
            os.close(end)


async def test_stdin_rows_arrive_as_their_lines_are_written_and_the_loop_stays_free(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = pipe
    monkeypatch.setattr(sys, "stdin", open(read_end, closefd=False))  # noqa: SIM115
    rows = in_thread(Input("-", "jsonl", "<stdin>").rows())
    os.write(write_end, jsonl(GOOD_ROW).encode() + b'{"title": "sec')
    first = await anext(rows)

    reading = asyncio.ensure_future(anext(rows))
    # A reader that blocked the loop would not let this sleep end before the rescue write.
    rescue = threading.Timer(2.0, os.write, (write_end, b'ond"}\n'))
    rescue.start()
    await asyncio.sleep(0.05)
    assert not reading.done()
    rescue.cancel()
    os.write(write_end, b'ond", "content": "C", "company_id": "biz_1"}\n')
    second = await reading
    os.close(write_end)

    assert [row async for row in rows] == []
    assert isinstance(first, Row)
    assert isinstance(second, Row)
    assert (first.line, second.line, second.values["title"]) == (1, 2, "second")
    assert os.get_blocking(read_end), "stdin was left non-blocking for the shell"


async def test_a_pull_cancelled_on_a_quiet_pipe_ends_at_once_and_is_no_empty_file(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the library's stop does to a worker that waits for the next row.
    read_end, _ = pipe
    monkeypatch.setattr(sys, "stdin", open(read_end, closefd=False))  # noqa: SIM115
    rows = in_thread(Input("-", "jsonl", "<stdin>").rows())
    reading = asyncio.ensure_future(anext(rows))
    await asyncio.sleep(0.02)

    reading.cancel()

    # No ReadError("the file has no rows"): the input never ended.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reading, 1.0)
    assert [row async for row in rows] == []


async def test_a_thread_reads_one_item_per_pull_and_hands_its_errors_over() -> None:
    pulled: list[int] = []

    def items() -> Generator[int, None, None]:
        for number in (1, 2):
            pulled.append(number)
            yield number
        raise ReadError("the file has no rows")

    async with contextlib.aclosing(in_thread(items())) as stream:
        assert await anext(stream) == 1
        await asyncio.sleep(0.05)
        assert pulled == [1]  # nothing read ahead
        assert await anext(stream) == 2
        with pytest.raises(ReadError, match="no rows"):
            await anext(stream)


async def test_stdin_that_is_a_pipe_gives_each_row_once_its_last_line_arrives(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = pipe
    monkeypatch.setattr(sys, "stdin", open(read_end, closefd=False))  # noqa: SIM115
    rows = in_thread(Input("-", "csv", "<stdin>").rows())
    os.write(write_end, '\ufeffaccount_id,title,content\nbiz_1,"Two'.encode())

    reading = asyncio.ensure_future(anext(rows))
    rescue = threading.Timer(2.0, os.write, (write_end, b'\nlate",C\n'))  # for a blocking reader
    rescue.start()
    await asyncio.sleep(0.05)
    assert not reading.done()  # the quoted field goes on; the loop is free meanwhile
    rescue.cancel()
    os.write(write_end, b'\nlines",C\nbiz_1,Three,C\n')
    first = await reading
    os.close(write_end)
    rest = [row async for row in rows]

    assert isinstance(first, Row)
    assert (first.line, first.values["title"]) == (2, "Two\nlines")
    assert [(row.line, row.values["title"]) for row in rest if isinstance(row, Row)] == [
        (4, "Three")
    ]


def test_rows_are_read_as_they_are_pulled_not_ahead() -> None:
    pulled: list[str] = []

    def lines() -> Iterator[str]:
        for line in ["account_id,title,content\n", "b,One,C\n", "b,Two,C\n", "b,Three,C\n"]:
            pulled.append(line)
            yield line

    rows = read_rows(lines(), format="csv", identity="test")

    assert isinstance(next(rows), Row)
    assert len(pulled) == 2


def test_a_thread_that_reads_on_after_its_loop_closed_ends_quietly_and_closes_its_input() -> None:
    release, closed = threading.Event(), threading.Event()

    def items() -> Generator[str, None, None]:
        try:
            release.wait(5.0)  # a quiet pipe, whose next line comes after the run ended
            yield "late"
        finally:
            closed.set()

    async def pull_then_give_up() -> None:
        stream = in_thread(items())
        reading = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.02)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading

    asyncio.run(pull_then_give_up())
    release.set()

    assert closed.wait(5.0)


# rows


def _rows(text: str, format: Format = "csv") -> list[Row | FileProblem]:
    return list(read_rows(io.StringIO(text), format=format, identity="test"))


def test_csv_rows_keep_the_line_they_start_on_across_blank_and_multiline_records() -> None:
    items = _rows(
        "title,content,company_id,_line,_error\n"
        '"Two\nlines",C,biz_1,,\n'
        ",,,,\n"
        "Third,C,biz_1,7,old error\n"
    )

    assert [item.line for item in items] == [2, 5]
    first, third = items
    assert isinstance(first, Row)
    assert isinstance(third, Row)
    assert first.values["title"] == "Two\nlines"
    assert third.values == {"title": "Third", "content": "C", "company_id": "biz_1"}


def test_a_csv_record_with_the_wrong_number_of_fields_is_a_problem_of_its_line() -> None:
    items = _rows("company_id,title,content\nbiz_1,T\nbiz_1,T,C,extra\nbiz_1,T,C\n")

    assert items[:2] == [
        FileProblem(2, "has 2 fields, the header has 3"),
        FileProblem(3, "has 4 fields, the header has 3"),
    ]
    assert str(items[0]) == "line 2: has 2 fields, the header has 3"
    assert isinstance(items[2], Row)
    assert items[2].params is not None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("company_id,title,content,title", "line 1: column 'title' appears twice"),
        ("title,content", "line 1: missing column 'account_id', 'experience_id' or 'company_id'"),
        ("company_id,title", "line 1: missing column 'content'"),
    ],
)
def test_an_unusable_csv_header_is_a_read_error(header: str, expected: str) -> None:
    with pytest.raises(ReadError, match=expected):
        _rows(header + "\nbiz_1,T,C,T\n")


def test_jsonl_annotations_from_a_failures_file_are_dropped() -> None:
    [row] = _rows(jsonl({**GOOD_ROW, "_line": 3, "_error": "x", "_field": "title"}), "jsonl")

    assert isinstance(row, Row)
    assert row.values == GOOD_ROW
    assert row.error is None


def _key(values: dict[str, object]) -> str:
    [row] = _rows(jsonl({**GOOD_ROW, **values}), "jsonl")
    assert isinstance(row, Row)
    return row.idempotency_key


def test_the_key_of_a_row_comes_from_its_own_key_then_its_id_then_its_content() -> None:
    assert _key({"idempotency_key": "mine", "id": "a1"}) == "mine"
    # The key a Python job gets for the same id: the two cannot notify twice.
    assert _key({"id": "a1"}) == derive_idempotency_key("a1")
    assert _key({"id": 42}) == derive_idempotency_key("42")
    by_content = _key({})
    assert by_content == _content_key(GOOD_ROW)
    assert _key({}) == by_content  # derived, not random
    assert _key({"title": "Other"}) != by_content
    for not_an_id in (True, "  ", [1]):  # no usable id: the row is named by its line and content
        assert _key({"id": not_an_id}) == _content_key({**GOOD_ROW, "id": not_an_id})


def _content_key(values: Mapping[str, object]) -> str:
    content = json.dumps(values, sort_keys=True)
    return derive_idempotency_key(f"test\x001\x00{content}", namespace=CONTENT_KEY_NAMESPACE)


@pytest.mark.parametrize("row_id", ["café-1", "x" * 300, "tab\there"])
def test_any_id_makes_a_key_that_fits_a_header(row_id: str) -> None:
    key = _key({"id": row_id})

    assert key == derive_idempotency_key(row_id)
    assert len(key) == len("wa1-") + 64
    assert key.isascii()


def test_csv_records_across_lines_and_line_endings_keep_the_line_they_start_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(
        b"title,content,account_id\r\n"
        b'"Two\r\nmore\r\nlines",C,biz_1\r\n'
        b"Old\rMac,C,biz_1\n"  # a lone \r ends a line too, as the csv module reads a file
        b'Open,C,"biz_2'  # the end of the file closes the field, as csv.reader does
    )

    items = list(Input(str(path), "csv", "test").rows())

    assert [(item.line, type(item).__name__) for item in items] == [
        (2, "Row"),
        (5, "FileProblem"),
        (6, "Row"),
        (7, "Row"),
    ]
    two, old, mac, last = items
    assert isinstance(two, Row)
    assert isinstance(mac, Row)
    assert isinstance(last, Row)
    assert two.values["title"] == "Two\r\nmore\r\nlines"
    assert old == FileProblem(5, "has 1 fields, the header has 3")
    assert mac.values["title"] == "Mac"
    assert last.values["account_id"] == "biz_2"


def test_a_csv_field_over_the_csv_modules_limit_is_a_problem_of_its_line() -> None:
    huge = "x" * (csv.field_size_limit() + 1)

    items = _rows(f"account_id,title,content\nbiz_1,T,{huge}\nbiz_1,T,C\n")

    problem, row = items
    assert isinstance(problem, FileProblem)
    assert (problem.line, problem.message.split(" (")[0]) == (2, "not valid CSV")
    assert isinstance(row, Row)
    assert row.line == 3


def test_a_stream_of_blank_lines_has_no_rows() -> None:
    with pytest.raises(ReadError, match="no rows"):
        _rows("\n  \n", "jsonl")


def test_format_and_identity_of_a_path() -> None:
    assert guess_format("ROWS.CSV") == "csv"
    assert [guess_format(f"r.{ext}") for ext in ("jsonl", "ndjson", "json")] == ["jsonl"] * 3
    assert guess_format("rows.tsv") is None
    assert file_identity("-") == "<stdin>"
    assert Path(file_identity("rows.csv")).is_absolute()


# journal


def test_a_missing_journal_is_empty_and_keeps_what_is_recorded(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.jsonl")
    journal = Journal(path)
    journal.load()
    assert journal.sent == set()

    journal.open()
    journal.record("key-a", 1)
    journal.record("key-b", 2)
    journal.close()
    journal.close()  # closing twice is harmless

    reopened = Journal(path)
    reopened.load()
    assert reopened.sent == {"key-a", "key-b"}


def test_a_half_written_last_line_is_ignored_and_the_next_record_starts_on_its_own_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "key-a", "line": 1}\n\n{"key": "key-b", "li')

    journal = Journal(str(path))
    journal.load()
    assert journal.sent == {"key-a"}

    journal.open()
    journal.record("key-c", 3)
    journal.close()

    assert path.read_text() == '{"key": "key-a", "line": 1}\n\n{"key": "key-c", "line": 3}\n'
    again = Journal(str(path))  # a third run reads the journal the second one left
    again.load()
    assert again.sent == {"key-a", "key-c"}


@pytest.mark.parametrize("cut", ['{"ke', '{"key": "key-b", "line": 2'])
def test_every_cut_of_a_record_is_dropped_when_the_journal_is_reopened(
    tmp_path: Path, cut: str
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "key-a", "line": 1}\n' + cut)

    journal = Journal(str(path))
    journal.load()
    journal.open()
    journal.close()

    assert journal.sent == {"key-a"}
    assert path.read_text() == '{"key": "key-a", "line": 1}\n'


def test_a_last_line_that_is_no_record_is_ignored_but_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "key-a", "line": 1}\nsomething else')

    journal = Journal(str(path))
    journal.load()
    journal.open()
    journal.record("key-b", 2)
    journal.close()

    assert journal.sent == {"key-a"}
    assert path.read_text().splitlines() == [
        '{"key": "key-a", "line": 1}',
        "something else",
        '{"key": "key-b", "line": 2}',
    ]


def test_a_complete_record_as_the_last_line_is_read_even_without_a_newline(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "key-a", "line": 1}')

    journal = Journal(str(path))
    journal.load()
    journal.open()
    journal.record("key-b", 2)
    journal.close()

    assert journal.sent == {"key-a"}
    assert path.read_text().splitlines() == [
        '{"key": "key-a", "line": 1}',
        '{"key": "key-b", "line": 2}',
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('not json\n{"key": "a"}\n', "line 1: not a journal record"),
        ('{"key": "a"}\n{"line": 2}\n', "line 2: not a journal record"),
        ('{"key": "a"}\n[1]\n', "line 2: not a journal record"),
        ('{"key": 7}\n', "line 1: the key is not a string"),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(content)

    with pytest.raises(UsageError, match=expected):
        Journal(str(path)).load()


def test_a_journal_that_cannot_be_read_or_written_is_a_usage_error(tmp_path: Path) -> None:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"key": "\xff"}\n')
    with pytest.raises(UsageError, match="cannot read the journal"):
        Journal(str(binary)).load()

    directory = Journal(str(tmp_path))
    with pytest.raises(UsageError, match="cannot read the journal"):
        directory.load()
    with pytest.raises(UsageError, match="cannot write the journal"):
        directory.open()


# progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_format_duration() -> None:
    assert [format_duration(s) for s in (-3, 0, 59.6, 61, 3599, 3661)] == [
        "0:00",
        "0:00",
        "1:00",
        "1:01",
        "59:59",
        "1:01:01",
    ]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_writes_at_most_one_line_per_interval_and_one_at_the_end() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(total=4, stream=stream, expected_rate=None, interval=1.0, clock=clock)

    progress.advance("sent")
    progress.advance("failed")
    progress.advance("sent")
    assert stream.getvalue() == ""

    progress.log("line 2: rejected")
    clock.now += 1.5
    progress.close()
    progress.close()

    lines = stream.getvalue().splitlines()
    assert lines[0] == "line 2: rejected"
    assert len(lines) == 2
    assert lines[1] == "progress: 3/4 done (2 sent, 1 failed), 2.0/s, ETA 0:00"


def test_plain_progress_writes_a_line_once_an_interval_has_passed_and_no_total_without_one() -> (
    None
):
    stream, clock = io.StringIO(), Clock()
    progress = Progress(total=None, stream=stream, expected_rate=None, clock=clock)

    progress.advance("sent")
    clock.now += 1.0
    progress.advance("sent")
    progress.advance("interrupted")
    progress.close()

    lines = stream.getvalue().splitlines()
    assert [line.split(", ")[0] for line in lines] == [
        "progress: 2 done (2 sent",
        "progress: 3 done (2 sent",
    ]
    assert lines[1].startswith("progress: 3 done (2 sent, 0 failed, 1 interrupted), ")
    assert "ETA" not in stream.getvalue()


def test_no_progress_draws_nothing_but_still_logs() -> None:
    stream = Terminal()
    progress = Progress(total=3, stream=stream, expected_rate=10.0, draw=False)

    progress.advance("sent")
    progress.log("line 1: rejected")
    progress.close()

    assert stream.getvalue() == "line 1: rejected\n"


def test_a_terminal_gets_a_rich_bar_with_the_count_and_the_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("TERM", raising=False)
    stream = Terminal()
    progress = Progress(total=5, stream=stream, expected_rate=None)

    progress.advance("sent")
    progress.advance("sent")
    progress.advance("failed")
    progress.log("line 3: [bold]rejected[/bold]")
    progress.close()

    drawn = stream.getvalue()
    assert "sending" in drawn
    assert "3/5" in drawn
    assert "1 failed" in drawn
    assert "line 3: [bold]rejected[/bold]" in drawn  # printed as is, not as markup
    assert "\x1b[" in drawn  # drawn for a terminal
    assert "progress:" not in drawn


def test_a_terminal_without_rich_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)  # as if rich were not installed
    stream = Terminal()

    progress = Progress(total=2, stream=stream, expected_rate=None, interval=0)
    progress.advance("sent")
    progress.close()

    assert stream.getvalue().startswith("progress: 1/2 done (1 sent, 0 failed)")
    assert "\x1b[" not in stream.getvalue()


def test_before_the_first_row_the_eta_comes_from_the_rate_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 100,000 notifications at Whop's 600 a minute: 2 h 47 min, however fast the client is.
    rate = best_rate(DEFAULT_RATE_LIMIT, None)
    assert rate == 10.0
    stream = io.StringIO()

    Progress(total=100_000, stream=stream, expected_rate=rate, interval=3600).close()

    assert stream.getvalue().splitlines()[0] == (
        "progress: 0/100000 done (0 sent, 0 failed), 0.0/s, ETA 2:46:40"
    )

    monkeypatch.setenv("COLUMNS", "150")
    terminal = Terminal()
    Progress(total=100_000, stream=terminal, expected_rate=rate).close()
    assert "ETA 2:46:40" in terminal.getvalue()


def test_the_eta_follows_the_rate_observed_but_never_beats_the_limit() -> None:
    clock = Clock()
    progress = Progress(
        total=1000, stream=io.StringIO(), expected_rate=10.0, draw=False, clock=clock
    )
    clock.now += 10
    for _ in range(600):  # a burst far above the limit: the limit still paces the rest
        progress.advance("sent")
    assert progress.eta() == "0:40"

    slow = Progress(total=1000, stream=io.StringIO(), expected_rate=10.0, draw=False, clock=clock)
    clock.now += 100
    for _ in range(100):  # 1 a second, slower than the limit: that is what the rest will take
        slow.advance("sent")
    assert slow.eta() == "15:00"

    assert Progress(total=None, stream=io.StringIO(), expected_rate=10.0).eta() is None
    assert Progress(total=5, stream=io.StringIO(), expected_rate=None).eta() is None


def test_the_best_rate_is_the_tighter_of_the_limit_and_max_rate() -> None:
    assert best_rate(RateLimit(60, per=6.0), 4.0) == 4.0
    assert best_rate(RateLimit(60, per=6.0), None) == 10.0
    assert best_rate(None, 4.0) == 4.0
    assert best_rate(None, None) is None


# output and the key


def test_output_cuts_the_key_out_of_every_line() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    output = Output(api_key=f"  {UNIT_KEY}\n", stdout=stdout, stderr=stderr)

    output.result(f"key={UNIT_KEY}")
    output.error(f"rejected {UNIT_KEY} twice: {UNIT_KEY}")

    assert stdout.getvalue() == "key=[redacted]\n"
    assert stderr.getvalue() == "whop-async: error: rejected [redacted] twice: [redacted]\n"


def test_output_without_a_key_changes_nothing() -> None:
    output = Output(api_key=None, stdout=io.StringIO(), stderr=io.StringIO())

    assert output.redact("sk_anything") == "sk_anything"


@pytest.mark.parametrize(("verbosity", "level"), [(1, logging.INFO), (2, logging.DEBUG)])
def test_the_log_on_stderr_never_shows_the_key(verbosity: int, level: int) -> None:
    stderr = io.StringIO()
    output = Output(api_key=UNIT_KEY, stdout=io.StringIO(), stderr=stderr)
    logger = logging.getLogger("whop_async")
    handlers = list(logger.handlers)
    output.log_to_stderr(verbosity)
    try:
        assert logger.level == level
        logger.info("sending with %s", UNIT_KEY)
        logger.info("nothing secret in %s", "this one")
    finally:
        for handler in set(logger.handlers) - set(handlers):
            logger.removeHandler(handler)

    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO whop_async: sending with [redacted]")
    assert lines[1].endswith("INFO whop_async: nothing secret in this one")


def test_no_verbosity_adds_no_log_handler() -> None:
    logger = logging.getLogger("whop_async")
    handlers = list(logger.handlers)

    Output(api_key=UNIT_KEY, stdout=io.StringIO(), stderr=io.StringIO()).log_to_stderr(0)

    assert logger.handlers == handlers


def test_make_client_takes_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHOP_API_KEY", "sk_from_the_environment")
    monkeypatch.setenv("WHOP_API_VERSION", "2026-08-21")
    args = build_parser().parse_args(
        [
            "bulk",
            "-",
            "--base-url",
            UNREACHABLE,
            "--app-id",
            "app_1",
            "--api-version",
            "2026-09-22-3",
        ]
    )

    client = make_client(args, concurrency=500, rate_limit=RateLimit(60, per=6.0))

    assert str(client.base_url).startswith(UNREACHABLE)
    assert client.api_version == "2026-09-22-3"  # the flag wins over the environment
    assert client.rate_limit == RateLimit(60, per=6.0)
    assert make_client(args, rate_limit=None).rate_limit is None


def test_without_the_flag_the_client_takes_the_api_version_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WHOP_API_VERSION", "2026-08-21")
    args = build_parser().parse_args(["bulk", "-", "--api-key", UNIT_KEY])
    unpinned = build_parser().parse_args(
        ["bulk", "-", "--api-key", UNIT_KEY, "--api-version", "none"]
    )

    assert make_client(args).api_version == "2026-08-21"
    assert make_client(args).rate_limit == DEFAULT_RATE_LIMIT
    assert make_client(unpinned).api_version is None
    monkeypatch.delenv("WHOP_API_VERSION")
    assert make_client(args).api_version == API_VERSION


def test_an_api_version_that_cannot_be_a_header_is_a_usage_error() -> None:
    ran = run(
        "send",
        "--account-id",
        "biz_1",
        "--title",
        "T",
        "--content",
        "C",
        "--api-key",
        UNIT_KEY,
        "--api-version",
        "2026-08-21\r\nX-Injected: 1",
    )

    assert ran.status == 2
    assert "api_version" in ran.stderr
