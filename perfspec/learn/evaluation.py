"""The report of an experiment: ``metrics.json``, CSVs and plots, every model scored the same way.

Why hold-out and CV side by side: the chronological hold-out (last 10 %, never used for a choice) is
the headline; the blocked CV (``perfspec.learn.selection``) is what choices were made on and shows the
noise. ``leakage`` says how much of the validation/test windows occurs verbatim in training (above
``LEAKAGE_WARNING`` the scores measure memorisation). ``test_changes`` scores only positions where the
next action differs from the current one (copying the last action gets the rest right).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.fileio import write_json_atomic, write_text_atomic
from perfspec.learn.actor_eval import actor_section, intervals
from perfspec.learn.bundle import BUNDLE_NAME, read_bundle
from perfspec.learn.configs import ngram_name
from perfspec.learn.dataset import LEAKAGE_WARNING, Dataset, leakage
from perfspec.learn.scoring import CURVE_K, KS, coverage_curve, target_ranks, topk_from_ranks
from perfspec.learn.selection import ModelScores, beyond_noise, compare
from perfspec.settings import SelectionSettings

CONFUSED_PAIRS = 20


def write_report(
    dataset: Dataset, run_dir: Path, scores: Mapping[str, ModelScores], selection: SelectionSettings
) -> dict[str, Any]:
    """Everything a person or a script reads about the experiment; returns what ``metrics.json`` holds."""
    from perfspec.learn import plots

    run_dir = Path(run_dir)
    x_test, y_test = dataset.windows("test")
    changes = y_test != x_test[:, -1]
    target = f"top{selection.target_k}"
    reference = ngram_name(dataset.streams)
    compared = compare(scores, reference, selection.target_k)
    candidate = compared["candidate"]
    if not compared["cv"]:  # no CV: the candidate is chosen on validation
        candidate = _best_on_validation(dataset, run_dir, scores, selection.target_k)
    test = {name: topk_from_ranks(s.test_ranks, KS) for name, s in scores.items() if s.test_ranks is not None}
    leaks = leakage(dataset)
    paired = compared["paired"].get(candidate, {}).get(target)
    verdict = {
        "candidate": candidate,
        "reference": reference,
        "metric": target,
        "cv_paired_difference": paired,
        "beats_reference_beyond_noise": bool(
            paired and beyond_noise(paired, selection.promotion_standard_errors)
        ),
    }
    metrics: dict[str, Any] = {
        "streams": dataset.streams,
        "dataset_fingerprint": dataset.fingerprint,
        "dataset": {
            "actions": len(dataset.ids),
            "original_actions": dataset.original_actions or len(dataset.ids),
            "repeats_removed": dataset.repeats_removed,
            "repeats": [r.to_dict() for r in dataset.repeats],
            "vocab_size": len(dataset.vocab),
            "source": dataset.source,
        },
        "split": dataset.summary(),
        "leakage": {**leaks, "warning": max(leaks.values()) > LEAKAGE_WARNING},
        "test": test,
        "test_changes": {
            name: topk_from_ranks(s.test_ranks[changes], KS)
            for name, s in scores.items()
            if s.test_ranks is not None
        },
        "coverage": {
            name: coverage_curve(s.test_ranks) for name, s in scores.items() if s.test_ranks is not None
        },
        "cv": {name: summary for name, summary in compared["cv"].items()},
        "cv_folds": selection.cv_folds,
        "cv_paired": compared["paired"],
        "champion_candidate": candidate,
        "target_metric": target,
        "verdict": verdict,
        "models": {name: {"family": s.family, **s.info} for name, s in scores.items()},
        "counts": {
            "test": len(y_test),
            "test_changes": int(changes.sum()),
            "val": len(dataset.windows("val")[1]),
        },
    }
    metrics |= intervals(dataset, scores, reference)
    if dataset.layout is not None:
        metrics |= actor_section(dataset, scores, candidate, reference)
    probabilities = {name: _test_probabilities(run_dir, name, x_test) for name in scores}
    rows = per_action_table(dataset, probabilities, y_test)
    write_text_atomic(run_dir / "per_action.csv", _csv(rows))
    pairs = confused_pairs(dataset, probabilities[candidate], y_test)
    metrics["confused_pairs"] = pairs
    write_text_atomic(run_dir / "confused_pairs.csv", _csv(pairs))
    write_text_atomic(run_dir / "coverage.csv", _csv(_coverage_rows(metrics["coverage"])))
    write_text_atomic(run_dir / "cv.csv", _csv(_cv_rows(scores)))

    plot_dir = run_dir / "plots"
    written = [
        plots.coverage_curves(metrics["coverage"], len(y_test), candidate, plot_dir / "coverage.png"),
        plots.cv_comparison(
            compared["cv"],
            target,
            candidate,
            plot_dir / "cv.png",
            compared["paired"],
            selection.promotion_standard_errors,
        )
        if compared["cv"]
        else None,
        plots.per_action_accuracy(rows, list(probabilities), plot_dir / "per_action_accuracy.png"),
    ]
    tables = ["per_action.csv", "confused_pairs.csv", "coverage.csv", "cv.csv"]
    if "per_actor" in metrics:
        write_text_atomic(run_dir / "per_actor.csv", _csv(metrics["per_actor"]))
        tables.append("per_actor.csv")
        models = [*dict.fromkeys([candidate, reference]), "global_reference"]
        written.append(plots.per_actor_scores(metrics["per_actor"], models, plot_dir / "per_actor.png"))
    history = kept_history(run_dir, metrics["models"], candidate)
    if history is not None:
        name, data = history
        written.append(
            plots.learning_curves(data, data.get("best_epoch") or 0, plot_dir / "learning_curves.png", name)
        )
    metrics["files"] = sorted(
        str(p.relative_to(run_dir))
        for p in [*(w for w in written if w is not None)] + [run_dir / n for n in tables]
    )
    write_json_atomic(run_dir / "metrics.json", _finite(metrics))
    return _finite(metrics)


def _best_on_validation(
    dataset: Dataset, run_dir: Path, scores: Mapping[str, ModelScores], target_k: int
) -> str:
    x, y = dataset.windows("val")
    values = {
        name: float(np.mean(target_ranks(_test_probabilities(run_dir, name, x), y) < target_k))
        for name in scores
    }
    return max(values, key=lambda n: values[n])


def _test_probabilities(run_dir: Path, name: str, x: np.ndarray) -> np.ndarray:
    scorer, _vocab, _info = read_bundle(Path(run_dir) / "models" / name / BUNDLE_NAME)
    return scorer.probabilities(x)


def kept_history(
    run_dir: Path, models: Mapping[str, Mapping[str, Any]], candidate: str
) -> tuple[str, dict[str, Any]] | None:
    """``(name, history.json)`` of the neural model behind the candidate (a mixture's neural part), else of
    the first neural model; ``models`` as in ``metrics.json`` (``family``, ``config``). The plots and the
    MLflow epoch metrics show the same training."""
    import json

    for name in [candidate, *(n for n in models if n != candidate)]:
        info = models[name]
        params = info.get("config", {}).get("params", {})
        neural = params.get("neural") if info.get("family") == "mixture" else name
        path = Path(run_dir) / "models" / str(neural) / "history.json"
        if neural and path.is_file():
            return str(neural), json.loads(path.read_text())
    return None


def per_action_table(
    dataset: Dataset, probabilities: Mapping[str, np.ndarray], y: np.ndarray
) -> list[dict[str, Any]]:
    """Per true action with test support: each model's top-1 and top-5 recall."""
    vocab_size = len(dataset.vocab)
    support = np.bincount(y, minlength=vocab_size)
    ranks = {m: target_ranks(p, y) for m, p in probabilities.items()}
    rows = []
    for action_id in np.argsort(-support, kind="stable"):
        if support[action_id] == 0:
            continue
        is_true = y == action_id
        row: dict[str, Any] = {"action": dataset.vocab.tokens[action_id], "support": int(support[action_id])}
        for model, r in ranks.items():
            row[f"{model}_recall"] = round(float(np.mean(r[is_true] < 1)), 4)
            row[f"{model}_top5"] = round(float(np.mean(r[is_true] < 5)), 4)
        rows.append(row)
    return rows


def confused_pairs(dataset: Dataset, scores: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """The most frequent (actual, predicted) top-1 mistakes of a model."""
    if len(y) == 0:
        return []
    masked = np.array(scores, copy=True)
    masked[:, 0] = -np.inf
    predicted = np.argmax(masked, axis=1)
    wrong = predicted != y
    counts = Counter(zip(y[wrong].tolist(), predicted[wrong].tolist(), strict=True))
    tokens = dataset.vocab.tokens
    return [
        {"actual": tokens[a], "predicted": tokens[p], "count": c}
        for (a, p), c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:CONFUSED_PAIRS]
    ]


def _coverage_rows(coverage: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    return [{"k": k, **{m: round(v[k - 1], 6) for m, v in coverage.items()}} for k in range(1, CURVE_K + 1)]


def _cv_rows(scores: Mapping[str, ModelScores]) -> list[dict[str, Any]]:
    rows = []
    for name, s in scores.items():
        for fold, values in enumerate(s.fold_topk(KS)):
            rows.append({"model": name, "fold": fold, **{k: round(v, 6) for k, v in values.items()}})
    return rows


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined numbers (a standard error of one fold) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
