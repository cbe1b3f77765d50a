"""The ``whop-async`` command: its arguments, which command runs, and ``send``."""

from __future__ import annotations

import argparse
import asyncio
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
    FATAL_ERRORS,
    APIError,
    APIStatusError,
    InvalidParamsError,
    NotificationCreateParams,
    RateLimit,
    __version__,
)
from ._rows import PARAM_NAMES
from ._shared import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Output,
    UsageError,
    api_key_from,
    make_client,
)

__all__ = ["DEMO_RATE_LIMIT", "build_parser", "main"]

_DESCRIPTION = """\
Send Whop notifications from the command line: one (send), many from a CSV or JSON Lines file
(bulk), or a thousand to a local emulator to see it work (demo, no Whop account needed).
"""

_BULK_EPILOG = """\
FILE holds one notification per row. CSV: a header row of create() keywords (title, content, one
of account_id, experience_id or company_id, user_ids separated by spaces or semicolons, subtitle,
rest_path, icon_user_id, idempotency_key); JSON Lines: one object of those keywords per line. An
"id" column names the row: it makes the row's idempotency key and is not sent. Keys are derived
from the rows, so re-running a file is safe; with --journal it skips the rows already confirmed.
Exit status: 0 all sent, 1 some failed, 2 bad arguments, file or API key, 130 interrupted.
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


def _connection_options() -> argparse.ArgumentParser:
    """The parent parser of ``send`` and ``bulk``: how to reach Whop."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (flags win over the environment)")
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
        help="seconds one attempt may take (default: %(default)g)",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="retries after the first attempt (default: %(default)s)",
    )
    return parent


def _pace_options(rate_limit: RateLimit) -> argparse.ArgumentParser:
    """The parent parser of ``bulk`` and ``demo``: how fast to send."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=rate_limit,
        metavar="N/SECONDS",
        help="start at most N requests in any SECONDS, or 'off' (default: "
        f"{rate_limit.requests}/{rate_limit.per:g})",
    )
    parent.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="requests in flight at most (default: %(default)s)",
    )
    parent.add_argument(
        "--max-rate",
        type=float,
        metavar="PER_SECOND",
        help="requests per second at most, on top of --rate-limit (default: none)",
    )
    parent.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``whop-async``."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries (-v) or every attempt (-vv) to stderr; the API key is never shown",
    )
    connection = _connection_options()
    parser = argparse.ArgumentParser(prog="whop-async", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"whop-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser(
        "send", parents=[connection, verbose], help="send one notification and print the outcome"
    )
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

    bulk = commands.add_parser(
        "bulk",
        parents=[_pace_options(DEFAULT_RATE_LIMIT), connection, verbose],
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
        "--dry-run", action="store_true", help="check every row, report the bad ones; send nothing"
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

    demo = commands.add_parser(
        "demo",
        parents=[_pace_options(DEMO_RATE_LIMIT), verbose],
        help="bulk-send to a built-in Whop emulator on loopback (no account needed)",
        description="Start the built-in Whop emulator on 127.0.0.1 and bulk-send to it through "
        "the real client, then show what the emulator received. Needs no API key. The emulator "
        "and the client share --rate-limit: Whop's 600 per minute, time-scaled.",
    )
    demo.add_argument(
        "--count", type=_count, default=1000, metavar="N", help="how many (default: %(default)s)"
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
            return _send(args, output)
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


def _send(args: argparse.Namespace, output: Output) -> int:
    """``whop-async send``: validate the flags, send one notification, say what happened."""
    try:
        params = NotificationCreateParams(**{name: getattr(args, name) for name in PARAM_NAMES})
    except InvalidParamsError as exc:
        raise UsageError(f"invalid notification: {exc}") from None
    client = make_client(args)

    async def send() -> int:
        async with client:
            try:
                response = await client.notifications.send(params)
            except FATAL_ERRORS as exc:  # no request of this key can succeed
                output.error(f"{exc} (check the API key)")
                return EXIT_USAGE
            except APIError as exc:
                request_id = isinstance(exc, APIStatusError) and exc.request_id
                output.error(f"{exc} (request id {request_id})" if request_id else str(exc))
                output.note(f"Idempotency-Key: {exc.idempotency_key} (reuse it to retry safely)")
                return EXIT_FAILED
        output.result(f"sent: success={str(response.success).lower()}")
        output.result(f"idempotency key: {response.idempotency_key}")
        if response.replayed:
            output.result(
                "replayed: Whop answered from the key's first request; no new notification"
            )
        return EXIT_OK if response.success else EXIT_FAILED

    return asyncio.run(send())
