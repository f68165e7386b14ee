"""``pipeline`` flow: ``prepare`` then ``train`` as subflows, and the artifacts people read afterwards."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import PositiveInt

from flows.config import SAMPLE_LOG_NAME, flow_settings
from flows.hooks import ON_FAILURE
from flows.prepare import prepare
from flows.runinfo import label_flow_run, pipeline_label
from flows.summary import markdown_summary, topk_rows
from flows.sweep import sweep as sweep_flow
from flows.train import train
from perfspec.bundled import sample_file
from tasks.records import PipelineResult


def mlflow_run_url(tracking_uri: str, run_id: str) -> str | None:
    """A browser link to the run when MLflow is a server; None for a local SQLite/file store."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        from mlflow.tracking import MlflowClient

        experiment_id = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # the link is a convenience; the run id is in the summary anyway
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@flow(
    name="pipeline",
    description="Audit logs -> actions -> dataset -> n-gram vs neural (blocked CV) -> MLflow @champion",
    on_failure=ON_FAILURE,
    on_crashed=ON_FAILURE,
)
def pipeline(
    sources: list[str] | None = None,
    actions_file: Path | None = None,
    epochs: PositiveInt | None = None,
    data_dir: Path | None = None,
    fresh: bool = False,
    sweep: bool | None = None,
) -> PipelineResult:
    """With neither ``sources`` nor ``actions_file``, runs on the bundled sample (a few epochs).

    ``sweep`` (default: setting ``selection.nightly_sweep``) trains the families of
    ``selection.sweep_families`` as a sweep instead of the single neural family.
    """
    settings = flow_settings(data_dir)
    name, run_tags = pipeline_label(settings, sources, actions_file, epochs)
    label_flow_run(name, run_tags)  # a scheduled run is named from what it does, as a CLI run is
    if not sources and actions_file is None:
        sources = [str(sample_file(SAMPLE_LOG_NAME))]
        epochs = epochs or settings.prefect.sample_epochs
    prepared = prepare(sources=sources, actions_file=actions_file, data_dir=data_dir)
    dataset_dir = Path(prepared.dataset.dataset_dir)
    if settings.selection.nightly_sweep if sweep is None else sweep:
        trained = sweep_flow(dataset_dir=dataset_dir, epochs=epochs, data_dir=data_dir)
    else:
        trained = train(dataset_dir=dataset_dir, epochs=epochs, data_dir=data_dir, fresh=fresh)
    actor_trained = None
    if prepared.actor_dataset is not None:  # per-actor streams, their own run and @champion
        actor_trained = train(
            dataset_dir=Path(prepared.actor_dataset.dataset_dir),
            epochs=epochs,
            data_dir=data_dir,
            fresh=fresh,
        )
    result = PipelineResult(
        prepared=prepared,
        trained=trained,
        run_url=mlflow_run_url(trained.tracking_uri, trained.run_id),
        actor_trained=actor_trained,
    )
    create_markdown_artifact(
        markdown=markdown_summary(result),
        key="pipeline-summary",
        description="Data counts, model vs baselines, champion decision, MLflow run",
    )
    rows = topk_rows(trained.metrics)
    if rows:
        create_table_artifact(table=rows, key="topk-metrics", description="Test top-k accuracy by model")
    if actor_trained is not None and (rows := topk_rows(actor_trained.metrics)):
        create_table_artifact(
            table=rows, key="topk-metrics-actor", description="Per-actor streams: test top-k by model"
        )
    return result
