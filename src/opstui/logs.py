"""Logging set-up for every entry point: JSON lines or text, always through the secret redactor."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from opstui.redact import install_log_redaction, redact

LogFormat = Literal["json", "text"]

# Attributes every LogRecord has; anything else was passed with `extra=` and belongs in the JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any `extra=` fields (journald/PM2-friendly)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Fields passed with `extra=` go through the redactor too: the filter only sees the message.
        entry.update(
            {
                k: redact(v) if isinstance(v, str) else v
                for k, v in vars(record).items()
                if k not in _STANDARD and not k.startswith("_")
            }
        )
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(
    *, fmt: LogFormat = "text", level: int = logging.INFO, stream: IO[str] | None = None, file: Path | None = None
) -> None:
    """Route all logging to one handler (a stream, or a file for the TUI, whose screen must stay clean)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # APScheduler logs every job run at INFO; only its warnings (a source slower than its interval) matter.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    install_log_redaction()
