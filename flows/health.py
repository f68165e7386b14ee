"""``healthcheck`` flow: proves a worker can import perfspec, write its data dir and reach MLflow.

Why: after `docker compose up` or `perfspec deploy`, a 5-second run of this deployment tells whether the
wiring (work pool, worker, PREFECT_API_URL, MLFLOW_TRACKING_URI, data volume) works, before a nightly
retraining finds out at 2 a.m.
"""

from __future__ import annotations

import platform
from pathlib import Path

from prefect import flow, get_run_logger

import perfspec
from flows.config import flow_settings
from perfspec.fileio import write_json_atomic


@flow(name="healthcheck", description="Worker can import perfspec, write the data dir and reach MLflow.")
def healthcheck(data_dir: Path | None = None, experiment: str = "perfspec-healthcheck") -> dict[str, str]:
    settings = flow_settings(data_dir)
    marker = settings.paths.data_dir.resolve() / "healthcheck.json"
    write_json_atomic(marker, {"perfspec": perfspec.__version__, "host": platform.node()})

    import mlflow

    from perfspec.mlflow_store import use_store

    use_store(settings.mlflow_tracking_uri)
    exists = mlflow.get_experiment_by_name(experiment)
    experiment_id = exists.experiment_id if exists else mlflow.create_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name="healthcheck") as run:
        mlflow.log_param("perfspec_version", perfspec.__version__)
    report = {
        "perfspec": perfspec.__version__,
        "data_dir": str(marker.parent),
        "mlflow": settings.mlflow_tracking_uri,
        "mlflow_run_id": run.info.run_id,
    }
    get_run_logger().info("healthy: %s", report)
    return report
