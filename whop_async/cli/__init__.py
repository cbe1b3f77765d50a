"""The ``whop-async`` command line (also ``python -m whop_async``): send, bulk, demo.

Install with the ``cli`` extra (``pip install 'whop-async[cli]'``) for a progress bar.
"""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
