"""The `opstui` command: the TUI by default, and the daemon, check, config and demo subcommands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from opstui.config import Config, load_config
from opstui.errors import ConfigError, OpsError
from opstui.redact import redact

if TYPE_CHECKING:
    from opstui.actions import Confirmation, Plan, Run
    from opstui.model import Snapshot
    from opstui.state import Store

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
  opstui action run recovery --arg mode=soft
                                 run a recovery action (asks first; --yes for scripts)
  opstui config check opstui.toml"""


class VersionAction(argparse.Action):
    """--version, reading the version only when asked (see opstui.__getattr__)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        import opstui

        print(f"opstui {opstui.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command (`opstui -c x check`, `opstui check -c x`);
    # --theme and --read-only only where they mean something (the dashboard, the demo, actions, the daemon).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS, help="the config file to use")
    theme = argparse.ArgumentParser(add_help=False)
    theme.add_argument("--theme", metavar="NAME", default=argparse.SUPPRESS, help="the TUI theme (overrides tui.theme)")
    read_only = argparse.ArgumentParser(add_help=False)
    read_only.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="turn every mutating action off (overrides general.read_only)",
    )
    parser = argparse.ArgumentParser(
        prog="opstui",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[common, theme, read_only],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, nargs=0, help="show the version and exit")
    parser.set_defaults(handler=cmd_tui)

    class Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
        def add_parser(
            self, name: str, *, also: Sequence[argparse.ArgumentParser] = (), **kwargs: object
        ) -> argparse.ArgumentParser:
            return super().add_parser(name, parents=[common, *also], **kwargs)  # type: ignore[arg-type,no-any-return]

    parser.register("action", "parsers", Commands)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    daemon = commands.add_parser(
        "daemon",
        also=[read_only],
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
        also=[theme, read_only],
        help="run opstui against a small simulated backend",
        description="Start a real Redis and PostgreSQL and a small crash-looping bot "
        "backend in a temporary directory, watch it, and tear it all "
        "down on exit.",
    )
    demo.add_argument("--headless", action="store_true", help="run the daemon instead of the TUI")
    demo.set_defaults(handler=cmd_demo)
    _add_action_commands(commands, Commands, read_only)

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
    from opstui.daemon import serve
    from opstui.logs import setup_logging

    config = _config(args)
    setup_logging(fmt=args.log_format, stream=sys.stdout)
    return serve(config, load=lambda: _config(args))


def cmd_check(args: argparse.Namespace) -> int:
    from opstui.check import EXIT_CODES, assess, check_once, render_json, render_text
    from opstui.logs import setup_logging

    config = _config(args)
    setup_logging(fmt="text", stream=sys.stderr, level=40)  # the output is the report; only errors on stderr
    snapshot = asyncio.run(check_once(config))
    print(render_json(snapshot, config.alerts) if args.json else render_text(snapshot))
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
            from opstui.daemon import serve
            from opstui.logs import setup_logging

            setup_logging(fmt="text", stream=sys.stdout)
            print(f"demo world in {world.root}; config {world.config_path}; Ctrl+C stops it all", flush=True)
            return serve(config)
        from opstui.tui import run_tui

        return run_tui(config, theme=args.theme, demo=world.root)


# --- actions and the audit log (opstui.actions) ---------------------------------------------------------------

ACTION_RUN_EPILOG = """\
An action that asks for confirmation shows exactly what will run and asks y/N on a terminal; without a
terminal (a script, cron) it is refused unless --yes is given. A dangerous action needs its name typed at
the prompt, or given in advance with --confirm NAME: --yes alone never runs it, so a habit or a copied
command line cannot run the wrong dangerous thing.

