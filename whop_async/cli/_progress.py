"""Progress on stderr: a rich bar on a terminal, plain periodic lines anywhere else.

rich is an optional dependency (the ``cli`` extra), imported only when a bar is drawn.
"""

from __future__ import annotations

import time
from typing import Any, Final, Protocol, TextIO

__all__ = ["DEFAULT_INTERVAL", "Progress", "format_duration", "make_progress"]

#: Seconds between two plain progress lines.
DEFAULT_INTERVAL: Final = 1.0


class Progress(Protocol):
    """What the commands tell a progress display."""

    def advance(self, *, ok: bool) -> None:
        """One row finished, sent or failed."""

    def log(self, text: str) -> None:
        """Print a line above the display."""

    def close(self) -> None:
        """Draw the final state and release the terminal."""


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an ETA."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Counts:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.sent = 0
        self.failed = 0
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        return self.sent + self.failed

    def advance(self, ok: bool) -> None:
        if ok:
            self.sent += 1
        else:
            self.failed += 1

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


class PlainProgress:
    """A line every ``interval`` seconds while rows finish, and one at the end."""

    def __init__(self, *, total: int | None, stream: TextIO, interval: float) -> None:
        self._counts = _Counts(total)
        self._stream = stream
        self._interval = interval
        self._last_line = self._counts.started
        self._written = -1

    def advance(self, *, ok: bool) -> None:
        self._counts.advance(ok)
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._write()

    def log(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._written != self._counts.done:
            self._write()

    def _write(self) -> None:
        counts = self._counts
        self._written = counts.done
        rate = counts.rate()
        done = f"{counts.done}" if counts.total is None else f"{counts.done}/{counts.total}"
        line = f"progress: {done} done ({counts.sent} sent, {counts.failed} failed), {rate:.1f}/s"
        if counts.total is not None and rate > 0:
            line += f", ETA {format_duration((counts.total - counts.done) / rate)}"
        print(line, file=self._stream, flush=True)


class RichProgress:
    """A rich bar with the count, the rate and the time left."""

    def __init__(self, *, total: int | None, stream: TextIO, description: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._counts = _Counts(total)
        self._bar = Bar(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[failed]}", style="red"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self._task = self._bar.add_task(description, total=total, rate="", failed="")
        self._bar.start()

    def advance(self, *, ok: bool) -> None:
        self._counts.advance(ok)
        fields: dict[str, Any] = {"rate": f"{self._counts.rate():.1f}/s"}
        if self._counts.failed:
            fields["failed"] = f"{self._counts.failed} failed"
        self._bar.update(self._task, advance=1, **fields)

    def log(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._bar.stop()


class NoProgress:
    """No display (``--no-progress``); messages still go to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def advance(self, *, ok: bool) -> None:
        pass

    def log(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        pass


def make_progress(
    *,
    total: int | None,
    stream: TextIO,
    enabled: bool = True,
    interval: float = DEFAULT_INTERVAL,
    description: str = "sending",
) -> Progress:
    """The display that suits ``stream``: rich on a terminal when rich is installed, else plain."""
    if not enabled:
        return NoProgress(stream)
    if stream.isatty():
        try:
            return RichProgress(total=total, stream=stream, description=description)
        except ImportError:
            pass
    return PlainProgress(total=total, stream=stream, interval=interval)
