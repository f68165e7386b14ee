"""The whole learning step in one call: actions -> dataset -> train -> evaluate -> MLflow -> registry.

Why a plain function: ``perfspec train`` runs it directly and the Prefect ``train`` flow runs the same
steps as separate tasks, so both produce identical run directories. Re-running on the same ``out_dir``
resumes a crashed training instead of starting over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfspec.dataset import Dataset, build_dataset
from perfspec.settings import Settings
from perfspec.training import EpochCallback, TrainResult, train


@dataclass
class TrainOutcome:
    """Where everything went, and how the LSTM compares with the baselines."""

    dataset: Dataset
    dataset_dir: Path
    run_dir: Path
    train_result: TrainResult
    metrics: dict[str, Any]
    run_id: str | None = None
    decision: Any = None  # perfspec.tracking.PromotionDecision when MLflow is used

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"


def save_dataset(dataset: Dataset, settings: Settings) -> Path:
    """Store the dataset under ``<data_dir>/datasets/<fingerprint12>/`` (once per fingerprint)."""
    target = settings.paths.datasets_dir / dataset.fingerprint[:12]
    try:
        if Dataset.load(target).fingerprint == dataset.fingerprint:
            return target
    except Exception:  # absent or partial: (re)write it
        pass
    return dataset.save(target)


def train_from_actions(
    actions_file: Path,
    out_dir: Path,
    settings: Settings,
    *,
    use_mlflow: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainOutcome:
    """Build the dataset, train (or resume), evaluate against baselines, log and maybe promote."""
    from perfspec.evaluation import evaluate

    dataset = build_dataset(Path(actions_file), settings.dataset)
    dataset_dir = save_dataset(dataset, settings)
    result = train(dataset, settings.train, Path(out_dir), on_epoch_end=on_epoch_end)
    metrics = evaluate(dataset, Path(out_dir))
    outcome = TrainOutcome(dataset, dataset_dir, Path(out_dir), result, metrics)
    if use_mlflow:
        from perfspec.tracking import log_run, register_and_promote

        outcome.run_id = log_run(settings, dataset, Path(out_dir), metrics)
        outcome.decision = register_and_promote(settings, outcome.run_id, metrics)
    return outcome
