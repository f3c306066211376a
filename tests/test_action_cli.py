"""`opstui action` and `opstui audit` as people and scripts use them: prompts, refusals, exit codes, the log."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

PY = sys.executable
SECRET = "s3cr3t-TEST-not-a-real-value"


def opstui(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "opstui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def py(code: str) -> str:
    return json.dumps([PY, "-c", code])


ACTIONS = f"""
[[actions.command]]
name = "drain"
description = "Move stuck messages aside"
command = {py("import os; print('drained 162 with', os.environ['API_TOKEN'])")}
env = {{ API_TOKEN = "${{API_TOKEN}}" }}
key = "d"

[[actions.command]]
name = "fail"
command = {py("import sys; print('boom', file=sys.stderr); sys.exit(3)")}

[[actions.command]]
name = "purge-dead"
dangerous = true
command = {py("print('purged')")}

[[actions.command]]
name = "slow"
timeout = "1s"
command = {py("import time; print('started', flush=True); time.sleep(30)")}

[[actions.command]]
name = "hang"
timeout = "5m"
command = {py("import time; print('started', flush=True); time.sleep(300)")}

[[actions.command]]
name = "restart-app"
scope = "process"
command = ["true", "{{process.name}}"]
"""


@pytest.fixture
def config(write_config) -> Path:  # type: ignore[no-untyped-def]
    return write_config(ACTIONS)  # type: ignore[no-any-return]


@pytest.fixture
def env() -> dict[str, str]:
    return {"API_TOKEN": SECRET}


def test_action_list_shows_what_each_would_run_with_secrets_masked(config: Path, env: dict[str, str]) -> None:
    result = opstui("-c", str(config), "action", "list", cwd=config.parent, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "drain  (command, global, key d, asks for confirmation)"
    assert lines[1] == "    Move stuck messages aside"
    assert lines[2].startswith(f"    runs: {PY} -c ")
    assert lines[3] == f"          in {config.parent} · with API_TOKEN=*** · stopped after 1m"
    assert "purge-dead  (command, global, dangerous: type 'purge-dead' to run it)" in lines
    assert "restart-app  (command, process, asks for confirmation)" in lines
    assert "    runs: true {process.name}" in lines
    assert SECRET not in result.stdout

    as_json = json.loads(opstui("-c", str(config), "action", "list", "--json", cwd=config.parent, env=env).stdout)
    assert as_json["read_only"] is False
    assert [a["name"] for a in as_json["actions"]] == ["drain", "fail", "purge-dead", "slow", "hang", "restart-app"]
    assert as_json["actions"][2]["confirm"] == "typed"


def test_run_with_yes_streams_output_and_exits_with_the_actions_status(config: Path, env: dict[str, str]) -> None:
    ok = opstui("-c", str(config), "action", "run", "drain", "--yes", cwd=config.parent, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "drained 162 with ***\n"
    assert ok.stderr.startswith("drain will run:\n  ")
    assert "  with API_TOKEN=***\n" in ok.stderr
    assert ok.stderr.splitlines()[-1].startswith("drain: ok in ")
    assert SECRET not in ok.stdout + ok.stderr

    failed = opstui("-c", str(config), "action", "run", "fail", "-y", cwd=config.parent, env=env)
    assert failed.returncode == 3
    assert "boom\n" in failed.stderr and failed.stderr.splitlines()[-1].endswith("(exit 3)")


def test_without_a_terminal_and_without_yes_nothing_runs(config: Path, env: dict[str, str]) -> None:
    result = opstui("-c", str(config), "action", "run", "drain", cwd=config.parent, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-2:] == [
        "opstui: refused: drain needs a confirmation first; nothing was confirmed",
        "no terminal to ask on: pass --yes to confirm",
    ]
    assert "Traceback" not in result.stderr


def test_a_dangerous_action_needs_its_name_not_just_yes(config: Path, env: dict[str, str]) -> None:
    yes = opstui("-c", str(config), "action", "run", "purge-dead", "--yes", cwd=config.parent, env=env)
    assert yes.returncode == 2 and yes.stdout == ""
    assert yes.stderr.splitlines()[-1] == ("it is dangerous: --yes is not enough; pass --confirm purge-dead to run it")
    wrong = opstui("-c", str(config), "action", "run", "purge-dead", "--confirm", "drain", cwd=config.parent, env=env)
    assert wrong.returncode == 2 and "(got 'drain')" in wrong.stderr
    named = opstui(
        "-c", str(config), "action", "run", "purge-dead", "--confirm", "purge-dead", cwd=config.parent, env=env
    )
    assert named.returncode == 0 and named.stdout == "purged\n"


def test_read_only_refuses_from_the_flag_and_from_the_config(write_config, config: Path, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    flag = opstui("-c", str(config), "--read-only", "action", "run", "drain", "--yes", cwd=config.parent, env=env)
    assert flag.returncode == 2 and flag.stdout == ""
    assert flag.stderr.strip() == (
        "opstui: refused: opstui is in read-only mode (general.read_only or --read-only): no action runs"
    )
    after = opstui(
        "-c",
        str(config),
        "action",
        "run",
        "purge-dead",
        "--confirm",
        "purge-dead",
        "--read-only",
        cwd=config.parent,
        env=env,
    )
    assert after.returncode == 2 and "read-only mode" in after.stderr

    read_only = write_config(
        f'[general]\nread_only = true\nstate_dir = "{config.parent / "state"}"\n{ACTIONS}', "ro.toml"
    )
    from_config = opstui("-c", str(read_only), "action", "run", "fail", "--yes", cwd=config.parent, env=env)
    assert from_config.returncode == 2 and "read-only mode" in from_config.stderr
    listed = opstui("-c", str(read_only), "action", "list", cwd=config.parent, env=env)
    assert listed.stdout.splitlines()[0] == "read-only mode is on: every action is refused"

    audit = opstui("-c", str(config), "audit", "--json", cwd=config.parent, env=env)
    assert [(e["action"], e["result"]) for e in json.loads(audit.stdout)] == [
        ("drain", "refused"),
        ("purge-dead", "refused"),
        ("fail", "refused"),
    ]


def test_a_row_must_exist_in_what_the_sources_read(config: Path, env: dict[str, str]) -> None:
    result = opstui(
        "-c",
        str(config),
        "action",
        "run",
        "restart-app",
        "--arg",
        "process.name=worker",
        "--yes",
        cwd=config.parent,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "opstui: refused: no process row with name='worker' in the current snapshot (no source reports process rows)"
    )
    bad = opstui("-c", str(config), "action", "run", "restart-app", "--arg", "worker", cwd=config.parent, env=env)
    assert bad.returncode == 2 and "--arg takes FIELD=VALUE" in bad.stderr


def test_a_timeout_exits_124(config: Path, env: dict[str, str]) -> None:
    result = opstui("-c", str(config), "action", "run", "slow", "--yes", cwd=config.parent, env=env)
    assert result.returncode == 124
    assert result.stdout == "started\n"
    assert result.stderr.splitlines()[-1].startswith("slow: timeout in ")


def run_hanging_action(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`opstui action run hang --yes` in the background: its timeout is minutes, so only a Ctrl+C ends it.

    SIGINT is set back to its default in the child: a shell that starts a job in the background (as a CI runner
    may) makes it ignore SIGINT, and Python then leaves it ignored, as it should for a user's background job.
    """
    return subprocess.Popen(
        [PY, "-m", "opstui", "-c", str(config), "action", "run", "hang", "--yes"],
        cwd=config.parent,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt(proc: subprocess.Popen[str]) -> str:
    """Ctrl+C, and what it wrote on stderr; the process is never left running, whatever happens."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
        proc.communicate()


def test_a_second_run_from_another_process_is_refused(config: Path, env: dict[str, str]) -> None:
    first = run_hanging_action(config, env)
    try:
        assert first.stdout is not None and first.stdout.readline() == "started\n"
        second = opstui("-c", str(config), "action", "run", "hang", "--yes", cwd=config.parent, env=env)
        assert second.returncode == 2
        assert "opstui: refused: hang is already running: started " in second.stderr
        assert "ago by " in second.stderr
    finally:
        interrupt(first)
    assert first.returncode == 130


def test_ctrl_c_stops_the_action_and_its_group_and_is_recorded(config: Path, env: dict[str, str]) -> None:
    running = run_hanging_action(config, env)
    try:
        assert running.stdout is not None and running.stdout.readline() == "started\n"
        children = [child.pid for child in psutil.Process(running.pid).children(recursive=True)]
    finally:
        stderr = interrupt(running)
    assert running.returncode == 130
    assert stderr.splitlines()[-1].startswith("hang: cancelled in ")
    assert stderr.splitlines()[-1].endswith(": interrupted with Ctrl+C")
    for pid in children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    audit = json.loads(opstui("-c", str(config), "audit", "--json", "-n", "1", cwd=config.parent, env=env).stdout)
    assert (audit[0]["result"], audit[0]["reason"]) == ("cancelled", "interrupted with Ctrl+C")


def run_in_terminal(args: list[str], answer: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run opstui on a pseudo-terminal, answer its prompt, and return its exit status and everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become opstui on the terminal
        os.chdir(cwd)
        os.execve(PY, [PY, "-m", "opstui", *args], {**os.environ, **env})
    out = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: opstui exited
                break
            if not chunk:
                break
            out += chunk
        if not answered and (b"[y/N]" in out or b"to cancel:" in out):
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def test_on_a_terminal_it_shows_what_will_run_and_asks(config: Path, env: dict[str, str]) -> None:
    status, screen = run_in_terminal(["-c", str(config), "action", "run", "drain"], "y", config.parent, env)
    assert status == 0, screen
    assert "drain will run:\n  " in screen and "with API_TOKEN=***" in screen
    assert "Run it? [y/N] y\ndrained 162 with ***\n" in screen

    status, screen = run_in_terminal(["-c", str(config), "action", "run", "drain"], "n", config.parent, env)
    assert status == 1 and screen.endswith("Run it? [y/N] n\nnot run\n")

    status, screen = run_in_terminal(
        ["-c", str(config), "action", "run", "purge-dead"], "purge-dead", config.parent, env
    )
    assert status == 0, screen
    assert "purge-dead is dangerous.\nType its name (purge-dead) to run it, or press Enter to cancel: " in screen
    assert "purged" in screen

    audit = json.loads(opstui("-c", str(config), "audit", "--json", cwd=config.parent, env=env).stdout)
    assert [(e["action"], e["result"], e["confirmation"] or e["reason"]) for e in audit] == [
        ("drain", "ok", "answered y at the prompt"),
        ("drain", "cancelled", "answered no at the prompt"),
        ("purge-dead", "ok", "typed the name at the prompt"),
    ]
    assert all(e["actor"].endswith("(cli)") and " on /dev/pts/" in e["actor"] for e in audit)


def test_opstui_audit_is_a_table_people_can_read(config: Path, env: dict[str, str]) -> None:
    opstui("-c", str(config), "action", "run", "drain", "--yes", cwd=config.parent, env=env)
    opstui("-c", str(config), "action", "run", "fail", "--yes", cwd=config.parent, env=env)
    opstui("-c", str(config), "action", "run", "purge-dead", "--yes", cwd=config.parent, env=env)

    table = opstui("-c", str(config), "audit", cwd=config.parent, env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["WHEN", "(UTC)", "RESULT", "ACTION", "WHO", "DETAIL"]
    drain, fail, purge = lines[1:]
    assert drain.split()[2:4] == ["ok", "drain"]
    assert " -c " in drain and "· exit 0 · " in drain and drain.endswith("· confirmation: --yes")
    assert fail.split()[2:4] == ["failed", "fail"] and "· exit 3 · " in fail
    assert purge.split()[2:4] == ["refused", "purge-dead"]
    assert purge.endswith("purge-dead is dangerous: it runs only when 'purge-dead' is typed")
    assert all("(cli, no tty)" in line for line in (drain, fail, purge))
    assert SECRET not in table.stdout

    last = json.loads(opstui("-c", str(config), "audit", "--json", "--limit", "2", cwd=config.parent, env=env).stdout)
    assert [e["action"] for e in last] == ["fail", "purge-dead"]
    assert last[0]["output"] == ["! boom"] and last[0]["exit_status"] == 3
    assert last[0]["at"].endswith("Z") and last[0]["kind"] == "command"


def test_audit_with_nothing_yet(tmp_path: Path) -> None:
    result = opstui("audit", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "no actions run or refused yet"
