"""The `opstui` command: the TUI by default, and the daemon, check, config and demo subcommands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opstui import __version__
from opstui.config import Config, load_config
from opstui.errors import ConfigError, OpsError
from opstui.redact import redact

if TYPE_CHECKING:
    from opstui.state import StateStore

DESCRIPTION = """\
A terminal ops monitor for bots and small backends: process restarts, queue depth, memory, the leader
lock, report dispatch counts and health checks, live, with recovery actions a keypress away.

Run with no command to open the dashboard."""

EPILOG = """\
config: --config, then $OPSTUI_CONFIG, then ./opstui.toml, then ~/.config/opstui/config.toml;
        with none, opstui watches this host. See config.example.toml.
exit status: 0 ok, 1 warning, 2 critical or a config error.

examples:
  opstui demo                    see every pane live against a small simulated backend
  opstui check --json | jq .     one pass over every source, for scripts and cron
  opstui daemon                  alerts and reports, no UI (run it under systemd or PM2)
  opstui config check opstui.toml"""


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command (`opstui -c x check`, `opstui check -c x`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS, help="the config file to use")
    common.add_argument(
        "--theme", metavar="NAME", default=argparse.SUPPRESS, help="the TUI theme (overrides tui.theme)"
    )
    common.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="turn every mutating action off (overrides general.read_only)",
    )
    parser = argparse.ArgumentParser(
        prog="opstui",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"opstui {__version__}")
    parser.set_defaults(handler=cmd_tui)

    class Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
        def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
            return super().add_parser(name, parents=[common], **kwargs)  # type: ignore[arg-type,no-any-return]

    parser.register("action", "parsers", Commands)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    daemon = commands.add_parser(
        "daemon",
        help="run checks, alerts and reports with no UI",
        description="Run the engine, alerts, reports and the Telegram bot with no UI, until SIGTERM or Ctrl+C.",
    )
    daemon.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="log lines on stdout (default: json, for journald and PM2)",
    )
    daemon.set_defaults(handler=cmd_daemon)

    check = commands.add_parser(
        "check",
        help="one pass over every source; exit 0 ok, 1 warning, 2 critical",
        description="Read every source once and print what was found.",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    check.set_defaults(handler=cmd_check)

    config = commands.add_parser(
        "config", help="validate or show the config", description="Validate or show the config."
    )
    config.register("action", "parsers", Commands)
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND", required=True)
    config_check = config_commands.add_parser("check", help="validate a config file; exit 2 with the reason")
    config_check.add_argument(
        "path", nargs="?", metavar="PATH", help="the file to check (default: the one opstui would use)"
    )
    config_check.set_defaults(handler=cmd_config_check)
    config_show = config_commands.add_parser("show", help="print the effective config, secrets masked")
    config_show.set_defaults(handler=cmd_config_show)

    demo = commands.add_parser(
        "demo",
        help="run opstui against a small simulated backend",
        description="Start a real Redis and PostgreSQL and a small crash-looping bot "
        "backend in a temporary directory, watch it, and tear it all "
        "down on exit.",
    )
    demo.add_argument("--headless", action="store_true", help="run the daemon instead of the TUI")
    demo.set_defaults(handler=cmd_demo)

    # --- alerting: silences, notifications, the daily report (opstui.alerts, opstui.notify, opstui.report)
    silence = commands.add_parser(
        "silence",
        help="mute alert notifications for a while, or list and end silences",
        description="Mute notifications of alerts matching PATTERN (a glob over the alert's key, rule or name: "
        "'worker', 'restart_loop', 'queue_depth:*', '*') for DURATION ('30m', '2h'). The alerts are still "
        "shown and counted by `opstui check`. With no arguments, list the active silences.",
    )
    silence.add_argument("pattern", nargs="?", help="what to silence")
    silence.add_argument("duration", nargs="?", help="for how long, e.g. 30m, 2h, 1d")
    silence.add_argument("-m", "--comment", default="", help="why (shown with the silence)")
    silence.add_argument("--remove", metavar="ID|PATTERN", help="end a silence now, by id or by its pattern")
    silence.set_defaults(handler=cmd_silence)

    notify = commands.add_parser("notify", help="Telegram notifications", description="Telegram notifications.")
    notify.register("action", "parsers", Commands)
    notify_commands = notify.add_subparsers(title="commands", metavar="COMMAND", required=True)
    notify_test = notify_commands.add_parser(
        "test", help="send a test message and print exactly what Telegram answered; exit 2 if it failed"
    )
    notify_test.set_defaults(handler=cmd_notify_test)

    report = commands.add_parser(
        "report",
        help="print the daily report now (--send: also send it to Telegram)",
        description="Read every source once and print the daily report over the last 24 hours.",
    )
    report.add_argument("--send", action="store_true", help="also send it to the Telegram chat")
    report.set_defaults(handler=cmd_report)
    return parser


def _config(args: argparse.Namespace, path: str | None = None) -> Config:
    config = load_config(path or args.config)
    if args.read_only and not config.general.read_only:
        config = config.model_copy(update={"general": config.general.model_copy(update={"read_only": True})})
    return config


def cmd_tui(args: argparse.Namespace) -> int:
    config = _config(args)
    from opstui.tui import run_tui

    return run_tui(config, theme=args.theme)


def cmd_daemon(args: argparse.Namespace) -> int:
    from opstui.daemon import run_daemon
    from opstui.logs import setup_logging

    config = _config(args)
    setup_logging(fmt=args.log_format, stream=sys.stdout)
    return asyncio.run(run_daemon(config))


def cmd_check(args: argparse.Namespace) -> int:
    from opstui.check import EXIT_CODES, assess, check_once, render_json, render_text
    from opstui.logs import setup_logging

    config = _config(args)
    setup_logging(fmt="text", stream=sys.stderr, level=40)  # the output is the report; only errors on stderr
    snapshot = asyncio.run(check_once(config))
    print(render_json(snapshot) if args.json else render_text(snapshot))
    level, _ = assess(snapshot)
    return EXIT_CODES[level]


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _config(args, args.path)
    where = str(config.path) if config.path else "no config file found; the defaults"
    print(f"{where}: ok")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from opstui.config import render_config

    print(render_config(_config(args)), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from opstui.demo import DemoWorld

    with DemoWorld() as world:
        config = load_config(world.config_path)
        if args.headless:
            from opstui.daemon import run_daemon
            from opstui.logs import setup_logging

            setup_logging(fmt="text", stream=sys.stdout)
            print(f"demo world in {world.root}; config {world.config_path}; Ctrl+C stops it all", flush=True)
            return asyncio.run(run_daemon(config))
        from opstui.tui import run_tui

        return run_tui(config, theme=args.theme, demo=world.root)


# --- alerting commands


def _store(config: Config) -> StateStore:
    from opstui.state import StateStore

    return StateStore.in_dir(config.state_dir())


def _who() -> str:
    import getpass

    try:
        tty = os.ttyname(0)
    except OSError:
        tty = "no tty"
    return f"cli {getpass.getuser()} ({tty})"


def cmd_silence(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from opstui.alerts import active_silences, silence, unsilence

    config = _config(args)
    tz = ZoneInfo(config.general.timezone)
    store = _store(config)
    try:
        if args.remove:
            which: int | str = int(args.remove) if args.remove.isdigit() else args.remove
            ended = unsilence(store, which)
            if not ended:
                print(f"opstui: no active silence is {args.remove!r}; `opstui silence` lists them", file=sys.stderr)
                return 2
            for gone in ended:
                print(f"ended {gone.describe(tz)}")
            return 0
        if args.pattern is None:
            active = active_silences(store)
            for item in active:
                print(item.describe(tz))
            if not active:
                print("no active silences")
            return 0
        if args.duration is None:
            print("opstui: say for how long, e.g. `opstui silence worker 2h`", file=sys.stderr)
            return 2
        made = silence(store, args.pattern, args.duration, by=_who(), comment=args.comment)
        print(made.describe(tz))
        return 0
    finally:
        store.close()


def cmd_notify_test(args: argparse.Namespace) -> int:
    from opstui.notify import send_test

    config = _config(args)
    store = _store(config)
    try:
        ok, answers = asyncio.run(send_test(config, store))
    finally:
        store.close()
    for answer in answers:
        print(redact(answer), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 2


def cmd_report(args: argparse.Namespace) -> int:
    from opstui.check import check_once
    from opstui.notify import send_now
    from opstui.notify.render import to_plain
    from opstui.report import build_report, report_timezone

    config = _config(args)
    snapshot = asyncio.run(check_once(config))
    store = _store(config)
    try:
        lines = build_report(snapshot, store, tz=report_timezone(config))
        print(to_plain("\n".join(lines)))
        if not args.send:
            return 0
        ok, answers = asyncio.run(send_now(config, store, lines))
    finally:
        store.close()
    for answer in answers:
        print(redact(answer), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("config", None), ("theme", None), ("read_only", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"opstui: config error: {line}", file=sys.stderr)
        return 2
    except OpsError as exc:
        print(f"opstui: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The console script: exit with main()'s status; a closed stdout (`| head`) is not an error."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 0
    sys.exit(status)


if __name__ == "__main__":
    entry()
