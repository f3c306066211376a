"""Recovery actions through the API the TUI and the bot use: real programs, real process groups, a real audit log."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from opstui.actions import Actions, Actor, RunResult, row_args
from opstui.actions.audit import AuditEntry, AuditLog
from opstui.actions.runner import MAX_LINE
from opstui.config import load_config, render_config
from opstui.errors import ActionError
from opstui.model import LockInfo, LockState, ProcessInfo, QueueInfo, Snapshot
from opstui.state import StateStore

PY = sys.executable
ME = Actor.local("tui")
SECRET = "s3cr3t-TEST-not-a-real-value"


def snapshot_with(*rows: Any) -> Snapshot:
    return Snapshot(
        taken_at=time.time(),
        instance="test",
        sources={},
        processes=tuple(r for r in rows if isinstance(r, ProcessInfo)),
        queues=tuple(r for r in rows if isinstance(r, QueueInfo)),
        locks=tuple(r for r in rows if isinstance(r, LockInfo)),
    )


def process(name: str, *, pid: int = 4242, manager: str = "pm2") -> ProcessInfo:
    return ProcessInfo(key=f"{manager}:{name}", name=name, manager=manager, status="online", source="pm2", pid=pid)


def toml_list(argv: list[str]) -> str:
    return json.dumps(argv)


@pytest.fixture
def make_actions(write_config, tmp_path: Path) -> Iterator[Callable[..., Actions]]:  # type: ignore[no-untyped-def]
    stores: list[StateStore] = []

    def make(
        text: str,
        *,
        snapshot: Snapshot | None = None,
        read_only: bool = False,
        environ: dict[str, str] | None = None,
        telegram: tuple[int, ...] = (),
    ) -> Actions:
        prefix = f'[general]\nstate_dir = "{tmp_path / "state"}"\nread_only = {str(read_only).lower()}\n\n'
        config = load_config(write_config(prefix + text), environ=environ or {})
        store = StateStore.in_dir(config.state_dir())
        stores.append(store)
        return Actions.from_config(config, store=store, snapshot=lambda: snapshot, telegram_allowlist=telegram)

    yield make
    for store in stores:
        store.close()


async def run_confirmed(actions: Actions, name: str, **args: str) -> tuple[RunResult, list[str], AuditEntry]:
    plan = await actions.plan(name, actor=ME, args=args)
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    result = await run.wait()
    return result, [line.text for line in run.lines], actions.audit.recent(1)[-1]


async def test_a_command_that_succeeds_streams_its_output_and_is_audited(make_actions) -> None:  # type: ignore[no-untyped-def]
    code = "import sys; print('flushed 162 stuck messages'); print('warning: slow', file=sys.stderr)"
    actions = make_actions(f'[[actions.command]]\nname = "drain"\ncommand = {toml_list([PY, "-c", code])}\n')
    plan = await actions.plan("drain", actor=ME)
    assert plan.requirement.kind == "confirm"
    assert plan.shown[0].startswith(PY) and "flushed 162 stuck messages" in plan.shown[0]
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    seen: list[object] = []
    run.subscribe(seen.append)
    result = await run.wait()

    assert result.result == "ok" and result.exit_status == 0
    # stdout and stderr are two pipes: each keeps its order, not their interleaving.
    assert sorted((line.stream, line.text) for line in run.lines) == [
        ("err", "warning: slow"),
        ("out", "flushed 162 stuck messages"),
    ]
    assert seen[-1] == result, "subscribers get the lines, then the result"
    entry = actions.audit.recent(1)[-1]
    assert (entry.action, entry.kind, entry.result, entry.exit_status) == ("drain", "command", "ok", 0)
    assert entry.actor == str(ME) and entry.actor_kind == "local"
    assert entry.confirmation == "pressed Confirm"
    assert entry.args[0] == plan.shown[0]
    assert "flushed 162 stuck messages" in entry.output and "! warning: slow" in entry.output
    assert entry.duration is not None and entry.duration >= 0


async def test_a_failing_command_reports_its_exit_status(make_actions) -> None:  # type: ignore[no-untyped-def]
    code = "import sys; print('redis: connection refused'); sys.exit(3)"
    actions = make_actions(f'[[actions.command]]\nname = "redis-check"\ncommand = {toml_list([PY, "-c", code])}\n')
    result, lines, entry = await run_confirmed(actions, "redis-check")
    assert (result.result, result.exit_status) == ("failed", 3)
    assert result.summary.startswith("failed in ") and "(exit 3)" in result.summary
    assert lines == ["redis: connection refused"]
    assert (entry.result, entry.exit_status, entry.output) == ("failed", 3, ("redis: connection refused",))


async def test_a_program_that_cannot_start_fails_with_the_reason(make_actions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    actions = make_actions(
        '[[actions.command]]\nname = "missing"\ncommand = ["./no-such-script.sh"]\n'
        '[[actions.command]]\nname = "noexec"\ncommand = ["./not-executable.sh"]\n'
        '[[actions.command]]\nname = "nodir"\ncommand = ["true"]\ncwd = "no/such/dir"\n'
    )
    missing, _, _ = await run_confirmed(actions, "missing")
    assert missing.result == "failed" and "no such program" in (missing.reason or "")
    noexec, _, _ = await run_confirmed(actions, "noexec")
    assert "permission denied" in (noexec.reason or "") and "chmod +x" in (noexec.reason or "")
    nodir, _, entry = await run_confirmed(actions, "nodir")
    assert "working directory" in (nodir.reason or "") and "no/such/dir" in (nodir.reason or "")
    assert entry.result == "failed" and entry.reason == nodir.reason


# A program that ignores SIGTERM and starts two children in its group that ignore it too, then hangs.
HANGS = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
kids = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(2)]
print("children", *[k.pid for k in kids], flush=True)
time.sleep(600)
"""


