"""CPU per request without the noise: instructions counted by callgrind, per contender.

Wall-clock CPU time on a shared 2-vCPU machine swings by 20% from round to round; the number
of instructions a client executes does not depend on what else the machine is doing. Each
contender's worker (``_worker.py``, the process bench_bulk.py measures) runs under
``valgrind --tool=callgrind`` twice, sending SMALL and then LARGE notifications after the same
warm-up, against the benchmark's server (outside valgrind). The difference of the two totals
divided by LARGE - SMALL is the cost of one more request, with start-up, imports and warm-up
cancelled out. Workers run with ``PYTHONHASHSEED=0``; what still varies from run to run is how
many responses the event loop finds per wake-up, so ``--repeat`` measures each contender
several times (interleaved) and the table shows the median and the range.

    python benchmarks/instructions.py [--contenders plain-aiohttp whop_async ...]
                                      [--small 300] [--large 1300] [--repeat 3] [--annotate 25]
                                      [--check]

``--annotate N`` prints, per contender, the N C functions whose instructions grew most per
request (``callgrind_annotate``, self cost): where the instructions go.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _server import Server, start_server
from _worker import worker_command

BASELINE = "plain-aiohttp"
SUBJECT = "whop_async"
#: Contender name -> (the worker's contender, extra environment)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "plain-aiohttp": ("plain-aiohttp", {}),
    "plain-aiohttp-workers": ("plain-aiohttp-workers", {}),
    "whop_async": ("whop_async", {}),
}
#: The guard (issue 16): no more instructions per request than the plain task-per-item loop.
TARGET = 1.0
_FUNCTION_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)\s*$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contenders", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--small", type=int, default=300, help="notifications of the small run")
    parser.add_argument("--large", type=int, default=1300, help="notifications of the large run")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", choices=["auto", "nginx", "python"], default="auto")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per contender (3)")
    parser.add_argument("--annotate", type=int, default=0, metavar="N", help="top N functions")
    parser.add_argument("--check", action="store_true", help=f"exit 1 unless <= {TARGET}x")
    args = parser.parse_args(argv)
    if BASELINE not in args.contenders:
        args.contenders.insert(0, BASELINE)
    return args


def progress(message: str) -> None:
    """One progress line on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def callgrind(
    server: Server, name: str, count: int, args: argparse.Namespace, out: Path, core: int | None
) -> int:
    """Run one worker under callgrind; return the instructions it executed in all."""
    contender, environment = VARIANTS[name]
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += worker_command(
        contender,
        count,
        base_url=server.base_url,
        concurrency=args.concurrency,
        warmup=args.warmup,
        core=core,
    )
    before = server.requests_served()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0", **environment},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} under callgrind failed:\n{done.stderr[-3000:]}")
    served = server.requests_served() - before - 1  # the second status request counts itself
    if served != count + args.warmup:
        raise RuntimeError(f"{name}: server saw {served} requests, expected {count}+warmup")
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def self_costs(out: Path) -> dict[str, int]:
    """Instructions per function (self cost), from ``callgrind_annotate``."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    section = text.split("file:function", 1)[-1]
    costs: dict[str, int] = {}
    for line in section.splitlines():
        match = _FUNCTION_LINE.match(line)
        if match is None:
            continue
        where, _, library = match[2].partition(" [")
        file, _, function = where.rpartition(":")
        library = Path(library.rstrip("]")).name
        name = f"{function} ({Path(file).name or '?'}, {library})"
        costs[name] = costs.get(name, 0) + int(match[1].replace(",", ""))
    return costs


def top_functions(small: Path, large: Path, requests: int, limit: int) -> list[tuple[str, float]]:
    """The functions whose self cost grew most between the runs, per extra request."""
    before, after = self_costs(small), self_costs(large)
    growth = {name: (cost - before.get(name, 0)) / requests for name, cost in after.items()}
    return sorted(growth.items(), key=lambda item: item[1], reverse=True)[:limit]


def main(argv: Sequence[str] | None = None) -> int:
    """Count, print the table (and the top functions); with ``--check``, 1 on a miss."""
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        progress("valgrind is not on PATH (apt-get install valgrind)")
        return 2
    allowed = sorted(os.sched_getaffinity(0))
    server_core, client_core = (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)
    extra = args.large - args.small
    per_request: dict[str, list[float]] = {name: [] for name in args.contenders}
    annotated: dict[str, list[tuple[str, float]]] = {}
    server = start_server(args.server, core=server_core)
    progress(f"server: {server.kind} at {server.base_url} (core {server_core})")
    try:
        with tempfile.TemporaryDirectory(prefix="whop-callgrind-") as tmp:
            for repeat in range(args.repeat):
                for name in args.contenders:
                    outs = {
                        size: Path(tmp) / f"{name}.{size}.out" for size in (args.small, args.large)
                    }
                    totals: dict[int, Any] = {}
                    for size, out in outs.items():
                        totals[size] = callgrind(server, name, size, args, out, client_core)
                    per_request[name].append((totals[args.large] - totals[args.small]) / extra)
                    progress(
                        f"{repeat + 1}/{args.repeat} {name:<20} "
                        f"{per_request[name][-1]:,.0f} instructions per request"
                    )
                    if args.annotate and repeat == 0:
                        annotated[name] = top_functions(
                            outs[args.small], outs[args.large], extra, args.annotate
                        )
    finally:
        server.stop()

    medians = {name: statistics.median(values) for name, values in per_request.items()}
    base = medians[BASELINE]
    print(
        f"Instructions per request (callgrind), {args.large:,} - {args.small:,} notifications "
        f"after {args.warmup} warm-up, concurrency {args.concurrency}, server {server.kind}, "
        f"median of {args.repeat}:\n"
    )
    print("| contender | instructions / request | range | x plain aiohttp |")
    print("|:---|---:|---:|---:|")
    for name, values in per_request.items():
        print(
            f"| {name} | {medians[name] / 1000:,.0f}k | {min(values) / 1000:,.0f}k to "
            f"{max(values) / 1000:,.0f}k | {medians[name] / base:.3f} |"
        )
    missed = False
    if SUBJECT in medians:
        ratio = medians[SUBJECT] / base
        missed = ratio > TARGET
        verdict = "FAIL" if missed else "PASS"
        print(f"\n- {verdict} cpu: whop_async / plain aiohttp = {ratio:.3f} (target <= {TARGET})")
    for name, functions in annotated.items():
        print(f"\nWhere {name}'s instructions per request go (self cost, top {args.annotate}):\n")
        print("| function (file, library) | instructions / request |\n|:---|---:|")
        for function, cost in functions:
            print(f"| {function} | {cost:,.0f} |")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
