"""Evaluation: metrics.json contract, honest comparison with baselines, CSVs and real PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from perfspec.errors import InputError
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.evaluation import evaluate
from perfspec.learn.training import train
from perfspec.settings import DatasetSettings, TrainSettings
from tests.synthetic import chain_actions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("run")
    dataset = dataset_from_actions(chain_actions(), DatasetSettings(window=4))
    settings = TrainSettings(
        embedding_dim=8, lstm_units=16, epochs=6, batch_size=32, learning_rate=0.02, seed=1
    )
    train(dataset, settings, run_dir)
    return dataset, run_dir, evaluate(dataset, run_dir)


def test_metrics_json_has_the_contract_keys(evaluated) -> None:
    dataset, run_dir, metrics = evaluated
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["split"]["method"] == "chronological"
    assert on_disk["split"]["test"]["windows"] == len(dataset.windows("test")[1])
    for section in ("test", "test_changes", "val"):
        for model in ("lstm", "ngram", "most_frequent"):
            scores = on_disk[section][model]
            assert set(scores) == {"top1", "top3", "top5", "top10"}
            values = [scores[f"top{k}"] for k in (1, 3, 5, 10)]
            assert all(0.0 <= v <= 1.0 for v in values)
            assert values == sorted(values), "top-k accuracy cannot fall as k grows"
    assert on_disk["dataset_fingerprint"] == dataset.fingerprint


def test_metrics_are_recomputable_from_the_model(evaluated) -> None:
    import keras

    dataset, run_dir, metrics = evaluated
    model = keras.models.load_model(run_dir / "model.keras")
    x, y = dataset.windows("test")
    top1 = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    assert metrics["test"]["lstm"]["top1"] == pytest.approx(top1)
    changes = y != x[:, -1]
    assert metrics["counts"]["test_changes"] == int(changes.sum())


def test_ngram_order_is_chosen_on_validation(evaluated) -> None:
    _, _, metrics = evaluated
    by_order = {int(k): v for k, v in metrics["ngram"]["val_top1_by_order"].items()}
    assert set(by_order) == set(range(1, 6))  # window 4 -> orders 1..5
    best = max(by_order.values())
    assert metrics["ngram"]["order"] == min(k for k, v in by_order.items() if v == best)
    assert metrics["val"]["ngram"]["top1"] == pytest.approx(best)


def test_learned_models_beat_most_frequent(evaluated) -> None:
    _, _, metrics = evaluated
    assert metrics["test"]["ngram"]["top1"] > metrics["test"]["most_frequent"]["top1"]
    assert metrics["test"]["lstm"]["top3"] > metrics["test"]["most_frequent"]["top3"]


def test_tables_and_plots_are_written(evaluated) -> None:
    _, run_dir, metrics = evaluated
    for name in ("learning_curves.png", "topk.png", "per_action_accuracy.png"):
        data = (run_dir / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name
    with open(run_dir / "per_action.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {"action", "support", "lstm_precision", "lstm_recall", "ngram_recall"} <= set(rows[0])
    assert sum(int(r["support"]) for r in rows) == metrics["counts"]["test"]
    errors = round((1 - metrics["test"]["lstm"]["top1"]) * metrics["counts"]["test"])
    assert sum(p["count"] for p in metrics["confused_pairs"]) <= errors
    assert all(p["actual"] != p["predicted"] for p in metrics["confused_pairs"])


def test_evaluate_without_a_model_is_an_input_error(tmp_path: Path) -> None:
    dataset = dataset_from_actions(chain_actions(), DatasetSettings(window=4))
    with pytest.raises(InputError, match="no trained model"):
        evaluate(dataset, tmp_path)


def test_evaluate_refuses_a_model_of_another_dataset(evaluated) -> None:
    _, run_dir, _ = evaluated
    other = dataset_from_actions(chain_actions(), DatasetSettings(window=5))
    with pytest.raises(InputError, match="not trained on this dataset"):
        evaluate(other, run_dir)
