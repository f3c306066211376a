"""One Redis connection speaking RESP2 over a socket: connect (TCP, TLS, unix socket), AUTH, SELECT, then pipelined
commands sent in one write and their replies parsed in one pass.

The Redis source needs nothing else from a client library, and redis-py costs 20 MB and half a second of CPU to
import (its `__init__` loads the asyncio, cluster and sentinel clients too): more than the daemon's whole
steady state uses (docs/performance.md). An error reply about one command stays that command's reply
(`ReplyError`); anything about the connection raises a `RespError`.
"""

from __future__ import annotations

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
        if self._sock is not None and not self._still_open(self._sock):
            self.close()  # start afresh rather than lose this tick to a connection the server closed
        if self._sock is None:
            self._sock = self._connect()
        try:
            return self._exchange(self._sock, payload, count)
        except BaseException:
            self.close()  # replies may still be on the wire: never reuse this connection
            raise

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _still_open(self, sock: socket.socket) -> bool:
        """Whether a kept connection can take the next round trip. Between round trips the server has nothing to
        say, so anything to read means it closed the connection (a restart, an idle timeout) or is out of step.
        Only a read tells: a TLS 1.3 server may send session tickets after the handshake, which make the socket
        readable but which the TLS layer takes for itself."""
        sock.setblocking(False)
        try:
            sock.recv(1)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True  # nothing to read, or only a session ticket
        except OSError:
            return False
        finally:
            sock.settimeout(self.timeout)
        return False

    def _exchange(self, sock: socket.socket, payload: bytes, count: int) -> list[Any]:
        try:
            sock.sendall(payload)
            return _read(sock, count)
        except TimeoutError:
            raise NoAnswer("no answer within the timeout") from None
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from None

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
            try:
                # Straight to the new socket, not through `round_trip`: this is its first exchange.
                for reply in self._exchange(sock, b"".join(encode(cmd) for cmd in setup), len(setup)):
                    if isinstance(reply, ReplyError):
                        raise SetupRefused(str(reply).removeprefix("ERR "))
            except BaseException:
                sock.close()
                raise
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


READ_SIZE = 1 << 17
"""Bytes asked of the socket at a time (more when a bulk string is known to need more, up to READ_SIZE_CAP)."""
READ_SIZE_CAP = 1 << 22


def _read(sock: socket.socket, count: int) -> list[Any]:
    """`count` RESP2 replies from `sock`, parsed in one pass over what arrives, in time linear in their size: a
    reply is never parsed twice (arrays being filled wait on a stack), and a bulk string whose end has not
    arrived is received whole before parsing goes on. Integers, most replies, are tested for first."""
    data, pos = b"", 0
    out: list[Any] = []
    filling: list[tuple[list[Any], int]] = []  # the arrays being filled, innermost last, with their sizes
    while len(out) < count:
        end = data.find(b"\r\n", pos)
        if end < 0:
            data, pos = _more(sock, data, pos, len(data) - pos + 1), 0
            continue
        kind = data[pos]
        if kind == 58:  # ":" integer
            value: Any = int(data[pos + 1 : end])
            pos = end + 2
        elif kind == 36:  # "$" bulk string
            size = int(data[pos + 1 : end])
            if size < 0:
                value, pos = None, end + 2
            elif len(data) < end + size + 4:
                data, pos = _more(sock, data, pos, end + size + 4 - pos), 0
                continue
            else:
                value, pos = data[end + 2 : end + 2 + size], end + size + 4
        elif kind == 42:  # "*" array
            size = int(data[pos + 1 : end])
            pos = end + 2
            if size > 0:
                filling.append(([], size))
                continue
            value = None if size < 0 else []
        elif kind == 43:  # "+" simple string
            value, pos = data[pos + 1 : end], end + 2
        elif kind == 45:  # "-" error
            value, pos = _error(data[pos + 1 : end].decode("utf-8", "replace")), end + 2
        else:
            raise ConnectionLost(f"not the Redis protocol (a reply starting with {chr(kind)!r})")
        while filling:  # the value completes an item, maybe its array, maybe the arrays around it
            items, size = filling[-1]
            items.append(value)
            if len(items) < size:
                break
            value = filling.pop()[0]
        else:
            out.append(value)
    return out


def _more(sock: socket.socket, data: bytes, pos: int, need: int) -> bytes:
    """What is left of `data` from `pos`, followed by what the socket sends until there are `need` bytes."""
    chunks, have = [data[pos:]], len(data) - pos
    while have < need:
        chunk = sock.recv(min(max(READ_SIZE, need - have), READ_SIZE_CAP))
        if not chunk:
            raise ConnectionLost("connection closed by the server")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _error(message: str) -> ReplyError:
    """An error reply: about one command (kept as its reply), or about the connection (raised)."""
    if message.startswith(("NOAUTH", "WRONGPASS")):
        raise AuthFailed(message)
    if message.startswith("LOADING"):
        raise Loading(message)
    return ReplyError(message)


__all__ = ["Address", "Command", "Connection", "ReplyError", "RespError", "encode"]
