"""Rate limits as Whop documents them: what the client's limiter achieves against the emulator.

Each run starts a fresh ``WhopEmulator`` in its own process (``_limited_server.py``), limiting
as Whop documents (N requests per window per key and operation, a 429 whose wait is only in
its message), with a fixed or a sliding window, and sends to it from this process:

* (a) a bulk send of 300 with ``rate_limit=RateLimit(60, per=6.0)``, the server's own limit;
* (b) a bulk send of 300 with the default client, which believes Whop's 600 per 60 s while the
  server allows 60 per 6 s (the same rate in a tenth of the window);
* (c) 150 sequential ``create()`` calls with the default client;
* (d) at real scale, 600 per 60 s and 1,200 items, with the default client (skipped by
  ``--quick``: about a minute per window kind).

(a) and (b) are also run with ``rate_limit=None``, the behaviour before the client had a
limiter, for contrast. Prints a Markdown table per scenario and PASS/FAIL per target; writes
every run, with its 429 timeline and the limiter's pacing, to ``results/rate_limits.json``.
``--charts DIRECTORY`` also draws (a) and (b) with the client's limiter, as the server saw
them, to ``rate-limits-matched.svg`` and ``rate-limits-default-vs-lower.svg`` (needs
matplotlib).

    python benchmarks/rate_limits.py [--quick] [--only a b c d] [--windows fixed sliding]
                                     [--timeline] [--check] [--output PATH]
                                     [--charts DIRECTORY]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import importlib.util
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from _server_process import ServerProcess

from whop_async import AsyncWhop, BulkStats, RateLimit, WhopError, gather_notifications

HERE = Path(__file__).resolve().parent
SERVER = HERE / "_limited_server.py"
OPERATION = "POST /notifications"
TIME_SCALED = RateLimit(60, per=6.0)
WHOP = RateLimit(600, per=60.0)
#: How the client is told its limit: the server's own, the default (Whop's), or none.
MATCHING, DEFAULT, NONE = "matching", "default", "none"

Run = dict[str, Any]


@attrs.frozen
class Target:
    """A figure a run must reach: ``measure(run)`` compared with ``limit``."""

    name: str
    measure: Callable[[Run], float]
    limit: float
    at_least: bool

    def check(self, run: Run) -> dict[str, Any]:
        value = self.measure(run)
        met = value >= self.limit if self.at_least else value <= self.limit
        sign = ">=" if self.at_least else "<="
        return {"target": self.name, "value": value, "limit": f"{sign} {self.limit:g}", "met": met}


def _failures(run: Run) -> float:
    return run["failures"]


def _not_delivered_once(run: Run) -> float:
    return 0 if run["delivered_once"] else 1


def _share_429(run: Run) -> float:
    return run["share_429"]


def _wall_over_ideal(run: Run) -> float:
    return run["wall_s"] / (run["count"] / run["allowed_rate"])


def _rate_ratio(run: Run) -> float:
    return run["rate_ratio"]


ZERO_FAILURES = Target("failures", _failures, 0, at_least=False)
DELIVERED_ONCE = Target("items not delivered exactly once (0/1)", _not_delivered_once, 0, False)


@attrs.frozen
class Scenario:
    """One scenario: the server's limit, the work, and the client settings it is run with."""

    name: str
    title: str
    server_limit: RateLimit
    count: int
    sequential: bool
    #: (client setting, targets it must reach; none for a contrast run)
    clients: tuple[tuple[str, tuple[Target, ...]], ...]
    full_only: bool = False


