"""Server pushback: what the default client makes of 429s that say how long to wait.

Each run starts a fresh ``aiohttp.web`` server in its own process (this script with
``--serve``), on 127.0.0.1, so that the client's CPU does not delay its answers, and sends to it
from this process through whop_async's public API only:

* **scattered**: 300 items, ``gather_notifications(..., concurrency=16,
  return_exceptions=True)``, against a server that refuses a random 5 % of requests with a 429
  (``retry-after-ms: 50``, Whop's body: ``rate_limit_exceeded``, "Try again in 1 second.") and
  accepts the rest (``{"success": true}``); nothing else goes wrong. Sent by the default client
  (``AsyncWhop(key, base_url=...)``) and by ``rate_limit=None``, in the same rounds, in
  alternating order. Which requests are refused is drawn from the round's seed, the item's title
  and the attempt's number, so both clients of a round meet the same 429s. Target: the default
  client's wall time at most 2.0x that of ``rate_limit=None`` plus the waits the server asked
  for (the sum of its 429s' ``retry-after-ms``), median of the rounds' ratios.
* **storm**: a server that refuses every request with a 429 (``retry-after-ms: 10``); one
  ``client.notifications.create(...)`` by the default client, under
  ``asyncio.wait_for(..., SECONDS)``. Counts the requests the server saw. Target: at most 10 in
  any 60 s (Whop's limit is 600 per minute for the key, and one call must not spend it all
  retrying into a wall).

Prints Markdown tables and PASS/FAIL per target; writes every run, with the server's timeline,
to ``results/server_pushback.json``.

    python benchmarks/server_pushback.py [--quick] [--rounds N] [--only scattered storm]
        [--items N] [--concurrency N] [--storm-seconds S [S ...]] [--seed N] [--check]
        [--output PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import platform
import random
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from _server_process import ServerProcess
from aiohttp import web

import whop_async
from whop_async import AsyncWhop, BulkStats, WhopError, gather_notifications

HERE = Path(__file__).resolve().parent
API_KEY = "pushback_bench_key"
NOTIFICATIONS_PATH = "/api/v1/notifications"
SCATTERED_SHARE = 0.05
SCATTERED_RETRY_AFTER_MS = 50
STORM_RETRY_AFTER_MS = 10
RATE_LIMITED_BODY = {"error": {"type": "rate_limit_exceeded", "message": "Try again in 1 second."}}
#: The scattered-429 target: default wall time / (rate_limit=None wall time + waits asked).
SCATTERED_RATIO_LIMIT = 2.0
#: The storm target: requests of one call in any 60 s.
STORM_PER_MINUTE_LIMIT = 10
#: No scattered send may take longer than this (seconds); it is reported as timed out.
RUN_TIMEOUT = 300.0
DEFAULT, NONE = "default", "none"

Run = dict[str, Any]


# The server (this script with --serve, in its own process)


class PushbackApp:
    """Answers ``POST /api/v1/notifications`` with 429s as its mode says, and records arrivals."""

    def __init__(self, mode: str, seed: int) -> None:
        self._mode = mode
        self._seed = seed
        self._attempts: Counter[str | None] = Counter()
        self.requests: list[tuple[float, int, str | None]] = []
        self.asked_wait_s = 0.0

    def _refused(self, title: str | None, attempt: int) -> bool:
        if self._mode == "storm":
            return True
        # A string seed is hashed with SHA-512: the same draw in every process and run.
        draw = random.Random(f"{self._seed}:{title}:{attempt}").random()
        return draw < SCATTERED_SHARE

    async def notifications(self, request: web.Request) -> web.Response:
        received_at = time.monotonic()
        title: str | None = None
        try:
            body = json.loads(await request.read())
            title = str(body["title"]) if isinstance(body, dict) and "title" in body else None
        except ValueError:
            pass
        attempt = self._attempts[title]
        self._attempts[title] += 1
        if self._refused(title, attempt):
            wait_ms = STORM_RETRY_AFTER_MS if self._mode == "storm" else SCATTERED_RETRY_AFTER_MS
            self.requests.append((received_at, 429, title))
            self.asked_wait_s += wait_ms / 1000
            return web.json_response(
                RATE_LIMITED_BODY, status=429, headers={"retry-after-ms": str(wait_ms)}
            )
        self.requests.append((received_at, 200, title))
        return web.json_response({"success": True})

    def report(self) -> dict[str, Any]:
        return {"requests": self.requests, "asked_wait_s": self.asked_wait_s}


async def serve(mode: str, seed: int) -> None:
    """Serve until ``stop`` or the end of stdin; answer ``report`` with one JSON line."""
    loop = asyncio.get_running_loop()
    handler = PushbackApp(mode, seed)
    app = web.Application()
    app.router.add_post(NOTIFICATIONS_PATH, handler.notifications)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        print(json.dumps({"base_url": f"http://127.0.0.1:{port}/api/v1"}), flush=True)
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "report":
                print(json.dumps(handler.report()), flush=True)
            elif command in ("stop", ""):
                return
    finally:
        await runner.cleanup()


def server_process(mode: str, seed: int) -> ServerProcess:
    """This script's server (``--serve``) in a subprocess."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", mode]
    return ServerProcess([*command, "--seed", str(seed)])


