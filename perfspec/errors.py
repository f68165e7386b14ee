"""User-facing errors: raised by the library, printed by the CLI as one clear line (no traceback).

Each carries what went wrong and what to do; ``exit_code`` lets scripts tell bad input (2) from
environment problems (3).
"""

from __future__ import annotations


class PerfspecError(Exception):
    """Base: a problem the user can fix. ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class InputError(PerfspecError):
    """The input data is missing, empty, or not what the command expects. Retrying cannot help."""

    exit_code = 2


class EnvironmentProblem(PerfspecError):
    """Something outside the input is wrong (cluster unreachable, helm missing, server down)."""

    exit_code = 3