exit status: the action's own exit status; 124 timed out; 130 interrupted; 1 failed or declined;
2 refused (read-only, not confirmed, already running, bad arguments)."""


def _add_action_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    parsers: type,
    read_only: argparse.ArgumentParser,
) -> None:
    action = commands.add_parser(
        "action",
        help="list or run recovery actions",
        description="List or run the actions the config defines, and the built-ins for what it watches.",
    )
    action.register("action", "parsers", parsers)
    action_commands = action.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = action_commands.add_parser(
        "list", also=[read_only], help="each action, and what it would run (secrets masked)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(handler=cmd_action_list)
    run = action_commands.add_parser(
        "run",
        also=[read_only],
        help="run an action, streaming its output",
        description="Run an action and stream its output; exit with its exit status.",
        epilog=ACTION_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("name", metavar="NAME", help="the action (see `opstui action list`)")
    run.add_argument(
        "--arg",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        help="a row field (process.name=worker) or a parameter (mode=soft); repeatable",
    )
    run.add_argument("--yes", "-y", action="store_true", help="confirm without asking (not enough if dangerous)")
    run.add_argument("--confirm", metavar="NAME", help="confirm a dangerous action by giving its name")
    run.set_defaults(handler=cmd_action_run)

    audit = commands.add_parser(
        "audit",
        help="every action run or refused: who, what, when, result",
        description="Show the audit log of actions: runs, refusals and confirmations, newest last.",
    )
    audit.add_argument("--limit", "-n", type=int, default=20, metavar="N", help="how many entries (default 20)")
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    audit.set_defaults(handler=cmd_audit)


def cmd_action_list(args: argparse.Namespace) -> int:
    from opstui.actions import listing
    from opstui.actions.builtin import builtin_actions
    from opstui.actions.kinds import configured_actions

    config = _config(args)
    render = listing.render_json if args.json else listing.render_text
    print(render([*configured_actions(config), *builtin_actions(config)], read_only=config.general.read_only))
    return 0


def cmd_action_run(args: argparse.Namespace) -> int:
    from opstui.actions import Actions, Actor
    from opstui.errors import ActionError
    from opstui.state import StateStore

    config = _config(args)
    pairs: dict[str, str] = {}
    for item in args.arg:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ActionError(f"--arg takes FIELD=VALUE (process.name=worker, mode=soft); got {item!r}")
        pairs[field.strip()] = value
    snapshot: Snapshot | None = None
    store = StateStore.in_dir(config.state_dir())
    actions = Actions.from_config(config, store=store, snapshot=lambda: snapshot)
    actor = Actor.local("cli")
    with contextlib.closing(store), asyncio.Runner() as runner:
        if any("." in field for field in pairs):  # a row is named: find it in a fresh read of the sources
            snapshot = runner.run(_read_sources(config))
        try:
            plan = runner.run(actions.plan(args.name, actor=actor, args=pairs))
        except ActionError as exc:
            raise ActionError(f"refused: {exc}") from None
        print(f"{plan.action.name} will run:", *(f"  {line}" for line in plan.shown), sep="\n", file=sys.stderr)
        try:
            confirmation = _ask(plan, args)
        except (KeyboardInterrupt, EOFError):
            print(file=sys.stderr)
            runner.run(actions.decline(plan, "interrupted at the prompt"))
            return 130
        if confirmation is False:
            runner.run(actions.decline(plan, "answered no at the prompt"))
            print("not run", file=sys.stderr)
            return 1
        try:
            run = runner.run(actions.start(plan, confirmation))
        except ActionError as exc:
            hint = _confirmation_hint(plan, args) if confirmation is None else None
            raise ActionError(f"refused: {exc}" + (f"\n{hint}" if hint else "")) from None
        return runner.run(_follow(run))


def _ask(plan: Plan, args: argparse.Namespace) -> Confirmation | Literal[False] | None:
    """The confirmation the plan needs, from the flags or the terminal; None if there is none to give; False: no."""
    required = plan.requirement
    if required.kind == "none":
        return None
    if args.confirm is not None:
        return plan.confirmation("--confirm NAME", typed=args.confirm)
    if required.kind == "confirm" and args.yes:
        return plan.confirmation("--yes")
    if not sys.stdin.isatty() or args.yes:  # --yes with a dangerous action: refused, with the hint
        return None
    if required.kind == "typed":
        print(f"{plan.action.name} is dangerous.", file=sys.stderr)
        whose = "its name" if required.phrase == plan.action.name else "the name of what it acts on"
        typed = input(f"Type {whose} ({required.phrase}) to run it, or press Enter to cancel: ")
        return plan.confirmation("typed the name at the prompt", typed=typed) if typed.strip() else False
    answer = input("Run it? [y/N] ").strip().lower()
    return plan.confirmation("answered y at the prompt") if answer in ("y", "yes") else False


def _confirmation_hint(plan: Plan, args: argparse.Namespace) -> str | None:
    if plan.requirement.kind == "typed":
        phrase = shlex.quote(plan.requirement.phrase or "")
        return f"it is dangerous: --yes is not enough; pass --confirm {phrase} to run it"
    if plan.requirement.kind == "confirm" and not args.yes:
        return "no terminal to ask on: pass --yes to confirm"
    return None


async def _read_sources(config: Config) -> Snapshot:
    from opstui.engine import build_engine

    engine = build_engine(config)
    try:
        return await engine.collect_once()
    finally:
        await engine.stop()


async def _follow(run: Run) -> int:
    """Print the run's output as it comes (its stdout on ours, the rest on stderr); its exit status."""
    try:
        async for line in run.follow():
            if line.stream == "out":
                print(line.text, flush=True)
            else:
                print(("opstui: " if line.stream == "info" else "") + line.text, file=sys.stderr, flush=True)
    except asyncio.CancelledError:  # Ctrl+C: stop the action's whole process group, and record it
        run.cancel("interrupted with Ctrl+C")
    result = await run.wait()
    print(f"{run.name}: {result.summary}", file=sys.stderr)
    if result.result == "ok":
        return 0
    if result.result == "timeout":
        return 124
    if result.result == "cancelled":
        return 130
    if result.exit_status is not None:
        return result.exit_status if result.exit_status > 0 else 128 - result.exit_status
    return 1


def cmd_audit(args: argparse.Namespace) -> int:
    from opstui.actions.audit import AuditLog, render_json, render_text
    from opstui.errors import StateError
    from opstui.state import StateStore

    config = _config(args)
    with contextlib.closing(StateStore.in_dir(config.state_dir())) as store:
        log = AuditLog(store, keep=config.actions.audit_keep)
        with contextlib.suppress(StateError):  # tidying is a courtesy; reading must work on a read-only disk too
            log.tidy()
        entries = log.recent(args.limit)
    print(render_json(entries) if args.json else render_text(entries, timezone=config.general.timezone))
    return 0


# --- alerting commands


def _store(config: Config) -> Store:
    """Where alerting keeps silences, alert state and the outbox: with [daemon.ha], the daemons' shared database."""
    from opstui.state_postgres import alerting_store

    return alerting_store(config)


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
    from opstui.logs import setup_logging

    # Warnings from any command (check, action, notify, silence, ...) go to stderr through the redactor; the
    # daemon, the report, the demo and the TUI set up their own logging over this.
    setup_logging(fmt="text", stream=sys.stderr, level=logging.WARNING)
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
