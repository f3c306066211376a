"""One Redis connection speaking RESP2 over a socket: connect (TCP, TLS, unix socket), AUTH, SELECT, then pipelined
commands sent in one write and their replies parsed in one pass.

The Redis source needs nothing else from a client library, and redis-py costs 20 MB and half a second of CPU to
import (its `__init__` loads the asyncio, cluster and sentinel clients too): more than the daemon's whole
steady state uses (docs/performance.md). An error reply about one command stays that command's reply
(`ReplyError`); anything about the connection raises a `RespError`.
"""

from __future__ import annotations

import select
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

Command = tuple[str | bytes, ...]


class RespError(Exception):
    """The connection failed: it is closed, and the next round trip opens a new one."""


class ConnectFailed(RespError):
    """The server could not be reached (refused, no such host or socket, TLS failed)."""


class NoAnswer(RespError):
    """The server did not answer within the timeout."""


class ConnectionLost(RespError):
    pass


class AuthFailed(RespError):
    """NOAUTH (a password is needed) or WRONGPASS."""


class Loading(RespError):
    """The server is still loading its data set."""


class SetupRefused(RespError):
    """The server refused AUTH or SELECT for another reason (e.g. no such database)."""


class ReplyError(Exception):
    """An error reply to one command (WRONGTYPE, NOPERM, ...): that command's reply, not the connection's failure."""


@dataclass(frozen=True)
class Address:
    """Where and how to connect, from a redis://, rediss:// or unix:// URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    """A unix socket's path (then host and port are not used)."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Address:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"db", "ssl_cert_reqs", "ssl_ca_certs"}
        if unknown:
            known = "db, ssl_cert_reqs, ssl_ca_certs"
            raise ConnectFailed(f"unknown option {', '.join(sorted(unknown))} in the url (known: {known})")
        db = options.get("db") or (parts.path.strip("/") if parts.scheme != "unix" else "") or "0"
        if not db.isdigit():
            raise ConnectFailed(f"the database in the url must be a number, not {db!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            path=parts.path if parts.scheme == "unix" else None,
            db=int(db),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
            tls_verify=options.get("ssl_cert_reqs", "required") != "none",
            tls_ca_file=options.get("ssl_ca_certs"),
        )


def encode(command: Command) -> bytes:
    """One command in the Redis protocol (RESP): *<n> then $<len> <arg> for each argument."""
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else arg.encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


class Connection:
    """A blocking connection with a timeout on every socket operation; use from one thread at a time."""

    def __init__(self, address: Address, *, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def round_trip(self, payload: bytes, count: int) -> list[Any]:
        """Send `payload` (`count` encoded commands) in one write and read their `count` replies, in order."""
        if self._sock is not None and select.select([self._sock], [], [], 0)[0]:
            # Between round trips the server has nothing to say: a kept connection that is readable was closed
            # by it (a restart, an idle timeout). Start afresh rather than lose this tick to a dead socket.
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(payload)
            return self._read(count)
        except TimeoutError:
            self.close()
            raise NoAnswer("no answer within the timeout") from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from None
        except BaseException:
            self.close()  # replies may still be on the wire: never reuse this connection
            raise

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _connect(self) -> socket.socket:
        address = self.address
        try:
            if address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(address.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((address.host, address.port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if address.tls:
                sock = self._tls(sock)
        except TimeoutError:
            raise NoAnswer("no answer within the timeout") from None
        except socket.gaierror as exc:
            raise ConnectFailed(f"name resolution failed: {exc.strerror}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS failed: {exc.reason or exc}") from None
        except ConnectionRefusedError:
            raise ConnectFailed("connection refused") from None
        except FileNotFoundError:
            raise ConnectFailed("No such file") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from None
        setup: list[Command] = []
        if address.password is not None:
            user = (address.username,) if address.username else ()
            setup.append(("AUTH", *user, address.password))
        if address.db:
            setup.append(("SELECT", str(address.db)))
        if setup:
            self._sock = sock
            for reply in self.round_trip(b"".join(encode(cmd) for cmd in setup), len(setup)):
                if isinstance(reply, ReplyError):
                    self.close()
                    raise SetupRefused(str(reply).removeprefix("ERR "))
            self._sock = None
        return sock

    def _tls(self, sock: socket.socket) -> socket.socket:
        context = ssl.create_default_context(cafile=self.address.tls_ca_file)
        if not self.address.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            return context.wrap_socket(sock, server_hostname=self.address.host)
        except BaseException:
            sock.close()
            raise

    def _read(self, count: int) -> list[Any]:
        """`count` replies from the socket, parsed in one pass over what arrives (most replies are integers)."""
        assert self._sock is not None
        sock = self._sock
        data, pos, out = b"", 0, list[Any]()
        while len(out) < count:
            if data[pos : pos + 1] == b":":  # most replies are counts: read them without a call
                end = data.find(b"\r\n", pos)
                if end >= 0:
                    out.append(int(data[pos + 1 : end]))
                    pos = end + 2
                    continue
            try:
                value, pos = _parse(data, pos)
            except _Incomplete:
                chunk = sock.recv(1 << 17)
                if not chunk:
                    raise ConnectionLost("connection closed by the server") from None
                data, pos = data[pos:] + chunk, 0
                continue
            out.append(value)
        return out


class _Incomplete(Exception):
    """The buffer ends inside a reply: read more from the socket."""


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply from `buf` at `pos`: (value, position after it)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 58:  # ":" integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 36:  # "$" bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            raise _Incomplete
        return buf[end + 2 : stop], stop + 2
    if kind == 42:  # "*" array
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        items, at = [], end + 2
        for _ in range(size):
            item, at = _parse(buf, at)
            items.append(item)
        return items, at
    if kind == 43:  # "+" simple string
        return buf[pos + 1 : end], end + 2
    if kind == 45:  # "-" error
        return _error(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    raise ConnectionLost(f"not the Redis protocol (a reply starting with {chr(kind)!r})")


def _error(message: str) -> ReplyError:
    """An error reply: about one command (kept as its reply), or about the connection (raised)."""
    if message.startswith(("NOAUTH", "WRONGPASS")):
        raise AuthFailed(message)
    if message.startswith("LOADING"):
        raise Loading(message)
    return ReplyError(message)


__all__ = ["Address", "Command", "Connection", "ReplyError", "RespError", "encode"]
