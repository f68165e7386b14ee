"""What tasks return: small, picklable records of paths, hashes and counts (never DataFrames).

Why records instead of library objects: Prefect persists task results for caching; a record with paths is
a few hundred bytes and stays valid as long as the files it names exist (``outputs`` lists them so a flow
can refuse a cached record whose files were deleted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    def outputs(self) -> list[str]:
        return []


class CleanOutput(_Record):
    out_dir: str
    events: str
    events_sha256: str
    read: int
    kept: int
    duplicates: int
    rejected: int
    incomplete_files: list[str] = []

    def outputs(self) -> list[str]:
        return [self.events]


class ActionsOutput(_Record):
    actions_txt: str
    actions_sha256: str
    actions: int
    distinct: int
    actions_parquet: str | None = None
    report: list[str] = []
    with_username: int = 0  # actions whose requester is known (actor streams need them)

    def outputs(self) -> list[str]:
        return [self.actions_txt, *([self.actions_parquet] if self.actions_parquet else [])]


class DatasetOutput(_Record):
    dataset_dir: str
    fingerprint: str
    actions: int
    vocab_size: int
    windows: dict[str, int]

    def outputs(self) -> list[str]:
        return [f"{self.dataset_dir}/{name}" for name in ("dataset.json", "vocab.json", "windows.npz")]


class ScoredModel(_Record):
    """One model scored on the CV folds and the hold-out (its ranks are in ``run_dir/scores``)."""

    name: str
    family: str
    run_dir: str
    test_top5: float
    cv_top5_mean: float | None = None
    info: dict[str, Any] = {}

    def outputs(self) -> list[str]:
        return [str(Path(self.run_dir) / "scores" / f"{self.name}.npz")]


class PromotionOutput(_Record):
    run_id: str
    promoted: bool
    decision: dict[str, Any]

    def describe(self) -> str:
        """The library's one-line wording (a replayed decision says so)."""
        from perfspec.learn.promotion import PromotionDecision

        return PromotionDecision(**self.decision).describe()


class PreparedData(_Record):
    """What the ``prepare`` flow hands to ``train``."""

    sources: list[str]
    clean: CleanOutput | None
    actions: ActionsOutput | None
    dataset: DatasetOutput
    actor_dataset: DatasetOutput | None = None  # the same actions as per-actor streams


class TrainedRun(_Record):
    """What the ``train`` flow produced: the run dir, test metrics, the MLflow run and the decision."""

    models: list[ScoredModel]
    run_dir: str
    metrics: dict[str, Any]
    run_id: str
    tracking_uri: str
    promotion: PromotionOutput


class PipelineResult(_Record):
    prepared: PreparedData
    trained: TrainedRun
    run_url: str | None = None
    actor_trained: TrainedRun | None = None  # the per-actor model, trained alongside


class CampaignOutput(_Record):
    name: str
    manifest: str
    status: str
    ok: bool
    steps_run: int
    steps_skipped: int
    installs_ok: int
    installs_failed: int
    uninstalls_ok: int
    uninstalls_failed: int
    labelled_events: int | None = None
