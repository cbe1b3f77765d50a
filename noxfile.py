"""The project's verbs: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``, ``soak``,
``ratelimits``.

Python versions come from the trove classifiers in pyproject.toml. Interpreters installed by
pyenv are put on PATH, so the matrix finds them without activating anything.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
DEFAULT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

nox.options.sessions = ["tests", "lint", "typecheck"]
# uv makes a virtualenv and installs into it in seconds where venv and pip take twenty; without
# uv (pip install uv, or nox[uv]) nox falls back to venv.
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
# The matrix runs the interpreters on this machine (pyenv's, see below), never downloaded ones.
nox.options.download_python = "never"
# Under CI (CI set, as .ci/run runs) a missing interpreter of the matrix is an error, so no
# Python from 3.10 to 3.13 can be skipped silently; on a developer's machine it skips.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

#: Seconds one test may take under nox (the slowest take a few): past it, a hung test fails.
TEST_TIMEOUT = 300

#: pytest-xdist: one worker per CPU. Much of the suite waits on sockets, subprocesses and
#: sleeps: on two cores two workers take the suite from about 120 s to 80 s; more workers than
#: cores starve the tests that compare a rate limit with what the server saw in real time.
#: "worksteal" rebalances when a worker is left with the slow tests (taskiq, the CLI).
#: ``nox -s tests -- -n 0`` runs in one process.
TEST_WORKERS = ["--numprocesses=auto", "--dist=worksteal"]

TEST_REQUIREMENTS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-cov>=5",
    "pytest-timeout>=2.3",  # a hung test fails after TEST_TIMEOUT instead of stalling CI
    "pytest-xdist>=3.6",  # TEST_WORKERS
    "hypothesis>=6",
    "trustme>=1",
    "whop-sdk==2.6.0",  # tests/test_api_today.py: the official SDK against the emulator
    "opentelemetry-sdk>=1.30",  # tests/test_otel.py: the real SDK's in-memory exporters
    "proxy.py>=2.4.4",  # tests/test_proxy.py: a real forward proxy on 127.0.0.1
]


def _put_pyenv_interpreters_on_path() -> None:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [
        str(path / "bin")
        for version in PYTHONS
        for path in sorted(root.glob(f"{version}.*"))
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.name)
    ]
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_put_pyenv_interpreters_on_path()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed package (not the source tree), with coverage."""
    session.install(".[cli,redis,taskiq,otel]", *TEST_REQUIREMENTS)
    session.run(
        "pytest",
        "--cov=whop_async",
        "--cov-report=term-missing:skip-covered",
        f"--timeout={TEST_TIMEOUT}",
        *TEST_WORKERS,
        *session.posargs,
        env={"WHOP_ASYNC_EXPECT_INSTALLED": "1", "COVERAGE_FILE": str(ROOT / ".coverage")},
    )


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over everything."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the public-API typing test."""
    session.install(".[cli,redis,taskiq,otel]", "mypy>=1.10", "pytest>=8", "pytest-asyncio>=0.24")
    session.run("mypy", "--strict", "whop_async")
    session.run("mypy", "--strict", "tests/typing")


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (broken links or references fail)."""
    session.install(".[cli]", "-r", "docs/requirements.txt")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """The bulk-sending benchmark against plain aiohttp and the official whop-sdk."""
    session.install(".", "-r", "benchmarks/requirements.txt")
    session.run("python", "benchmarks/bench_bulk.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def readbuffer(session: nox.Session) -> None:
    """What one 256 KiB socket read costs under each glibc setting (docs/performance.md)."""
    session.run("python", "benchmarks/read_buffer.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def soak(session: nox.Session) -> None:
    """A bounded soak: 100,000 notifications through injected faults."""
    session.install(".", "-r", "benchmarks/requirements.txt")
    session.run("python", "benchmarks/soak.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def ratelimits(session: nox.Session) -> None:
    """Whop's documented rate limit, emulated: 429s, failures, pace (6 minutes; --quick: 4).

    Also redraws the charts of docs/rate-limits.md (docs/images/rate-limits-*.svg).
    """
    session.install(".", "-r", "benchmarks/requirements.txt")
    # A full run redraws the committed charts; a partial one (--quick, --only) leaves them.
    charts = [] if session.posargs else ["--charts", "docs/images"]
    session.run("python", "benchmarks/rate_limits.py", *charts, *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def scaling(session: nox.Session) -> None:
    """Many processes, one key: a shared RedisRateLimiter and taskiq workers (~4 minutes).

    Also redraws the charts of docs/scaling.md (docs/images/scaling-*.svg).
    """
    session.install(".[redis,taskiq]", "-r", "benchmarks/requirements.txt")
    # A full run redraws the committed charts; a partial one (--quick, --only) leaves them.
    charts = [] if session.posargs else ["--charts", "docs/images"]
    session.run("python", "benchmarks/shared_limit.py", *charts, *session.posargs)
