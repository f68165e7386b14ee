"""Learning tasks: score the counts models, train one configuration (CV folds + hold-out), the mixture,
the comparison, MLflow logging and the champion decision — thin wrappers over ``perfspec.learn``.

Training is not retried by Prefect (its failures are rarely transient); a crashed training resumes from
its checkpoints when the flow is re-run, because the run dir is derived from the dataset fingerprint and
the settings, and every step persists what it scored. MLflow calls are retried: a tracking server can be
briefly unreachable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from perfspec.learn.selection import ModelScores
from perfspec.settings import SelectionSettings, Settings
from tasks.policy import perfspec_task
from tasks.records import PromotionOutput, ScoredModel


def _scored(scores: ModelScores, run_dir: str) -> ScoredModel:
    """The task's record of a ``perfspec.learn.selection.ModelScores`` the library just returned."""
    from perfspec.learn.scoring import topk_from_ranks
    from perfspec.learn.selection import cv_summary

    if scores.test_ranks is None:
        raise ValueError(f"{scores.name}: scored without the hold-out ranks a task records")
    cv = cv_summary(scores)["top5"]["mean"] if scores.fold_ranks else None
    return ScoredModel(
        name=scores.name,
        family=scores.family,
        run_dir=run_dir,
        test_top5=topk_from_ranks(scores.test_ranks)["top5"],
        cv_top5_mean=cv,
        info={k: v for k, v in scores.info.items() if k != "config"},
    )


@perfspec_task("score-baselines", timeout="task", transient=False)
def score_baselines(dataset_dir: str, run_dir: str, selection: SelectionSettings) -> ScoredModel:
    """Most-frequent and the n-gram (order chosen by CV) on the folds and the hold-out."""
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.experiment import score_counts

    return _scored(score_counts(Dataset.load(Path(dataset_dir)), Path(run_dir), selection, print), run_dir)


def _progress_callback(name: str, total_epochs: int) -> Any:
    """An ``on_epoch_end`` that keeps a Prefect progress artifact at ``epoch / epochs``."""
    from uuid import UUID

    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = create_progress_artifact(
        progress=0.0, key="training-progress", description=f"Training {name} (hold-out): epochs done / epochs"
    )
    if not isinstance(artifact_id, UUID):  # Prefect's async_dispatch: a coroutine only in async code
        raise TypeError(f"create_progress_artifact gave {type(artifact_id).__name__}, not a UUID (async?)")

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in logs.items())
        update_progress_artifact(
            artifact_id=artifact_id,
            progress=min(100.0, 100.0 * epoch / total_epochs),
            description=f"Training {name}: epoch {epoch}/{total_epochs} ({shown})",
        )
        print(f"{name} epoch {epoch}/{total_epochs}: {shown}")

    return on_epoch_end


@perfspec_task("train-model", timeout="train", transient=False)
def train_model(
    dataset_dir: str, run_dir: str, config: dict[str, Any], selection: SelectionSettings
) -> ScoredModel:
    """One neural configuration on every CV fold and the hold-out; resumes from its checkpoints."""
    from perfspec.learn.configs import ModelConfig
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.experiment import score_neural

    model = ModelConfig.from_dict(config)
    callback = _progress_callback(model.name, int(config["params"].get("epochs", 1)))
    scores = score_neural(Dataset.load(Path(dataset_dir)), model, Path(run_dir), selection, print, callback)
    return _scored(scores, run_dir)


@perfspec_task("score-mixture", timeout="task", transient=False)
def score_mixture_task(
    dataset_dir: str, run_dir: str, configs: list[dict[str, Any]], selection: SelectionSettings
) -> ScoredModel:
    """The best of the scored neural ``configs`` interpolated with the n-gram (weight fitted on each
    validation part)."""
    from perfspec.learn.configs import ModelConfig
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.experiment import score_best_mixture

    models = [ModelConfig.from_dict(config) for config in configs]
    scores = score_best_mixture(Dataset.load(Path(dataset_dir)), models, Path(run_dir), selection, print)
    return _scored(scores, run_dir)


@perfspec_task("evaluate-model", timeout="task", transient=False)
def evaluate_model(dataset_dir: str, run_dir: str, settings: Settings, names: list[str]) -> dict[str, Any]:
    """Compare what was scored; write ``metrics.json``, plots, CSVs; install the candidate's bundle."""
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.experiment import finish

    return finish(Dataset.load(Path(dataset_dir)), Path(run_dir), settings, names)


@perfspec_task("log-run", timeout="task", transient=True)
def log_run_task(
    settings: Settings, dataset_dir: str, run_dir: str, metrics: dict[str, Any], sweep: bool = False
) -> str:
    """One MLflow run (a sweep: the parent, then one child per model); returns the (parent) run id.

    Safe to retry and to re-run: the run recorded in ``<run_dir>/mlflow.json`` is returned while it
    still exists and logged these results; children already logged are not logged again.
    """
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.sweep import log_children, sweep_title
    from perfspec.learn.tracking import log_run

    dataset = Dataset.load(Path(dataset_dir))
    if not sweep:
        return log_run(settings, dataset, Path(run_dir), metrics)
    run_id = log_run(
        settings,
        dataset,
        Path(run_dir),
        metrics,
        title=sweep_title(metrics, len(metrics["models"])),
        extra_tags={"perfspec.kind": "sweep"},
    )
    log_children(settings, metrics, run_id)
    return run_id


@perfspec_task("promote-model", timeout="task", transient=True)
def promote_model(
    settings: Settings, run_id: str, metrics: dict[str, Any], run_dir: str | None = None
) -> PromotionOutput:
    """Register the candidate; move ``@champion`` only if it beats the champion beyond noise."""
    from perfspec.learn.promotion import register_and_promote

    decision = register_and_promote(settings, run_id, metrics, run_dir=Path(run_dir) if run_dir else None)
    as_dict = _as_dict(decision)
    return PromotionOutput(run_id=run_id, promoted=bool(as_dict.get("promoted", False)), decision=as_dict)


def _as_dict(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raw = dataclasses.asdict(value)
    elif isinstance(value, dict):
        raw = dict(value)
    else:
        raw = {"decision": str(value)}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}
