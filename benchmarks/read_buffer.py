"""What one socket read costs when asyncio asks for 256 KiB and a small response arrives.

asyncio's selector transport reads with ``sock.recv(256 * 1024)``: CPython allocates the whole
buffer, receives a few hundred bytes into it, and shrinks it. Whether that costs system calls
depends on glibc's state, not on the HTTP client: in a process whose heap has no 256 KiB free,
each read maps, shrinks and unmaps fresh memory. This script prices that read over a
``socketpair`` (no event loop, no HTTP), in a fresh process per allocator setting:

- ``recv(256 KiB)`` against ``recv(64 KiB)`` in the same process, the baseline;
- glibc's defaults, ``MALLOC_MMAP_THRESHOLD_`` alone, both variables of docs/performance.md,
  and glibc's defaults after the process has freed one large block (glibc then raises its
  mmap threshold by itself, which is why the cost depends on a process's history).

Run: ``python benchmarks/read_buffer.py [--reads 100000] [--repeat 5]``. Medians of ``repeat``
runs, in microseconds per send + recv of 200 bytes; the ratio is the median of each run's
256 KiB / 64 KiB.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

__all__ = ["SETTINGS", "measure"]

ASYNCIO_READ_SIZE = 256 * 1024
SMALL_READ_SIZE = 64 * 1024
MESSAGE = b"x" * 200

#: (label, environment, free a large block first)
SETTINGS: list[tuple[str, dict[str, str], bool]] = [
    ("glibc defaults", {}, False),
    ("MALLOC_MMAP_THRESHOLD_=1048576 alone", {"MALLOC_MMAP_THRESHOLD_": "1048576"}, False),
    (
        "MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=2097152",
        {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "2097152"},
        False,
    ),
    ("glibc defaults, after freeing one 1 MiB block", {}, True),
]


def measure(reads: int, size: int) -> float:
    """Microseconds per ``send`` of 200 bytes and ``recv(size)`` over a socketpair."""
    left, right = socket.socketpair()
    with left, right:
        started = time.perf_counter()
        for _ in range(reads):
            left.send(MESSAGE)
            right.recv(size)
        return (time.perf_counter() - started) / reads * 1e6


def _child(reads: int, free_large_block: bool) -> None:
    if free_large_block:
        # One mmap-served block freed: glibc raises its mmap threshold to that block's size
        # (and its trim threshold to twice it), as a long-running process will have done.
        block = bytearray(1 << 20)
        del block
    measure(reads // 10, ASYNCIO_READ_SIZE)  # warm-up of both sizes
    measure(reads // 10, SMALL_READ_SIZE)
    result = {"large": measure(reads, ASYNCIO_READ_SIZE), "small": measure(reads, SMALL_READ_SIZE)}
    print(json.dumps(result))


def main() -> None:
    """Run every setting ``--repeat`` times, interleaved, and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", choices=["plain", "after-free"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.reads, args.child == "after-free")
        return
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in SETTINGS}
    for round_number in range(args.repeat):
        for label, env, free_first in SETTINGS:
            command = [sys.executable, os.path.abspath(__file__), "--reads", str(args.reads)]
            command += ["--child", "after-free" if free_first else "plain"]
            environment = {  # only the setting's own allocator variables
                name: value
                for name, value in os.environ.items()
                if not name.startswith("MALLOC_") and name not in ("GLIBC_TUNABLES", "LD_PRELOAD")
            }
            output = subprocess.run(
                command, env={**environment, **env}, check=True, capture_output=True, text=True
            ).stdout
            runs[label].append(json.loads(output))
            print(f"round {round_number + 1}/{args.repeat} {label}", file=sys.stderr)
    print(
        f"Python {sys.version.split()[0]}, {args.reads:,} reads per run, median of {args.repeat}"
        " runs (µs per send + recv of 200 bytes over a socketpair):\n"
    )
    print("| allocator | recv(256 KiB) | recv(64 KiB) | ratio, paired |")
    print("|:---|---:|---:|---:|")
    for label, _, _ in SETTINGS:
        large = statistics.median(run["large"] for run in runs[label])
        small = statistics.median(run["small"] for run in runs[label])
        ratio = statistics.median(run["large"] / run["small"] for run in runs[label])
        print(f"| {label} | {large:.2f} | {small:.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
