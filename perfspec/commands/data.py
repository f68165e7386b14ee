"""CLI commands of this layer (see perfspec/cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    register_version(app)


def _version() -> None:
    """Print the perfspec version."""
    from perfspec import __version__

    typer.echo(__version__)


def register_version(app: typer.Typer) -> None:
    app.command("version")(_version)
