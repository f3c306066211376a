"""The kinds of action a config defines: `command` (an argument list), `script` (modes) and `http` (a request)."""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opstui.actions.base import Action, Emit, Outcome, Parameter, Prepared, Target
from opstui.actions.runner import run_program
from opstui.config.actions import (
    PLACEHOLDER,
    ActionConfig,
    ActionsConfig,
    CommandActionConfig,
    HttpActionConfig,
    ProcessActionConfig,
    ScriptActionConfig,
)
from opstui.errors import ActionError
from opstui.redact import MASK, mask_url, redact
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.config import Config

HTTP_BODY_LIMIT = 64 * 1024
"""Bytes of a response body shown as output; the rest is read and dropped."""


def _common(config: ActionConfig, settings: ActionsConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "description": config.description,
        "key": config.key,
        "scope": config.scope,
        "rows": tuple(config.rows),
        "confirm": config.confirm,
        "dangerous": config.dangerous,
        "timeout": config.timeout or settings.timeout,
    }


class ProgramAction(Action):
    """What the command and script kinds share: a program run in a directory with extra environment."""

    def __init__(self, config: ProcessActionConfig, settings: ActionsConfig, *, base_dir: Path) -> None:
        super().__init__(**_common(config, settings))
        self.cwd = base_dir / config.cwd if config.cwd is not None else base_dir
        self.env = dict(config.env)
        self.public_env = dict(config.public_env)
        self.grace = settings.kill_grace

    def shown(self, argv: Sequence[str]) -> tuple[str, ...]:
        # Quoted as a shell would need it, so the line can be read (and pasted) unambiguously; placeholders of
        # `opstui action list` stay as written.
        joined = " ".join(arg if PLACEHOLDER.fullmatch(arg) else shlex.quote(arg) for arg in argv)
        lines = [redact(joined), f"in {self.cwd}"]
        env = [f"{name}={MASK}" for name in self.env] + [f"{n}={redact(v)}" for n, v in self.public_env.items()]
        if env:
            lines.append("with " + " ".join(env))
        lines.append(f"stopped after {format_duration(self.timeout)}")
        return tuple(lines)

    def prepared(self, argv: list[str]) -> Prepared:
        # Python buffers stdout in blocks when it is a pipe: unbuffered, a Python script's lines stream as they
        # are printed instead of all at the end (unless the action sets PYTHONUNBUFFERED itself).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.public_env, **self.env}
        return Prepared(
            shown=self.shown(argv), execute=partial(run_program, argv, cwd=self.cwd, env=env, grace=self.grace)
        )


class CommandAction(ProgramAction):
    kind = "command"

    def __init__(self, config: CommandActionConfig, settings: ActionsConfig, *, base_dir: Path) -> None:
        super().__init__(config, settings, base_dir=base_dir)
        self.command = tuple(config.command)

    def describe(self) -> tuple[str, ...]:
        return self.shown(self.command)

    def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        argv = []
        for arg in self.command:
            match = PLACEHOLDER.fullmatch(arg)
            if match is None:
                argv.append(arg)
            elif target is None:  # the config check makes this unreachable for configured actions
                raise ActionError(f"{self.name} needs a {match.group('scope')} row for {arg}")
            else:
                argv.append(target.value(match.group("field")))
        return self.prepared(argv)


class ScriptAction(ProgramAction):
    kind = "script"

    def __init__(self, config: ScriptActionConfig, settings: ActionsConfig, *, base_dir: Path) -> None:
        super().__init__(config, settings, base_dir=base_dir)
        self.script = config.script
        self.modes_with_value = tuple(config.modes_with_value)
        self.modes = tuple(config.modes) + self.modes_with_value

    def parameters(self) -> tuple[Parameter, ...]:
        mode = Parameter("mode", "the mode to run the script in", choices=self.modes)
        if not self.modes_with_value:
            return (mode,)
        value_help = f"the value after the mode {', '.join(self.modes_with_value)}"
        return mode, Parameter("value", value_help, when=("mode", self.modes_with_value))

    def describe(self) -> tuple[str, ...]:
        choices = [f"{mode} VALUE" if mode in self.modes_with_value else mode for mode in self.modes]
        first, *rest = self.shown([self.script])
        return (f"{first} {{{'|'.join(choices)}}}", *rest)

    def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        checked = self.check_params(params)
        return self.prepared([self.script, checked["mode"], *([checked["value"]] if "value" in checked else [])])


class HttpAction(Action):
    kind = "http"

    def __init__(self, config: HttpActionConfig, settings: ActionsConfig) -> None:
        super().__init__(**_common(config, settings))
        self.method = config.method
        self.url = config.url
        self.headers = dict(config.headers)
        self.body = config.body
        self.expect_status = tuple(config.expect_status)

    def describe(self) -> tuple[str, ...]:
        lines = [f"{self.method} {mask_url(self.url)}"]
        if self.headers:
            lines.append("headers " + " ".join(f"{name}: {MASK}" for name in self.headers))
        if self.body is not None:
            body = redact(json.dumps(self.body, ensure_ascii=False))
            lines.append(f"body {body if len(body) <= 200 else body[:200] + '...'}")
        lines.append(f"ok when the status is {self._expected()}")
        lines.append(f"stopped after {format_duration(self.timeout)}")
        return tuple(lines)

    def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        return Prepared(shown=self.describe(), execute=self._request)

    def _expected(self) -> str:
        return ", ".join(str(s) for s in self.expect_status) if self.expect_status else "2xx"

    async def _request(self, emit: Emit) -> Outcome:
        from opstui._httpx import httpx  # only configs with http actions pay for importing it

        shown_url = mask_url(self.url)
        started = time.monotonic()
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
                client.stream(self.method, self.url, headers=self.headers, json=self.body) as response,
            ):
                took = (time.monotonic() - started) * 1000
                emit(
                    "info",
                    f"{self.method} {shown_url} -> HTTP {response.status_code} {response.reason_phrase}"
                    f" in {took:.0f} ms",
                )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    if len(body) < HTTP_BODY_LIMIT:
                        body += chunk[: HTTP_BODY_LIMIT - len(body)]
                for line in body.decode("utf-8", errors="replace").splitlines():
                    emit("out", line)
                status = response.status_code
        except httpx.HTTPError as exc:
            return Outcome(ok=False, detail=f"{self.method} {shown_url}: {_http_problem(exc)}")
        ok = status in self.expect_status if self.expect_status else 200 <= status < 300
        return Outcome(ok=ok, detail=None if ok else f"HTTP {status} (expected {self._expected()})")


def _http_problem(exc: Exception) -> str:
    from opstui._httpx import httpx

    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({redact(str(exc)) or 'connection refused'})"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return redact(str(exc)) or type(exc).__name__


def configured_actions(config: Config) -> list[Action]:
    """Every action the config defines, each built by its kind."""
    settings = config.actions
    base_dir = config.path.parent.absolute() if config.path is not None else Path.cwd()
    actions: list[Action] = [CommandAction(c, settings, base_dir=base_dir) for c in settings.command]
    actions += [ScriptAction(c, settings, base_dir=base_dir) for c in settings.script]
    actions += [HttpAction(c, settings) for c in settings.http]
    return actions
