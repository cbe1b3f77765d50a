"""Tests of optional extras: import what they need, or skip them (fail them under CI).

CI (``CI`` set, as ``.ci/run`` sets it) must run every test, so a missing extra is an error
there; on a developer's machine the module is skipped with the command that installs it.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

__all__ = ["require"]


def require(module: str, install: str) -> ModuleType:
    """Import ``module`` or skip the test module, naming ``install`` (fail it under CI)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the {module} package is missing: {install}", allow_module_level=True)
        raise  # pragma: no cover - skip() raises
