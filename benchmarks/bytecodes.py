"""Where the Python-level work of a request goes: bytecodes executed per request, per function.

``instructions.py`` says how much CPU a contender spends per request; this says in which Python
functions. It runs one contender in this process against the benchmark's server, traces every
bytecode of COUNT requests after a warm-up (``sys.settrace`` with ``f_trace_opcodes``), and
prints bytecodes per request by package and for the busiest functions. Tracing slows the run
down a hundredfold, so the counts matter here, never the time.

    python benchmarks/bytecodes.py [--contender whop_async] [--count 1000] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from types import FrameType
from typing import Any

from _server import start_server
from _worker import CONTENDERS, make_items

#: Packages bytecodes are grouped by, matched in a function's file name.
GROUPS = ("whop_async", "aiohttp", "asyncio", "multidict", "yarl", "json", "attr", "cattrs")


def main() -> None:
    """Trace one contender's requests and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=list(CONTENDERS), default="whop_async")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def trace_calls(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return trace_opcodes

    def trace_opcodes(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts[frame.f_code.co_filename, frame.f_code.co_name] += 1
        return trace_opcodes

    async def run() -> None:
        async with CONTENDERS[args.contender](server.base_url, 64) as send:
            await send(make_items(200))  # warm-up: connections, caches, first imports
            sys.settrace(trace_calls)
            try:
                await send(make_items(args.count, 1000))
            finally:
                sys.settrace(None)

    server = start_server("python", core=None)
    try:
        asyncio.run(run())
    finally:
        server.stop()
    by_group: collections.Counter[str] = collections.Counter()
    for (filename, _), executed in counts.items():
        by_group[next((group for group in GROUPS if group in filename), "other")] += executed
    print(f"{args.contender}: {sum(counts.values()) / args.count:,.0f} bytecodes per request")
    for group, executed in by_group.most_common():
        print(f"  {executed / args.count:8,.1f}  {group}")
    print(f"\nThe {args.top} busiest functions, bytecodes per request:")
    for (filename, name), executed in counts.most_common(args.top):
        print(f"  {executed / args.count:8,.1f}  {os.path.basename(filename)}:{name}")


if __name__ == "__main__":
    main()
