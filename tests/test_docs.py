"""Every Python example in docs/ runs here, against a real emulator, so the docs cannot rot.

How a page's examples run:

* Its ```python blocks run in order, in one namespace per page, so a block can use what an
  earlier one defined. ``WHOP_API_KEY`` and ``WHOP_BASE_URL`` point at a fresh ``WhopEmulator``
  (the plugin's ``whop_emulator``), so ``AsyncWhop()`` in an example talks to it over a socket.
* A block with top-level ``await`` is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited in
  the test's event loop. A block without one runs in a worker thread, so that a script ending in
  ``asyncio.run(main())`` runs as it would for a reader.
* ``<!-- skip -->`` on the line before a block shows it without running it (for what needs a
  real Whop account). ``<!-- setup: CODE -->`` there runs CODE first, hidden, with ``emulator``
  bound to the page's emulator: how a page about errors makes the server fail.
* A block titled as a file of a pytest project (``title="conftest.py"``, ``title="test_*.py"``,
  ``title="pyproject.toml"``) is not run in-process: the page's files are written to a temporary
  directory and pytest runs them in a subprocess, as a reader would.

After a page, the scripted answers its setups queued must all have been used, and a page that
sends must have reached the emulator.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest

import whop_async
import whop_async.testing
from whop_async.testing import WhopEmulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(path.name for path in DOCS.glob("*.md"))
#: Every page whose examples run: the site's, and the README's.
EXAMPLE_PAGES = [*PAGES, "README.md"]


def page_path(page: str) -> Path:
    return ROOT / page if page == "README.md" else DOCS / page


def page_name(page: str) -> str:
    return page if page == "README.md" else f"docs/{page}"


#: Pages whose examples send through ``AsyncWhop()`` to the page's emulator.
SENDING_PAGES = {
    "index.md",
    "quickstart.md",
    "configuration.md",
    "errors.md",
    "bulk.md",
    "stopping.md",
    "observability.md",
    "README.md",
}
#: Files a page may define for a pytest project run in a subprocess.
PROJECT_FILE = re.compile(r"(conftest|test_\w+)\.py|pyproject\.toml")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_COMMENT = re.compile(r"^\s*<!--\s*(?P<text>.*?)\s*-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    """The line of the block's first code line in the page, from 1."""
    language: str
    title: str | None
    code: str
    directive: str | None
    """The ``<!-- ... -->`` comment on the line before the fence, if any."""

    @property
    def where(self) -> str:
        return f"{page_name(self.page)}:{self.line}"


def read_blocks(page: str) -> list[Block]:
    """The fenced code blocks of ``docs/page``, with what a test needs to run them."""
    lines = page_path(page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None or not opening["info"].strip():
            index += 1
            continue
        info = opening["info"].strip()
        language = info.split()[0].lstrip("{.").rstrip("}")
        title = _TITLE.search(info)
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        comment = _COMMENT.match(previous)
        end = index + 1
        closing = opening["indent"] + opening["fence"]
        while end < len(lines) and lines[end].rstrip() != closing:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page_name(page)}:{index + 1}: code block never closed")
        blocks.append(
            Block(
                page=page,
                line=index + 2,
                language=language,
                title=title["title"] if title else None,
                code=textwrap.dedent("\n".join(lines[index + 1 : end])),
                directive=comment["text"] if comment else None,
            )
        )
        index = end + 1
    return blocks


def compile_block(block: Block, source: str | None = None) -> Any:
    """Compile a block so that tracebacks name the page and its real line numbers."""
    padded = "\n" * (block.line - 1) + (block.code if source is None else source)
    return compile(
        padded,
        page_name(block.page),
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )


async def run_code(code: Any, namespace: dict[str, Any]) -> None:
    """Await top-level-await code in this loop; run plain code in a thread (it may own a loop)."""
    if code.co_flags & inspect.CO_COROUTINE:
        await eval(code, namespace)  # noqa: S307 - the docs' own examples
    else:
        await asyncio.to_thread(exec, code, namespace)


def is_project_file(block: Block) -> bool:
    return block.title is not None and PROJECT_FILE.fullmatch(block.title) is not None


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
async def test_examples_run(
    page: str, whop_emulator: WhopEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WHOP_API_KEY", whop_emulator.api_key or "")
    monkeypatch.setenv("WHOP_BASE_URL", whop_emulator.base_url)
    monkeypatch.delenv("WHOP_APP_ID", raising=False)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    project: list[Block] = []
    ran = 0
    for block in read_blocks(page):
        if is_project_file(block):
            project.append(block)
            continue
        if block.language not in ("python", "py") or block.directive == "skip":
            continue
        if block.directive is not None and block.directive.startswith("setup:"):
            setup = block.directive.removeprefix("setup:").strip()
            await run_code(compile_block(block, setup), {**namespace, "emulator": whop_emulator})
        try:
            await run_code(compile_block(block), namespace)
        except Exception as exc:
            raise AssertionError(f"the example at {block.where} failed: {exc!r}") from exc
        ran += 1
    if project:
        await run_pytest_project(project, tmp_path)
    if page in SENDING_PAGES:
        assert ran, f"{page_name(page)} has no example that runs"
        assert whop_emulator.notifications, f"no example on {page_name(page)} sent a notification"
    assert whop_emulator.pending_script == 0, (
        f"{page_name(page)}: {whop_emulator.pending_script} scripted answers were never used"
    )


async def run_pytest_project(files: list[Block], directory: Path) -> None:
    """Write a page's project files and run pytest on them in a fresh interpreter."""
    for block in files:
        assert block.title is not None
        (directory / block.title).write_text(block.code + "\n", encoding="utf-8")
    assert any(block.title.startswith("test_") for block in files if block.title), (
        f"docs/{files[0].page} defines project files but no test file"
    )
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WHOP_", "PYTEST_", "COV_", "COVERAGE_"))
    }
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, (
        f"the pytest example of docs/{files[0].page} failed:\n{output}"
    )
    assert re.search(r"\b\d+ passed\b", output), output


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    in_nav = set(re.findall(r"^\s+- [^:\n]+: (\S+\.md)\s*$", config, flags=re.MULTILINE))
    assert in_nav == set(PAGES)


def test_the_reference_covers_the_public_api() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: (\S+)", reference, flags=re.MULTILINE))
    public = {f"whop_async.{name}" for name in whop_async.__all__ if name != "__version__"}
    public |= {f"whop_async.testing.{name}" for name in whop_async.testing.__all__}
    assert public - documented == set(), "public names missing from docs/reference.md"
    assert all(name.startswith("whop_async") for name in documented)


def test_python_blocks_parse() -> None:
    """Every Python block is valid syntax, the skipped ones included."""
    for page in PAGES:
        for block in read_blocks(page):
            if block.language in ("python", "py"):
                compile_block(block)
