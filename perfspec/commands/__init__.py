"""CLI subcommands, one module per layer; the options several of them share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DATA_DIR_HELP = (
    "Data dir: datasets, runs and the MLflow store (<data dir>/mlflow/mlflow.db) are there "
    "(default: PERFSPEC_PATHS__DATA_DIR, else ./perfspec-data)."
)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]


def use_data_dir(data_dir: Path | None) -> None:
    """``--data-dir`` over PERFSPEC_PATHS__DATA_DIR for this process and what it starts (threads, flows,
    subprocesses): the one settings object reads it again."""
    if data_dir is None:
        return
    from perfspec.settings import get_settings

    os.environ["PERFSPEC_PATHS__DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