# The client


def progress(message: str) -> None:
    """One progress line on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def _items(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"account_id": "biz_bench", "title": f"Pushback {index}", "content": "Hold on."}


def _client(base_url: str, setting: str) -> AsyncWhop:
    if setting == DEFAULT:
        return AsyncWhop(API_KEY, base_url=base_url)
    return AsyncWhop(API_KEY, base_url=base_url, rate_limit=None)


def stats_fields(stats: BulkStats) -> dict[str, Any]:
    """``BulkStats``' public fields: its attrs fields, else its public non-method attributes."""
    if attrs.has(type(stats)):
        return attrs.asdict(stats)
    names = [name for name in dir(stats) if not name.startswith("_")]
    return {name: value for name in names if not callable(value := getattr(stats, name))}


async def send_scattered(base_url: str, setting: str, count: int, concurrency: int) -> Run:
    """One bulk send of ``count`` items; its wall time, failures and ``BulkStats``."""
    stats = BulkStats()
    results: list[Any] = []
    timed_out = False
    async with _client(base_url, setting) as client:
        started = time.monotonic()
        try:
            results = await asyncio.wait_for(
                gather_notifications(
                    client,
                    _items(count),
                    concurrency=concurrency,
                    stats=stats,
                    return_exceptions=True,
                ),
                RUN_TIMEOUT,
            )
        except asyncio.TimeoutError:
            timed_out = True
        wall = time.monotonic() - started
    failures = Counter(type(result).__name__ for result in results if isinstance(result, Exception))
    return {
        "started_at": started,
        "wall_s": wall,
        "timed_out": timed_out,
        "outcomes": len(results),
        "failures": sum(failures.values()) + (count - len(results)),
        "failure_kinds": dict(failures),
        "client_stats": stats_fields(stats),
    }


async def send_storm(base_url: str, seconds: float) -> Run:
    """One ``create()`` by the default client, given at most ``seconds``; how it ended."""
    async with _client(base_url, DEFAULT) as client:
        started = time.monotonic()
        try:
            await asyncio.wait_for(
                client.notifications.create(
                    account_id="biz_bench", title="Storm", content="Hold on."
                ),
                seconds,
            )
            outcome = "succeeded"
        except WhopError as exc:
            outcome = f"raised {type(exc).__name__}"
        except asyncio.TimeoutError:
            outcome = f"still retrying at {seconds:g} s, cancelled"
        ended = time.monotonic() - started
    return {"started_at": started, "ended_s": ended, "outcome": outcome}


def max_in_window(times: Sequence[float], per: float) -> int:
    """The most of ``times`` (sorted) in any interval of ``per`` seconds, as a sliding window."""
    most = first = 0
    for last, at in enumerate(times):
        while at - times[first] >= per:
            first += 1
        most = max(most, last - first + 1)
    return most


