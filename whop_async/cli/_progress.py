"""Progress on stderr: a rich bar on a terminal, plain periodic lines anywhere else.

The ETA comes from the rate limit before the first row finishes (100,000 rows at Whop's 600 a
minute take 2:46:40 however fast the client is), then from the rate observed, never faster than
the limit. rich is an optional dependency (the ``cli`` extra), imported only when a bar is drawn.
"""

from __future__ import annotations

import time
from typing import Any, Final, TextIO

__all__ = [
    "PlainProgress",
    "Progress",
    "RichProgress",
    "format_duration",
    "make_progress",
]

#: Seconds between two plain progress lines.
DEFAULT_INTERVAL: Final = 1.0


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an ETA."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """What the commands tell a progress display; this one draws nothing (``--no-progress``)."""

    def __init__(self, *, total: int | None, stream: TextIO, expected_rate: float | None) -> None:
        self.total = total
        self.sent = self.failed = 0
        self._stream = stream
        self._expected_rate = expected_rate
        self._started = time.monotonic()

    @property
    def done(self) -> int:
        """Rows finished, sent or failed."""
        return self.sent + self.failed

    def advance(self, *, ok: bool) -> None:
        """One row finished, sent or failed."""
        if ok:
            self.sent += 1
        else:
            self.failed += 1

    def log(self, text: str) -> None:
        """Print a line above the display."""
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Draw the final state and release the terminal."""

    def rate(self) -> float:
        """Rows finished per second so far."""
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> str | None:
        """The time left, at the rate observed but never faster than the expected one."""
        rates = [rate for rate in (self.rate(), self._expected_rate) if rate]
        if self.total is None or not rates:
            return None
        return format_duration((self.total - self.done) / min(rates))


class PlainProgress(Progress):
    """A line every ``interval`` seconds while rows finish, and one at the end."""

    def __init__(
        self, *, total: int | None, stream: TextIO, interval: float, expected_rate: float | None
    ) -> None:
        super().__init__(total=total, stream=stream, expected_rate=expected_rate)
        self._interval = interval
        self._last_line = self._started
        self._written = -1
        if total is not None and expected_rate is not None:
            self._write()  # the time it will take at best, before the first request

    def advance(self, *, ok: bool) -> None:
        super().advance(ok=ok)
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._write()

    def close(self) -> None:
        if self._written != self.done:
            self._write()

    def _write(self) -> None:
        self._written = self.done
        done = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        eta = self.eta()
        self.log(
            f"progress: {done} done ({self.sent} sent, {self.failed} failed), {self.rate():.1f}/s"
            + (f", ETA {eta}" if eta is not None else "")
        )


class RichProgress(Progress):
    """A rich bar with the count, the rate and the time left."""

    def __init__(self, *, total: int | None, stream: TextIO, expected_rate: float | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        super().__init__(total=total, stream=stream, expected_rate=expected_rate)
        self._bar = Bar(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[failed]}", style="red"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=Console(file=stream),
        )
        self._task = self._bar.add_task("sending", total=total, rate="", failed="", eta=self._eta())
        self._bar.start()

    def advance(self, *, ok: bool) -> None:
        super().advance(ok=ok)
        fields: dict[str, Any] = {"rate": f"{self.rate():.1f}/s", "eta": self._eta()}
        if self.failed:
            fields["failed"] = f"{self.failed} failed"
        self._bar.update(self._task, advance=1, **fields)

    def log(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._bar.stop()

    def _eta(self) -> str:
        eta = self.eta()
        return f"ETA {eta}" if eta is not None else ""


def make_progress(
    *,
    total: int | None,
    stream: TextIO,
    enabled: bool = True,
    interval: float = DEFAULT_INTERVAL,
    expected_rate: float | None = None,
) -> Progress:
    """The display that suits ``stream``: rich on a terminal when rich is installed, else plain.

    ``expected_rate`` (rows per second at best, from the rate limit) gives the ETA before the
    first row finishes, and caps the rate the ETA assumes afterwards.
    """
    if not enabled:
        return Progress(total=total, stream=stream, expected_rate=expected_rate)
    if stream.isatty():
        try:
            return RichProgress(total=total, stream=stream, expected_rate=expected_rate)
        except ImportError:
            pass
    return PlainProgress(total=total, stream=stream, interval=interval, expected_rate=expected_rate)
