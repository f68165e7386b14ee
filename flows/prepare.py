"""``prepare`` flow: audit logs -> clean events -> actions -> dataset (each step cached on content)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.config import dataset_name, flow_settings
from flows.runinfo import label_flow_run, record_settings, tag_value
from flows.steps import run_step
from perfspec.collect.inputs import check_files, resolve_sources
from perfspec.errors import InputError
from perfspec.settings import Settings
from tasks.data import build_actions_task, build_dataset_task, clean_audit_logs
from tasks.records import PreparedData


@flow(name="prepare", description="Audit logs -> events.parquet -> actions -> dataset windows.")
def prepare(
    sources: list[str] | None = None,
    actions_file: Path | None = None,
    data_dir: Path | None = None,
    name: str | None = None,
) -> PreparedData:
    """Either ``sources`` (audit logs, globs allowed) or an existing ``actions_file`` (one token a line)."""
    settings = flow_settings(data_dir)
    paths = settings.paths
    if bool(sources) == bool(actions_file):
        raise InputError("give audit log sources or an actions file (exactly one of them)")
    datasets_dir = str(paths.datasets_dir.resolve())
    if actions_file is not None:
        actions_path = check_files([Path(actions_file)])[0]
        _describe(settings, f"actions {actions_path.name}", actions_path.parent.name)
        dataset = run_step(
            build_dataset_task,
            actions_file=str(actions_path),
            datasets_dir=datasets_dir,
            settings=settings.dataset,
        )
        return PreparedData(sources=[str(actions_path)], clean=None, actions=None, dataset=dataset)

    resolved = resolve_sources(sources or [], paths.data_dir)
    label = name or dataset_name(resolved)
    _describe(settings, f"{len(resolved)} file(s) as {label}", label)
    clean = run_step(
        clean_audit_logs,
        sources=[str(p) for p in resolved],
        out_dir=str((paths.clean_dir / label).resolve()),
        settings=settings.clean,
    )
    actions = run_step(
        build_actions_task,
        events=clean.events,
        out_dir=str((paths.actions_dir / label).resolve()),
        settings=settings.actions,
    )
    per_actor = settings.dataset.streams == "actor"
    dataset = run_step(
        build_dataset_task,
        actions_file=actions.actions_parquet if per_actor else actions.actions_txt,
        datasets_dir=datasets_dir,
        settings=settings.dataset,
    )
    actor_dataset = None
    if (
        not per_actor
        and settings.selection.actor_streams
        and actions.with_username
        and actions.actions_parquet
    ):
        actor_dataset = run_step(
            build_dataset_task,
            actions_file=actions.actions_parquet,
            datasets_dir=datasets_dir,
            settings=settings.dataset.model_copy(update={"streams": "actor"}),
        )
    return PreparedData(
        sources=[str(p) for p in resolved],
        clean=clean,
        actions=actions,
        dataset=dataset,
        actor_dataset=actor_dataset,
    )


def _describe(settings: Settings, what: str, source: str) -> None:
    """Name and tag this flow run from its input; record its effective settings."""
    streams = "actor" if settings.dataset.streams == "actor" else "global"
    name = f"prepare {what}, {settings.actions.preset} actions, w{settings.dataset.window}"
    label_flow_run(name, [f"source:{tag_value(source)}", f"streams:{streams}"])
    record_settings(settings, name)
