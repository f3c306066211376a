"""The headless parts never load Textual or Rich: the daemon must stay small and start fast on a VPS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEADLESS = [
    "opstui.engine",
    "opstui.sources",
    "opstui.sources.host",
    "opstui.sources.pm2",
    "opstui.sources.systemd",
    "opstui.sources.docker",
    "opstui.sources.processes",
    "opstui.sources.logs",
    "opstui.sources.checks",
    "opstui.sources.redis",
    "opstui.sources.postgres",
    "opstui.sources.dispatch",
    "opstui.sources.activity",
    "opstui.sources.http",
    "opstui._httpx",
    "opstui.daemon",
    "opstui.daemon.runner",
    "opstui.daemon.leader",
    "opstui.daemon.http",
    "opstui.daemon.metrics",
    "opstui.daemon.heartbeat",
    "opstui.state_postgres",
    "opstui.check",
    "opstui.config",
    "opstui.state",
    "opstui.cli",
    "opstui.demo",
    "opstui.actions",
    "opstui.actions.kinds",
    "opstui.actions.builtin",
    "opstui.actions.processes",
    "opstui.actions.queues",
    "opstui.actions.locks",
    "opstui.alerts",
    "opstui.notify",
    "opstui.report",
    "opstui.bot",
    "opstui.bot.commands",
]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_does_not_import_textual_or_rich(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} pulled in {result.stdout.strip()}"


def test_check_command_runs_without_textual(tmp_path: Path) -> None:
    code = (
        "import sys; from opstui.cli import main; status = main(['check', '--json']); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
        "print('LOADED:' + ','.join(bad), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stderr.strip().splitlines()[-1] == "LOADED:", result.stderr


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("sections", "loaded", "not_loaded"),
    [
        ("", [], ["redis", "asyncpg", "httpx"]),
        # The Redis source speaks RESP itself: redis-py (20 MB, half a second) is not loaded even to read Redis.
        ('[[redis]]\nurl = "redis://127.0.0.1:1/0"\n', [], ["redis", "asyncpg", "httpx"]),
        ('[[postgres]]\ndsn = "postgresql://u@127.0.0.1:1/db"\n', ["asyncpg"], ["redis", "httpx"]),
        ('[[health]]\nname = "api"\nurl = "http://127.0.0.1:1/health"\n', ["httpx"], ["redis", "asyncpg"]),
    ],
)
def test_a_config_imports_only_the_client_libraries_it_uses(
    tmp_path: Path, sections: str, loaded: list[str], not_loaded: list[str]
) -> None:
    """A config without PostgreSQL never pays for importing asyncpg, nor one without HTTP checks for httpx."""
    config = tmp_path / "opstui.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path}"\n[host]\nenabled = false\n{sections}')
    code = (
        "import sys, asyncio; from opstui.config import load_config; from opstui.engine import build_engine; "
        f"engine = build_engine(load_config({str(config)!r})); asyncio.run(engine.collect_once()); "
        "asyncio.run(engine.stop()); print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(result.stdout.strip().split(","))
    assert set(loaded) <= modules, result.stdout
    assert not set(not_loaded) & modules, f"imported {set(not_loaded) & modules} without needing them"
    # httpx's own CLI would bring in Rich (see opstui._httpx): the daemon must never load it.
    assert not {"rich", "textual"} & modules, f"loaded {sorted({'rich', 'textual'} & modules)}"
