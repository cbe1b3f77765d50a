"""When the suite runs against an installed wheel, make sure that is what it imports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import whop_async

pytestmark = pytest.mark.skipif(
    os.environ.get("WHOP_ASYNC_EXPECT_INSTALLED") != "1",
    reason="set WHOP_ASYNC_EXPECT_INSTALLED=1 when testing an installed wheel",
)


def test_the_package_is_imported_from_site_packages() -> None:
    package = Path(whop_async.__file__).resolve().parent
    source_tree = Path(__file__).resolve().parents[1] / "whop_async"

    assert "site-packages" in package.parts
    assert package != source_tree.resolve()


def test_the_typed_marker_ships_with_the_package() -> None:
    package = Path(whop_async.__file__).resolve().parent

    assert (package / "py.typed").is_file()
