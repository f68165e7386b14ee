"""The whole learning step in one call: actions -> dataset -> train -> evaluate -> MLflow -> registry.

Why a plain function: ``perfspec train`` runs it directly and the Prefect ``train`` flow runs the same
steps as separate tasks, so both produce identical run directories: the default run dir is
``runs/<run_name>`` for both (``perfspec.learn.training.run_name``), so each resumes the other's runs.
Re-running on the same ``out_dir`` resumes a crashed training instead of starting over, and a finished,
already logged training is neither logged nor registered again (see ``perfspec.learn.tracking``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfspec.learn.dataset import Dataset, build_dataset
from perfspec.learn.training import EpochCallback, TrainResult, run_name, train
from perfspec.settings import Settings


@dataclass
class TrainOutcome:
    """Where everything went, and how the LSTM compares with the baselines."""

    dataset: Dataset
    dataset_dir: Path
    run_dir: Path
    train_result: TrainResult
    metrics: dict[str, Any]
    run_id: str | None = None
    decision: Any = None  # perfspec.learn.tracking.PromotionDecision when MLflow is used

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"


def save_dataset(dataset: Dataset, datasets_dir: Path) -> Path:
    """Store the dataset under ``<datasets_dir>/<fingerprint12>/`` (once per fingerprint).

    ``datasets_dir`` is ``settings.paths.datasets_dir``; the ``build-dataset`` task calls this too.
    """
    target = Path(datasets_dir) / dataset.fingerprint[:12]
    try:
        existing = Dataset.load(target)
        if existing.fingerprint == dataset.fingerprint and (existing.has_names or not dataset.has_names):
            return target
    except Exception:  # absent or partial (or saved without the action names): (re)write it
        pass
    return dataset.save(target)


def default_run_dir(dataset: Dataset, settings: Settings) -> Path:
    """``<data_dir>/runs/<fingerprint12>-<train-settings-hash8>``, the same for the CLI and the flows."""
    return settings.paths.runs_dir / run_name(dataset.fingerprint, settings.train)


def train_from_actions(
    actions_file: Path,
    out_dir: Path | None,
    settings: Settings,
    *,
    use_mlflow: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainOutcome:
    """Build the dataset, train (or resume), evaluate against baselines, log and maybe promote.

    ``out_dir=None``: ``default_run_dir`` (known only once the dataset, hence its fingerprint, is built).
    """
    from perfspec.learn.evaluation import evaluate

    dataset = build_dataset(Path(actions_file), settings.dataset)
    dataset_dir = save_dataset(dataset, settings.paths.datasets_dir)
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(dataset, settings)
    result = train(dataset, settings.train, run_dir, on_epoch_end=on_epoch_end)
    metrics = evaluate(dataset, run_dir)
    outcome = TrainOutcome(dataset, dataset_dir, run_dir, result, metrics)
    if use_mlflow:
        from perfspec.learn.tracking import log_run, register_and_promote

        outcome.run_id = log_run(settings, dataset, run_dir, metrics)
        outcome.decision = register_and_promote(settings, outcome.run_id, metrics, run_dir=run_dir)
    return outcome
