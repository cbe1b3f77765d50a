"""The ``whop-async`` command: its arguments, and which command runs."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from .. import (
    API_VERSION,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    InvalidParamsError,
    RateLimit,
    __version__,
)
from ._shared import EXIT_INTERRUPTED, EXIT_USAGE, Output, UsageError, api_key_from

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Send Whop notifications from the command line: one (send), many from a CSV or JSON Lines file
(bulk), or a thousand to a local emulator to see it work (demo, no Whop account needed).
"""

_BULK_EPILOG = """\
FILE holds one notification per row. CSV: a header row of create() keywords (title, content,
one of account_id, experience_id or company_id, user_ids, subtitle, rest_path, icon_user_id,
idempotency_key); user_ids separated by spaces or semicolons. JSON Lines: one object of the same
keywords per line. An "id" column names the row: it makes the row's idempotency key and is not
sent.

Each row is sent with an idempotency key derived from the row (its idempotency_key, else
derive_idempotency_key(id), else the file, line and content), so re-running the same file is
safe; with --journal a re-run also skips the rows already confirmed. Exit status: 0 all sent,
1 some failed, 2 bad arguments, file or configuration or a refused API key, 130 interrupted.
"""

#: The demo's limit, for the emulator and the client: Whop's 600 a minute, time-scaled so that a
#: thousand notifications take seconds.
DEMO_RATE_LIMIT: Final = RateLimit(200, per=1.0)


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer, at least 1, got {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def _rate_limit(text: str) -> RateLimit | None:
    if text.strip().lower() == "off":
        return None
    try:
        return RateLimit.parse(text)
    except InvalidParamsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (flags win over the environment)")
    group.add_argument(
        "--api-key", help="the API key (default: $WHOP_API_KEY; prefer the variable)"
    )
    group.add_argument("--base-url", help="the API root (default: $WHOP_BASE_URL or Whop's)")
    group.add_argument("--app-id", help="sent as X-Whop-App-Id (default: $WHOP_APP_ID)")
    group.add_argument(
        "--api-version",
        metavar="DATE",
        help="sent as Api-Version-Date, pinning Whop's behaviour (default: $WHOP_API_VERSION, "
        f"else {API_VERSION}); 'none' sends none, so the key's own version applies",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="an HTTP proxy for every request, http://user:pass@host:port (default: "
        "$HTTPS_PROXY or $HTTP_PROXY unless $NO_PROXY names Whop's host)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds one attempt may take (default: {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help=f"retries after the first attempt (default: {DEFAULT_MAX_RETRIES})",
    )


def _add_pace(parser: argparse.ArgumentParser, *, rate_limit: RateLimit) -> None:
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=rate_limit,
        metavar="N/SECONDS",
        help=f"start at most N requests in any SECONDS, or 'off' (default: "
        f"{rate_limit.requests}/{rate_limit.per:g})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at most (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        metavar="PER_SECOND",
        help="requests per second at most, on top of --rate-limit (default: none)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``whop-async``."""
    parser = argparse.ArgumentParser(prog="whop-async", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"whop-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    send = commands.add_parser("send", help="send one notification and print the outcome")
    audience = send.add_mutually_exclusive_group(required=True)
    audience.add_argument("--account-id", help="send to this company's team (biz_...)")
    audience.add_argument("--experience-id", help="send to this experience's users (exp_...)")
    audience.add_argument("--company-id", help="the older name of --account-id")
    send.add_argument("--title", required=True, help="the headline")
    send.add_argument("--content", required=True, help="the body text")
    send.add_argument(
        "--user-id",
        dest="user_ids",
        action="append",
        metavar="ID",
        help="only this user of the audience (repeat for more)",
    )
    send.add_argument("--subtitle", help="a line under the title")
    send.add_argument("--rest-path", help="a path appended to the app's deep link")
    send.add_argument("--icon-user-id", help="the user whose picture is the icon")
    send.add_argument(
        "--idempotency-key", help="the key to send (default: 32 random hex digits, printed)"
    )
    _add_connection(send)

    bulk = commands.add_parser(
        "bulk",
        help="send every row of a CSV or JSON Lines file",
        description="Send one notification per row of FILE (- for stdin).",
        epilog=_BULK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bulk.add_argument("file", metavar="FILE", help="a .csv or .jsonl file, or - for stdin")
    bulk.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="the file's format (default: from its extension; jsonl for stdin)",
    )
    bulk.add_argument(
        "--dry-run",
        action="store_true",
        help="check every row and report the bad ones by line; send nothing",
    )
    bulk.add_argument(
        "--failures",
        metavar="OUT.jsonl",
        help="write every row not sent, with _line and _error, ready to be sent again",
    )
    bulk.add_argument(
        "--journal",
        metavar="FILE",
        help="record each row as it is confirmed; a re-run with it skips what was sent",
    )
    _add_pace(bulk, rate_limit=DEFAULT_RATE_LIMIT)
    _add_connection(bulk)

    demo = commands.add_parser(
        "demo",
        help="bulk-send to a built-in Whop emulator on loopback (no account needed)",
        description="Start the built-in Whop emulator on 127.0.0.1 and bulk-send to it through "
        "the real client, then show what the emulator received. Needs no API key. The emulator "
        "and the client share --rate-limit: Whop's 600 per minute, time-scaled.",
    )
    demo.add_argument(
        "--count", type=_count, default=1000, metavar="N", help="how many (default: 1000)"
    )
    demo.add_argument(
        "--faults",
        type=_fraction,
        nargs="?",
        const=0.05,
        metavar="RATE",
        help="inject random faults (500s, dropped connections, 429s) into this fraction of "
        "requests (default when given: 0.05) to watch the retries",
    )
    _add_pace(demo, rate_limit=DEMO_RATE_LIMIT)

    for command in (send, bulk, demo):
        command.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="log retries (-v) or every attempt (-vv) to stderr; the API key is never shown",
        )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``whop-async`` and return its exit status."""
    args = build_parser().parse_args(argv)
    output = Output(
        api_key=api_key_from(args),
        stdout=stdout if stdout is not None else sys.stdout,
        stderr=stderr if stderr is not None else sys.stderr,
    )
    output.log_to_stderr(args.verbose)
    try:
        if args.command == "send":
            from ._send import run_send

            return run_send(args, output)
        if args.command == "bulk":
            from ._bulk import run_bulk

            return run_bulk(args, output)
        from ._demo import run_demo

        return run_demo(args, output)
    except UsageError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:  # where the loop could not take over SIGINT
        output.note("Interrupted.")
        return EXIT_INTERRUPTED