def measure_scattered(setting: str, seed: int, round_number: int, args: argparse.Namespace) -> Run:
    """One scattered run: a fresh server with ``seed``, the client's send, what the server saw."""
    server = server_process("scattered", seed)
    try:
        run = asyncio.run(send_scattered(server.base_url, setting, args.items, args.concurrency))
        seen = server.report()
    finally:
        server.stop()
    requests = seen["requests"]
    accepted = Counter(title for _, status, title in requests if status == 200)
    run |= {
        "scenario": "scattered",
        "round": round_number,
        "seed": seed,
        "client": setting,
        "count": args.items,
        "requests": len(requests),
        "rate_limited": sum(status == 429 for _, status, _ in requests),
        "asked_wait_s": seen["asked_wait_s"],
        "accepted_titles": len(accepted),
        "accepted_more_than_once": sum(times > 1 for times in accepted.values()),
        "server_requests": [(at - run["started_at"], status) for at, status, _ in requests],
    }
    return run


def measure_storm(seconds: float, seed: int) -> Run:
    """One storm run: a fresh server refusing everything, one call, what the server saw."""
    server = server_process("storm", seed)
    try:
        run = asyncio.run(send_storm(server.base_url, seconds))
        seen = server.report()
    finally:
        server.stop()
    times = sorted(at - run["started_at"] for at, _, _ in seen["requests"])
    run |= {
        "scenario": "storm",
        "seconds": seconds,
        "requests": len(times),
        "requests_first_20_s": sum(at < 20 for at in times) if seconds >= 20 else None,
        "requests_first_60_s": sum(at < 60 for at in times) if seconds >= 60 else None,
        "max_in_60_s": max_in_window(times, 60.0),
        "asked_wait_s": seen["asked_wait_s"],
        "server_requests": times,
    }
    run["targets"] = [
        check(
            f"storm {seconds:g} s: requests of one call in any 60 s",
            run["max_in_60_s"],
            STORM_PER_MINUTE_LIMIT,
        )
    ]
    return run


def check(name: str, value: float, limit: float) -> dict[str, Any]:
    """A target of the form ``value <= limit``."""
    return {"target": name, "value": value, "limit": f"<= {limit:g}", "met": value <= limit}