SCENARIOS = (
    Scenario(
        "a",
        "bulk of 300, client rate_limit matching the server (60 per 6 s)",
        TIME_SCALED,
        300,
        sequential=False,
        clients=(
            (
                MATCHING,
                (
                    ZERO_FAILURES,
                    DELIVERED_ONCE,
                    Target("429s / requests", _share_429, 0.01, at_least=False),
                    Target("wall time / (items / allowed rate)", _wall_over_ideal, 1.05, False),
                ),
            ),
            (NONE, ()),
        ),
    ),
    Scenario(
        "b",
        "bulk of 300, default client (believes 600 per 60 s; server allows 60 per 6 s)",
        TIME_SCALED,
        300,
        sequential=False,
        clients=(
            (
                DEFAULT,
                (
                    ZERO_FAILURES,
                    DELIVERED_ONCE,
                    Target("429s / requests", _share_429, 0.10, at_least=False),
                    Target("achieved rate / allowed rate", _rate_ratio, 0.9, at_least=True),
                ),
            ),
            (NONE, ()),
        ),
    ),
    Scenario(
        "c",
        "150 sequential create() calls, default client (server 60 per 6 s)",
        TIME_SCALED,
        150,
        sequential=True,
        clients=((DEFAULT, (ZERO_FAILURES, DELIVERED_ONCE)),),
    ),
    Scenario(
        "d",
        "real scale: bulk of 1,200, default client, server 600 per 60 s",
        WHOP,
        1_200,
        sequential=False,
        clients=(
            (
                DEFAULT,
                (
                    ZERO_FAILURES,
                    DELIVERED_ONCE,
                    Target("429s / requests", _share_429, 0.01, at_least=False),
                ),
            ),
        ),
        full_only=True,
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip (d), the real-scale run")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SCENARIOS], default=None)
    parser.add_argument("--windows", nargs="+", choices=["fixed", "sliding"])
    parser.add_argument("--concurrency", type=int, default=16, help="bulk sends' (16)")
    parser.add_argument("--timeline", action="store_true", help="print every run's timeline")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "rate_limits.json")
    parser.add_argument("--charts", type=Path, metavar="DIRECTORY", help="draw SVG charts there")
    args = parser.parse_args(argv)
    if args.charts and importlib.util.find_spec("matplotlib") is None:
        parser.error("--charts needs matplotlib: pip install -r benchmarks/requirements.txt")
    args.windows = args.windows or ["fixed", "sliding"]
    if args.only is None:
        args.only = [s.name for s in SCENARIOS if not (args.quick and s.full_only)]
    return args


def progress(message: str) -> None:
    """One progress line on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


class LimitedServer(ServerProcess):
    """``_limited_server.py`` in a subprocess: its address, its key, its report, its end."""

    def __init__(self, limit: RateLimit, window: str) -> None:
        command = [sys.executable, str(SERVER), "--rate-limit", f"{limit.requests}/{limit.per:g}"]
        super().__init__([*command, "--window", window])
        self.api_key: str = self.started["api_key"]


def _items(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"company_id": "biz_bench", "title": f"Limit {index}", "content": "Paced."}


def _client(server: LimitedServer, setting: str, limit: RateLimit) -> AsyncWhop:
    if setting == DEFAULT:
        return AsyncWhop(server.api_key, base_url=server.base_url)
    rate_limit = limit if setting == MATCHING else None
    return AsyncWhop(server.api_key, base_url=server.base_url, rate_limit=rate_limit)


async def _sample_pacing(
    client: AsyncWhop, started: float, samples: list[tuple[float, float | None]]
) -> None:
    while True:
        samples.append((time.monotonic() - started, client.rate_limiter.pacing_rate(OPERATION)))
        await asyncio.sleep(0.25)


async def send(server: LimitedServer, scenario: Scenario, setting: str, concurrency: int) -> Run:
    """Send the scenario's items as it says; time it and count what the client saw."""
    stats = BulkStats()
    failures: dict[str, int] = {}
    samples: list[tuple[float, float | None]] = []
    async with _client(server, setting, scenario.server_limit) as client:
        started = time.monotonic()
        sampler = asyncio.ensure_future(_sample_pacing(client, started, samples))
        try:
            if scenario.sequential:
                for item in _items(scenario.count):
                    try:
                        await client.notifications.create(**item)
                        stats.succeeded += 1
                    except WhopError as exc:
                        failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            else:
                results = await gather_notifications(
                    client,
                    _items(scenario.count),
                    concurrency=concurrency,
                    stats=stats,
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, WhopError):
                        name = type(result).__name__
                        failures[name] = failures.get(name, 0) + 1
            wall = time.monotonic() - started
        finally:
            sampler.cancel()
    return {
        "started_at": started,
        "wall_s": wall,
        "succeeded": stats.succeeded,
        "failures": sum(failures.values()),
        "failure_kinds": failures,
        "client_stats": attrs.asdict(stats),
        "pacing": samples,
    }


def max_in_window(times: Sequence[float], per: float) -> int:
    """The most of ``times`` (sorted) in any interval of ``per`` seconds, as a sliding window."""
    most = first = 0
    for last, at in enumerate(times):
        while at - times[first] >= per:
            first += 1
        most = max(most, last - first + 1)
    return most


def timeline(run: Run, per: float) -> list[dict[str, Any]]:
    """Per window of ``per`` seconds from the start: requests, 429s, and the client's pacing."""
    started = run["started_at"]
    buckets: dict[int, dict[str, Any]] = {}
    for at, status in run["server_requests"]:
        bucket = buckets.setdefault(int((at - started) // per), {"requests": 0, "429s": 0})
        bucket["requests"] += 1
        bucket["429s"] += status == 429
    rows = []
    for index in sorted(buckets):
        paces = [pace for t, pace in run["pacing"] if index * per <= t < (index + 1) * per]
        rows.append(
            {
                "from_s": index * per,
                **buckets[index],
                "first_429_s": next(
                    (
                        round(at - started, 2)
                        for at, status in run["server_requests"]
                        if status == 429 and index * per <= at - started < (index + 1) * per
                    ),
                    None,
                ),
                "pacing_end": paces[-1] if paces else None,
            }
        )
    return rows


def measure(scenario: Scenario, window: str, setting: str, args: argparse.Namespace) -> Run:
    """One run: a fresh server, the client's send, and what the server saw."""
    limit = scenario.server_limit
    server = LimitedServer(limit, window)
    try:
        run = asyncio.run(send(server, scenario, setting, args.concurrency))
        seen = server.report()
    finally:
        server.stop()
    requests = sorted(seen["requests"])
    times = [at for at, _ in requests]
    accepted = [at for at, status in requests if status != 429]
    rate_limited = len(times) - len(accepted)
    run |= {
        "scenario": scenario.name,
        "window": window,
        "client": setting,
        "count": scenario.count,
        "server_limit": str(limit),
        "per": limit.per,
        "allowed_rate": limit.rate,
        "server_requests": requests,
        "requests": len(times),
        "rate_limited": rate_limited,
        "share_429": rate_limited / len(times) if times else 0.0,
        "delivered_once": seen["notifications"] == scenario.count
        and seen["distinct_keys"] == scenario.count
        and seen["keyless"] == 0
        and run["succeeded"] == scenario.count,
        "notifications_stored": seen["notifications"],
        "server_answers": seen["answers"],
        "server_report_consistent": seen["consistent"],
        "achieved_rate": scenario.count / run["wall_s"],
        "max_in_window": max_in_window(times, limit.per),
        "max_accepted_in_window": max_in_window(accepted, limit.per),
    }
    run["rate_ratio"] = run["achieved_rate"] / limit.rate
    run["timeline"] = timeline(run, limit.per)
    targets = dict(scenario.clients)[setting]
    run["targets"] = [target.check(run) for target in targets]
    if not seen["consistent"]:
        progress(f"warning: the server's 429 count does not match its answers: {seen['answers']}")
    return run


def client_label(setting: str, scenario: Scenario) -> str:
    """How the client was told its limit, as code."""
    if setting == MATCHING:
        limit = scenario.server_limit
        return f"`RateLimit({limit.requests}, per={limit.per:g})`"
    return "default (600 per 60 s)" if setting == DEFAULT else "`None` (before)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with the first two columns left-aligned and the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---", ":---", *("---:" for _ in header[2:])]) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scenario_table(scenario: Scenario, runs: list[Run]) -> str:
    """One row per (window, client setting) of the scenario."""
    per = f"{scenario.server_limit.per:g}"
    header = ["window", "client rate_limit", "requests", "429s", "429 share", "failures"]
    header += ["delivered once", "wall s", "achieved / allowed rate"]
    header += [f"max requests in any {per} s (all / accepted)"]
    rows = [
        [
            run["window"],
            client_label(run["client"], scenario),
            f"{run['requests']:,}",
            f"{run['rate_limited']:,}",
            f"{run['share_429']:.1%}",
            str(run["failures"]),
            "yes" if run["delivered_once"] else "NO",
            f"{run['wall_s']:.1f}",
            f"{run['rate_ratio']:.2f}",
            f"{run['max_in_window']} / {run['max_accepted_in_window']}",
        ]
        for run in runs
    ]
    return markdown_table(header, rows)


def targets_report(runs: list[Run]) -> str:
    """One PASS / FAIL line per target of each run that has targets."""
    lines = []
    for run in runs:
        for target in run["targets"]:
            verdict = "PASS" if target["met"] else "FAIL"
            value = target["value"]
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(
                f"- {verdict} ({run['scenario']}, {run['window']}, {run['client']}) "
                f"{target['target']} = {shown} (target {target['limit']})"
            )
    return "\n".join(lines)


def timeline_table(run: Run, per: float) -> str:
    """The run's requests and 429s per window of ``per`` seconds, with the client's pacing."""
    rows = [
        [
            f"{row['from_s']:g}",
            f"{row['from_s'] + per:g}",
            str(row["requests"]),
            str(row["429s"]),
            "" if row["first_429_s"] is None else f"{row['first_429_s']:.2f}",
            "off" if row["pacing_end"] is None else f"{row['pacing_end']:.2f}/s",
        ]
        for row in run["timeline"]
    ]
    header = ["from s", "to s", "requests", "429s", "first 429 at s", "client pacing at end"]
    return markdown_table(header, rows)


#: The charts: (file name, scenario, client setting, title).
CHARTS = (
    ("rate-limits-matched", "a", MATCHING, "(a) client limit = server limit, 60 per 6 s"),
    (
        "rate-limits-default-vs-lower",
        "b",
        DEFAULT,
        "(b) default client (600 per 60 s), server 60 per 6 s",
    ),
)


def draw_charts(runs: Sequence[Run], directory: Path) -> list[Path]:
    """Draw the runs of ``CHARTS`` as the server saw them (the sliding window's when there is
    one: any 6 s of it holds at most 60 accepted requests, whatever the bins), to ``directory``.
    """
    import _charts

    charts = []
    for name, scenario, setting, title in CHARTS:
        chosen = [r for r in runs if r["scenario"] == scenario and r["client"] == setting]
        chosen.sort(key=lambda run: run["window"] != "sliding")
        if not chosen:
            continue
        run = chosen[0]
        first = run["server_requests"][0][0]
        allowed = round(run["allowed_rate"] * run["per"])
        charts.append(
            _charts.Chart(
                name=name,
                title=f"{title}, {run['window']} window",
                requests=[(at - first, status) for at, status in run["server_requests"]],
                allowed_rate=run["allowed_rate"],
                allowed_label=f"allowed: {allowed} per {run['per']:g} s",
                bin_s=run["per"],
            )
        )
    return _charts.write_charts(charts, directory)


def versions() -> dict[str, str]:
    """Versions of the interpreter and of the packages under test."""
    found = {"python": platform.python_version()}
    for package in ("whop-async", "aiohttp"):
        found[package] = importlib.metadata.version(package)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios, print the report, write the JSON; with ``--check``, 1 on a miss."""
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    chosen = [scenario for scenario in SCENARIOS if scenario.name in args.only]
    runs: dict[str, list[Run]] = {}
    for scenario in chosen:
        for window in args.windows:
            for setting, _ in scenario.clients:
                progress(f"({scenario.name}) {window} window, client {setting}: ...")
                run = measure(scenario, window, setting, args)
                runs.setdefault(scenario.name, []).append(run)
                progress(
                    f"    {run['requests']} requests, {run['rate_limited']} 429s, "
                    f"{run['failures']} failures, {run['wall_s']:.1f} s, "
                    f"{run['rate_ratio']:.2f}x the allowed rate"
                )

    print(f"## Rate limits against Whop's documented limiter ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"Emulator in its own process, limit per key and operation, fixed or sliding window, "
        f"429 with the wait only in its message; bulk sends at concurrency {args.concurrency}; "
        f"{time.monotonic() - clock:.0f} s in all.\n"
    )
    print(", ".join(f"{name} {version}" for name, version in versions().items()) + "\n")
    all_runs: list[Run] = []
    for scenario in chosen:
        print(f"### ({scenario.name}) {scenario.title}\n")
        print(scenario_table(scenario, runs[scenario.name]) + "\n")
        all_runs += runs[scenario.name]
    print("### Targets\n")
    print(targets_report(all_runs) + "\n")
    for run in all_runs:
        missed = any(not target["met"] for target in run["targets"])
        if args.timeline or missed:
            print(
                f"### Timeline: ({run['scenario']}) {run['window']} window, "
                f"client {run['client']}{' (a target missed)' if missed else ''}\n"
            )
            print(timeline_table(run, run["per"]) + "\n")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started.isoformat(),
        "settings": {key: str(value) for key, value in vars(args).items()},
        "versions": versions(),
        "runs": all_runs,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    progress(f"raw numbers written to {args.output}")
    if args.charts:
        for path in draw_charts(all_runs, args.charts):
            progress(f"chart written to {path}")
    missed = any(not target["met"] for run in all_runs for target in run["targets"])
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
