"""``perfspec sweep``: several families and settings in one experiment, comparable in the MLflow UI.

Why one experiment: every configuration is scored on the same blocked CV folds and the same hold-out
as the n-gram (``perfspec.learn.experiment``), so the comparison table is paired and fair. MLflow gets
one parent run (the comparison table, the coverage and CV plots, the candidate's model and the
champion decision) and one child run per model, created with an explicit ``parent_run_id``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfspec.learn.configs import ModelConfig, sweep_configs
from perfspec.learn.dataset import Dataset, build_dataset
from perfspec.learn.experiment import Say, _quiet, experiment_dir, run_experiment, save_dataset
from perfspec.settings import Settings


@dataclass
class SweepOutcome:
    dataset: Dataset
    run_dir: Path
    configs: list[ModelConfig]
    metrics: dict[str, Any]
    run_id: str | None = None
    child_run_ids: dict[str, str] | None = None
    decision: Any = None


def sweep_title(metrics: dict[str, Any], configs: int) -> str:
    window, actions = metrics["split"]["window"], metrics["dataset"]["actions"]
    return f"sweep · {configs} models · w{window} · {actions:,} actions"


def child_metrics(metrics: dict[str, Any], model: str) -> dict[str, float]:
    """What one child run holds: its hold-out top-k, CV mean/std, paired gain and coverage headline."""
    out: dict[str, float] = {}
    reference = metrics["verdict"]["reference"]
    for key, value in metrics["test"][model].items():
        out[key] = value
        if reference in metrics["test"]:
            out[f"{key}_ngram"] = metrics["test"][reference][key]
    for key, stats in metrics["cv"].get(model, {}).items():
        if stats.get("mean") is not None:
            out[f"cv_{key}_mean"] = stats["mean"]
        if stats.get("std") is not None:
            out[f"cv_{key}_std"] = stats["std"]
    paired = metrics["cv_paired"].get(model, {}).get("top5")
    if paired and paired.get("se") is not None and not math.isnan(paired["se"]):
        out["cv_top5_gain"], out["cv_top5_gain_se"] = paired["mean"], paired["se"]
    out["leakage_test"] = metrics["leakage"]["test"]
    return out


def log_children(settings: Settings, metrics: dict[str, Any], parent_run_id: str) -> dict[str, str]:
    """One child run per model under ``parent_run_id`` (explicit parent, no global active run)."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    from perfspec.learn.tracking import configure

    experiment_id = configure(settings)
    client = mlflow.MlflowClient()
    existing = {
        run.data.tags.get("perfspec.model"): run.info.run_id
        for run in client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=500
        )
    }
    actions = metrics["dataset"]["actions"]
    children: dict[str, str] = {}
    for model, info in metrics["models"].items():
        if model in existing:
            children[model] = existing[model]
            continue
        config = info.get("config", {})
        params = {f"model.{k}": v for k, v in (config.get("params") or {}).items()}
        params |= {"family": info.get("family"), "model": model}
        if "order" in info:
            params["ngram.order"] = info["order"]
        if "weight" in info:
            params["mixture.weight"] = info["weight"]
        description = (
            f"`{model}` ({info.get('family')}) in the sweep's shared CV folds and hold-out; "
            f"{'**the candidate**' if model == metrics['champion_candidate'] else 'not the candidate'}."
        )
        run = client.create_run(
            experiment_id,
            run_name=f"{model} · w{metrics['split']['window']} · {actions:,} actions",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "perfspec.model": model,
                "family": str(info.get("family")),
                "mlflow.note.content": description,
            },
        )
        stamp = int(run.info.start_time or 0)
        batch = [Metric(k, float(v), stamp, 0) for k, v in child_metrics(metrics, model).items()]
        batch += [
            Metric("coverage", float(v), stamp, k) for k, v in enumerate(metrics["coverage"][model], start=1)
        ]
        client.log_batch(
            run.info.run_id,
            metrics=batch,
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag("candidate", str(model == metrics["champion_candidate"]).lower())],
        )
        client.set_terminated(run.info.run_id)
        children[model] = run.info.run_id
    return children


def run_sweep(
    actions_file: Path,
    out_dir: Path | None,
    settings: Settings,
    families: Sequence[str] | None = None,
    grid: dict[str, list[dict[str, Any]]] | None = None,
    *,
    use_mlflow: bool = True,
    say: Say = _quiet,
) -> SweepOutcome:
    """Score every configuration, compare, log parent + children, register and maybe promote."""
    families = list(families or settings.selection.sweep_families)
    dataset = build_dataset(Path(actions_file), settings.dataset)
    save_dataset(dataset, settings.paths.datasets_dir)
    configs = sweep_configs(settings.train, families, grid)
    selection = settings.selection.model_copy(update={"mixture": "mixture" in families})
    settings = settings.model_copy(update={"selection": selection})
    run_dir = Path(out_dir) if out_dir else experiment_dir(settings, dataset.fingerprint, configs, sweep=True)
    names = ", ".join(c.name for c in configs)
    say(
        f"sweep: {len(configs)} neural configs ({names}) + n-gram + most frequent"
        + (" + mixture" if selection.mixture else "")
    )
    from perfspec.learn.tracking import opening_title, training_run

    title = opening_title(dataset, [c.name for c in configs], sweep=True)
    with training_run(settings, run_dir, title, enabled=use_mlflow, extra_tags={"perfspec.kind": "sweep"}):
        metrics = run_experiment(dataset, configs, run_dir, settings, say)
    outcome = SweepOutcome(dataset, run_dir, configs, metrics)
    if use_mlflow:
        from perfspec.learn.promotion import register_and_promote
        from perfspec.learn.tracking import log_run

        outcome.run_id = log_run(
            settings,
            dataset,
            run_dir,
            metrics,
            title=sweep_title(metrics, len(metrics["models"])),
            extra_tags={"perfspec.kind": "sweep"},
        )
        outcome.child_run_ids = log_children(settings, metrics, outcome.run_id)
        outcome.decision = register_and_promote(settings, outcome.run_id, metrics, run_dir=run_dir)
    return outcome
