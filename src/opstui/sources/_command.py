"""Running a short external command (systemctl, pm2) for a source: output captured, killed if the tick gives up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from opstui.errors import SourceUnavailable


async def run_command(argv: Sequence[str], *, env: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `argv`; a cancelled tick (the engine's timeout) kills the command."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
        )
    except FileNotFoundError:
        raise SourceUnavailable(f"{argv[0]} not found on PATH") from None
    except PermissionError:
        raise SourceUnavailable(f"permission denied running {argv[0]}") from None
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


def last_line(err: bytes) -> str:
    """The last non-empty line a failed command printed, the one that usually says why."""
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
