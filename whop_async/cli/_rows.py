"""The rows of ``whop-async bulk``: read from a CSV or JSON Lines file, or stdin, with their lines.

Each row becomes a ``Row``, valid or not; a line that is no row at all is a ``FileProblem``; a
file without rows or with an unusable CSV header raises ``ReadError``. CSV goes through the
``csv`` module, which reads a quoted field across lines by itself.

A row's idempotency key is derived, never random, so that a re-run sends the same key for the
same row: the row's ``idempotency_key`` when it has one, else ``derive_idempotency_key(id)``
(the key a Python job gets for the same id), else a key derived from the file's identity, the
line number and the row's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import queue
import sys
import threading
from collections.abc import AsyncGenerator, Generator, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

from .. import InvalidParamsError, NotificationCreateParams, derive_idempotency_key

__all__ = [
    "CONTENT_KEY_NAMESPACE",
    "FileProblem",
    "Format",
    "Input",
    "PARAM_NAMES",
    "ReadError",
    "Row",
    "file_identity",
    "guess_format",
    "in_thread",
    "read_rows",
]

Format: TypeAlias = Literal["csv", "jsonl"]

#: The column that names a row: its key is ``derive_idempotency_key(id)``; it is never sent.
ID_COLUMN: Final = "id"
#: The ``namespace`` of the keys of rows without an id (derived from their place and content).
CONTENT_KEY_NAMESPACE: Final = "whop-async bulk row"
#: Keys a failures file adds to each row; dropped when that file is read back.
ANNOTATION_KEYS: Final = frozenset({"_line", "_error", "_field"})
#: The keywords of ``create()``: the columns sent, and the ``send`` flags' names. The extras
#: are mappings, which no CSV column or flag can hold.
PARAM_NAMES: Final = frozenset(field.name for field in attrs.fields(NotificationCreateParams)) - {
    "extra_headers",
    "extra_body",
}
_KNOWN_COLUMNS: Final = PARAM_NAMES | {ID_COLUMN}
_EXPECTED: Final = "some of " + ", ".join(sorted(_KNOWN_COLUMNS))
_AUDIENCE_COLUMNS: Final = ("account_id", "experience_id", "company_id")


class ReadError(Exception):
    """The file cannot be read as rows at all (no rows, a bad header); nothing can be sent."""


@attrs.frozen
class FileProblem:
    """A line that is not a row at all: not JSON, not an object, an unknown key."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@attrs.frozen
class Row:
    """One row of the file, validated."""

    line: int
    """The line the row starts on, from 1."""
    values: dict[str, Any]
    """The keywords as read (``id`` included), as a failures file writes them back."""
    idempotency_key: str
    """The key every attempt of this row is sent with."""
    params: NotificationCreateParams | None
    """What is sent, when the row is valid."""
    error: InvalidParamsError | None
    """Why the row is invalid."""


def guess_format(path: str) -> Format | None:
    """The format a file name implies, or ``None`` when its extension says nothing."""
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


def file_identity(path: str) -> str:
    """What tells this input apart from others in derived keys: its absolute path, or stdin."""
    return "<stdin>" if path == "-" else os.path.abspath(path)


def read_rows(
    lines: Iterable[str], *, format: Format, identity: str
) -> Iterator[Row | FileProblem]:
    """Yield each row of ``lines`` (or the problem with its line) as it is read, not ahead.

    Raises:
        ReadError: the file has no rows, or its CSV header is unusable.
    """
    items = _csv_items(lines, identity) if format == "csv" else _jsonl_items(lines, identity)
    empty = True
    for item in items:
        empty = False
        yield item
    if empty:
        raise ReadError("the file has no rows")


def _csv_items(lines: Iterable[str], identity: str) -> Iterator[Row | FileProblem]:
    reader = csv.reader(lines)
    columns = [column.strip() for column in next(reader, [])]
    if reader.line_num == 0:
        return
    if (problem := _header_problem(columns)) is not None:
        raise ReadError(f"line 1: {problem}")
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield FileProblem(line, f"not valid CSV ({exc})")
            continue
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            yield FileProblem(line, f"has {len(record)} fields, the header has {len(columns)}")
            continue
        values = {
            column: cell.replace(";", " ").split() if column == "user_ids" else cell
            for column, cell in zip(columns, record, strict=True)
            if column not in ANNOTATION_KEYS and cell.strip()
        }
        yield _make_row(line, values, identity)


