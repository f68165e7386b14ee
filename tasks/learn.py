"""Learning tasks: train (resumable), evaluate, log to MLflow, register + promote.

Training is not retried by Prefect (its failures are rarely transient); a crashed training resumes from
its checkpoints when the flow is re-run, because the run dir is derived from the dataset fingerprint and
the training settings. MLflow calls are retried: a tracking server can be briefly unreachable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from perfspec.settings import Settings, TrainSettings, get_settings
from tasks.policy import perfspec_task
from tasks.records import PromotionOutput, TrainOutput

_cfg = get_settings().prefect


def _progress_callback(total_epochs: int, run_name: str) -> Any:
    """An ``on_epoch_end`` that keeps a Prefect progress artifact at ``epoch / epochs``."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = create_progress_artifact(
        progress=0.0, key="training-progress", description=f"Training {run_name}: epochs done / epochs"
    )

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in logs.items())
        update_progress_artifact(
            artifact_id=artifact_id,
            progress=min(100.0, 100.0 * epoch / total_epochs),
            description=f"Training {run_name}: epoch {epoch}/{total_epochs} ({shown})",
        )
        print(f"epoch {epoch}/{total_epochs}: {shown}")

    return on_epoch_end


@perfspec_task("train-model", timeout_seconds=_cfg.train_timeout_seconds, transient=False)
def train_model(dataset_dir: str, run_dir: str, settings: TrainSettings) -> TrainOutput:
    """Train the LSTM into ``run_dir``; resumes from the checkpoints a crashed run left there."""
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.training import train

    dataset = Dataset.load(Path(dataset_dir))
    callback = _progress_callback(settings.epochs, Path(run_dir).name)
    result = train(dataset, settings, Path(run_dir), on_epoch_end=callback)
    return TrainOutput(
        run_dir=str(result.out_dir),
        model_path=str(result.model_path),
        epochs_done=result.epochs_done,
        best_epoch=result.best_epoch,
        best_val_loss=float(result.best_val_loss),
        resumed_from=result.resumed_from,
        epochs_this_call=result.epochs_this_call,
        stopped_early=result.stopped_early,
        train_seconds=float(result.train_seconds),
    )


@perfspec_task("evaluate-model", timeout_seconds=_cfg.task_timeout_seconds, transient=False)
def evaluate_model(dataset_dir: str, run_dir: str) -> dict[str, Any]:
    """LSTM vs baselines on the test split; writes ``metrics.json`` and plots into ``run_dir``."""
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.evaluation import evaluate

    return evaluate(Dataset.load(Path(dataset_dir)), Path(run_dir))


@perfspec_task("log-run", timeout_seconds=_cfg.task_timeout_seconds, transient=True)
def log_run_task(settings: Settings, dataset_dir: str, run_dir: str, metrics: dict[str, Any]) -> str:
    """One MLflow run with params, per-epoch metrics, artifacts and the model; returns its run id.

    Safe to retry and to re-run: the run recorded in ``<run_dir>/mlflow.json`` is returned while it
    still exists and logged this training; a failed attempt deletes its partial run.
    """
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.tracking import log_run

    return log_run(settings, Dataset.load(Path(dataset_dir)), Path(run_dir), metrics)


@perfspec_task("promote-model", timeout_seconds=_cfg.task_timeout_seconds, transient=True)
def promote_model(
    settings: Settings, run_id: str, metrics: dict[str, Any], run_dir: str | None = None
) -> PromotionOutput:
    """Register the run's model; move ``@champion`` only if it beats the champion (same fingerprint).

    Safe to retry: the version already registered for ``run_id`` is reused (and its decision returned).
    """
    from perfspec.learn.tracking import register_and_promote

    decision = register_and_promote(settings, run_id, metrics, run_dir=Path(run_dir) if run_dir else None)
    as_dict = _as_dict(decision)
    return PromotionOutput(run_id=run_id, promoted=bool(as_dict.get("promoted", False)), decision=as_dict)


def _as_dict(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raw = dataclasses.asdict(value)
    elif hasattr(value, "model_dump"):
        raw = value.model_dump(mode="json")
    elif isinstance(value, dict):
        raw = dict(value)
    else:
        raw = {"decision": str(value)}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}
