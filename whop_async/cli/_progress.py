"""Progress on stderr: a rich bar on a terminal, else a plain line a second.

The ETA comes from the rate limit before the first row finishes (100,000 rows at Whop's 600 a
minute take 2:46:40 however fast the client is), then from the rate observed, never faster than
the limit: the first 600 go at once, and a bar that believed that burst would promise minutes.
rich's own ``TimeRemainingColumn`` knows only the rate observed, so the bar shows this estimate
in a text column instead. rich is optional (the ``cli`` extra), imported only to draw a bar.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

__all__ = ["Ending", "Progress", "format_duration"]

#: How a row ended: sent, failed, or cut short by a stop or a 401 (not sent, or outcome unknown).
Ending = Literal["sent", "failed", "interrupted"]


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an ETA."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts rows as they end and shows the count on ``stream``.

    A rich bar when ``stream`` is a terminal and rich is installed; else a line every
    ``interval`` seconds while rows end, and one at the end; with ``draw`` off, nothing but
    what ``log`` prints. ``expected_rate`` (rows per second at best, from the rate limit) gives
    the ETA before the first row ends and caps the rate it assumes afterwards.
    """

    def __init__(
        self,
        *,
        total: int | None,
        stream: TextIO,
        expected_rate: float | None,
        draw: bool = True,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.counts: dict[Ending, int] = {"sent": 0, "failed": 0, "interrupted": 0}
        self._stream = stream
        self._expected_rate = expected_rate
        self._interval = interval
        self._clock = clock
        self._started = self._last_line = clock()
        self._written = -1
        self._bar: Bar | None = None
        if draw and stream.isatty():
            with contextlib.suppress(ImportError):  # no rich: plain lines
                self._bar = self._start_bar()
        self._lines = draw and self._bar is None
        if self._lines and total is not None and expected_rate is not None:
            self._write()  # the time it will take at best, before the first request

    @property
    def done(self) -> int:
        """Rows ended, however."""
        return sum(self.counts.values())

    def advance(self, ending: Ending) -> None:
        """One row ended."""
        self.counts[ending] += 1
        if self._bar is not None:
            rate, failed, eta = self._fields()
            self._bar.update(
                self._bar.task_ids[0], completed=self.done, rate=rate, failed=failed, eta=eta
            )
        elif self._lines and self._clock() - self._last_line >= self._interval:
            self._last_line = self._clock()
            self._write()

    def log(self, text: str) -> None:
        """Print a line above the display, as it is (no markup)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Draw the final count and release the terminal."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._lines and self._written != self.done:
            self._write()

    def rate(self) -> float:
        """Rows ended per second so far."""
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> str | None:
        """The time left, at the rate observed but never faster than the expected one."""
        rates = [rate for rate in (self.rate(), self._expected_rate) if rate and rate > 0]
        if self.total is None or not rates:
            return None
        return format_duration((self.total - self.done) / min(rates))

    def _fields(self) -> tuple[str, str, str]:
        """The bar's rate, failures and ETA columns."""
        eta, failed = self.eta(), self.counts["failed"]
        return (
            f"{self.rate():.1f}/s",
            f"{failed} failed" if failed else "",
            f"ETA {eta}" if eta else "",
        )

    def _write(self) -> None:
        self._written = self.done
        counts, eta = self.counts, self.eta()
        self.log(
            f"progress: {self.done}{'' if self.total is None else f'/{self.total}'} done "
            f"({counts['sent']} sent, {counts['failed']} failed"
            + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
            + f"), {self.rate():.1f}/s"
            + ("" if eta is None else f", ETA {eta}")
        )

    def _start_bar(self) -> Bar:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        bar = Bar(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[failed]}", style="red"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=Console(file=self._stream),
        )
        rate, failed, eta = self._fields()
        bar.add_task("sending", total=self.total, rate=rate, failed=failed, eta=eta)
        bar.start()
        return bar
