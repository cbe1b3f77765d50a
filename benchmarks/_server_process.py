"""A benchmark's server in a subprocess, spoken to over its stdin and stdout.

The server prints one JSON line when it listens (its ``base_url``, and what else it says),
answers ``report`` with one JSON line, and ends on ``stop`` or end of input. Running it in its
own process keeps the client's CPU from delaying its answers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

__all__ = ["ServerProcess"]


class ServerProcess:
    """The server ``command`` starts: ``started`` is its first line, parsed."""

    def __init__(self, command: Sequence[str]) -> None:
        self._process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self.started: dict[str, Any] = json.loads(self._process.stdout.readline())
        self.base_url: str = self.started["base_url"]

    def report(self) -> dict[str, Any]:
        """What the server saw so far."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("report\n")
        self._process.stdin.flush()
        return json.loads(self._process.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Ask the server to end; kill it if it has not within 10 s."""
        if self._process.stdin is not None:
            self._process.stdin.write("stop\n")
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
