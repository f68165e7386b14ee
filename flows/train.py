"""``train`` flow: train (resumable) -> evaluate against baselines -> log to MLflow -> promote."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow
from pydantic import PositiveInt

from flows.config import flow_settings, run_name
from flows.steps import run_step
from perfspec.errors import InputError
from tasks.learn import evaluate_model, log_run_task, promote_model, train_model
from tasks.records import TrainedRun


def dataset_fingerprint(dataset_dir: Path) -> str:
    meta = Path(dataset_dir) / "dataset.json"
    try:
        return str(json.loads(meta.read_text())["fingerprint"])
    except (OSError, ValueError, KeyError) as error:
        raise InputError(
            f"not a dataset directory: {dataset_dir} ({error})", hint="build one with the prepare flow"
        ) from error


@flow(name="train", description="Train the LSTM, evaluate it against baselines, track and promote it.")
def train(
    dataset_dir: Path,
    epochs: PositiveInt | None = None,
    data_dir: Path | None = None,
    fresh: bool = False,
) -> TrainedRun:
    """A re-run with the same dataset and settings resumes in the same run dir (``fresh`` starts anew)."""
    settings = flow_settings(data_dir, epochs)
    fingerprint = dataset_fingerprint(Path(dataset_dir))
    name = run_name(fingerprint, settings.train)
    if fresh:
        name += datetime.now(UTC).strftime("-%Y%m%dT%H%M%S")
    run_dir = str((settings.paths.runs_dir / name).resolve())
    dataset = str(Path(dataset_dir).resolve())

    trained = run_step(train_model, dataset_dir=dataset, run_dir=run_dir, settings=settings.train)
    metrics = run_step(evaluate_model, dataset_dir=dataset, run_dir=run_dir)
    run_id = run_step(log_run_task, settings=settings, dataset_dir=dataset, run_dir=run_dir, metrics=metrics)
    promotion = run_step(promote_model, settings=settings, run_id=run_id, metrics=metrics, run_dir=run_dir)
    return TrainedRun(
        train=trained,
        metrics=metrics,
        run_id=run_id,
        tracking_uri=settings.mlflow_tracking_uri,
        promotion=promotion,
    )
