"""The ``perfspec`` command line: one Typer app, subcommands registered by ``perfspec.commands.*``.

Why this shape: each layer owns its commands in its own module; this file only assembles them and
turns ``PerfspecError`` into a one-line message and an exit code instead of a traceback. Heavy
imports (TensorFlow, MLflow, Prefect) happen inside commands so ``perfspec --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from perfspec.errors import PerfspecError
from perfspec.runtime import apply_quiet_defaults

# Telemetry off and nothing waiting on the network, before any library is imported.
apply_quiet_defaults()

app = typer.Typer(
    name="perfspec",
    help="Learn to predict the next Kubernetes API actions from audit logs (PerfSPEC learning phase).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Learn to predict the next Kubernetes API actions from audit logs (PerfSPEC learning phase).

    Typical order: clean -> actions -> train -> predict, or all at once with `pipeline`.
    """


def _register_commands() -> None:
    from perfspec.commands import collect, data, learn, live, orchestrate

    for module in (data, learn, live, orchestrate, collect):
        module.register(app)


def main() -> None:
    _register_commands()
    try:
        app()
    except PerfspecError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
