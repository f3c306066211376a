"""`python -m opstui` is the `opstui` command."""

from opstui.cli import entry

entry()
