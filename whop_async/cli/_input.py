"""Where the rows of ``whop-async bulk`` come from: a file, or stdin, read as they are sent.

A file (or stdin redirected from one) is read synchronously, a line whenever the bulk send pulls
the next row: reading a local file never blocks for long. A pipe may stay quiet for minutes, so
stdin that is a pipe, a socket or a terminal is read by the event loop itself
(``connect_read_pipe``): requests in flight go on while it waits, and a stop (Ctrl-C, a 401)
ends the reading at once instead of waiting for the next line. The event loop reads ahead at
most a few of its buffers (``MAX_LINE_BYTES`` each), never the whole pipe.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Final

import attrs

from ._rows import FileProblem, Format, ReadError, Row, RowParser, read_rows

__all__ = ["MAX_LINE_BYTES", "Input", "pipe_lines"]

#: The longest line read from a pipe; the reader buffers at most twice this ahead.
MAX_LINE_BYTES: Final = 1 << 20


@attrs.frozen
class Input:
    """The file to send (``-`` for stdin), its format, and its identity in derived keys."""

    path: str
    format: Format
    identity: str

    def rows(self) -> Iterator[Row | FileProblem]:
        """Read the rows synchronously, the file closed when the iteration ends.

        Raises:
            ReadError, OSError, UnicodeDecodeError: the input cannot be read as rows.
        """
        fd = self._stdin_fd()
        if self.path == "-" and fd is None:  # stdin is not a file (embedded use)
            yield from read_rows(sys.stdin, format=self.format, identity=self.identity)
            return
        file = self.path if fd is None else os.dup(fd)  # a copy: closing it leaves stdin open
        with open(file, encoding="utf-8-sig", newline="") as stream:
            yield from read_rows(stream, format=self.format, identity=self.identity)

    async def stream(self, stop: asyncio.Event) -> AsyncIterator[Row | FileProblem]:
        """The rows as the sender pulls them; a pipe is read without blocking the event loop.

        Once ``stop`` is set the rows that follow are not to be used: a line cut short by the
        stop may come out as a problem.

        Raises:
            ReadError, OSError, UnicodeDecodeError: the input cannot be read as rows.
        """
        fd = self._stdin_fd()
        if fd is None or not _is_pipe(fd):
            for item in self.rows():
                yield item
            return
        parser = RowParser(format=self.format, identity=self.identity)
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        async for line in pipe_lines(fd, stop):
            if (row := parser.feed(decoder.decode(line))) is not None:
                yield row
        if stop.is_set():  # the input did not end: nothing to check about its end
            return
        decoder.decode(b"", final=True)
        if (last := parser.close()) is not None:
            yield last

    def _stdin_fd(self) -> int | None:
        if self.path != "-":
            return None
        try:
            return sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return None


def _is_pipe(fd: int) -> bool:
    """Whether reading ``fd`` may block indefinitely and the event loop can wait for it."""
    if os.name != "posix":  # no asynchronous pipes for stdin on Windows' event loops
        return False
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def pipe_lines(fd: int, stop: asyncio.Event) -> AsyncIterator[bytes]:
    """The lines of the pipe ``fd`` (line breaks included), until its end or until ``stop``.

    Raises:
        ReadError: a line is longer than ``MAX_LINE_BYTES``.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    pipe = open(os.dup(fd), "rb", buffering=0)  # noqa: ASYNC230, SIM115 - the transport closes it
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    stopping = asyncio.ensure_future(stop.wait())
    stopping.add_done_callback(lambda _: reader.feed_eof())
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # what StreamReader raises for an overlong line
                raise ReadError(f"a line is longer than {MAX_LINE_BYTES} bytes") from None
            if not line:
                return
            yield line
    finally:
        stopping.cancel()
        transport.close()
        # The transport made the descriptor non-blocking, a flag stdin shares with the shell.
        os.set_blocking(fd, True)
