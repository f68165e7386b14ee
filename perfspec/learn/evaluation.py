"""Honest evaluation: the LSTM and the baselines on the same held-out test windows, ranked alike.

Why also ``test_changes``: about a quarter of this corpus repeats the previous action, which any model
gets right by copying; the positions where the next action differs show whether a model learned the
protocol. The n-gram order is chosen on validation, never on test.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import InputError
from perfspec.fileio import write_json_atomic, write_text_atomic
from perfspec.learn.baselines import KS, MostFrequent, choose_ngram, topk_accuracy
from perfspec.learn.dataset import Dataset

MODELS = ("lstm", "ngram", "most_frequent")
CURVE_K = 10
CONFUSED_PAIRS = 20


def lstm_scores(model: Any, x: np.ndarray) -> np.ndarray:
    """Batch probabilities from the Keras model (batch inference; the 1-window path is in predict.py)."""
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.asarray(model.predict(x, batch_size=1024, verbose=0))


def model_scores(dataset: Dataset, model: Any) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Score matrices per split (val, test) per model, plus how the n-gram was chosen."""
    vocab_size = len(dataset.vocab)
    train_seqs = dataset.sequences("train")
    x_val, y_val = dataset.windows("val")
    ngram, by_order = choose_ngram(train_seqs, x_val, y_val, vocab_size, max_order=dataset.window + 1)
    most_frequent = MostFrequent(vocab_size).fit(train_seqs)
    scores: dict[str, dict[str, np.ndarray]] = {}
    for split in ("val", "test"):
        x, _ = dataset.windows(split)
        scores[split] = {
            "lstm": lstm_scores(model, x),
            "ngram": ngram.scores(x),
            "most_frequent": most_frequent.scores(x),
        }
    info = {"order": ngram.order, "alpha": ngram.alpha, "val_top1_by_order": by_order}
    return scores, info


def evaluate(dataset: Dataset, run_dir: Path) -> dict:
    """Score the run's ``model.keras`` and the baselines; write ``metrics.json``, CSVs and ``plots/``."""
    import keras

    from perfspec.learn import plots

    run_dir = Path(run_dir)
    model_file = run_dir / "model.keras"
    if not model_file.is_file():
        raise InputError(f"no trained model in {run_dir}", hint="run `perfspec train` first")
    model = keras.models.load_model(model_file, compile=False)
    if model.output_shape[-1] != len(dataset.vocab) or model.input_shape[-1] != dataset.window:
        raise InputError(f"the model in {run_dir} was not trained on this dataset (vocabulary/window differ)")

    scores, ngram_info = model_scores(dataset, model)
    x_test, y_test = dataset.windows("test")
    changes = y_test != x_test[:, -1]
    _x_val, y_val = dataset.windows("val")

    metrics: dict[str, Any] = {
        "dataset_fingerprint": dataset.fingerprint,
        "split": dataset.summary(),
        "test": {m: topk_accuracy(scores["test"][m], y_test, KS) for m in MODELS},
        "test_changes": {m: topk_accuracy(scores["test"][m][changes], y_test[changes], KS) for m in MODELS},
        "val": {m: topk_accuracy(scores["val"][m], y_val, KS) for m in MODELS},
        "counts": {"test": len(y_test), "test_changes": int(changes.sum()), "val": len(y_val)},
        "ngram": ngram_info,
    }
    history = _read_history(run_dir)
    metrics["lstm"] = {"best_epoch": history.get("best_epoch"), "epochs": history.get("epochs")}
    baselines = [m for m in MODELS if m != "lstm"]
    best = max(baselines, key=lambda m: (metrics["test"][m]["top1"], metrics["test"][m]["top5"]))
    metrics["best_baseline"] = best
    metrics["lstm_vs_best_baseline"] = {
        f"top{k}": round(metrics["test"]["lstm"][f"top{k}"] - metrics["test"][best][f"top{k}"], 6) for k in KS
    }
    metrics["lstm_at_least_best_baseline"] = all(
        metrics["test"]["lstm"][f"top{k}"] >= metrics["test"][best][f"top{k}"] for k in (1, 5)
    )

    rows = per_action_table(dataset, scores["test"], y_test)
    write_text_atomic(run_dir / "per_action.csv", _csv(rows))
    pairs = confused_pairs(dataset, scores["test"]["lstm"], y_test)
    metrics["confused_pairs"] = pairs
    write_text_atomic(run_dir / "confused_pairs.csv", _csv(pairs))

    plot_dir = run_dir / "plots"
    curves = {
        f"test ({len(y_test)} windows)": _curves(scores["test"], y_test),
        f"test, next != current ({int(changes.sum())})": _curves(
            {m: s[changes] for m, s in scores["test"].items()}, y_test[changes]
        ),
    }
    written = [
        plots.topk_curves(curves, plot_dir / "topk.png"),
        plots.per_action_accuracy(rows, MODELS, plot_dir / "per_action_accuracy.png"),
    ]
    if history.get("loss"):
        written.append(
            plots.learning_curves(history, history.get("best_epoch") or 0, plot_dir / "learning_curves.png")
        )
    metrics["files"] = sorted(
        str(p.relative_to(run_dir))
        for p in [*written, run_dir / "per_action.csv", run_dir / "confused_pairs.csv"]
    )
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def per_action_table(dataset: Dataset, scores: dict[str, np.ndarray], y: np.ndarray) -> list[dict[str, Any]]:
    """Per true action: support, LSTM top-1 precision/recall/F1 and each model's top-1 recall."""
    vocab_size = len(dataset.vocab)
    support = np.bincount(y, minlength=vocab_size)
    top1 = {m: np.argmax(s, axis=1) if len(s) else np.zeros(0, int) for m, s in scores.items()}
    rows = []
    for action_id in np.argsort(-support, kind="stable"):
        predicted = int(np.sum(top1["lstm"] == action_id))
        if support[action_id] == 0 and predicted == 0:
            continue
        is_true = y == action_id
        hits = int(np.sum(top1["lstm"][is_true] == action_id))
        precision = hits / predicted if predicted else 0.0
        recall = hits / support[action_id] if support[action_id] else 0.0
        row: dict[str, Any] = {
            "action": dataset.vocab.tokens[action_id],
            "support": int(support[action_id]),
            "lstm_predicted": predicted,
            "lstm_precision": round(precision, 4),
            "lstm_recall": round(recall, 4),
            "lstm_f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        }
        for model in MODELS[1:]:
            model_hits = int(np.sum(top1[model][is_true] == action_id))
            row[f"{model}_recall"] = round(model_hits / support[action_id], 4) if support[action_id] else 0.0
        rows.append(row)
    return rows


def confused_pairs(dataset: Dataset, scores: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """The most frequent (actual, predicted) top-1 mistakes of the LSTM."""
    if len(y) == 0:
        return []
    predicted = np.argmax(scores, axis=1)
    wrong = predicted != y
    counts = Counter(zip(y[wrong].tolist(), predicted[wrong].tolist(), strict=True))
    tokens = dataset.vocab.tokens
    return [
        {"actual": tokens[a], "predicted": tokens[p], "count": c}
        for (a, p), c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:CONFUSED_PAIRS]
    ]


def _curves(scores: dict[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    from perfspec.learn.baselines import topk_hits

    return {
        m: [float(topk_hits(s, y, k).mean()) if len(y) else 0.0 for k in range(1, CURVE_K + 1)]
        for m, s in scores.items()
    }


def _read_history(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
