"""CLI commands of this layer (see perfspec/cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
