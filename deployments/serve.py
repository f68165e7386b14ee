"""Serve perfspec's deployments from one process (single machine, no work pool or worker needed).

    PREFECT_API_URL=http://127.0.0.1:4200/api perfspec serve     # or: python -m deployments.serve

Why it reads ``prefect.yaml``: the deployments are defined once, there (names, entrypoints,
parameters, schedules, tags, concurrency), for ``perfspec deploy`` to a work pool; serving them from
one process builds the same deployments from the same file. The ``{{ $VAR }}`` placeholders take
perfspec's settings (nightly cron and time zone, work pool).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment

from perfspec.bundled import prefect_file
from perfspec.errors import InputError
from perfspec.settings import Settings, get_settings

_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def placeholder_values(settings: Settings) -> dict[str, str]:
    """What prefect.yaml's ``{{ $VAR }}`` placeholders stand for (``perfspec deploy`` exports them)."""
    cfg = settings.prefect
    return {
        "PERFSPEC_PREFECT__NIGHTLY_CRON": cfg.nightly_cron,
        "PERFSPEC_PREFECT__TIMEZONE": cfg.timezone,
        "PERFSPEC_PREFECT__WORK_POOL": cfg.work_pool,
    }


def _fill(value: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise InputError(f"prefect.yaml uses ${match.group(1)}, which perfspec does not set")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(one, value)


def _flow(entrypoint: str) -> Flow[..., Any]:
    """The flow object of a ``flows/pipeline.py:pipeline`` entrypoint."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def _concurrency(entry: dict[str, Any]) -> ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if limit is None:
        return None
    if isinstance(limit, int):
        return ConcurrencyLimitConfig(limit=limit)
    strategy = limit.get("collision_strategy")
    return ConcurrencyLimitConfig(
        limit=limit["limit"], collision_strategy=ConcurrencyLimitStrategy(strategy) if strategy else None
    )


def build_deployments(settings: Settings | None = None) -> list[RunnerDeployment]:
    """prefect.yaml's deployments, with the placeholders filled from settings."""
    values = placeholder_values(settings or get_settings())
    spec = yaml.safe_load(prefect_file().read_text())
    deployments: list[RunnerDeployment] = []
    for entry in spec["deployments"]:
        schedules = [
            CronSchedule(cron=_fill(s["cron"], values), timezone=_fill(s.get("timezone", "UTC"), values))
            for s in entry.get("schedules") or []
        ]
        deployment = _flow(entry["entrypoint"]).to_deployment(
            name=entry["name"],
            description=entry.get("description"),
            tags=entry.get("tags"),
            parameters=entry.get("parameters") or {},
            schedules=schedules,
            concurrency_limit=_concurrency(entry),
        )
        if not isinstance(
            deployment, RunnerDeployment
        ):  # called from async code: Prefect returns a coroutine
            raise TypeError("build_deployments() must be called from synchronous code")
        deployments.append(deployment)
    return deployments


def main() -> None:
    serve(*build_deployments())


if __name__ == "__main__":
    main()