def _header_problem(columns: list[str]) -> str | None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            return f"column {column!r} appears twice in the header"
        seen.add(column)
        if column not in _KNOWN_COLUMNS and column not in ANNOTATION_KEYS:
            return f"unknown column {column!r}; expected {_EXPECTED}"
    for required in ("title", "content"):
        if required not in seen:
            return f"missing column {required!r}"
    if seen.isdisjoint(_AUDIENCE_COLUMNS):
        return "missing column 'account_id', 'experience_id' or 'company_id'"
    return None


def _jsonl_items(lines: Iterable[str], identity: str) -> Iterator[Row | FileProblem]:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except ValueError as exc:
            yield FileProblem(line, f"not valid JSON ({exc})")
            continue
        if not isinstance(values, dict):
            yield FileProblem(line, f"must be a JSON object, got {type(values).__name__}")
            continue
        unknown = sorted(set(values) - _KNOWN_COLUMNS - ANNOTATION_KEYS)
        if unknown:
            yield FileProblem(line, f"unknown key {unknown[0]!r}; expected {_EXPECTED}")
            continue
        values = {key: value for key, value in values.items() if key not in ANNOTATION_KEYS}
        yield _make_row(line, values, identity)


def _make_row(line: int, values: dict[str, Any], identity: str) -> Row:
    key = _derive_key(line, values, identity)
    keywords = {name: value for name, value in values.items() if name != ID_COLUMN}
    keywords.setdefault("idempotency_key", key)
    try:
        params = NotificationCreateParams.from_mapping(keywords)
    except InvalidParamsError as exc:
        return Row(line, values, key, None, exc)
    return Row(line, values, key, params, None)


def _derive_key(line: int, values: dict[str, Any], identity: str) -> str:
    own = values.get("idempotency_key")
    if isinstance(own, str) and own.strip():
        return own  # validated with the rest of the row
    if values.get(ID_COLUMN) is not None:
        try:
            return derive_idempotency_key(values[ID_COLUMN])
        except InvalidParamsError:
            pass  # blank, a bool, a list: no id, so the row is named by its place and content
    content = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return derive_idempotency_key(f"{identity}\0{line}\0{content}", namespace=CONTENT_KEY_NAMESPACE)


@attrs.frozen
class Input:
    """The file to send (``-`` for stdin), its format, and its identity in derived keys."""

    path: str
    format: Format
    identity: str

    def rows(self) -> Generator[Row | FileProblem, None, None]:
        """Read the rows as they are pulled; the file is closed at the end, stdin left open.

        Raises:
            ReadError, OSError, UnicodeDecodeError: the input cannot be read as rows.
        """
        try:
            source = self.path if self.path != "-" else sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # stdin is not a file (embedded use)
            yield from read_rows(sys.stdin, format=self.format, identity=self.identity)
            return
        with open(source, encoding="utf-8-sig", newline="", closefd=self.path != "-") as lines:
            yield from read_rows(lines, format=self.format, identity=self.identity)


_T = TypeVar("_T")


async def in_thread(items: Generator[_T, None, None]) -> AsyncGenerator[_T, None]:
    """Each item of ``items``, read by a daemon thread one pull at a time, never ahead.

    A pipe may stay quiet for minutes: the event loop goes on meanwhile, and once the pulls stop
    (a stop, Ctrl-C, a 401) the process can end at once. A thread of ``asyncio.to_thread`` could
    not do that: ``asyncio.run`` and the interpreter wait for the executor's threads on exit.
    """
    # Each pull is answered with (item,), or None at the end, or the reading's error.
    pulls: queue.SimpleQueue[Future[tuple[_T] | None] | None] = queue.SimpleQueue()

    def read() -> None:
        with contextlib.closing(items):
            while (pull := pulls.get()) is not None:
                if not pull.set_running_or_notify_cancel():
                    continue  # given up before it was read: nothing was taken from the input
                try:
                    pull.set_result((next(items),))
                except StopIteration:
                    pull.set_result(None)
                    return
                except Exception as exc:  # noqa: BLE001 - the puller raises it
                    pull.set_exception(exc)
                    return

    threading.Thread(target=read, name="whop-async input", daemon=True).start()
    try:
        while True:
            pull: Future[tuple[_T] | None] = Future()
            pulls.put(pull)
            if (pulled := await asyncio.wrap_future(pull)) is None:
                return
            yield pulled[0]
    finally:
        pulls.put(None)
