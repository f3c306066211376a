"""The engine: sources run concurrently on their own schedules; none can delay, block or break another."""

from __future__ import annotations

import asyncio
import time

from opstui.engine import Engine, History
from opstui.errors import SourceUnavailable
from opstui.model import Facts, QueueInfo, Snapshot
from opstui.sources.base import Source


class Steady(Source):
    """Reports a queue whose depth goes up by one per read."""

    kind = "test"

    def __init__(self, name: str = "steady", interval: float = 0.05, timeout: float = 1.0) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.reads = 0

    async def collect(self) -> Facts:
        self.reads += 1
        return Facts(
            queues=(QueueInfo(key=f"{self.name}/q", name="q", kind="list", depth=self.reads, source=self.name),)
        )


class Hangs(Source):
    kind = "test"

    async def collect(self) -> Facts:
        await asyncio.sleep(3600)
        return Facts()


class BlocksThread(Source):
    """A synchronous library call that ignores cancellation, run in a thread as sources must."""

    kind = "test"

    async def collect(self) -> Facts:
        await asyncio.to_thread(time.sleep, 2)
        return Facts()


class Flaky(Source):
    """Good once, then refused until `recover` is set."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__("redis main", interval=0.05, timeout=1.0)
        self.reads = 0
        self.recover = False

    async def collect(self) -> Facts:
        self.reads += 1
        if self.reads > 1 and not self.recover:
            raise SourceUnavailable("connection refused at 127.0.0.1:6380")
        return Facts(queues=(QueueInfo(key="main/q", name="q", kind="list", depth=self.reads, source=self.name),))


class Explodes(Source):
    kind = "test"

    async def collect(self) -> Facts:
        raise KeyError("surprise")


async def wait_for(predicate, limit: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_hanging_source_times_out_and_does_not_delay_the_others() -> None:
    steady = Steady()
    engine = Engine([Hangs("hangs", interval=0.05, timeout=0.2), steady], instance="t")
    await engine.start()
    try:
        await wait_for(lambda: steady.reads >= 5)
        assert steady.reads >= 5, "the steady source was held up by the hanging one"
        await wait_for(
            lambda: not engine.snapshot.sources["hangs"].ok and engine.snapshot.sources["hangs"].error != "not read yet"
        )
        assert engine.snapshot.sources["hangs"].error == "timed out after 200ms"
    finally:
        await engine.stop()


async def test_collect_once_reads_every_source_at_the_same_time() -> None:
    everyone_started = asyncio.Event()
    started: list[str] = []

    class Rendezvous(Source):
        """Answers only once every Rendezvous source has started: read one after another, each times out."""

        kind = "test"

        async def collect(self) -> Facts:
            started.append(self.name)
            if len(started) == 3:
                everyone_started.set()
            await everyone_started.wait()
            return Facts()

    engine = Engine([Rendezvous(name, interval=1, timeout=5) for name in "abc"], instance="t")
    snapshot = await engine.collect_once()
    assert all(status.ok for status in snapshot.sources.values()), snapshot.sources


async def test_a_source_stuck_in_a_thread_still_times_out() -> None:
    engine = Engine([BlocksThread("sync lib", interval=1, timeout=0.2)], instance="t")
    snapshot = await engine.collect_once()
    assert snapshot.sources["sync lib"].error == "timed out after 200ms"


async def test_a_failing_source_keeps_its_last_good_value_with_its_age_and_recovers() -> None:
    now = [1000.0]
    flaky = Flaky()
    engine = Engine([flaky], instance="t", clock=lambda: now[0])
    await engine.run_source(flaky)
    now[0] = 1030.0
    await engine.run_source(flaky)
    await asyncio.sleep(0)
    snap = engine.snapshot
    status = snap.sources["redis main"]
    assert not status.ok
    assert status.error == "connection refused at 127.0.0.1:6380"
    assert status.age(snap.taken_at) == 30.0
    assert [q.depth for q in snap.queues] == [1], "the last good value must stay visible"
    assert snap.is_stale(snap.queues[0])
    flaky.recover = True
    await engine.run_source(flaky)
    await asyncio.sleep(0)
    assert engine.snapshot.sources["redis main"].ok
    assert [q.depth for q in engine.snapshot.queues] == [3]


async def test_an_unexpected_exception_becomes_a_status_not_a_crash() -> None:
    engine = Engine([Explodes("bad", interval=1, timeout=1), Steady()], instance="t")
    snapshot = await engine.collect_once()
    assert snapshot.sources["bad"].error == "KeyError: 'surprise'"
    assert snapshot.sources["steady"].ok


async def test_errors_are_redacted() -> None:
    class Leaks(Source):
        kind = "test"

        async def collect(self) -> Facts:
            raise SourceUnavailable("cannot connect to redis://:hunter2pass@10.0.0.5:6379/0")

    snapshot = await Engine([Leaks("leaks", interval=1, timeout=1)], instance="t").collect_once()
    assert snapshot.sources["leaks"].error == "cannot connect to redis://:***@10.0.0.5:6379/0"


async def test_subscribers_receive_immutable_snapshots_and_a_raising_one_does_not_stop_the_rest() -> None:
    engine = Engine([Steady()], instance="t")
    seen: list[Snapshot] = []

    def bad(snapshot: Snapshot) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(bad)
    unsubscribe = engine.subscribe(seen.append)
    await engine.collect_once()
    await engine.collect_once()
    assert [s.queues[0].depth for s in seen] == [1, 2]
    assert seen[0].sequence < seen[1].sequence
    unsubscribe()
    await engine.collect_once()
    assert len(seen) == 2


async def test_results_arriving_together_are_published_once() -> None:
    engine = Engine([Steady("a"), Steady("b"), Steady("c")], instance="t")
    published: list[Snapshot] = []
    engine.subscribe(published.append)
    for source in engine.sources:
        engine.record(source, Facts(), None)
    await asyncio.sleep(0)
    assert len(published) == 1
    assert all(status.ok for status in published[0].sources.values())


class Takes(Source):
    """Reads for `seconds` without using the CPU (a network round trip)."""

    kind = "test"

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name, interval=1, timeout=5)
        self.seconds = seconds

    async def collect(self) -> Facts:
        await asyncio.sleep(self.seconds)
        return Facts()


async def test_sources_reading_at_the_same_time_are_published_together_unless_one_is_slow() -> None:
    # One snapshot per round: the alert rules judge each published snapshot, whatever changed in it.
    engine = Engine([Takes("quick", 0), Takes("round trip", 0.02), Takes("another", 0.03)], instance="t")
    published: list[Snapshot] = []
    engine.subscribe(published.append)
    await asyncio.gather(*(engine.run_source(s) for s in engine.sources))
    await asyncio.sleep(0)
    assert len(published) == 1 and all(s.ok for s in published[0].sources.values())

    # A slow source holds nobody back: the others' results are published without it, then its own.
    engine = Engine([Takes("quick", 0), Takes("slow", 1.0)], instance="t")
    published.clear()
    engine.subscribe(published.append)
    await asyncio.gather(*(engine.run_source(s) for s in engine.sources))
    await asyncio.sleep(0)
    assert [sorted(n for n, s in snap.sources.items() if s.ok) for snap in published] == [
        ["quick"],
        ["quick", "slow"],
    ]


async def test_history_is_bounded_and_gives_growth_per_minute() -> None:
    now = [0.0]
    steady = Steady()
    engine = Engine([steady], instance="t", clock=lambda: now[0], history_points=10)
    for step in range(25):
        now[0] = step * 6.0
        await engine.run_source(steady)
    await asyncio.sleep(0)
    snap = engine.snapshot
    assert snap.values("queue_depth:steady/q") == [float(v) for v in range(16, 26)]
    # One more job every 6 s is 10 per minute.
    assert snap.queues[0].growth_per_min == 10.0


def test_history_replaces_tuples_so_old_snapshots_do_not_change() -> None:
    history = History(points=3)
    history.record("s", 1, 1)
    frozen = history.frozen()
    history.record("s", 2, 2)
    assert frozen["s"] == ((1, 1),)
    assert history.get("s") == ((1, 1), (2, 2))


async def test_processors_enrich_the_snapshot_before_subscribers_see_it() -> None:
    engine = Engine([Steady()], instance="t")
    engine.processors.append(lambda snap: snap.replace(instance="processed"))
    seen: list[Snapshot] = []
    engine.subscribe(seen.append)
    await engine.collect_once()
    assert seen[-1].instance == "processed"


class Pushes(Source):
    """Polls rarely; `push` delivers a changed depth between polls, as PM2's event socket does."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__("pushes", interval=3600, timeout=1.0)

    async def collect(self) -> Facts:
        return self.facts(1)

    def facts(self, depth: int) -> Facts:
        return Facts(queues=(QueueInfo(key="p/q", name="q", kind="list", depth=depth, source=self.name),))

    def push(self, depth: int) -> None:
        if self.on_update is not None:
            self.on_update(self.facts(depth))


