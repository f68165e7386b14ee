"""What tasks return: small, picklable records of paths, hashes and counts (never DataFrames).

Why records instead of library objects: Prefect persists task results for caching; a record with paths is
a few hundred bytes and stays valid as long as the files it names exist (``outputs`` lists them so a flow
can refuse a cached record whose files were deleted).
"""

from __future__ import annotations

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


class TrainOutput(_Record):
    run_dir: str
    model_path: str
    epochs_done: int
    best_epoch: int
    best_val_loss: float
    resumed_from: int
    epochs_this_call: int
    stopped_early: bool
    train_seconds: float

    def outputs(self) -> list[str]:
        return [self.model_path]


class PromotionOutput(_Record):
    run_id: str
    promoted: bool
    decision: dict[str, Any]

    def describe(self) -> str:
        """The library's one-line wording (a replayed decision says so)."""
        from perfspec.learn.tracking import PromotionDecision

        return PromotionDecision(**self.decision).describe()


class PreparedData(_Record):
    """What the ``prepare`` flow hands to ``train``."""

    sources: list[str]
    clean: CleanOutput | None
    actions: ActionsOutput | None
    dataset: DatasetOutput


class TrainedRun(_Record):
    """What the ``train`` flow produced: the run dir, test metrics, the MLflow run and the decision."""

    train: TrainOutput
    metrics: dict[str, Any]
    run_id: str
    tracking_uri: str
    promotion: PromotionOutput


class PipelineResult(_Record):
    prepared: PreparedData
    trained: TrainedRun
    run_url: str | None = None


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
