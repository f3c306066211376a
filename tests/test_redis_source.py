"""The Redis source beyond queues: memory, locks, last activity, dispatch counters, and what happens when the
server refuses, wants a password, hangs, or dies and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from opstui.config.data import RedisActivityConfig, RedisConfig, RedisDispatchConfig, RedisLockConfig
from opstui.demo.servers import EmbeddedRedis, free_port, wait_until
from opstui.engine import Engine
from opstui.errors import SourceTimeout, SourceUnavailable
from opstui.model import Facts, LockState
from opstui.sources.redis import RedisSource


def collect(source: RedisSource, times: int = 1) -> Facts:
    async def run() -> Facts:
        try:
            facts = Facts()
            for _ in range(times):
                facts = await source.collect()
            return facts
        finally:
            await source.close()

    return asyncio.run(run())


def source(url: str, **sections: Any) -> RedisSource:
    return RedisSource(RedisConfig(url=url, **sections))


def test_memory_is_what_info_says(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.config_set("maxmemory", 100 * 1024 * 1024)
    try:
        memory = collect(source(redis_url)).redis_memory
        used = r.info("memory")["used_memory"]
    finally:
        r.config_set("maxmemory", 0)
    assert len(memory) == 1 and memory[0].name == "main"
    assert abs(memory[0].used_bytes - used) < 256 * 1024
    assert memory[0].max_bytes == 100 * 1024 * 1024
    assert collect(source(redis_url)).redis_memory[0].max_bytes is None  # no maxmemory: no limit, not "0 bytes"
    assert collect(source(redis_url, memory=False)).redis_memory == ()


def test_lock_states_holder_and_expiry(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set("lock:batch", "batch@vps-1", px=30_000)
    r.set("lock:other", "batch@intruder", px=5_000)
    r.set("lock:forever", "batch@vps-1")
    r.hset("lock:hash", "holder", "x")
    locks = [
        RedisLockConfig(name="batch", key="lock:batch", expected_holder="batch@vps-*"),
        RedisLockConfig(name="other", key="lock:other", expected_holder="batch@vps-*"),
        RedisLockConfig(name="free", key="lock:free"),
        RedisLockConfig(name="forever", key="lock:forever"),
        RedisLockConfig(name="hash", key="lock:hash"),
    ]
    before = time.time()
    found = {lock.name: lock for lock in collect(source(redis_url, locks=locks)).locks}
    assert found["batch"].state is LockState.HELD and found["batch"].holder == "batch@vps-1"
    assert found["batch"].expires_at is not None and before + 29 < found["batch"].expires_at < before + 31
    assert found["other"].state is LockState.UNEXPECTED and found["other"].holder == "batch@intruder"
    assert found["free"].state is LockState.FREE and found["free"].holder is None
    assert found["forever"].state is LockState.HELD and found["forever"].expires_at is None
    assert found["hash"].state is LockState.UNKNOWN and found["hash"].error == "lock:hash is a hash, not a string"


def test_activity_newest_key_by_value_follows_updates_new_keys_and_deletions(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now = time.time()
    for i in range(50):
        r.set(f"last-msg:chat-{i}", str(now - 3600 + i * 10), ex=86400)
    r.set("unrelated", str(now))
    activity = RedisActivityConfig(name="messages", pattern="last-msg:*", max_age=600)
    src = source(redis_url, activity=[activity])

    async def ticks() -> list[Facts]:
        out = []
        try:
            out.append(await src.collect())
            r.set("last-msg:chat-3", str(now - 5))  # a known chat talks
            out.append(await src.collect())
            r.set("last-msg:new-chat", str(now - 1), ex=86400)  # a chat never seen before
            out.append(await src.collect())
            r.delete("last-msg:new-chat", "last-msg:chat-3")
            out.append(await src.collect())
        finally:
            await src.close()
        return out

    seen = [facts.activity[0] for facts in asyncio.run(ticks())]
    assert seen[0].last_at == pytest.approx(now - 3600 + 490)
    assert seen[0].detail == "newest of 50 keys matching last-msg:*" and seen[0].max_age == 600
    assert seen[1].last_at == pytest.approx(now - 5)
    assert seen[2].last_at == pytest.approx(now - 1)
    assert seen[3].last_at == pytest.approx(now - 3600 + 490)


def test_activity_by_ttl_and_by_single_key(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set("seen:a", "1", ex=3600 - 120)  # set 2 minutes ago with a one-hour TTL
    r.set("seen:b", "1", ex=3600 - 900)
    r.set("worker:heartbeat", "2024-05-01T10:00:00Z")
    activity = [
        RedisActivityConfig(name="by ttl", pattern="seen:*", by="ttl", ttl=3600),
        RedisActivityConfig(name="heartbeat", key="worker:heartbeat"),
        RedisActivityConfig(name="missing", key="worker:none"),
    ]
    found = {a.name: a for a in collect(source(redis_url, activity=activity)).activity}
    assert found["by ttl"].last_at == pytest.approx(time.time() - 120, abs=2)
    assert found["heartbeat"].last_at == 1714557600.0
    assert found["missing"].last_at is None and found["missing"].error is None


def test_activity_scan_is_bounded_and_keeps_only_the_newest_keys(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"last-msg:{i}", str(now - 20_000 + i))
    pipe.execute()
    found = collect(
        source(redis_url, activity=[RedisActivityConfig(name="m", pattern="last-msg:*", max_keys=100)])
    ).activity[0]
    assert found.last_at == pytest.approx(now - 1)
    assert found.detail == "newest of 100 keys matching last-msg:*"
    # A keyspace bigger than the first tick's warm-up says so instead of pretending it saw everything.
    tiny = RedisActivityConfig(name="m", pattern="last-msg:*", scan_per_tick=10, max_keys=10)
    partial = collect(source(redis_url, activity=[tiny])).activity[0]
    assert partial.detail is not None and "first scan of the keyspace still under way" in partial.detail


def test_dispatch_counters(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set("report:processed", 15)
    r.incr("report:sent", 12)
    r.set("report:started", "2024-05-01T09:00:00Z")
    r.set("other:processed", "many")
    counters = [
        RedisDispatchConfig(
            name="daily",
            processed="report:processed",
            sent="report:sent",
            failed="report:failed",
            started="report:started",
        ),
        RedisDispatchConfig(name="broken", processed="other:processed", sent="other:sent"),
    ]
    found = {d.name: d for d in collect(source(redis_url, dispatch=counters)).dispatch}
    daily = found["daily"]
    assert (daily.processed, daily.sent, daily.failed) == (15, 12, 0)
    assert daily.mismatch and daily.run_started_at == 1714554000.0
    assert found["broken"].error == "other:processed holds 'many', not a number"


# ----------------------------------------------------------------------------------------------- failures


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, to stop, restart or lock down without touching the shared one."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def test_refused_connection_names_the_address() -> None:
    port = free_port()
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(f"redis://127.0.0.1:{port}/0"))
    assert str(caught.value) == f"connection refused at 127.0.0.1:{port}"


def test_a_password_is_asked_for_and_a_wrong_one_refused_without_showing_it(own_redis: EmbeddedRedis) -> None:
    redis.Redis(port=own_redis.port).config_set("requirepass", "right-horse-battery")
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(own_redis.url))
    assert str(caught.value) == (
        f"the server at 127.0.0.1:{own_redis.port} needs a password; write it into the url before the host "
        "(see [[redis]] url in config.example.toml)"
    )
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(f"redis://:wrong-staple@127.0.0.1:{own_redis.port}/0"))
    assert str(caught.value).startswith(f"authentication failed at 127.0.0.1:{own_redis.port}")
    assert "wrong-staple" not in str(caught.value)
    facts = collect(source(f"redis://:right-horse-battery@127.0.0.1:{own_redis.port}/0"))
    assert facts.redis_memory[0].used_bytes > 0


def test_a_server_that_never_answers_times_out_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are accepted by the kernel, and nobody ever answers
        port = silent.getsockname()[1]
        with pytest.raises(SourceTimeout) as caught:
            collect(RedisSource(RedisConfig(url=f"redis://127.0.0.1:{port}/0", timeout=0.5)))
    assert str(caught.value) == f"no answer from 127.0.0.1:{port} within 500ms"


def test_a_database_that_does_not_exist(own_redis: EmbeddedRedis) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(f"redis://127.0.0.1:{own_redis.port}/99"))
    assert (
        str(caught.value) == f"the server at 127.0.0.1:{own_redis.port} has no database 99 (DB index is out of range)"
    )


async def test_a_dead_server_keeps_the_last_good_values_aged_and_recovers_by_itself(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        redis.Redis(port=server.port).lpush("queue:incoming", *range(5))
        clock = [1000.0]
        src = RedisSource(RedisConfig(url=server.url, queues=[{"name": "incoming", "key": "queue:incoming"}]))
        engine = Engine([src], instance="test", clock=lambda: clock[0])
        await engine.run_source(src)
        engine.flush()
        assert engine.snapshot.queues[0].depth == 5

        server.kill()
        clock[0] += 30
        await engine.run_source(src)
        engine.flush()
        status = engine.snapshot.sources["redis main"]
        assert not status.ok and status.error == f"connection refused at 127.0.0.1:{server.port}"
        assert status.age(clock[0]) == 30.0
        assert engine.snapshot.queues[0].depth == 5 and engine.snapshot.is_stale(engine.snapshot.queues[0])

        server.start()  # same port, empty data set
        redis.Redis(port=server.port).lpush("queue:incoming", *range(7))
        clock[0] += 5
        await engine.run_source(src)
        engine.flush()
        assert engine.snapshot.sources["redis main"].ok
        assert engine.snapshot.queues[0].depth == 7 and not engine.snapshot.is_stale(engine.snapshot.queues[0])
        await engine.stop()
    finally:
        server.stop()


def test_commands_an_acl_forbids_are_errors_of_the_items_that_need_them(own_redis: EmbeddedRedis) -> None:
    admin = redis.Redis(port=own_redis.port)
    admin.execute_command("ACL", "SETUSER", "watcher", "on", ">watch-only-pw", "~*", "+@read", "-zcard", "-info")
    admin.lpush("queue:incoming", "a", "b")
    admin.lpush("bull:mail:wait", "1")
    url = f"redis://watcher:watch-only-pw@127.0.0.1:{own_redis.port}/0"
    facts = collect(
        source(url, queues=[{"name": "incoming", "key": "queue:incoming"}, {"name": "mail", "kind": "bullmq"}])
    )
    queues = {q.name: q for q in facts.queues}
    assert queues["incoming"].depth == 2 and queues["incoming"].error is None
    mail = queues["mail"]
    assert mail.depth is None and mail.parts["waiting"] == 1 and mail.parts["active"] == 0
    assert mail.error is not None and mail.error.startswith("ZCARD bull:mail:prioritized: NOPERM")
    assert facts.redis_memory == ()  # INFO is forbidden: no row rather than a made-up 0 bytes


def test_a_unix_socket_with_a_user_and_a_database_number(tmp_path: Path) -> None:
    # Short path: a unix socket's path must stay under 108 bytes.
    sock = Path(f"/tmp/opstui-redis-{free_port()}.sock")
    log = tmp_path / "redis.log"
    proc = subprocess.Popen(
        [
            str(EmbeddedRedis(tmp_path).binary),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--logfile",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(sock.exists, timeout=10, what="redis-server on a unix socket", proc=proc, log=log)
        admin = redis.Redis(unix_socket_path=str(sock), db=3)
        admin.execute_command("ACL", "SETUSER", "watcher", "on", ">p@ss w/rd", "~*", "+@read", "+info", "+select")
        admin.lpush("queue:incoming", *range(4))
        url = f"unix://watcher:p%40ss%20w%2Frd@{sock}?db=3"
        facts = collect(source(url, queues=[{"name": "incoming", "key": "queue:incoming"}]))
        assert facts.queues[0].depth == 4 and facts.queues[0].error is None
        with pytest.raises(SourceUnavailable) as caught:
            collect(source(f"unix://{sock.with_suffix('.gone')}"))
        assert str(caught.value) == f"no Redis socket at {sock.with_suffix('.gone')}"
    finally:
        proc.kill()
        proc.wait()
        sock.unlink(missing_ok=True)


class TlsTerminator:
    """A TLS front for a plain Redis (as stunnel or a managed Redis's TLS port would be), with its own CA."""

    def __init__(self, backend: tuple[str, int], tmp_path: Path) -> None:
        import ssl

        import trustme

        ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.context)
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = []
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import ssl

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                secure = self.context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()  # a client that does not trust our CA gives up during the handshake
                continue
            upstream = socket.create_connection(self.backend)
            self.sockets += [secure, upstream]
            for a, b in ((secure, upstream), (upstream, secure)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_rediss_verifies_the_server_against_the_given_ca(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.delete("queue:tls")
    r.lpush("queue:tls", *range(3))
    front = TlsTerminator(("127.0.0.1", redis_server.port), tmp_path)
    queue = {"name": "tls", "key": "queue:tls"}
    try:
        trusted = collect(source(f"rediss://localhost:{front.port}/0?ssl_ca_certs={front.ca_file}", queues=[queue]))
        assert trusted.queues[0].depth == 3 and trusted.queues[0].error is None
        unchecked = collect(source(f"rediss://127.0.0.1:{front.port}/0?ssl_cert_reqs=none", queues=[queue]))
        assert unchecked.queues[0].depth == 3
        with pytest.raises(SourceUnavailable) as caught:
            collect(source(f"rediss://localhost:{front.port}/0", queues=[queue]))  # the system's CAs do not know ours
        assert "TLS failed" in str(caught.value) and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        front.close()
        r.delete("queue:tls")


def test_rediss_with_a_password_and_a_database_works_every_tick(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    # A managed Redis (Upstash, Redis Cloud, ElastiCache with AUTH): TLS 1.3 and a password. The server's session
    # tickets arrive right after the handshake, while AUTH and SELECT are on their way.
    admin = redis.Redis(port=own_redis.port, db=2)
    admin.lpush("queue:tls", *range(4))
    admin.config_set("requirepass", "p@ss:w/rd#?%x")
    front = TlsTerminator(("127.0.0.1", own_redis.port), tmp_path)
    url = f"rediss://:p%40ss%3Aw%2Frd%23%3F%25x@localhost:{front.port}/2?ssl_ca_certs={front.ca_file}"
    try:
        for _ in range(8):  # each a daemon start: a fresh source, then a few ticks
            facts = collect(source(url, queues=[{"name": "tls", "key": "queue:tls"}]), times=3)
            assert facts.queues[0].depth == 4 and facts.queues[0].error is None
        assert len(front.sockets) == 2 * 8, "one TLS connection per source, kept from tick to tick"
        before, after = ticks_across_a_dropped_connection(url, admin, settle=0.3)
        assert before.queues[0].depth == after.queues[0].depth == 4
        assert len(front.sockets) == 2 * 10, "the dropped connection was noticed and replaced"
    finally:
        front.close()


def test_a_connection_the_server_dropped_is_replaced_without_losing_a_tick(own_redis: EmbeddedRedis) -> None:
    admin = redis.Redis(port=own_redis.port)
    admin.lpush("queue:tls", *range(4))  # an idle timeout, a restart behind a proxy
    before, after = ticks_across_a_dropped_connection(own_redis.url, admin)
    assert before.queues[0].depth == after.queues[0].depth == 4 and after.queues[0].error is None


def ticks_across_a_dropped_connection(url: str, admin: redis.Redis, settle: float = 0.0) -> tuple[Facts, Facts]:
    """Two ticks of one source, the server closing its connection between them."""
    src = source(url, queues=[{"name": "tls", "key": "queue:tls"}])

    async def run() -> tuple[Facts, Facts]:
        try:
            first = await src.collect()
            admin.client_kill_filter(_type="normal", skipme=True)
            # The TLS front passes the close on from its own thread: give it a moment, as the tick interval would.
            await asyncio.sleep(settle)
            return first, await src.collect()
        finally:
            await src.close()

    return asyncio.run(run())
