"""An experiment's report: the metrics.json contract, recomputable numbers, CSVs and real PNG plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from perfspec.learn.configs import neural_config
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.experiment import run_experiment
from perfspec.learn.predict import Predictor
from perfspec.learn.scoring import target_ranks
from perfspec.settings import DatasetSettings, Settings, TrainSettings
from tests.synthetic import chain_actions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = TrainSettings(
    embedding_dim=8, lstm_units=16, dropout=0.0, epochs=4, batch_size=32, learning_rate=0.02, seed=1
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("run")
    settings = (
        Settings()
        .with_section("dataset", window=4)
        .with_section("selection", cv_folds=3, ngram_orders=(1, 2, 3))
    )
    dataset = dataset_from_actions(chain_actions(900, seed=2), DatasetSettings(window=4))
    messages: list[str] = []
    metrics = run_experiment(dataset, [neural_config(TINY)], run_dir, settings, messages.append)
    return dataset, run_dir, metrics, messages


def test_metrics_json_has_the_contract_keys(experiment) -> None:
    dataset, run_dir, metrics, _ = experiment
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    models = {"ngram", "most_frequent", "lstm-16x1-e8-d0", "mixture-lstm-16x1-e8-d0"}
    assert set(on_disk["test"]) == models
    for scores in on_disk["test"].values():
        values = [scores[f"top{k}"] for k in (1, 3, 5, 10, 20)]
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    assert set(on_disk["leakage"]) >= {"val", "test"} and 0 <= on_disk["leakage"]["test"] <= 1
    assert on_disk["dataset"]["actions"] == len(dataset.ids) and on_disk["dataset"]["repeats_removed"] == 0
    for model in models:
        cv = on_disk["cv"][model]["top5"]
        assert len(cv["folds"]) == 3 and cv["mean"] == pytest.approx(np.mean(cv["folds"]), abs=1e-6)
        assert cv["std"] == pytest.approx(np.std(cv["folds"], ddof=1), abs=1e-6)
    assert on_disk["cv_paired"]["ngram"]["top5"]["mean"] == 0.0
    best = max(on_disk["cv"][m]["top5"]["mean"] for m in models)
    assert on_disk["cv"][on_disk["champion_candidate"]]["top5"]["mean"] == best
    assert len(on_disk["coverage"]["ngram"]) == 20


def test_holdout_scores_are_recomputable_from_the_saved_models(experiment) -> None:
    dataset, run_dir, metrics, _ = experiment
    x, y = dataset.windows("test")
    for name in metrics["test"]:
        predictor = Predictor.load(run_dir / "models" / name)
        top5 = float(np.mean(target_ranks(predictor.probabilities_batch(x), y) < 5))
        assert metrics["test"][name]["top5"] == pytest.approx(top5), name
    served = Predictor.load(run_dir)  # the root bundle is the candidate's
    assert served.info["name"] == metrics["champion_candidate"]


def test_ngram_order_is_chosen_by_cross_validation(experiment) -> None:
    _, _, metrics, messages = experiment
    by_order = {int(k): v for k, v in metrics["models"]["ngram"]["by_order"].items()}
    assert set(by_order) == {1, 2, 3}
    assert metrics["models"]["ngram"]["order"] == max(by_order, key=lambda o: (by_order[o], -o))
    assert any("n-gram order" in m for m in messages)


def test_learned_models_beat_most_frequent(experiment) -> None:
    _, _, metrics, _ = experiment
    assert metrics["test"]["ngram"]["top1"] > metrics["test"]["most_frequent"]["top1"]
    assert metrics["cv"]["lstm-16x1-e8-d0"]["top3"]["mean"] > metrics["cv"]["most_frequent"]["top3"]["mean"]


def test_tables_and_plots_are_written(experiment) -> None:
    _, run_dir, metrics, _ = experiment
    for name in ("coverage.png", "cv.png", "per_action_accuracy.png", "learning_curves.png"):
        data = (run_dir / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name
    with open(run_dir / "coverage.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["k"]) for r in rows] == list(range(1, 21))
    assert float(rows[4]["ngram"]) == pytest.approx(metrics["test"]["ngram"]["top5"], abs=1e-6)
    with open(run_dir / "per_action.csv") as handle:
        assert all(int(r["support"]) > 0 for r in csv.DictReader(handle))


def test_a_rerun_trains_nothing(experiment) -> None:
    dataset, run_dir, metrics, _ = experiment
    settings = Settings().with_section("selection", cv_folds=3, ngram_orders=(1, 2, 3))
    messages: list[str] = []
    again = run_experiment(dataset, [neural_config(TINY)], run_dir, settings, messages.append)
    assert again["test"] == metrics["test"]
    assert not any("fold" in m or "hold-out" in m for m in messages)  # scores were reused
