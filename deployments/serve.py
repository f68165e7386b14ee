"""Serve perfspec's deployments from one process (single machine, no work pool or worker needed).

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py     # or: perfspec serve

The nightly `pipeline` schedule (PERFSPEC_PREFECT__NIGHTLY_CRON in PERFSPEC_PREFECT__TIMEZONE), `collect`
on demand and the `healthcheck` run in this process when scheduled or triggered from the UI/API.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment

from flows.collect import collect
from flows.health import healthcheck
from flows.pipeline import pipeline
from perfspec.settings import Settings, get_settings


def build_deployments(settings: Settings | None = None) -> list[RunnerDeployment]:
    """The three deployments, with the nightly schedule taken from settings."""
    cfg = (settings or get_settings()).prefect
    return [
        pipeline.to_deployment(
            name="nightly-retrain",
            schedules=[CronSchedule(cron=cfg.nightly_cron, timezone=cfg.timezone)],
            parameters={"sources": ["raw/*/audit-*.jsonl"]},
            tags=["perfspec", "retrain"],
            concurrency_limit=1,
        ),
        collect.to_deployment(name="on-demand", tags=["perfspec", "collect"]),
        healthcheck.to_deployment(name="check", tags=["perfspec", "ops"]),
    ]


def main() -> None:
    serve(*build_deployments())


if __name__ == "__main__":
    main()
