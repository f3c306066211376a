"""Finding, reading and validating the config file, with errors that name the file, line and key."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from opstui.errors import ConfigError
from opstui.redact import redact

ENV_VAR = "OPSTUI_CONFIG"
M = TypeVar("M", bound=BaseModel)
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def discover(
    explicit: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The config file to use: `--config`, then $OPSTUI_CONFIG, then ./opstui.toml, then the user config dir.

    An explicitly named file must exist; the implicit places are simply skipped when absent, and no config
    at all is fine (opstui then watches the local host).
    """
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return _must_exist(Path(explicit), "--config")
    if environ.get(ENV_VAR):
        return _must_exist(Path(environ[ENV_VAR]), f"${ENV_VAR}")
    local = (cwd or Path.cwd()) / "opstui.toml"
    if local.is_file():
        return local
    from platformdirs import user_config_path

    user = user_config_path("opstui", appauthor=False) / "config.toml"
    return user if user.is_file() else None


def _must_exist(path: Path, given_by: str) -> Path:
    path = path.expanduser()
    if path.is_dir():
        raise ConfigError(f"is a directory, not a config file (given by {given_by})", file=str(path))
    if not path.is_file():
        raise ConfigError(f"no such file (given by {given_by})", file=str(path))
    return path


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", file=str(path)) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), path) from None


def _syntax_error(message: str, path: Path) -> ConfigError:
    # tomllib says "Expected '=' after a key in a key/value pair (at line 3, column 9)".
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        problem = message[: match.start()].strip()
        return ConfigError(
            f"TOML syntax error at column {match.group(2)}: {problem}", file=str(path), line=int(match.group(1))
        )
    return ConfigError(f"TOML syntax error: {message}", file=str(path))


def interpolate(data: Any, *, environ: Mapping[str, str], file: str, text: str, loc: tuple[str | int, ...] = ()) -> Any:
    """Replace `${VAR}` (or `${VAR:-default}`) in every string; `$$` is a literal `$`."""
    if isinstance(data, dict):
        return {k: interpolate(v, environ=environ, file=file, text=text, loc=(*loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, environ=environ, file=file, text=text, loc=(*loc, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)",
            file=file,
            key=format_loc(loc),
            line=locate(text, loc),
        )

    return _INTERPOLATION.sub(substitute, data)


def validate(model: type[M], data: dict[str, Any], *, file: str, text: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(model, err, file=file, text=text) for err in exc.errors()]
        raise ConfigError.of(problems) from None


def _describe(model: type[BaseModel], err: Any, *, file: str, text: str) -> ConfigError:
    loc = tuple(part for part in err["loc"] if not _is_union_tag(part))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        known = _fields_at(model, loc[:-1])
        hint = difflib.get_close_matches(str(key), known, n=1)
        problem = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        if known and not hint:
            problem += f"; known keys here: {', '.join(sorted(known))}"
    elif kind == "missing":
        problem = "required key is missing"
    else:
        message = err["msg"].removeprefix("Value error, ")
        shown = err.get("input")
        problem = message
        if shown is not None and not isinstance(shown, dict | list) and kind not in ("value_error", "assertion_error"):
            problem += f" (got {redact(repr(shown))})"
    return ConfigError(problem, file=file, key=format_loc(loc), line=locate(text, loc))


def _is_union_tag(part: object) -> bool:
    # pydantic puts the chosen union member or a function name into loc ("function-after[...]", "list[...]").
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed at a key path (as written in TOML: `for`, not `for_`), for "did you mean" hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if get_origin(current) is dict:
            args = get_args(current)
            current = args[-1] if args else None
        elif isinstance(part, int):
            continue  # an element of an array of tables: _unwrap already stepped into the list
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {field.alias or name: field for name, field in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[str(part)].annotation
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X (the first model in a union), Annotated[X, ...] -> X."""
    for _ in range(5):
        origin = get_origin(annotation)
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin in (list, tuple) and args:
            annotation = args[0]
        elif origin is not None and origin is not dict and args:
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else args[0]
        else:
            break
    return annotation


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a key path in TOML text; None when the path cannot be found."""
    lines = _line_index(text)
    for end in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each concrete key path (`("redis", 0, "queues", 1, "kind")`) to the line that sets it."""
    index: dict[tuple[str | int, ...], int] = {}
    counters: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            names = _split_key(header.group(2))
            table = _resolve_table(names, table_is_array=header.group(1) == "[[", counters=counters, index=index)
            index.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            index.setdefault((*table, *_split_key(key.group(1))), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote
    return index


def _resolve_table(
    names: list[str],
    *,
    table_is_array: bool,
    counters: dict[tuple[str | int, ...], int],
    index: dict[tuple[str | int, ...], int],
) -> tuple[str | int, ...]:
    # Every earlier array of tables on the path resolves to its latest element, as TOML itself does.
    path: tuple[str | int, ...] = ()
    for depth, name in enumerate(names):
        path = (*path, name)
        last = depth == len(names) - 1
        if last and table_is_array:
            counters[path] = counters.get(path, -1) + 1
            path = (*path, counters[path])
        elif path in counters:
            path = (*path, counters[path])
    return path


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r"""(?:"[^"]*"|'[^']*'|[^.]+)""", key)]
