"""PM2's wire protocol: AMP frames over the daemon's unix sockets, axon-rpc calls, and a parser that keeps no secrets.

Read against pm2 7.0.4 (see the research notes): every message on `rpc.sock` and `pub.sock` is one AMP frame,
`(version << 4 | argc)` then per argument a big-endian uint32 length and the bytes, an argument being `s:` text,
`j:` JSON or a raw blob. A call is `[{type: "call", method, args: [one argument]}, "<request id>"]`, and the
reply echoes the id: `[{args: [...]} | {error: ...}, "<id>"]`.

Two rules keep users safe. The daemon crashes (and `pm2 update` restarts every app) when a method gets anything but
exactly one argument, so `RpcConnection.call` only sends known methods with one validated argument. And PM2 copies
the app's whole environment into `pm2_env` (twice), so replies are parsed with an allow-list hook that turns every
object that is not a known PM2 shape into None while parsing: no dict holding an environment outlives the parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opstui.errors import SourceError, SourceUnavailable

AMP_VERSION = 1
MAX_ARG_BYTES = 64 * 1024 * 1024
"""A getMonitorData reply is ~5 KiB per process (more with a big environment); anything near this is not PM2."""
READ_CHUNK = 256 * 1024


class PM2Unavailable(SourceUnavailable):
    """No daemon answers on the socket: missing (ENOENT), refused (stale), not ours (EACCES), or gone (EOF)."""


class PM2NotPermitted(PM2Unavailable):
    """The sockets belong to the user PM2 runs as (mode 775): running `pm2 jlist` as ourselves would not help."""


class PM2ProtocolError(SourceError):
    """The socket answered with bytes that are not PM2's protocol."""


class PM2CallError(SourceError):
    """The daemon answered a call with an error (e.g. an unknown process id)."""


def encode_message(args: list[Any]) -> bytes:
    """One AMP frame; strings go as `s:`, everything else as compact `j:` JSON (as amp-message packs them)."""
    # argc 0 cannot be framed by amp's streaming parser and more than 15 overflow the nibble.
    if not 1 <= len(args) <= 15:
        raise ValueError(f"an AMP frame carries 1 to 15 arguments, not {len(args)}")
    out = [bytes([(AMP_VERSION << 4) | len(args)])]
    for arg in args:
        raw = (
            b"s:" + arg.encode()
            if isinstance(arg, str)
            else b"j:" + json.dumps(arg, separators=(",", ":"), allow_nan=False).encode()
        )
        out += [len(raw).to_bytes(4, "big"), raw]
    return b"".join(out)


class AmpParser:
    """Incremental frame parser: `feed()` any chunking of the stream, get back each whole frame's raw arguments."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[list[bytes]]:
        self._buf += data
        while (frame := self._one()) is not None:
            yield frame

    def _one(self) -> list[bytes] | None:
        buf = self._buf
        if not buf:
            return None
        version, argc = buf[0] >> 4, buf[0] & 0x0F
        # There is no resync in AMP: one bad header means the rest of the stream is meaningless.
        if version != AMP_VERSION or argc == 0:
            raise PM2ProtocolError(f"not PM2's protocol (frame header 0x{buf[0]:02x})")
        offset, spans = 1, []
        for _ in range(argc):
            if len(buf) < offset + 4:
                return None
            size = int.from_bytes(buf[offset : offset + 4], "big")
            if size > MAX_ARG_BYTES:
                raise PM2ProtocolError(f"not PM2's protocol (a {size}-byte frame)")
            offset += 4
            if len(buf) < offset + size:
                return None
            spans.append((offset, offset + size))
            offset += size
        frame = [bytes(buf[a:b]) for a, b in spans]
        del buf[:offset]
        return frame


def decode_text(raw: bytes) -> str | None:
    """An `s:` argument (a request id or a pub topic); None for anything else."""
    return raw[2:].decode("utf-8", "replace") if raw[:2] == b"s:" else None


def decode_json(raw: bytes) -> Any:
    """A `j:` argument parsed through the allow-list: only known PM2 shapes survive, with only their safe keys."""
    if raw[:2] != b"j:":
        raise PM2ProtocolError("not PM2's protocol (expected a JSON argument)")
    try:
        return json.loads(raw[2:], object_pairs_hook=_safe_object)
    except ValueError:
        raise PM2ProtocolError("not PM2's protocol (a JSON argument does not parse)") from None


def parse_process_list(text: str, *, start: int = 0) -> list[dict[str, Any]]:
    """The JSON array `pm2 jlist` prints from `start` on (text after it is ignored), through the allow-list."""
    try:
        value, _ = json.JSONDecoder(object_pairs_hook=_safe_object).raw_decode(text, start)
    except ValueError:
        raise PM2ProtocolError("pm2 jlist printed something that is not a JSON process list") from None
    if not isinstance(value, list):
        raise PM2ProtocolError("pm2 jlist printed something that is not a JSON process list")
    return [p for p in value if isinstance(p, dict)]


_INT = (int,)
_NUM = (int, float)
_STR = (str,)

PM2_ENV_SAFE: dict[str, tuple[type, ...]] = {
    "name": _STR,
    "namespace": _STR,
    "pm_id": _INT,
    "status": _STR,
    "restart_time": _INT,
    "unstable_restarts": _INT,
    "pm_uptime": _NUM,
    "exit_code": _INT,
    "pm_err_log_path": _STR,
    "pm_out_log_path": _STR,
    "exec_mode": _STR,
    "autorestart": (bool,),
}
"""The pm2_env keys opstui reads. Never `env`, `args`, `node_args`, `versioning`, `axm_*` or anything unknown:
PM2 merges every environment variable into pm2_env's top level, so an unknown key may well be a secret."""
_PROCESS_SAFE = {"pid": _INT, "name": _STR, "pm_id": _INT}
_MONIT_SAFE = {"memory": _NUM, "cpu": _NUM}