# The report


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table with the first ``left`` columns left-aligned and the others right."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(":---" if i < left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def client_label(setting: str) -> str:
    return "default (600 per 60 s)" if setting == DEFAULT else "`rate_limit=None`"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def scattered_rounds_table(runs: list[Run]) -> str:
    """Every scattered run: what the server saw and the client's ``BulkStats``."""
    fields = sorted({name for run in runs for name in run["client_stats"]})
    header = ["round", "seed", "client", "wall s", "requests", "429s", "waits asked s"]
    header += ["failures", "accepted once", *(f"stats.{name}" for name in fields)]
    rows = [
        [
            str(run["round"]),
            str(run["seed"]),
            client_label(run["client"]),
            f"{run['wall_s']:.2f}" + (" (timed out)" if run["timed_out"] else ""),
            f"{run['requests']:,}",
            f"{run['rate_limited']:,}",
            f"{run['asked_wait_s']:.2f}",
            str(run["failures"]),
            "yes"
            if run["accepted_titles"] == run["count"] and run["accepted_more_than_once"] == 0
            else "NO",
            *(_number(run["client_stats"].get(name)) for name in fields),
        ]
        for run in runs
    ]
    return markdown_table(header, rows, left=3)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def scattered_summary(runs: list[Run]) -> tuple[str, str, dict[str, Any]]:
    """Medians per client, and the paired ratio of each round with its median."""
    by_client = {
        setting: [run for run in runs if run["client"] == setting] for setting in (DEFAULT, NONE)
    }
    header = ["client", "rounds", "wall s, median", "wall s, range", "requests", "429s"]
    header += ["waits asked s", "failures (all rounds)", "stats.rate_limit_wait s"]
    rows = []
    for setting, own in by_client.items():
        if not own:
            continue
        walls = [run["wall_s"] for run in own]
        waited = [run["client_stats"].get("rate_limit_wait") for run in own]
        rows.append(
            [
                client_label(setting),
                str(len(own)),
                f"{_median(walls):.2f}",
                f"{min(walls):.2f} to {max(walls):.2f}",
                f"{_median([run['requests'] for run in own]):g}",
                f"{_median([run['rate_limited'] for run in own]):g}",
                f"{_median([run['asked_wait_s'] for run in own]):.2f}",
                str(sum(run["failures"] for run in own)),
                "-"
                if any(value is None for value in waited)
                else f"{_median([float(value) for value in waited]):.2f}",
            ]
        )
    summary = markdown_table(header, rows)

    pairs = []
    rounds = sorted({run["round"] for run in runs})
    for number in rounds:
        default = next((r for r in by_client[DEFAULT] if r["round"] == number), None)
        none = next((r for r in by_client[NONE] if r["round"] == number), None)
        if default is None or none is None:
            continue
        reference = none["wall_s"] + default["asked_wait_s"]
        pairs.append(
            {
                "round": number,
                "default_wall_s": default["wall_s"],
                "none_wall_s": none["wall_s"],
                "asked_wait_s": default["asked_wait_s"],
                "reference_s": reference,
                "ratio": default["wall_s"] / reference,
                "default_over_none": default["wall_s"] / none["wall_s"],
            }
        )
    header = ["round", "default wall s", "`None` wall s", "waits asked s (default's 429s)"]
    header += ["`None` + waits asked s", "default / (`None` + waits)", "default / `None`"]
    rows = [
        [
            str(pair["round"]),
            f"{pair['default_wall_s']:.2f}",
            f"{pair['none_wall_s']:.2f}",
            f"{pair['asked_wait_s']:.2f}",
            f"{pair['reference_s']:.2f}",
            f"{pair['ratio']:.2f}x",
            f"{pair['default_over_none']:.1f}x",
        ]
        for pair in pairs
    ]
    paired: dict[str, Any] = {"rounds": pairs}
    if pairs:
        paired["median_ratio"] = _median([pair["ratio"] for pair in pairs])
        paired["median_default_over_none"] = _median([p["default_over_none"] for p in pairs])
        rows.append(
            [
                "median",
                f"{_median([p['default_wall_s'] for p in pairs]):.2f}",
                f"{_median([p['none_wall_s'] for p in pairs]):.2f}",
                f"{_median([p['asked_wait_s'] for p in pairs]):.2f}",
                f"{_median([p['reference_s'] for p in pairs]):.2f}",
                f"{paired['median_ratio']:.2f}x",
                f"{paired['median_default_over_none']:.1f}x",
            ]
        )
    return summary, markdown_table(header, rows), paired


def scattered_targets(runs: list[Run], paired: dict[str, Any]) -> list[dict[str, Any]]:
    """No failures for either client; the default client within 2.0x of the reference."""
    targets = [
        check(
            f"scattered, {client_label(setting)}: failures in all rounds",
            sum(run["failures"] for run in runs if run["client"] == setting),
            0,
        )
        for setting in (DEFAULT, NONE)
    ]
    if "median_ratio" in paired:
        targets.append(
            check(
                "scattered: default wall / (`None` wall + waits asked), median of rounds",
                paired["median_ratio"],
                SCATTERED_RATIO_LIMIT,
            )
        )
    return targets


def storm_table(runs: list[Run]) -> str:
    header = ["seconds", "the call", "ended at s", "requests", "in the first 20 s"]
    header += ["in the first 60 s", "most in any 60 s", "waits asked s"]
    rows = [
        [
            f"{run['seconds']:g}",
            run["outcome"],
            f"{run['ended_s']:.2f}",
            f"{run['requests']:,}",
            _number(run["requests_first_20_s"]),
            _number(run["requests_first_60_s"]),
            f"{run['max_in_60_s']:,}",
            f"{run['asked_wait_s']:.2f}",
        ]
        for run in runs
    ]
    return markdown_table(header, rows, left=2)


