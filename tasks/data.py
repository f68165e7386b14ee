"""Data-plane tasks: clean audit logs, build actions, build the dataset (all cached on content hashes)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger

from perfspec.fileio import sha256_file
from perfspec.settings import ActionsSettings, CleanSettings, DatasetSettings
from tasks.policy import content_cache_key, perfspec_task
from tasks.records import ActionsOutput, CleanOutput, DatasetOutput


@perfspec_task(
    "clean-audit-logs",
    timeout="task",
    transient=True,
    cache_key_fn=content_cache_key("clean", "sources"),
)
def clean_audit_logs(sources: list[str], out_dir: str, settings: CleanSettings) -> CleanOutput:
    """Raw audit logs -> ``events.parquet`` + ``summary.json`` + ``rejects.jsonl`` in ``out_dir``."""
    from perfspec.audit.clean import clean_sources
    from perfspec.scaleout import clean_executor
    from perfspec.settings import get_settings

    out = Path(out_dir)
    # where pass 1 runs is not a parameter (nor part of the cache key): the outputs are the same bytes
    with clean_executor(get_settings().prefect) as executor:
        summary = clean_sources([Path(s) for s in sources], out, settings, executor=executor)
    incomplete = [f.file for f in summary.incomplete_files]
    if incomplete:
        # Same rule as `perfspec clean`: keep what was read before the break, but say so loudly.
        get_run_logger().warning(
            "%d input file(s) ended early (truncated or corrupt); the events before the break were kept: %s",
            len(incomplete),
            ", ".join(incomplete),
        )
    counts = json.loads((out / "summary.json").read_text())
    events = out / "events.parquet"
    return CleanOutput(
        out_dir=str(out),
        events=str(events),
        events_sha256=sha256_file(events),
        read=int(counts["read"]),
        kept=int(counts["kept"]),
        duplicates=int(counts["duplicates"]),
        rejected=int(counts["rejected"]),
        incomplete_files=incomplete,
    )


@perfspec_task(
    "build-actions",
    timeout="task",
    transient=True,
    cache_key_fn=content_cache_key("actions", "events"),
)
def build_actions_task(events: str, out_dir: str, settings: ActionsSettings) -> ActionsOutput:
    """``events.parquet`` -> ``actions.txt`` / ``actions.parquet`` + the distribution report."""
    from perfspec.actions import build_actions, count_with_username
    from perfspec.actions.report import write_distribution_report

    out = Path(out_dir)
    actions_txt = out / "actions.txt"
    build_actions(Path(events), actions_txt, settings)
    tokens = [line for line in actions_txt.read_text().splitlines() if line.strip()]
    parquet = out / "actions.parquet"
    report = [str(p) for p in write_distribution_report(parquet, out)] if parquet.exists() else []
    return ActionsOutput(
        actions_txt=str(actions_txt),
        actions_sha256=sha256_file(actions_txt),
        actions=len(tokens),
        distinct=len(set(tokens)),
        actions_parquet=str(parquet) if parquet.exists() else None,
        report=report,
        with_username=count_with_username(parquet) if parquet.exists() else 0,
    )


@perfspec_task(
    "build-dataset",
    timeout="task",
    transient=True,
    cache_key_fn=content_cache_key("dataset", "actions_file"),
)
def build_dataset_task(actions_file: str, datasets_dir: str, settings: DatasetSettings) -> DatasetOutput:
    """Actions file -> ``datasets/<fingerprint12>/`` (vocabulary, windows, split)."""
    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.experiment import save_dataset

    dataset = build_dataset(Path(actions_file), settings)
    directory = save_dataset(dataset, Path(datasets_dir))
    return DatasetOutput(
        dataset_dir=str(directory),
        fingerprint=dataset.fingerprint,
        actions=len(dataset.ids),
        vocab_size=len(dataset.vocab),
        windows={split: len(dataset.windows(split)[1]) for split in ("train", "val", "test")},
    )
