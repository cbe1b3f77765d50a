"""``python -m whop_async``: the ``whop-async`` command line."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
