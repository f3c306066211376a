"""opstui: a terminal ops monitor and headless alerting daemon for bots and small backends."""

from typing import Any


def __getattr__(name: str) -> Any:
    # The version is read from the installed metadata only when asked for: importlib.metadata and the search of
    # site-packages take ~30 ms, paid otherwise by every command and before the TUI's first frame.
    if name != "__version__":
        raise AttributeError(f"module 'opstui' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("opstui")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
