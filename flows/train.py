"""``train`` flow: baselines -> neural model(s) on CV folds + hold-out -> mixture -> compare -> MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import PositiveInt

from flows.config import flow_settings
from flows.runinfo import label_flow_run, record_settings, tag_value
from flows.steps import run_mapped, run_step
from perfspec.learn.configs import ModelConfig, label
from perfspec.learn.experiment import default_configs, experiment_dir, read_fingerprint
from perfspec.settings import Settings
from tasks.learn import (
    evaluate_model,
    log_run_task,
    promote_model,
    score_baselines,
    score_mixture_task,
    start_run_task,
    train_model,
)
from tasks.records import ScoredModel, TrainedRun


def score_models(
    settings: Settings, dataset_dir: str, run_dir: str, configs: list[ModelConfig]
) -> list[ScoredModel]:
    """The experiment's steps as tasks: neural configs mapped (bounded by ``sweep_concurrency``)."""
    selection = settings.selection
    scored = [run_step(score_baselines, dataset_dir=dataset_dir, run_dir=run_dir, selection=selection)]
    neural = run_mapped(
        train_model,
        "config",
        [c.to_dict() for c in configs],
        dataset_dir=dataset_dir,
        run_dir=run_dir,
        selection=selection,
    )
    scored += neural
    if selection.mixture and neural:
        scored.append(
            run_step(
                score_mixture_task,
                dataset_dir=dataset_dir,
                run_dir=run_dir,
                configs=[c.to_dict() for c in configs],
                selection=selection,
            )
        )
    return scored


def score_and_track(
    settings: Settings, dataset_dir: str, run_dir: str, configs: list[ModelConfig], sweep: bool = False
) -> TrainedRun:
    """Score every model, compare them, log the run (a sweep: parent + children) and decide the champion.

    The MLflow run is opened before training (``start-run``) so its duration and status are the
    training's; a failure on the way marks it FAILED (a re-run reopens it)."""
    from perfspec.learn.tracking import fail_run

    models = [c.name for c in configs]
    run_step(
        start_run_task,
        settings=settings,
        dataset_dir=dataset_dir,
        run_dir=run_dir,
        models=models,
        sweep=sweep,
    )
    try:
        scored = score_models(settings, dataset_dir, run_dir, configs)
        names = [scored[0].name, "most_frequent", *(s.name for s in scored[1:])]  # scored[0]: the n-gram
        metrics = run_step(
            evaluate_model, dataset_dir=dataset_dir, run_dir=run_dir, settings=settings, names=names
        )
    except BaseException:
        fail_run(settings, Path(run_dir))
        raise
    run_id = run_step(
        log_run_task,
        settings=settings,
        dataset_dir=dataset_dir,
        run_dir=run_dir,
        metrics=metrics,
        sweep=sweep,
    )
    promotion = run_step(promote_model, settings=settings, run_id=run_id, metrics=metrics, run_dir=run_dir)
    return TrainedRun(
        models=scored,
        run_dir=run_dir,
        metrics=metrics,
        run_id=run_id,
        tracking_uri=settings.mlflow_tracking_uri,
        promotion=promotion,
    )


@flow(name="train", description="N-gram, a neural family and their mixture on blocked CV + hold-out; MLflow.")
def train(
    dataset_dir: Path,
    epochs: PositiveInt | None = None,
    data_dir: Path | None = None,
    fresh: bool = False,
) -> TrainedRun:
    """A re-run with the same dataset and settings resumes in the same run dir (``fresh`` starts anew)."""
    settings = flow_settings(data_dir, epochs)
    configs = default_configs(settings)
    fingerprint = read_fingerprint(Path(dataset_dir))
    run_dir = str(experiment_dir(settings, fingerprint, configs, fresh=fresh))
    dataset = str(Path(dataset_dir).resolve())
    describe_training(settings, configs, fingerprint, dataset_streams(Path(dataset_dir)))
    return score_and_track(settings, dataset, run_dir, configs)


def dataset_streams(dataset_dir: Path) -> str:
    """``global`` or ``actor``: the stream kind a saved dataset was built with (its ``dataset.json``)."""
    import json

    try:
        meta = json.loads((Path(dataset_dir) / "dataset.json").read_text())
        saved = meta.get("settings") or {}
        if isinstance(saved, str):
            saved = json.loads(saved)
        return str(saved.get("streams") or "global")
    except (OSError, ValueError, AttributeError):
        return "global"


def describe_training(
    settings: Settings, configs: list[ModelConfig], fingerprint: str, streams: str, sweep: bool = False
) -> None:
    """Name and tag this flow run from what it trains, and record its effective settings."""
    models = " + ".join(label(c) for c in configs) or "n-gram"
    per_actor = " per actor" if streams == "actor" else ""
    kind = f"sweep {len(configs)} configs" if sweep else f"train{per_actor} {models}"
    name = f"{kind}, {settings.train.epochs} epochs, data {fingerprint[:12]}"
    tags = [f"family:{tag_value(c.family)}" for c in configs] + [
        f"streams:{streams}",
        f"data:{fingerprint[:12]}",
        f"epochs:{settings.train.epochs}",
        *(["sweep"] if sweep else []),
    ]
    label_flow_run(name, dict.fromkeys(tags))
    used = [
        f"{c.name}: {label(c)}, {settings.train.epochs} epochs max, patience {settings.train.patience}"
        for c in configs
    ]
    used.append(
        f"CV folds {settings.selection.cv_folds}, window {settings.dataset.window}, streams {streams}"
    )
    record_settings(settings, name, used)
