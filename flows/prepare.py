"""``prepare`` flow: audit logs -> clean events -> actions -> dataset (each step cached on content)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow

from flows.config import check_sources, dataset_name, flow_settings
from flows.steps import run_step
from perfspec.errors import InputError
from tasks.data import build_actions_task, build_dataset_task, clean_audit_logs
from tasks.records import PreparedData


def expand_sources(sources: list[str], data_dir: Path) -> list[Path]:
    """Files and directories as given; a pattern with ``*`` is globbed (relative ones under the data dir).

    Glob matches are ordered as the events happened, not by name, because the split is chronological:
    grouped by folder, campaign folders (``raw/<campaign>/`` with a ``manifest.json``) by their start
    time, and only campaigns that completed (a running or failed one is still being written or is
    partial); folders without a manifest by their oldest file's mtime.
    """
    expanded: list[Path] = []
    for item in sources:
        if any(ch in item for ch in "*?["):
            pattern = Path(item)
            if pattern.is_absolute():
                base, rel = Path(pattern.anchor), str(pattern.relative_to(pattern.anchor))
            else:
                base, rel = data_dir, item
            matches = _in_event_order(p for p in base.glob(rel) if p.is_file())
            if not matches:
                raise InputError(
                    f"no audit logs match {item!r} (under {base}) in completed campaigns",
                    hint="collect first, or pass --source",
                )
            expanded += matches
        elif Path(item).is_dir():
            expanded.append(Path(item).resolve())  # the cleaner reads a directory's files itself
        else:
            expanded.append(Path(item))
    check_sources([p for p in expanded if not p.is_dir()])  # a missing file is bad input
    return [p.resolve() for p in expanded]


def _in_event_order(files: Iterable[Path]) -> list[Path]:
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    ordered: list[tuple[datetime, Path]] = []
    for folder, members in by_folder.items():
        manifest = folder / "manifest.json"
        if manifest.is_file():
            record = json.loads(manifest.read_text())
            if record.get("status") != "completed":
                continue
            runs = record.get("runs") or [{}]
            started = datetime.fromisoformat(runs[0].get("started_at") or "1970-01-01T00:00:00+00:00")
        else:
            started = datetime.fromtimestamp(min(p.stat().st_mtime for p in members), tz=UTC)
        ordered.append((started, folder))
    return [p for _, folder in sorted(ordered) for p in sorted(by_folder[folder])]


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
        actions_path = check_sources([Path(actions_file)])[0]
        dataset = run_step(
            build_dataset_task,
            actions_file=str(actions_path),
            datasets_dir=datasets_dir,
            settings=settings.dataset,
        )
        return PreparedData(sources=[str(actions_path)], clean=None, actions=None, dataset=dataset)

    resolved = expand_sources(list(sources or []), paths.data_dir)
    label = name or dataset_name(resolved)
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
    dataset = run_step(
        build_dataset_task,
        actions_file=actions.actions_txt,
        datasets_dir=datasets_dir,
        settings=settings.dataset,
    )
    return PreparedData(sources=[str(p) for p in resolved], clean=clean, actions=actions, dataset=dataset)
