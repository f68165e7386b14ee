"""The model registry and the ``@champion`` rule: a challenger has to earn it, beyond noise.

Why paired and blocked: top-k on ~1,000 test windows has a standard error of ~0.015, so a gain of one
window decides nothing. The champion (whatever its family) is re-scored through the same ``Predictor``
on the challenger's hold-out windows (the run's ``dataset/`` artifact, as action names), both get a
hit/miss per window at the target k, the windows are cut into ``promotion_blocks`` contiguous blocks,
and the challenger is promoted only when the mean per-block gain exceeds ``promotion_standard_errors``
standard errors (and ``promotion_margin``). No champion yet: the challenger is promoted. A champion that
cannot be scored on this data is kept. ``decide`` is the pure rule; ``register_and_promote`` applies it.

Idempotent: a version already registered for a run id is reused, and a decision already taken for it
is returned as recorded (``replayed``), so re-runs and Prefect retries move nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import InputError
from perfspec.fileio import write_json_atomic
from perfspec.learn.dataset import Dataset
from perfspec.settings import Settings

TAG_FINGERPRINT = "dataset_fingerprint"
TAG_DECISION = "champion_decision"
TAG_REASON = "champion_reason"
TAG_MODEL_URI = "perfspec.model_uri"
TAG_SCORE = "test_candidate_score"
TAG_DECISION_RECORD = "perfspec.decision"  # the PromotionDecision as JSON, on the model version
TAG_HISTORY = "perfspec.champion_history"  # on the registered model: every champion change
RUN_RECORD = "mlflow.json"


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of ``register_and_promote`` (also logged as tags on the run and the model version)."""

    registered_model: str
    version: str
    promoted: bool
    reason: str
    challenger_score: float
    metric: str = "top5"
    champion_version: str | None = None
    champion_score: float | None = None
    gain: float | None = None
    gain_se: float | None = None
    replayed: bool = False  # this run was decided earlier (a re-run or retry): nothing moved now
    current_champion: str | None = None  # on a replay: the version @champion points at today

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people; a replay says so instead of announcing an old promotion as news."""
        verdict = "promoted to @champion" if self.promoted else "not promoted (champion kept)"
        if not self.replayed:
            return f"v{self.version} {verdict}"
        now = f"@champion is v{self.current_champion}" if self.current_champion else "no @champion now"
        return f"v{self.version} was {verdict} when first logged (nothing changed now; {now})"


@dataclass(frozen=True)
class Comparison:
    promoted: bool
    gain: float
    se: float
    challenger: float
    champion: float


def decide(
    challenger_hits: np.ndarray, champion_hits: np.ndarray, blocks: int, standard_errors: float, margin: float
) -> Comparison:
    """Paired, blocked comparison of per-window hits (same windows, same order) -> promote or not."""
    a = np.asarray(challenger_hits, dtype=np.float64)
    b = np.asarray(champion_hits, dtype=np.float64)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError("both models must be scored on the same, non-empty windows")
    parts = [p for p in np.array_split(np.arange(len(a)), min(blocks, len(a))) if len(p)]
    diffs = np.array([a[p].mean() - b[p].mean() for p in parts])
    gain = float(a.mean() - b.mean())
    se = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.inf
    promoted = gain > margin and gain > standard_errors * se
    return Comparison(promoted, gain, se, float(a.mean()), float(b.mean()))


def names_of_test_windows(dataset: Dataset, window: int) -> tuple[list[list[str]], list[str]]:
    """The test part's targets with up to ``window`` preceding actions each, as action NAMES.

    Same targets as ``dataset.windows("test")``; the history never reaches across the segment start.
    Names (not the dataset's ids) so that another model sees actions outside this dataset's vocabulary
    as they are, mapped through its own vocabulary, rather than as ``<unk>``.
    """
    windows: list[list[str]] = []
    targets: list[str] = []
    for start, end in dataset.segments["test"]:
        names = dataset.names(start, end)
        for pos in range(start + dataset.min_context, end):
            windows.append(names[max(0, pos - start - window) : pos - start])
            targets.append(names[pos - start])
    return windows, targets


def hits_on(predictor: Any, windows: list[list[str]], targets: list[str], k: int) -> np.ndarray:
    """Per window: is the true next action (by name) among the predictor's top k (``<unk>`` excluded)."""
    from perfspec.learn.scoring import target_ranks

    ids = np.zeros((len(windows), predictor.window), dtype=np.int32)
    for row, actions in enumerate(windows):
        kept = actions[-predictor.window :]
        ids[row, predictor.window - len(kept) :] = [predictor.vocab.id_of(a) for a in kept]
    truth = np.array([predictor.vocab.id_of(t) for t in targets], dtype=np.int64)
    return target_ranks(predictor.probabilities_batch(ids), truth) < k


def read_run_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((Path(run_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def registered_version(client: Any, name: str, run_id: str) -> Any | None:
    """The version of ``name`` already registered for ``run_id`` (the oldest, should there be more)."""
    found = [
        v
        for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if v.tags.get("run_id", run_id) == run_id
    ]
    return min(found, key=lambda v: int(v.version)) if found else None


def register_and_promote(
    settings: Settings, run_id: str, metrics: dict, run_dir: Path | None = None
) -> PromotionDecision:
    """Register the run's candidate as a new version; move ``@champion`` to it only if it earns it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from perfspec.learn.tracking import MODEL_ARTIFACT, configure, describe_registered_model

    configure(settings)
    client = mlflow.MlflowClient()
    name = settings.mlflow.model_for(metrics.get("streams", "global"))
    alias, selection = settings.mlflow.champion_alias, settings.selection
    run = client.get_run(run_id)
    fingerprint = run.data.tags.get(TAG_FINGERPRINT, "")
    model_uri = run.data.tags.get(TAG_MODEL_URI) or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    metric = f"top{selection.target_k}"
    candidate = metrics["champion_candidate"]
    challenger_score = float(metrics["test"][candidate][metric])
    existing = registered_version(client, name, run_id)
    if existing is not None and TAG_DECISION_RECORD in existing.tags:
        recorded = PromotionDecision(**json.loads(existing.tags[TAG_DECISION_RECORD]))
        _note_in_run_dir(run_dir, recorded)
        try:
            current = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            current = None
        return dataclasses.replace(recorded, replayed=True, current_champion=current)
    if existing is not None:
        version = existing.version
    else:
        version = mlflow.register_model(
            model_uri,
            name,
            tags={
                TAG_FINGERPRINT: fingerprint,
                TAG_SCORE: str(challenger_score),
                "run_id": run_id,
                "family": metrics["models"][candidate]["family"],
                "candidate": candidate,
            },
        ).version
        describe_registered_model(client, name)
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        champion = None
    if champion is not None and str(champion.version) == str(version):
        champion = None  # an earlier attempt moved the alias, then failed before recording its decision
        promoted, reason, comparison = True, f"v{version} is already @{alias}", None
    elif champion is None:
        promoted, reason, comparison = True, f"no @{alias} yet", None
    else:
        comparison = _compare_with_champion(settings, name, run_id, str(version), str(champion.version))
        if comparison is None:
            promoted, reason = False, f"kept v{champion.version}: it could not be scored on this data"
        else:
            promoted = comparison.promoted
            verb = "beats" if promoted else "does not beat"
            reason = (
                f"v{version} {metric} {comparison.challenger:.4f} {verb} v{champion.version} "
                f"{comparison.champion:.4f} beyond noise: gain {comparison.gain:+.4f}, needs > "
                f"{selection.promotion_standard_errors:g} x SE {comparison.se:.4f} and > margin "
                f"{settings.mlflow.promotion_margin:g} (paired over {selection.promotion_blocks} test blocks)"
            )
    if promoted:
        client.set_registered_model_alias(name, alias, version)
        _record_history(client, name, version, reason)
    decision = "promoted" if promoted else "kept"
    client.set_tag(run_id, TAG_DECISION, decision)
    client.set_tag(run_id, TAG_REASON, reason)
    client.set_model_version_tag(name, version, TAG_DECISION, decision)
    outcome = PromotionDecision(
        registered_model=name,
        version=str(version),
        promoted=promoted,
        reason=reason,
        challenger_score=challenger_score,
        metric=metric,
        champion_version=None if champion is None else str(champion.version),
        champion_score=None if comparison is None else comparison.champion,
        gain=None if comparison is None else comparison.gain,
        gain_se=None if comparison is None or math.isinf(comparison.se) else comparison.se,
    )
    client.set_model_version_tag(name, version, TAG_DECISION_RECORD, json.dumps(outcome.to_dict()))
    _note_in_run_dir(run_dir, outcome)
    return outcome


def _compare_with_champion(
    settings: Settings, name: str, run_id: str, version: str, champion: str
) -> Comparison | None:
    """Both versions of ``name`` scored on the challenger run's hold-out windows; None if impossible."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from perfspec.learn.bundle import BundleError
    from perfspec.learn.predict import Predictor

    selection = settings.selection
    try:
        with tempfile.TemporaryDirectory(prefix="perfspec-reeval-") as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="dataset", dst_path=tmp)
            dataset = Dataset.load(Path(local))
        hits = []
        for v in (version, champion):
            predictor = Predictor.load(f"models:/{name}/{v}", tracking_uri=settings.mlflow_tracking_uri)
            windows, targets = names_of_test_windows(dataset, predictor.window)
            hits.append(hits_on(predictor, windows, targets, selection.target_k))
    except (MlflowException, InputError, OSError, BundleError):
        return None
    if not len(hits[0]):
        return None
    return decide(
        hits[0],
        hits[1],
        selection.promotion_blocks,
        selection.promotion_standard_errors,
        settings.mlflow.promotion_margin,
    )


def _record_history(client: Any, name: str, version: str, reason: str) -> None:
    """Append the change to the registered model's ``perfspec.champion_history`` tag (newest last)."""
    from datetime import UTC, datetime

    try:
        current = client.get_registered_model(name).tags.get(TAG_HISTORY, "[]")
        history = json.loads(current)
    except (ValueError, TypeError):
        history = []
    history.append(
        {"version": str(version), "at": datetime.now(UTC).isoformat(timespec="seconds"), "reason": reason}
    )
    client.set_registered_model_tag(name, TAG_HISTORY, json.dumps(history[-20:]))


def _note_in_run_dir(run_dir: Path | None, decision: PromotionDecision) -> None:
    if run_dir is None:
        return
    record = read_run_record(run_dir)
    if record:
        record |= {
            "registered_model": decision.registered_model,
            "version": decision.version,
            "decision": decision.to_dict(),
        }
        write_json_atomic(Path(run_dir) / RUN_RECORD, record)
