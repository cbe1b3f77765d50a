"""``whop-async bulk FILE``: every row of a file through ``iter_notifications``.

A file is read twice: once up front to check it (a bad file sends nothing, and the count gives the
progress bar its total), then again as it is sent. stdin is read once, as it is sent. Rows are
read as the senders pull them, so only the rows in flight are held in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections import Counter
from collections.abc import AsyncGenerator
from typing import IO, Any, Final

import attrs

from .. import (
    FATAL_ERRORS,
    APIStatusError,
    AsyncWhop,
    BulkOutcome,
    InvalidParamsError,
    NotificationCreateParams,
    WhopError,
    derive_idempotency_key,
    is_retryable,
)
from ._journal import Journal
from ._progress import Ending
from ._rows import (
    FileProblem,
    Format,
    Input,
    ReadError,
    Row,
    file_identity,
    guess_format,
    in_thread,
)
from ._shared import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BulkSend,
    Output,
    UsageError,
    make_client,
)

__all__ = ["run_bulk"]

#: Failures (or unreadable lines) reported one by one on stderr before the rest are only counted.
MAX_REPORTED: Final = 20
#: The ``namespace`` of the new key a failures file gives a row that Whop refused.
RESEND_KEY_NAMESPACE: Final = "whop-async resend"
#: What reading the input can raise besides ``FileProblem`` lines.
_READ_ERRORS: Final = (ReadError, OSError, UnicodeDecodeError)


def run_bulk(args: argparse.Namespace, output: Output) -> int:
    """Check the file, then send it (or, with ``--dry-run``, only check it)."""
    source = _resolve_input(args)
    for option, other in (("--journal", args.journal), ("--failures", args.failures)):
        exists = other and source.path != "-" and os.path.exists(other)
        if exists and os.path.samefile(source.path, other):
            raise UsageError(f"{option} must not be the input file itself")
    journal = Journal(args.journal) if args.journal else None
    if journal is not None:
        journal.load()
    sent_before = journal.sent if journal is not None else set()
    if args.dry_run:
        scan = _scan(source, sent_before, output, dry_run=True)
        rows, invalid, problems = scan["rows"], scan["invalid"], scan["problems"]
        output.result(
            f"dry run: {rows} rows, {rows - invalid} valid, {invalid} invalid, {problems} "
            f"unreadable line(s), {scan['skipped']} already in the journal; nothing was sent"
        )
        return EXIT_USAGE if problems else EXIT_FAILED if invalid else EXIT_OK
    client = make_client(args, concurrency=args.concurrency, rate_limit=args.rate_limit)
    total: int | None = None
    if source.path != "-":
        scan = _scan(source, sent_before, output)
        if scan["problems"]:
            output.error(f"{source.path}: {scan['problems']} unreadable line(s); nothing was sent")
            return EXIT_USAGE
        total = scan["rows"] - scan["skipped"]
    with contextlib.ExitStack() as opened:
        if journal is not None:
            journal.open()
            opened.callback(journal.close)
        failures = _Failures(args.failures) if args.failures else None
        if failures is not None:
            opened.callback(failures.close)
        return asyncio.run(_Run(args, output, source, journal, failures).main(client, total))


def _resolve_input(args: argparse.Namespace) -> Input:
    path: str = args.file
    fmt: Format | None = args.format or ("jsonl" if path == "-" else guess_format(path))
    if fmt is None:
        raise UsageError(
            f"cannot tell the format of {path} from its name: pass --format csv or --format jsonl"
        )
    if path != "-" and not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    return Input(path, fmt, file_identity(path))


def _scan(
    source: Input, sent_before: set[str], output: Output, *, dry_run: bool = False
) -> Counter[str]:
    """Count the ``rows``, ``invalid`` ones, ``skipped`` ones and unreadable lines (``problems``)
    of the whole input, reporting the first ``MAX_REPORTED`` of these; a dry run reports every
    unreadable line and every invalid row."""
    scan: Counter[str] = Counter()
    try:
        for item in source.rows():
            if isinstance(item, FileProblem):
                scan["problems"] += 1
                if dry_run or scan["problems"] <= MAX_REPORTED:
                    output.note(f"{source.path}: {item}")
                continue
            scan["rows"] += 1
            scan["skipped"] += item.idempotency_key in sent_before
            if item.error is not None:
                scan["invalid"] += 1
                if dry_run:
                    output.note(f"{source.path}: line {item.line}: {item.error}")
    except _READ_ERRORS as exc:
        raise UsageError(f"{source.path}: {_read_error(exc)}") from None
    return scan


def _read_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return str(exc)


class _Failures:
    """The ``--failures`` file: each row read and not confirmed, plus where and why it failed.

    Each record keeps the row's key, so that sending the file again cannot notify twice, except
    for a row Whop refused for good (an answer the client does not retry, such as a 400 or a
    403): Whop replays that answer to the key and refuses the key with a corrected body
    (``idempotency_key_mismatch``), so such a row gets a new key, derived from the old one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        try:
            self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot write the failures file: {exc}") from None

    def write(self, row: Row, error: WhopError) -> None:
        key = row.idempotency_key
        if isinstance(error, APIStatusError) and not is_retryable(error):
            key = derive_idempotency_key(key, namespace=RESEND_KEY_NAMESPACE)
        record: dict[str, Any] = {**row.values, "idempotency_key": key, "_line": row.line}
        record["_error"] = str(error)
        if isinstance(error, InvalidParamsError):
            record["_field"] = error.field
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


