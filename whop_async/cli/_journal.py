"""The journal of a bulk send: one JSON line per row Whop confirmed, written as it is confirmed.

A record is ``{"key": ..., "line": ...}``, plus ``"replayed": true`` for a row Whop answered from
an earlier request with the same key.

Each record is appended and flushed at once, so a killed process loses at most the rows that were
in flight; those are resent on the next run with the same idempotency keys, which Whop
deduplicates. A re-run reads the journal first and skips every key in it. A journal that cannot
be read or written is a usage error: nothing is sent.
"""

from __future__ import annotations

import json
import os
from typing import IO

from ._shared import UsageError

__all__ = ["Journal"]

#: How every record starts (``record`` writes the key first, ASCII only).
_RECORD_START = '{"key": '


class Journal:
    """An append-only record of sent rows, keyed by idempotency key."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sent: set[str] = set()
        self._file: IO[str] | None = None
        self._ends_mid_line = False
        self._cut_line_bytes = 0

    def load(self) -> None:
        """Read the keys already recorded; a missing file is an empty journal.

        A last line cut short by a crash is ignored (its row was never confirmed), and ``open``
        removes it.

        Raises:
            UsageError: the file cannot be read, or holds something else.
        """
        try:
            with open(self.path, encoding="utf-8") as existing:
                for number, line in enumerate(existing, start=1):
                    self._ends_mid_line = not line.endswith("\n")  # only the last line can
                    if not line.strip():
                        continue
                    try:
                        key = json.loads(line)["key"]
                    except (ValueError, TypeError, KeyError):
                        if not self._ends_mid_line:
                            raise UsageError(
                                f"{self.path}, line {number}: not a journal record; is this the "
                                "right file?"
                            ) from None
                        if line.startswith(_RECORD_START) or _RECORD_START.startswith(line):
                            self._cut_line_bytes = len(line.encode("utf-8"))
                        continue
                    if not isinstance(key, str):
                        raise UsageError(f"{self.path}, line {number}: the key is not a string")
                    self.sent.add(key)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the journal {self.path}: {exc}") from None

    def open(self) -> None:
        """Open the journal for appending (after ``load``).

        Raises:
            UsageError: the file cannot be created or written.
        """
        try:
            if self._cut_line_bytes:  # else the next record would complete it into a bad line
                os.truncate(self.path, os.path.getsize(self.path) - self._cut_line_bytes)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise UsageError(f"cannot write the journal {self.path}: {exc}") from None
        if self._ends_mid_line and not self._cut_line_bytes:
            self._file.write("\n")

    def record(self, key: str, line: int, *, replayed: bool = False) -> None:
        """Append one confirmed row and flush it to the operating system.

        ``replayed`` (written only when true) marks a row Whop answered from an earlier request
        with its key: sent then, not now.
        """
        assert self._file is not None
        record: dict[str, object] = {"key": key, "line": line}
        if replayed:
            record["replayed"] = True
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Flush to disk and close."""
        if self._file is not None:
            file, self._file = self._file, None
            file.flush()
            os.fsync(file.fileno())
            file.close()
