"""opstui: a terminal ops monitor and headless alerting daemon for bots and small backends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opstui")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
