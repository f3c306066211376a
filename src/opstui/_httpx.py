"""httpx without its command-line client, so that importing it never loads Rich.

httpx's `__init__` imports `httpx._main` (its CLI), which imports click, pygments and Rich whenever they are
installed, and Textual installs Rich: a daemon checking one health endpoint would load all of it. A `None` in
`sys.modules` makes that one import fail, and httpx then falls back to a stub `main`, as it does when the CLI's
extras are missing. Every part of opstui that needs httpx imports it from here.

The same `None` stands for sniffio when it is not installed: httpcore tries `import sniffio` several times per
request to learn which event loop runs it (asyncio when it is missing), and each failed attempt searches every
directory of sys.path again (33 µs here, a sixth of a health check's CPU).
"""

from __future__ import annotations

import importlib.util
import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None is the documented "not importable"
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

import httpx

__all__ = ["httpx"]
