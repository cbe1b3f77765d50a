"""Bulk sending: whop_async's ``gather_notifications`` against plain aiohttp and ``whop-sdk``.

Against a local server in its own process (nginx when installed, else ``_server.py``), pinned
to one core, with every client run in a fresh process pinned to another, over interleaved
rounds. Prints Markdown tables of medians and ratios to plain aiohttp, the memory of lazy bulk
sends at two sizes, and PASS/FAIL against the targets; writes the raw numbers as JSON.

    python benchmarks/bench_bulk.py [--quick] [--rounds 5] [--count 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from _server import Server, start_server
from _worker import CONTENDERS, MEMORY_CONTENDERS, worker_command

HERE = Path(__file__).resolve().parent
BASELINE = "plain-aiohttp"
SUBJECT = "whop_async"

#: (name, what is compared, limit, True when the value must be at least the limit)
#: Issue 16: at least 0.9x plain aiohttp's requests per second, and CPU per request as a guard
#: (no worse than plain aiohttp).
TARGETS: list[tuple[str, str, float, bool]] = [
    ("throughput", "whop_async req/s / plain aiohttp req/s", 0.9, True),
    ("cpu", "whop_async CPU us/req / plain aiohttp CPU us/req", 1.0, False),
    ("gather memory", "gather_notifications growth, KB per item", 0.25, False),
    ("iter memory", "iter_notifications peak RSS large / small", 1.1, False),
]

Run = dict[str, Any]


class Contender(NamedTuple):
    """One line of the report: a worker contender, run under one ``--variant-env`` setting."""

    worker: str
    environment: dict[str, str]
    setting: str  # the --variant-env text, "" for none

    @property
    def baseline(self) -> str:
        """The label of plain aiohttp under the same setting."""
        return label_of(BASELINE, self.setting)


def label_of(worker: str, setting: str) -> str:
    """A contender's label in the report: its name, then its setting if it has one."""
    return f"{worker} {setting}" if setting else worker


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` is 3 rounds of 5,000 and a 10,000 / 50,000 memory run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (5)")
    parser.add_argument("--count", type=int, default=None, help="notifications per run (20000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests first")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5,000; smaller memory")
    parser.add_argument("--server", choices=["auto", "nginx", "python"], default="auto")
    parser.add_argument(
        "--memory-sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=None
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--only", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument(
        "--variant-env",
        action="append",
        default=[],
        metavar="'NAME=VALUE ...'",
        help="also run every contender with these environment variables, in the same rounds",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.count = args.count or (5_000 if args.quick else 20_000)
    args.memory_sizes = args.memory_sizes or ([10_000, 50_000] if args.quick else [10_000, 200_000])
    if BASELINE not in args.only:
        args.only.insert(0, BASELINE)
    args.contenders = {name: Contender(name, {}, "") for name in args.only}
    for setting in args.variant_env:
        environment = {}
        for assignment in setting.split():
            variable, equals, value = assignment.partition("=")
            if not equals or not variable:
                parser.error(f"--variant-env takes NAME=VALUE ..., got {setting!r}")
            environment[variable] = value
        for name in args.only:
            args.contenders[label_of(name, setting)] = Contender(name, environment, setting)
    return args


def pick_cores() -> tuple[int | None, int | None]:
    """Server core and client core: the first two this process may use, or none on one core."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print("warning: one core only; server and client are not pinned", file=sys.stderr)
        return None, None
    return allowed[0], allowed[1]


def run_worker(
    server: Server,
    contender: str,
    count: int,
    args: argparse.Namespace,
    core: int | None,
    environment: dict[str, str] | None = None,
    label: str | None = None,
) -> Run:
    """Run one contender in a fresh process; check the server saw exactly its requests.

    ``environment`` is added to the worker's (a ``--variant-env``), and ``label`` names the run.
    """
    command = worker_command(
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
        env={**os.environ, **(environment or {})},
    )
    # The second status request counts itself.
    served = server.requests_served() - before - 1
    if done.returncode != 0:
        raise RuntimeError(f"{contender} failed:\n{done.stderr[-3000:]}")
    run: Run = json.loads(done.stdout.strip().splitlines()[-1])
    if served != count + args.warmup:
        raise RuntimeError(f"{contender}: server saw {served} requests, expected {count}+warmup")
    run["server_requests"] = served
    if label is not None:
        run["contender"] = label
    return run


def rotated(names: Sequence[str], shift: int) -> list[str]:
    """``names`` started at position ``shift``: round 1 is A B C D, round 2 B C D A, ..."""
    shift %= len(names)
    return [*names[shift:], *names[:shift]]


def run_throughput(server: Server, args: argparse.Namespace, core: int | None) -> list[Run]:
    """Every contender once per round, in an order that rotates from round to round."""
    runs: list[Run] = []
    for round_index in range(args.rounds):
        for contender in rotated(list(args.contenders), round_index):
            worker_contender, environment, _ = args.contenders[contender]
            run = run_worker(
                server, worker_contender, args.count, args, core, environment, label=contender
            )
            run["round"] = round_index + 1
            runs.append(run)
            progress(
                f"round {round_index + 1}/{args.rounds} {contender:<17} "
                f"{run['requests_per_s']:>8.0f} req/s {run['cpu_us_per_request']:>7.1f} us/req"
            )
    return runs


def run_memory(server: Server, args: argparse.Namespace, core: int | None) -> list[Run]:
    """Peak RSS of each lazy bulk send at the small and the large size."""
    runs: list[Run] = []
    for contender in MEMORY_CONTENDERS:
        for size in args.memory_sizes:
            run = run_worker(server, contender, size, args, core)
            runs.append(run)
            progress(f"memory {contender:<21} {size:>7} items {run['peak_rss_kib'] / 1024:.1f} MiB")
    return runs


def progress(message: str) -> None:
    """One progress line on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def median_of(runs: list[Run], contender: str, key: str) -> float:
    """The median of ``key`` over the runs of ``contender``."""
    return float(statistics.median(run[key] for run in runs if run["contender"] == contender))


def summarize_throughput(
    runs: list[Run], contenders: dict[str, Contender]
) -> dict[str, dict[str, float]]:
    """Medians per contender and their ratios to plain aiohttp's, and paired ratios.

    The plain ratios divide by plain aiohttp with no variant, so a variant's row shows what its
    setting changed; the paired ratios compare, round by round, with plain aiohttp under the
    same setting.
    """
    keys = {"rps": "requests_per_s", "cpu_us": "cpu_us_per_request", "rss_kib": "peak_rss_kib"}
    medians = {
        name: {short: median_of(runs, name, key) for short, key in keys.items()}
        for name in contenders
    }
    base = medians[BASELINE]
    for values in medians.values():
        for short in keys:
            values[f"{short}_ratio"] = values[short] / base[short]
    for name, contender in contenders.items():
        for short in ("rps", "cpu_us"):
            ratio = paired_ratio(runs, name, keys[short], contender.baseline)
            medians[name][f"{short}_ratio_paired"] = ratio
    return medians


def paired_ratio(runs: list[Run], contender: str, key: str, baseline: str = BASELINE) -> float:
    """The median over rounds of ``contender`` / ``baseline`` in the same round: less noisy."""
    by_round = {(run["contender"], run["round"]): run[key] for run in runs}
    ratios = [
        value / by_round[baseline, round_number]
        for (name, round_number), value in by_round.items()
        if name == contender
    ]
    return float(statistics.median(ratios))


def summarize_memory(runs: list[Run], sizes: Sequence[int]) -> dict[str, dict[str, float]]:
    """Peak RSS at both sizes, growth in KB (1,000 bytes) per extra item, and large / small."""
    small, large = sizes
    summary: dict[str, dict[str, float]] = {}
    for contender in MEMORY_CONTENDERS:
        rss = {run["count"]: run["peak_rss_kib"] for run in runs if run["contender"] == contender}
        summary[contender] = {
            "small_kib": rss[small],
            "large_kib": rss[large],
            "growth_kb_per_item": (rss[large] - rss[small]) * 1024 / 1000 / (large - small),
            "large_over_small": rss[large] / rss[small],
        }
    return summary


def evaluate_targets(
    throughput: dict[str, dict[str, float]], memory: dict[str, dict[str, float]] | None
) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None when not measured)."""
    subject = throughput.get(SUBJECT)
    values: dict[str, float | None] = {
        "throughput": subject["rps_ratio"] if subject else None,
        "cpu": subject["cpu_us_ratio"] if subject else None,
        "gather memory": memory["gather_notifications"]["growth_kb_per_item"] if memory else None,
        "iter memory": memory["iter_notifications"]["large_over_small"] if memory else None,
    }
    results = []
    for name, description, limit, at_least in TARGETS:
        value = values[name]
        met = None if value is None else (value >= limit if at_least else value <= limit)
        results.append(
            {"target": name, "description": description, "limit": limit, "at_least": at_least}
            | {"value": value, "met": met}
        )
    return results


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with the first column left-aligned and the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(summary: dict[str, dict[str, float]]) -> str:
    """Medians and ratios to plain aiohttp, one row per contender."""
    header = ["contender", "req/s", "x aiohttp", "CPU us/req", "x aiohttp", "peak RSS MiB"]
    header.append("x aiohttp")
    rows = [
        [
            name,
            f"{values['rps']:,.0f}",
            f"{values['rps_ratio']:.2f}",
            f"{values['cpu_us']:,.1f}",
            f"{values['cpu_us_ratio']:.2f}",
            f"{values['rss_kib'] / 1024:.1f}",
            f"{values['rss_kib_ratio']:.2f}",
        ]
        for name, values in summary.items()
    ]
    return markdown_table(header, rows)


def memory_table(summary: dict[str, dict[str, float]], sizes: Sequence[int]) -> str:
    """Peak RSS at both sizes, growth per item and the large / small ratio."""
    small, large = sizes
    header = ["lazy bulk send", f"RSS MiB @ {small:,}", f"RSS MiB @ {large:,}", "KB/item"]
    header.append("large / small")
    rows = [
        [
            name,
            f"{values['small_kib'] / 1024:.1f}",
            f"{values['large_kib'] / 1024:.1f}",
            f"{values['growth_kb_per_item']:.3f}",
            f"{values['large_over_small']:.2f}",
        ]
        for name, values in summary.items()
    ]
    return markdown_table(header, rows)


def targets_report(targets: list[dict[str, Any]]) -> str:
    """One PASS / FAIL / SKIP line per target."""
    lines = []
    for target in targets:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[target["met"]]
        sign = ">=" if target["at_least"] else "<="
        value = "not measured" if target["value"] is None else f"{target['value']:.3f}"
        lines.append(
            f"- {verdict} {target['target']}: {target['description']} = {value} "
            f"(target {sign} {target['limit']})"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """Versions of the interpreter and of the packages under test."""
    found = {"python": platform.python_version()}
    for package in ("whop-async", "aiohttp", "whop-sdk", "httpx", "httpx-aiohttp", "uvloop"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def with_server(kind: str, core: int | None, body: Callable[[Server], Run]) -> Run:
    """Start the server, run ``body`` with it, and always stop it."""
    server = start_server(kind, core=core)
    progress(f"server: {server.kind} at {server.base_url} (core {core})")
    try:
        return body(server)
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, write the JSON; with ``--check``, 1 on a miss."""
    args = parse_args(argv)
    server_core, client_core = pick_cores()
    started = datetime.datetime.now(datetime.timezone.utc)

    def measure(server: Server) -> Run:
        runs = run_throughput(server, args, client_core)
        memory_runs = [] if args.skip_memory else run_memory(server, args, client_core)
        return {"server": server.kind, "throughput": runs, "memory": memory_runs}

    measured = with_server(args.server, server_core, measure)
    throughput = summarize_throughput(measured["throughput"], args.contenders)
    memory = None if args.skip_memory else summarize_memory(measured["memory"], args.memory_sizes)
    targets = evaluate_targets(throughput, memory)

    print(f"## Bulk send benchmark ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"server: {measured['server']} on core {server_core}; clients on core {client_core}; "
        f"{args.rounds} round{'s' * (args.rounds != 1)} of {args.count:,} notifications at "
        f"concurrency {args.concurrency} (after {args.warmup} warm-up); medians over rounds\n"
    )
    print(", ".join(f"{name} {version}" for name, version in versions().items()) + "\n")
    print(throughput_table(throughput) + "\n")
    if args.variant_env:
        print("(x aiohttp: against plain aiohttp with no variant.)\n")
    for label, contender in args.contenders.items():
        if contender.worker == SUBJECT:
            paired = throughput[label]
            setting = contender.setting or "no variant"
            print(
                f"{SUBJECT} / plain aiohttp within each round ({setting}), median over rounds: "
                f"req/s {paired['rps_ratio_paired']:.2f}x, "
                f"CPU us/req {paired['cpu_us_ratio_paired']:.2f}x\n"
            )
    if memory is not None:
        print(memory_table(memory, args.memory_sizes) + "\n")
    print(targets_report(targets))

    report = {
        "started": started.isoformat(),
        "settings": {key: str(value) for key, value in vars(args).items()},
        "cores": {"server": server_core, "client": client_core, "count": os.cpu_count()},
        "versions": versions(),
        **measured,
        "summary": {"throughput": throughput, "memory": memory},
        "targets": targets,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    progress(f"raw numbers written to {args.output}")
    missed = any(target["met"] is False for target in targets)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