def targets_report(targets: list[dict[str, Any]]) -> str:
    lines = []
    for target in targets:
        value = target["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = "PASS" if target["met"] else "FAIL"
        lines.append(f"- {verdict} {target['target']} = {shown} (target {target['limit']})")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """Versions of the interpreter and of the packages under test, and where whop_async is."""
    found = {"python": platform.python_version()}
    for package in ("whop-async", "aiohttp"):
        found[package] = importlib.metadata.version(package)
    found["whop_async from"] = str(Path(whop_async.__file__).resolve().parent)
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, a storm of 10 s")
    parser.add_argument("--rounds", type=int, default=None, help="scattered rounds (5)")
    parser.add_argument(
        "--only", nargs="+", choices=["scattered", "storm"], default=["scattered", "storm"]
    )
    parser.add_argument("--items", type=int, default=300, help="scattered items (300)")
    parser.add_argument("--concurrency", type=int, default=16, help="scattered (16)")
    parser.add_argument(
        "--storm-seconds", type=float, nargs="+", default=None, help="each storm's length (20)"
    )
    parser.add_argument("--seed", type=int, default=1, help="round N uses seed + N - 1 (1)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "server_pushback.json")
    parser.add_argument("--serve", choices=["scattered", "storm"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.storm_seconds is None:
        args.storm_seconds = [10.0] if args.quick else [20.0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios, print the report, write the JSON; with ``--check``, 1 on a miss."""
    args = parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.seed))
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    scattered: list[Run] = []
    storms: list[Run] = []
    if "scattered" in args.only:
        for number in range(1, args.rounds + 1):
            seed = args.seed + number - 1
            order = (DEFAULT, NONE) if number % 2 else (NONE, DEFAULT)
            for setting in order:
                progress(f"scattered, round {number}/{args.rounds}, seed {seed}, {setting}: ...")
                run = measure_scattered(setting, seed, number, args)
                scattered.append(run)
                progress(
                    f"    {run['wall_s']:.2f} s, {run['requests']} requests, "
                    f"{run['rate_limited']} 429s, {run['failures']} failures"
                )
    if "storm" in args.only:
        for seconds in args.storm_seconds:
            progress(f"storm, {seconds:g} s: ...")
            run = measure_storm(seconds, args.seed)
            storms.append(run)
            progress(f"    {run['requests']} requests, the call {run['outcome']}")

    print(f"## Server pushback: scattered 429s and a 429 storm ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(
        "aiohttp.web server in its own process on 127.0.0.1; 429s carry `retry-after-ms` and "
        f"Whop's body; {time.monotonic() - clock:.0f} s in all.\n"
    )
    print(", ".join(f"{name} {version}" for name, version in versions().items()) + "\n")
    targets: list[dict[str, Any]] = []
    paired: dict[str, Any] = {}
    if scattered:
        summary, ratios, paired = scattered_summary(scattered)
        print(
            f"### Scattered 429s: {args.items} items, concurrency {args.concurrency}, "
            f"{SCATTERED_SHARE:.0%} of requests refused with `retry-after-ms: "
            f"{SCATTERED_RETRY_AFTER_MS}`, {args.rounds} round{'s' if args.rounds > 1 else ''}\n"
        )
        print("Medians over rounds:\n")
        print(summary + "\n")
        print("Paired within each round (the same seed, so the same 429s for both clients):\n")
        print(ratios + "\n")
        print("Every run (server's counts; `stats.*` is the client's `BulkStats`):\n")
        print(scattered_rounds_table(scattered) + "\n")
        targets += scattered_targets(scattered, paired)
    if storms:
        print(
            f"### 429 storm: every request refused with `retry-after-ms: "
            f"{STORM_RETRY_AFTER_MS}`; one `create()`, default client\n"
        )
        print(storm_table(storms) + "\n")
        targets += [target for run in storms for target in run["targets"]]
    print("### Targets\n")
    print(targets_report(targets) + "\n")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started.isoformat(),
        "settings": {key: str(value) for key, value in vars(args).items()},
        "versions": versions(),
        "scattered": scattered,
        "scattered_paired": paired,
        "storms": storms,
        "targets": targets,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    progress(f"raw numbers written to {args.output}")
    missed = any(not target["met"] for target in targets)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