def _pick(obj: dict[str, Any], spec: Mapping[str, tuple[type, ...]]) -> dict[str, Any]:
    # bool is an int in Python; accept it only where a bool is expected.
    return {
        k: v
        for k, v in obj.items()
        if k in spec and isinstance(v, spec[k]) and not (isinstance(v, bool) and bool not in spec[k])
    }


def _safe_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """json's object hook, called bottom-up on every object: keep known shapes' safe keys, drop everything else."""
    obj = dict(pairs)
    keys = obj.keys()
    if keys == {"args"} and isinstance(obj["args"], list):  # a reply envelope
        return obj
    if "error" in keys and keys <= {"error", "stack"}:  # an error envelope; the stack is never kept
        return {"error": obj["error"] if isinstance(obj["error"], str) else "an error without a message"}
    if keys == {"msg"} and isinstance(obj["msg"], str):  # ping's {msg: "pong"}
        return obj
    if "pm_id" in keys and "status" in keys and ("restart_time" in keys or "unique_id" in keys):  # pm2_env
        return _pick(obj, PM2_ENV_SAFE)
    if "pm2_env" in keys:  # a process entry: {pid, name, pm_id, pm2_env, monit}
        entry = _pick(obj, _PROCESS_SAFE)
        for key in ("pm2_env", "monit"):
            if isinstance(obj.get(key), dict):
                entry[key] = obj[key]
        return entry
    if keys == {"memory", "cpu"}:
        return _pick(obj, _MONIT_SAFE)
    return None


ALLOWED_CALLS = frozenset(
    {"getMonitorData", "ping", "restartProcessId", "stopProcessId", "notifyByProcessId", "getVersion"}
)
"""The only methods opstui calls. Never `getReport`: it answers with the daemon's whole environment."""


def describe_connect_error(exc: OSError, path: Path) -> str:
    """What a failed connect to a PM2 socket means, in words a person can act on."""
    if isinstance(exc, FileNotFoundError):
        return f"PM2 is not running: {path} does not exist (PM2 never started for this home, or was stopped)"
    if isinstance(exc, ConnectionRefusedError):
        return f"PM2 is not running: {path} refuses connections (a stale socket left by a daemon that died)"
    if isinstance(exc, PermissionError):
        return f"permission denied on {path}: PM2 runs as another user; run opstui as that user or in its group"
    return f"cannot connect to {path}: {exc.strerror or exc}"


class RpcConnection:
    """A persistent connection to `rpc.sock`; many calls may be in flight, replies are matched by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids = itertools.count()
        self._prefix = f"opstui-{os.getpid()}"
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        try:
            reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        except PermissionError as exc:
            raise PM2NotPermitted(describe_connect_error(exc, self.path)) from None
        except OSError as exc:
            raise PM2Unavailable(describe_connect_error(exc, self.path)) from None
        self._reader_task = asyncio.create_task(self._read(reader), name=f"pm2 rpc {self.path}")

    async def call(self, method: str, arg: dict[str, Any] | int) -> list[Any]:
        """Call one exposed daemon method with exactly one argument; returns the reply's `args`.

        No timeout of its own: callers bound it (`asyncio.timeout`); a late reply is dropped.
        """
        if method not in ALLOWED_CALLS:
            raise ValueError(f"opstui does not call PM2's {method}")
        if isinstance(arg, bool) or not isinstance(arg, dict | int):
            raise ValueError("a PM2 call takes exactly one object or process id")
        if not self.connected:
            await self.connect()
        assert self._writer is not None
        request_id = f"{self._prefix}:{next(self._ids)}"
        reply = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            self._writer.write(encode_message([{"type": "call", "method": method, "args": [arg]}, request_id]))
            await self._writer.drain()
            envelope = await reply
        except ConnectionError:
            await self.close()
            raise PM2Unavailable(f"PM2 closed {self.path} (the daemon stopped or restarted)") from None
        finally:
            self._pending.pop(request_id, None)
        if not isinstance(envelope, dict):
            raise PM2ProtocolError("not PM2's protocol (a reply that is not an object)")
        if "error" in envelope:
            raise PM2CallError(f"PM2 refused {method}: {envelope['error']}")
        args = envelope.get("args")
        return args if isinstance(args, list) else []

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = AmpParser()
        failure: Exception = PM2Unavailable(f"PM2 closed {self.path} (the daemon stopped or restarted)")
        try:
            while chunk := await reader.read(READ_CHUNK):
                for frame in parser.feed(chunk):
                    self._deliver(frame)
        except PM2ProtocolError as exc:
            failure = exc
        except ConnectionError:
            pass
        finally:
            for reply in self._pending.values():
                if not reply.done():
                    reply.set_exception(failure)
            self._pending.clear()
            if self._writer is not None:
                self._writer.close()

    def _deliver(self, frame: list[bytes]) -> None:
        request_id = decode_text(frame[-1]) if len(frame) >= 2 else None
        reply = self._pending.get(request_id) if request_id is not None else None
        if reply is None or reply.done():
            return  # a reply to a call that already timed out
        try:
            reply.set_result(decode_json(frame[0]))
        except PM2ProtocolError as exc:
            reply.set_exception(exc)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
