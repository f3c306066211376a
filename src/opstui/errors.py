"""The exception tree: every error opstui raises on purpose carries a message a person can act on."""

from __future__ import annotations


class OpsError(Exception):
    """Base of every error opstui raises on purpose; `str()` is the message shown to the user."""


class ConfigError(OpsError):
    """The configuration cannot be used: names the file, the key path and the problem."""

    def __init__(
        self, problem: str, *, file: str | None = None, key: str | None = None, line: int | None = None
    ) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.line = line
        self.also: list[ConfigError] = []
        super().__init__(problem)

    @classmethod
    def of(cls, problems: list[ConfigError]) -> ConfigError:
        """One error that reports several problems, one line each."""
        first = problems[0]
        first.also = problems[1:]
        return first

    @property
    def line_text(self) -> str:
        where = self.file or "config"
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        return f"{where}: {self.problem}"

    def __str__(self) -> str:
        return "\n".join([self.line_text, *(other.line_text for other in self.also)])


class SourceError(OpsError):
    """A source could not read its system; the engine turns it into an error status, never a crash."""


class SourceTimeout(SourceError):
    """A source did not answer within its timeout."""


class SourceUnavailable(SourceError):
    """The system behind a source refused, was unreachable, or rejected our credentials."""


class NotifyError(OpsError):
    """A notification could not be delivered; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)


class ActionError(OpsError):
    """A recovery action was refused or failed to start."""


class StateError(OpsError):
    """The state database cannot be opened or written (read-only disk, locked, corrupted)."""