@attrs.define
class _Run:
    """One send of the input: the rows in flight, the counts, and how it ended."""

    args: argparse.Namespace
    output: Output
    source: Input
    journal: Journal | None
    failures: _Failures | None
    send: BulkSend = attrs.field(init=False)
    in_flight: dict[int, Row] = attrs.Factory(dict)
    sent_index: int = 0
    skipped: int = 0
    reported: int = 0
    problem: str | None = None

    async def main(self, client: AsyncWhop, total: int | None) -> int:
        self.send = send = BulkSend(self.args, self.output)
        await send.run(client, self._items(), self._on_outcome, total=total)
        failures, journal = self.failures, self.journal
        notes = [("failures", f"written to {failures.path}")] if failures and failures.count else []
        send.print_summary(skipped=self.skipped if journal else None, notes=notes)
        if self.problem is not None:
            self.output.error(f"{self.problem}; stopped reading there")
            return EXIT_USAGE
        if send.fatal is not None:
            self.output.error(f"{send.fatal}: check the API key and its permissions")
            return EXIT_USAGE
        counts = send.progress.counts
        if not send.stop.is_set():
            return EXIT_FAILED if counts["failed"] else EXIT_OK
        if journal is not None:
            resume = f"run the same command again: the journal {journal.path} skips them"
        else:
            resume = "re-running resends them with the same idempotency keys"
        note = f"Interrupted: {counts['sent']} sent before stopping; {resume}."
        if counts["interrupted"] and failures is not None:
            note += f" The {counts['interrupted']} unanswered are in {failures.path}, keys kept."
        self.output.note(note)
        return EXIT_INTERRUPTED

    async def _items(self) -> AsyncGenerator[NotificationCreateParams, None]:
        try:
            async with contextlib.aclosing(in_thread(self.source.rows())) as rows:
                async for item in rows:
                    if isinstance(item, FileProblem):
                        self.problem = f"{self.source.path}: {item}"
                        return
                    if self.journal is not None and item.idempotency_key in self.journal.sent:
                        self.skipped += 1
                    elif item.params is None:
                        assert item.error is not None
                        self.send.progress.advance("failed")
                        self._failed(item, item.error, "failed")
                    else:
                        self.in_flight[self.sent_index] = item
                        self.sent_index += 1
                        yield item.params
        except _READ_ERRORS as exc:
            self.problem = f"{self.source.path}: {_read_error(exc)}"

    def _on_outcome(self, outcome: BulkOutcome, ending: Ending) -> None:
        row = self.in_flight.pop(outcome.index)
        if outcome.error is not None:
            self._failed(row, outcome.error, ending)
        elif self.journal is not None:
            self.journal.record(row.idempotency_key, row.line, replayed=outcome.replayed)

    def _failed(self, row: Row, error: WhopError, ending: Ending) -> None:
        if self.failures is not None:
            self.failures.write(row, error)
        if ending == "interrupted" or isinstance(error, FATAL_ERRORS):
            return  # reported once, at the end
        self.reported += 1
        if self.reported <= MAX_REPORTED:
            self.send.progress.log(self.output.redact(f"line {row.line}: {error}"))
        elif self.reported == MAX_REPORTED + 1:
            where = f" (all are in {self.failures.path})" if self.failures else ""
            self.send.progress.log(f"... more failures are not shown{where}")