def group_survivors(pids: list[int]) -> list[int]:
    """Which of these processes still run (a zombie is dead: only its exit status waits for a reaper)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


async def test_a_command_that_hangs_past_its_timeout_is_killed_with_its_children(make_actions) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions(
        '[actions]\nkill_grace = "300ms"\n'
        f'[[actions.command]]\nname = "stuck"\ntimeout = "1s"\ncommand = {toml_list([PY, "-c", HANGS])}\n'
    )
    plan = await actions.plan("stuck", actor=ME)
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    result = await run.wait()

    assert result.result == "timeout"
    assert result.reason == "still running after 1s, so its process group was stopped"
    texts = [line.text for line in run.lines]
    children = [int(pid) for pid in texts[0].removeprefix("children ").split()]
    assert len(children) == 2
    group = int(re.search(r"stopping process group (\d+) \(SIGTERM\)", "\n".join(texts)).group(1))  # type: ignore[union-attr]
    assert any(f"SIGKILL to process group {group}" in t for t in texts), "SIGTERM was ignored: SIGKILL must follow"
    members = [pid for pid in psutil.pids() if _pgid(pid) == group]
    assert group_survivors([group, *children, *members]) == [], "a process of the group outlived the timeout"
    entry = actions.audit.recent(1)[-1]
    assert entry.result == "timeout" and entry.reason == result.reason


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def test_a_second_run_while_the_first_is_running_is_refused(make_actions) -> None:  # type: ignore[no-untyped-def]
    code = "import time; print('batch started', flush=True); time.sleep(1.5)"
    actions = make_actions(f'[[actions.command]]\nname = "batch"\ncommand = {toml_list([PY, "-c", code])}\n')
    first_plan = await actions.plan("batch", actor=ME)
    first = await actions.start(first_plan, first_plan.confirmation("pressed Confirm"))

    again = await actions.plan("batch", actor=ME)
    with pytest.raises(ActionError, match=r"batch is already running: started .* ago by .*one run at a time"):
        await actions.start(again, again.confirmation("pressed Confirm again"))

    assert (await first.wait()).result == "ok"
    results = [(e.result, e.confirmation) for e in actions.audit.recent(5)]
    assert results == [("ok", "pressed Confirm"), ("refused", "pressed Confirm again")]
    # Once the first has ended, the same action runs again.
    third = await actions.plan("batch", actor=ME)
    assert (await (await actions.start(third, third.confirmation("pressed Confirm"))).wait()).ok


ECHO_ARGS = "import sys, pathlib; pathlib.Path('ran.txt').write_text(repr(sys.argv[1:])); print(*sys.argv[1:])"


def row_action(scope: str, field: str, extra: str = "") -> str:
    argv = toml_list([PY, "-c", ECHO_ARGS, f"{{{scope}.{field}}}"])
    return f'[[actions.command]]\nname = "recover"\nscope = "{scope}"\ncommand = {argv}\n{extra}'


async def test_read_only_refuses_every_action_and_audits_it(make_actions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    snapshot = snapshot_with(process("worker"))
    actions = make_actions(
        row_action("process", "name")
        + '[[actions.script]]\nname = "recovery"\nscript = "./recovery.sh"\nmodes = ["soft"]\n'
        + '[[actions.http]]\nname = "run-batch"\nurl = "http://127.0.0.1:9/run"\nconfirm = false\n',
        snapshot=snapshot,
        read_only=True,
    )
    attempts = [("recover", {"process.name": "worker"}), ("recovery", {"mode": "soft"}), ("run-batch", {})]
    for name, args in attempts:
        with pytest.raises(ActionError, match=r"read-only mode .*no action runs"):
            await actions.plan(name, actor=ME, args=args)
    assert not (tmp_path / "ran.txt").exists()
    entries = actions.audit.recent(10)
    assert [(e.action, e.result) for e in entries] == [(n, "refused") for n, _ in attempts]
    assert all("read-only" in (e.reason or "") for e in entries)


@pytest.mark.parametrize(
    ("hostile", "why"),
    [
        ("; rm -rf /", "it contains whitespace"),
        ("$(touch PWNED)", "it contains whitespace"),
        ("`touch`PWNED", "it contains '`'"),
        ("worker\nrm -rf ~", "it contains whitespace or a line break"),
        ("worker\n", "it contains whitespace or a line break"),
        ("-rf", "it starts with '-', so the program would read it as an option"),
        ("--config=/etc/shadow", "it starts with '-'"),
        ("../../etc/passwd", "it contains '/'"),
        ("worker|nc", "it contains '|'"),
        ("a;b", "it contains ';'"),
        ("$HOME", "it contains '$'"),
        ("", "it is empty"),
    ],
)
async def test_hostile_row_values_are_refused_and_nothing_runs(  # type: ignore[no-untyped-def]
    make_actions, tmp_path: Path, hostile: str, why: str
) -> None:
    actions = make_actions(row_action("process", "name"), snapshot=snapshot_with(process(hostile)))
    with pytest.raises(ActionError) as refused:
        await actions.plan("recover", actor=ME, args={"process.key": f"pm2:{hostile}"})
    assert why in str(refused.value)
    assert "only letters, digits and . _ : @ + - are allowed" in str(refused.value)
    assert not (tmp_path / "ran.txt").exists() and not (tmp_path / "PWNED").exists()
    entry = actions.audit.recent(1)[-1]
    assert entry.result == "refused" and why in (entry.reason or "")
    assert "\n" not in entry.reason and "\n" not in "".join(entry.args), "a newline must not forge an audit line"


async def test_a_safe_row_value_is_passed_as_exactly_one_argument(make_actions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lock = LockInfo(key="pg:batch_locks/daily", name="daily", state=LockState.STALE, source="pg", holder="vps-1:4242")
    actions = make_actions(row_action("lock", "holder"), snapshot=snapshot_with(lock))
    plan = await actions.plan("recover", actor=ME, args=row_args(lock))
    assert plan.target is not None and plan.target.key == "pg:batch_locks/daily"
    result, lines, entry = await run_confirmed(actions, "recover", **row_args(lock))
    assert result.ok and lines == ["vps-1:4242"]
    assert (tmp_path / "ran.txt").read_text() == "['vps-1:4242']"
    assert entry.target == "pg:batch_locks/daily"


async def test_the_row_must_be_in_the_current_snapshot_and_offered(make_actions) -> None:  # type: ignore[no-untyped-def]
    rows = snapshot_with(process("api"), process("worker"), process("worker", manager="systemd"))
    actions = make_actions(row_action("process", "name", 'rows = ["api", "whatsapp-*"]\n'), snapshot=rows)
    with pytest.raises(ActionError, match=r"no process row with name='ghost' in the current snapshot \(api, worker"):
        await actions.plan("recover", actor=ME, args={"process.name": "ghost"})
    with pytest.raises(ActionError, match=r"2 process rows have name='worker' \(pm2:worker, systemd:worker\)"):
        await actions.plan("recover", actor=ME, args={"process.name": "worker"})
    with pytest.raises(ActionError, match=r"not offered on the process row 'pm2:worker' \(only on api, whatsapp-\*\)"):
        await actions.plan("recover", actor=ME, args={"process.key": "pm2:worker"})
    with pytest.raises(ActionError, match=r"acts on a process row: name it"):
        await actions.plan("recover", actor=ME)
    with pytest.raises(ActionError, match=r"named by process.name, process.key, .*; got 'queue.name'"):
        await actions.plan("recover", actor=ME, args={"queue.name": "incoming"})
    assert [a.name for a in actions.for_row(process("api"))] == ["recover"]
    assert actions.for_row(process("worker")) == [] and actions.global_actions() == []
    assert [e.result for e in actions.audit.recent(10)] == ["refused"] * 5


async def test_what_would_run_may_not_change_after_it_was_shown(make_actions) -> None:  # type: ignore[no-untyped-def]
    current = {"snapshot": snapshot_with(process("worker", pid=1111))}
    actions = make_actions(row_action("process", "pid"))
    actions._snapshot = lambda: current["snapshot"]
    plan = await actions.plan("recover", actor=ME, args={"process.name": "worker"})
    assert plan.shown[0].endswith(" 1111")
    current["snapshot"] = snapshot_with(process("worker", pid=2222))  # it restarted while the dialog was open
    with pytest.raises(ActionError, match=r"has changed since it was shown \(now: .* 2222\); ask again"):
        await actions.start(plan, plan.confirmation("pressed Confirm"))


async def test_secrets_never_reach_output_listing_config_or_audit(make_actions) -> None:  # type: ignore[no-untyped-def]
    from opstui.actions import listing

    code = "import os; print('token is', os.environ['API_TOKEN']); print('mode', os.environ['MODE'])"
    actions = make_actions(
        f'[[actions.command]]\nname = "leaky"\ncommand = {toml_list([PY, "-c", code])}\n'
        'env = { API_TOKEN = "${API_TOKEN}" }\npublic_env = { MODE = "soft" }\n',
        environ={"API_TOKEN": SECRET},
    )
    plan = await actions.plan("leaky", actor=ME)
    assert "with API_TOKEN=*** MODE=soft" in plan.shown
    result, lines, entry = await run_confirmed(actions, "leaky")
    assert result.ok and sorted(lines) == ["mode soft", "token is ***"]
    shown = listing.render_text(actions.all(), read_only=False) + listing.render_json(actions.all(), read_only=False)
    stored = json.dumps([e.as_json() for e in actions.audit.recent(10)])
    for text in (shown, stored, "\n".join(plan.shown)):
        assert SECRET not in text
    assert "token is ***" in entry.output


async def test_secrets_in_config_show_are_masked(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        '[[actions.http]]\nname = "run-batch"\nurl = "https://ops:${PW}@example.test/run"\n'
        'headers = { Authorization = "Bearer ${BATCH_TOKEN}" }\n'
        '[[actions.command]]\nname = "x"\ncommand = ["true"]\nenv = { T = "${BATCH_TOKEN}" }\n'
    )
    shown = render_config(load_config(path, environ={"PW": "pw-TEST-hunter2", "BATCH_TOKEN": SECRET}))
    assert SECRET not in shown and "pw-TEST-hunter2" not in shown
    assert "https://ops:***@example.test/run" in shown


async def test_confirmation_is_data_the_caller_must_hand_back(make_actions) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions(
        '[[actions.command]]\nname = "purge-dead"\ncommand = ["true"]\ndangerous = true\n'
        '[[actions.command]]\nname = "status"\ncommand = ["true"]\nconfirm = false\n'
    )
    plan = await actions.plan("purge-dead", actor=ME)
    assert (plan.requirement.kind, plan.requirement.phrase) == ("typed", "purge-dead")
    other = await actions.plan("purge-dead", actor=ME)
    with pytest.raises(ActionError, match=r"purge-dead is dangerous: it runs only when 'purge-dead' is typed$"):
        await actions.start(plan)
    with pytest.raises(ActionError, match="was for another request"):
        await actions.start(plan, other.confirmation("typed", typed="purge-dead"))
    with pytest.raises(ActionError, match=r"dangerous: it runs only when 'purge-dead' is typed \(got 'purge'\)"):
        await actions.start(plan, plan.confirmation("typed", typed="purge"))
    with pytest.raises(ActionError, match="dangerous"):
        await actions.start(plan, plan.confirmation("--yes"))
    assert (await (await actions.start(plan, plan.confirmation("typed", typed="purge-dead"))).wait()).ok

    no_ask = await actions.plan("status", actor=ME)
    assert no_ask.requirement.kind == "none"
    assert (await (await actions.start(no_ask)).wait()).ok
    assert [(e.action, e.result) for e in actions.audit.recent(10)] == [
        ("purge-dead", "refused"),
        ("purge-dead", "refused"),
        ("purge-dead", "refused"),
        ("purge-dead", "refused"),
        ("purge-dead", "ok"),
        ("status", "ok"),
    ]
    assert actions.audit.recent(1)[-1].confirmation == "not asked (confirm = false)"

    declined = await actions.plan("purge-dead", actor=ME)
    await actions.decline(declined, "pressed Cancel")
    assert (actions.audit.recent(1)[-1].result, actions.audit.recent(1)[-1].reason) == ("cancelled", "pressed Cancel")


async def test_telegram_users_need_to_be_on_the_allowlist(make_actions) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions('[[actions.command]]\nname = "recover"\ncommand = ["true"]\n', telegram=(1001,))
    with pytest.raises(ActionError, match=r"telegram 666 @mallory may not run actions"):
        await actions.plan("recover", actor=Actor.telegram(666, "mallory"))
    plan = await actions.plan("recover", actor=Actor.telegram(1001, "ops_bob"))
    assert (await (await actions.start(plan, plan.confirmation("Telegram button"))).wait()).ok
    entries = actions.audit.recent(2)
    assert [(e.actor, e.actor_kind, e.actor_id, e.result) for e in entries] == [
        ("telegram 666 @mallory", "telegram", "666", "refused"),
        ("telegram 1001 @ops_bob", "telegram", "1001", "ok"),
    ]


async def test_an_unknown_action_is_refused_with_a_suggestion(make_actions) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions('[[actions.command]]\nname = "recovery"\ncommand = ["true"]\n')
    with pytest.raises(ActionError, match=r"no action named 'recovry'; did you mean 'recovery'\?"):
        await actions.plan("recovry", actor=ME)
    assert actions.audit.recent(1)[-1].result == "refused"


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint that records each request and answers with the status the path asks for."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = int(self.path.rsplit("/", 1)[-1]) if self.path.rsplit("/", 1)[-1].isdigit() else 202
            payload = b'{"queued": 128}\nsecond line\n'
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


async def test_an_http_action_calls_the_endpoint(make_actions, http_server) -> None:  # type: ignore[no-untyped-def]
    base, seen = http_server
    actions = make_actions(
        f'[[actions.http]]\nname = "run-batch"\nurl = "{base}/api/brain/cron/run-batch"\n'
        'headers = { Authorization = "Bearer ${BATCH_TOKEN}" }\nbody = { limit = 100 }\n'
        f'[[actions.http]]\nname = "broken"\nurl = "{base}/api/500"\n'
        f'[[actions.http]]\nname = "picky"\nurl = "{base}/api/200"\nexpect_status = [202]\n'
        '[[actions.http]]\nname = "down"\nurl = "http://127.0.0.1:9/run"\n',
        environ={"BATCH_TOKEN": SECRET},
    )
    result, lines, entry = await run_confirmed(actions, "run-batch")
    assert result.ok and result.exit_status is None
    assert lines[0].startswith(f"POST {base}/api/brain/cron/run-batch -> HTTP 202 Accepted in ")
    assert lines[1:] == ['{"queued": 128}', "second line"]
    assert seen[0]["path"] == "/api/brain/cron/run-batch"
    assert seen[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(seen[0]["body"]) == {"limit": 100}
    assert entry.args[:2] == (f"POST {base}/api/brain/cron/run-batch", "headers Authorization: ***")
    assert SECRET not in json.dumps(entry.as_json())

    broken, _, entry = await run_confirmed(actions, "broken")
    assert (broken.result, broken.reason) == ("failed", "HTTP 500 (expected 2xx)")
    assert entry.reason == "HTTP 500 (expected 2xx)"
    picky, _, _ = await run_confirmed(actions, "picky")
    assert picky.reason == "HTTP 200 (expected 202)"
    down, _, _ = await run_confirmed(actions, "down")
    assert down.result == "failed" and "POST http://127.0.0.1:9/run: cannot connect" in (down.reason or "")


RECOVERY_SH = '#!/bin/sh\necho "recovery mode=$1 value=${2:-none} args=$#"\n'


async def test_a_script_runs_in_a_mode_chosen_from_its_list(make_actions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "recovery.sh"
    script.write_text(RECOVERY_SH)
    script.chmod(0o755)
    actions = make_actions(
        '[[actions.script]]\nname = "recovery"\nscript = "./recovery.sh"\n'
        'modes = ["full", "soft", "whatsapp", "redis", "status"]\nmodes_with_value = ["company"]\n'
    )
    recovery = actions.get("recovery")
    assert [(p.name, p.choices, p.when) for p in recovery.parameters()] == [
        ("mode", ("full", "soft", "whatsapp", "redis", "status", "company"), None),
        ("value", (), ("mode", ("company",))),
    ]
    soft, lines, entry = await run_confirmed(actions, "recovery", mode="soft")
    assert soft.ok and lines == ["recovery mode=soft value=none args=1"]
    assert entry.args[0] == "./recovery.sh soft"
    company, lines, _ = await run_confirmed(actions, "recovery", mode="company", value="42")
    assert company.ok and lines == ["recovery mode=company value=42 args=2"]

    refusals = [
        ({}, "recovery needs a mode: full, soft, whatsapp, redis, status, company"),
        ({"mode": "nuke"}, "mode 'nuke' is not one of: full, soft"),
        ({"mode": "soft; reboot"}, "is not one of"),
        ({"mode": "company"}, "recovery needs a value (the value after the mode company)"),
        ({"mode": "company", "value": "$(reboot)"}, "value '$(reboot)' is refused as an argument"),
        ({"mode": "soft", "value": "42"}, "value is only for mode company"),
        ({"mode": "soft", "force": "yes"}, "recovery takes mode, value; got force"),
    ]
    for args, reason in refusals:
        with pytest.raises(ActionError) as refused:
            await actions.plan("recovery", actor=ME, args=args)
        assert reason in str(refused.value)


async def test_output_is_cleaned_and_bounded_in_memory(make_actions) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys\nprint('\\x1b[31mred\\x1b[0m and a bell\\x07')\nprint('x' * 10000)\n"
        "for i in range(3000): print('line', i)\n"
        "print('password=hunter2-TEST', end='')"
    )
    actions = make_actions(
        "[actions]\noutput_lines = 100\n"
        f'[[actions.command]]\nname = "chatty"\ncommand = {toml_list([PY, "-c", code])}\n'
    )
    plan = await actions.plan("chatty", actor=ME)
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    everything: list[str] = []
    run.subscribe(lambda event: everything.append(getattr(event, "text", "")))
    assert (await run.wait()).ok
    assert len(run.lines) == 100 and run.dropped == 2903
    assert everything[0] == "red and a bell"
    assert everything[1] == "x" * MAX_LINE + " [line cut]"
    assert run.lines[-1].text == "password=***", "the last line, without a newline, is kept and redacted"
    entry = actions.audit.recent(1)[-1]
    assert len(entry.output) == 20 and entry.output[-2] == "line 2999"


async def test_cancel_stops_the_run_and_its_group(make_actions) -> None:  # type: ignore[no-untyped-def]
    code = "import time; print('working', flush=True); time.sleep(600)"
    actions = make_actions(f'[[actions.command]]\nname = "long"\ncommand = {toml_list([PY, "-c", code])}\n')
    plan = await actions.plan("long", actor=ME)
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    async for line in run.follow():
        assert line.text == "working"
        break
    await actions.close("the TUI was closed")
    result = await run.wait()
    assert (result.result, result.reason) == ("cancelled", "the TUI was closed")
    assert actions.audit.recent(1)[-1].result == "cancelled"


CLAIM_AND_DIE = """
import sys, time, os
from pathlib import Path
from opstui.actions.audit import AuditLog, Request
from opstui.actions.guard import Actor
from opstui.state import StateStore
log = AuditLog(StateStore.in_dir(Path(sys.argv[1])))
log.claim(Request(Actor.local("tui"), "batch", "command"), exclusive="batch", deadline=time.time() + 600)
os._exit(0)  # killed mid-run: the entry stays "running"
"""


async def test_a_run_left_running_by_a_dead_opstui_does_not_block(make_actions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions('[[actions.command]]\nname = "batch"\ncommand = ["true"]\n')
    dead = await asyncio.create_subprocess_exec(PY, "-c", CLAIM_AND_DIE, str(tmp_path / "state"))
    assert await dead.wait() == 0
    assert actions.audit.recent(1)[-1].result == "running"
    plan = await actions.plan("batch", actor=ME)
    assert (await (await actions.start(plan, plan.confirmation("pressed Confirm"))).wait()).ok
    assert [e.result for e in actions.audit.recent(2)] == ["interrupted", "ok"]


def test_the_audit_log_keeps_entries_for_audit_keep(tmp_path: Path) -> None:
    store = StateStore.in_dir(tmp_path)
    log = AuditLog(store, keep=86400.0)
    from opstui.actions.audit import Request

    log.refused(Request(ME, "old"), "read-only")
    log.tidy(now=time.time() + 2 * 86400)
    assert log.recent() == []
    store.close()


def test_importing_actions_does_not_import_httpx() -> None:
    code = "import sys, opstui.actions, opstui.cli; print('httpx' in sys.modules)"
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[actions.command]]\nname = "r"\nscope = "process"\n'
            'command = ["pm2", "restart", "--name={process.name}"]\n',
            ":7: actions.command[0].command: argument 3 ('--name={process.name}'): a placeholder must be a whole "
            "argument, so its value can never be split or joined into something else; write it as its own list "
            'element, e.g. ["--name", "{process.name}"]',
        ),
        (
            '[[actions.command]]\nname = "r"\ncommand = ["./x.sh", "{process.name}"]\n',
            ":6: actions.command[0].command: argument 2 ('{process.name}') uses a process field but the action's "
            'scope is global; set scope = "process"',
        ),
        (
            '[[actions.command]]\nname = "r"\nscope = "queue"\ncommand = ["./x.sh", "{queue.depth}"]\n',
            ":7: actions.command[0].command: argument 2 ('{queue.depth}'): unknown field; a queue row has "
            "{queue.name}, {queue.key}, {queue.kind}",
        ),
        (
            '[[actions.command]]\nname = "r"\ncommand = ["a"]\n[[actions.http]]\nname = "r"\nurl = "http://x"\n',
            ": actions: actions.command[0] and actions.http[0] both have name = 'r'; each needs its own",
        ),
        (
            '[[actions.command]]\nname = "r"\ncommand = ["a"]\ndangerous = true\nconfirm = false\n',
            ":4: actions.command[0]: a dangerous action always asks for its name to be typed; remove "
            "confirm = false or dangerous = true",
        ),
        (
            '[[actions.command]]\nname = "r"\ncommand = "./recovery.sh soft"\n',
            ":6: actions.command[0].command: Input should be a valid list",
        ),
        (
            '[[actions.command]]\nname = "r"\ncommand = ["a"]\nshell = true\n',
            ":7: actions.command[0].shell: unknown key 'shell'",
        ),
        (
            '[[actions.script]]\nname = "r"\nscript = "./r.sh"\nmodes = ["soft", "-rf"]\n',
            ":7: actions.script[0].modes: mode '-rf' may hold only letters, digits and . _ : @ + - (and not start "
            "with -)",
        ),
        (
            '[[actions.http]]\nname = "r"\nurl = "ftp://x"\n',
            ":6: actions.http[0].url: String should match pattern",
        ),
    ],
)
def test_a_wrong_action_config_names_file_line_key_and_problem(write_config, text: str, error: str) -> None:  # type: ignore[no-untyped-def]
    from opstui.errors import ConfigError

    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}{error}"), str(caught.value)


async def test_a_run_cancelled_right_after_it_starts_is_still_recorded(make_actions) -> None:  # type: ignore[no-untyped-def]
    actions = make_actions(f'[[actions.command]]\nname = "long"\ncommand = {toml_list([PY, "-c", "input()"])}\n')
    plan = await actions.plan("long", actor=ME)
    run = await actions.start(plan, plan.confirmation("pressed Confirm"))
    run.cancel("changed my mind")
    assert (await run.wait()).result == "cancelled"
    assert (actions.audit.recent(1)[-1].result, actions.audit.recent(1)[-1].reason) == ("cancelled", "changed my mind")
