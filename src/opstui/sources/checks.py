"""Yes/no facts about a deployment: is the newest backup fresh, are the required environment variables set."""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from opstui.errors import SourceUnavailable
from opstui.model import CheckInfo, Facts, Level
from opstui.sources.base import Source
from opstui.units import format_age, format_bytes, format_duration

_WILDCARD = re.compile(r"[*?\[]")


class BackupSource(Source):
    """The newest file matching a glob must be younger than `max_age` (and at least `min_size` bytes)."""

    kind = "backup"
    provides = frozenset({"checks"})

    def __init__(
        self,
        backup_name: str,
        *,
        path: str,
        max_age: float,
        min_size: int = 1,
        level: Level = Level.CRITICAL,
        interval: float,
        timeout: float,
    ) -> None:
        super().__init__(f"backup {backup_name}", interval=interval, timeout=timeout)
        self.backup_name = backup_name
        self.pattern = os.path.expanduser(path)
        self.max_age = max_age
        self.min_size = min_size
        self.level = level

    async def collect(self) -> Facts:
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        _must_be_readable(_fixed_part(self.pattern))
        newest: tuple[float, int, str] | None = None
        for path in glob.iglob(self.pattern, recursive="**" in self.pattern):
            try:
                stat = os.stat(path)
            except OSError:
                continue  # deleted while we looked
            if os.path.isfile(path) and (newest is None or stat.st_mtime > newest[0]):
                newest = (stat.st_mtime, stat.st_size, path)
        level, detail = self._verdict(newest, time.time())
        check = CheckInfo(
            key=f"backup:{self.backup_name}",
            name=self.backup_name,
            kind="backup",
            level=level,
            source=self.name,
            detail=detail,
        )
        return Facts(checks=(check,))

    def _verdict(self, newest: tuple[float, int, str] | None, now: float) -> tuple[Level, str]:
        if newest is None:
            return self.level, f"no file matches {self.pattern}"
        mtime, size, path = newest
        age = max(0.0, now - mtime)
        what = f"newest {os.path.basename(path)} is {format_age(age)} old, {format_bytes(size)}"
        if age > self.max_age:
            return self.level, f"{what}: older than {format_duration(self.max_age)}"
        if size < self.min_size:
            return self.level, f"{what}: smaller than {format_bytes(self.min_size)}"
        return Level.OK, what


def _fixed_part(pattern: str) -> Path:
    """The directory a glob starts from: its leading parts without wildcards (the parent, for a plain path)."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if _WILDCARD.search(part):
            return Path(*fixed) if fixed else Path(".")
        fixed.append(part)
    return Path(pattern).parent


def _must_be_readable(directory: Path) -> None:
    # glob says nothing when it cannot read a directory; "no backup" and "cannot look" must not look alike.
    try:
        os.listdir(directory)
    except FileNotFoundError:
        raise SourceUnavailable(f"{directory} does not exist") from None
    except PermissionError:
        raise SourceUnavailable(f"permission denied reading {directory}") from None
    except NotADirectoryError:
        raise SourceUnavailable(f"{directory} is not a directory") from None


class EnvSource(Source):
    """Required environment variables are set (to something not empty), by name only; values are never kept.

    Checks a dotenv file when `file` is given, else opstui's own environment (e.g. when opstui runs in the same
    systemd unit or container as the app it watches).
    """

    kind = "env"
    provides = frozenset({"checks"})

    def __init__(
        self, env_name: str, *, required: Sequence[str], file: Path | None = None, interval: float, timeout: float
    ) -> None:
        super().__init__(f"env {env_name}", interval=interval, timeout=timeout)
        self.env_name = env_name
        self.required = list(required)
        self.file = file

    async def collect(self) -> Facts:
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        if self.file is None:
            present = {name for name in self.required if os.environ.get(name)}
        else:
            present = names_set_in(self.file, set(self.required))
        missing = [name for name in self.required if name not in present]
        where = f" in {self.file}" if self.file else ""
        if missing:
            level, detail = Level.CRITICAL, f"not set{where}: {', '.join(missing)}"
        else:
            level, detail = Level.OK, f"all {len(self.required)} set{where}"
        check = CheckInfo(
            key=f"env:{self.env_name}", name=self.env_name, kind="env", level=level, source=self.name, detail=detail
        )
        return Facts(checks=(check,))


_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def names_set_in(path: Path, wanted: set[str]) -> set[str]:
    """The wanted names a dotenv file assigns a non-empty value to; one line at a time, no value kept."""
    found: set[str] = set()
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                match = _ASSIGNMENT.match(line)
                if match and match.group(1) in wanted and match.group(2).strip() not in ("", '""', "''"):
                    found.add(match.group(1))
    except FileNotFoundError:
        raise SourceUnavailable(f"{path} does not exist") from None
    except PermissionError:
        raise SourceUnavailable(f"permission denied reading {path}") from None
    except IsADirectoryError:
        raise SourceUnavailable(f"{path} is a directory, not an env file") from None
    return found
