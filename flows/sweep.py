"""``sweep`` flow: several families and settings as mapped tasks on the same folds; parent + child runs."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import PositiveInt

from flows.config import flow_settings
from flows.train import dataset_streams, describe_training, score_and_track
from perfspec.learn.configs import sweep_configs
from perfspec.learn.experiment import experiment_dir, read_fingerprint
from perfspec.settings import get_settings
from tasks.records import TrainedRun


@flow(
    name="sweep",
    description="Compare families and settings on shared blocked CV folds; MLflow parent + child runs.",
    # Prefect's stub: TaskRunner is invariant in its future type, so its own ThreadPoolTaskRunner is refused
    # (PrefectHQ/prefect#16938)
    task_runner=ThreadPoolTaskRunner(max_workers=get_settings().selection.sweep_concurrency),  # type: ignore[arg-type]
)
def sweep(
    dataset_dir: Path,
    families: list[str] | None = None,
    epochs: PositiveInt | None = None,
    data_dir: Path | None = None,
) -> TrainedRun:
    """Every configuration of ``families`` (default: settings) trained as its own task."""
    settings = flow_settings(data_dir, epochs)
    chosen = list(families or settings.selection.sweep_families)
    settings = settings.with_section("selection", mixture="mixture" in chosen)
    configs = sweep_configs(settings.train, chosen)
    fingerprint = read_fingerprint(Path(dataset_dir))
    run_dir = str(experiment_dir(settings, fingerprint, configs, sweep=True))
    dataset = str(Path(dataset_dir).resolve())
    describe_training(settings, configs, fingerprint, dataset_streams(Path(dataset_dir)), sweep=True)
    return score_and_track(settings, dataset, run_dir, configs, sweep=True)
