"""httpx without its command-line client, so that importing it never loads Rich.

httpx's `__init__` imports `httpx._main` (its CLI), which imports click, pygments and Rich whenever they are
installed, and Textual installs Rich: a daemon checking one health endpoint would load all of it. A `None` in
`sys.modules` makes that one import fail, and httpx then falls back to a stub `main`, as it does when the CLI's
extras are missing. Every part of opstui that needs httpx imports it from here.
"""

from __future__ import annotations

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None is the documented "not importable"

import httpx

__all__ = ["httpx"]
