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


class _Progress:
    """The ``training-progress`` artifact of one neural configuration: ``epoch / epochs`` while the
    hold-out training runs, then 100 % with what happened (stopped early, the kept epoch, or nothing to
    train on a re-run), so it never stays at 65 % or 0 %."""

    def __init__(self, name: str, total_epochs: int) -> None:
        from uuid import UUID

        from prefect.artifacts import create_progress_artifact

        self.name, self.total = name, total_epochs
        artifact_id = create_progress_artifact(
            progress=0.0,
            key="training-progress",
            description=f"Training {name}: CV folds first, then the hold-out training (epochs done / epochs)",
        )
        if not isinstance(artifact_id, UUID):  # Prefect's async_dispatch: a coroutine only in async code
            raise TypeError(
                f"create_progress_artifact gave {type(artifact_id).__name__}, not a UUID (async?)"
            )
        self.artifact_id = artifact_id
        self.epochs_seen = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        from prefect.artifacts import update_progress_artifact

        self.epochs_seen += 1
        shown = ", ".join(f"{k}={v:.4f}" for k, v in logs.items())
        update_progress_artifact(
            artifact_id=self.artifact_id,
            progress=min(100.0, 100.0 * epoch / self.total),
            description=f"Training {self.name}: epoch {epoch}/{self.total} ({shown})",
        )
        print(f"{self.name} epoch {epoch}/{self.total}: {shown}")

    def finish(self, info: dict[str, Any]) -> str:
        """100 % and one sentence: what the training did; returns that sentence (also printed)."""
        from prefect.artifacts import update_progress_artifact

        done = finished_training(self.name, info, self.total, trained_now=self.epochs_seen > 0)
        update_progress_artifact(artifact_id=self.artifact_id, progress=100.0, description=done)
        print(done)
        return done


def finished_training(name: str, info: dict[str, Any], total: int, trained_now: bool = True) -> str:
    """What the progress artifact ends with: ``perfspec.learn.tracking.epoch_summary`` (the CLI's and the
    MLflow description's wording), and whether it was trained now or reused."""
    from perfspec.learn.tracking import epoch_summary

    summary = epoch_summary(name, info, total)
    if summary is None:
        return f"{name}: nothing trained now (scores reused from an earlier run)"
    return summary + ("" if trained_now else " (done earlier: nothing trained now)")


@perfspec_task("start-run", timeout="task", transient=True)
def start_run_task(
    settings: Settings, dataset_dir: str, run_dir: str, models: list[str], sweep: bool = False
) -> str:
    """Open the MLflow run as training starts (its duration and status then mean something); ``log-run``
    fills it in. Returns its id, or "" when this run dir's results are already logged."""
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.tracking import opening_title, start_run

    title = opening_title(Dataset.load(Path(dataset_dir)), models, sweep)
    tags = {"perfspec.kind": "sweep"} if sweep else None
    return start_run(settings, Path(run_dir), title, extra_tags=tags) or ""


@perfspec_task("train-model", timeout="train", transient=False)
def train_model(
    dataset_dir: str, run_dir: str, config: dict[str, Any], selection: SelectionSettings
) -> ScoredModel:
    """One neural configuration on every CV fold and the hold-out; resumes from its checkpoints."""
    from perfspec.learn.configs import ModelConfig
    from perfspec.learn.dataset import Dataset
    from perfspec.learn.experiment import score_neural
    from perfspec.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # TensorFlow's start-up lines say nothing to our users
    model = ModelConfig.from_dict(config)
    progress = _Progress(model.name, int(config["params"].get("epochs", 1)))
    scores = score_neural(
        Dataset.load(Path(dataset_dir)), model, Path(run_dir), selection, print, progress.on_epoch_end
    )
    progress.finish(scores.info)
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