async def test_a_source_pushes_facts_between_polls_while_the_engine_runs() -> None:
    source = Pushes()
    engine = Engine([source], instance="t")
    seen: list[int] = []
    engine.subscribe(lambda snap: seen.extend(q.depth for q in snap.queues))
    assert source.on_update is None, "a source has no push hook outside a running engine"
    await engine.start()
    try:
        await wait_for(lambda: seen == [1])
        source.push(7)
        await wait_for(lambda: seen == [1, 7])
        assert engine.snapshot.sources["pushes"].ok
    finally:
        await engine.stop()
    assert source.on_update is None, "a stopped engine takes no more pushes"


async def test_a_one_shot_check_gives_no_push_hook() -> None:
    source = Pushes()
    snapshot = await Engine([source], instance="t").collect_once()
    assert [q.depth for q in snapshot.queues] == [1]
    assert source.on_update is None


async def test_text_a_system_wrote_is_masked_before_any_face_sees_it() -> None:
    from opstui.model import HealthComponent, HealthInfo

    class LeakyHealth(Source):
        kind = "test"

        async def collect(self) -> Facts:
            component = HealthComponent("db", ok=False, detail="connect failed: postgresql://app:LeakyPw321@db/x")
            return Facts(
                health=(
                    HealthInfo(
                        key="api",
                        name="api",
                        url="http://h/health",
                        ok=False,
                        source=self.name,
                        components=(component,),
                        error="token=SessTok777 rejected",
                    ),
                )
            )

    snapshot = await Engine([LeakyHealth("api", interval=1, timeout=1)], instance="t").collect_once()
    health = snapshot.health[0]
    assert health.components[0].detail == "connect failed: postgresql://app:***@db/x"
    assert health.error == "token=*** rejected"
