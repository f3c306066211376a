"""How the actions, defined and built in, are listed for people and scripts (`opstui action list`, /recover)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opstui.actions.base import Action
from opstui.units import format_duration

READ_ONLY_NOTE = "read-only mode is on: every action is refused"
NONE_DEFINED = (
    "no actions: the built-ins (restart, queue-move, lock-release, ...) come with the processes, Redis queues "
    "and locks the config watches, and none are defined; add [[actions.command]], [[actions.script]] or "
    "[[actions.http]] (see config.example.toml)"
)


def render_text(actions: Sequence[Action], *, read_only: bool) -> str:
    """One block per action: name and settings, its description, and what it would run (secrets masked)."""
    lines = [READ_ONLY_NOTE, ""] if read_only else []
    if not actions:
        return "\n".join([*lines, NONE_DEFINED])
    for action in actions:
        settings = [action.kind, action.scope + (f": {', '.join(action.rows)}" if action.rows else "")]
        if action.key:
            settings.append(f"key {action.key}")
        settings.append(action.requirement(None).text)
        lines.append(f"{action.name}  ({', '.join(settings)})")
        if action.description:
            lines.append(f"    {action.description}")
        first, *rest = action.describe()
        lines.append(f"    runs: {first}")
        if rest:
            lines.append(f"          {' · '.join(rest)}")
    return "\n".join(lines)


def render_json(actions: Sequence[Action], *, read_only: bool) -> str:
    return json.dumps({"read_only": read_only, "actions": [_as_json(a) for a in actions]}, indent=2, ensure_ascii=False)


def _as_json(action: Action) -> dict[str, Any]:
    requirement = action.requirement(None)
    return {
        "name": action.name,
        "kind": action.kind,
        "description": action.description,
        "scope": action.scope,
        "rows": list(action.rows),
        "key": action.key,
        "confirm": requirement.kind,
        "dangerous": action.dangerous,
        "timeout": format_duration(action.timeout),
        "runs": list(action.describe()),
        "parameters": [
            {
                "name": p.name,
                "help": p.help,
                "choices": list(p.choices),
                "when": {p.when[0]: list(p.when[1])} if p.when else None,
            }
            for p in action.parameters()
        ],
    }
