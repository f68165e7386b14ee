"""MLflow tracking and the champion rule, against a real MLflow store (temporary SQLite file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfspec.dataset import dataset_from_actions
from perfspec.evaluation import evaluate
from perfspec.predict import Predictor
from perfspec.settings import DatasetSettings, Settings, TrainSettings
from perfspec.tracking import log_run, register_and_promote
from perfspec.training import train

TINY = TrainSettings(embedding_dim=4, lstm_units=8, epochs=2, batch_size=32, learning_rate=0.02, seed=2)


def _actions(n: int, seed: int) -> list[str]:
    chains = [
        ["create_ns", "create_sa", "create_pods", "patch_pods"],
        ["delete_pods", "delete_sa"],
        ["update_cm"],
    ]
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        out.extend(chains[int(rng.integers(0, len(chains)))])
    return out[:n]


def _trained_run(settings: Settings, name: str, seed: int):
    dataset = dataset_from_actions(_actions(500, seed), settings.dataset)
    run_dir = settings.paths.runs_dir / name
    train(dataset, settings.train, run_dir)
    return dataset, run_dir, evaluate(dataset, run_dir)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("data")
    base = Settings().with_section("paths", data_dir=data_dir)
    base = base.with_section("mlflow", tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    return base.model_copy(update={"train": TINY, "dataset": DatasetSettings(window=4)})


@pytest.fixture(scope="module")
def first_run(settings: Settings):
    dataset, run_dir, metrics = _trained_run(settings, "first", seed=0)
    return dataset, run_dir, metrics, log_run(settings, dataset, run_dir, metrics)


def test_log_run_records_params_metrics_inputs_and_artifacts(settings: Settings, first_run) -> None:
    import mlflow

    dataset, _, metrics, run_id = first_run
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(run_id)
    assert run.data.tags["dataset_fingerprint"] == dataset.fingerprint
    assert run.data.params["train.lstm_units"] == "8" and run.data.params["dataset.window"] == "4"
    assert run.data.metrics["test_lstm_top1"] == pytest.approx(metrics["test"]["lstm"]["top1"])
    assert run.data.metrics["test_ngram_top5"] == pytest.approx(metrics["test"]["ngram"]["top5"])
    assert run.data.metrics["test_most_frequent_top10"] == pytest.approx(
        metrics["test"]["most_frequent"]["top10"]
    )
    history = client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    digests = {d.dataset.digest for d in run.inputs.dataset_inputs}
    assert digests == {f"{dataset.fingerprint[:24]}-train", f"{dataset.fingerprint[:24]}-test"}
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"history.json", "metrics.json", "vocab.json", "plots", "dataset"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "perfspec"
    assert experiment.artifact_location.startswith(
        (settings.paths.mlflow_dir / "artifacts").resolve().as_uri()
    )
    # the logged model carries signature, input example and vocabulary
    predictor = Predictor.load(run.data.tags["perfspec.model_uri"], tracking_uri=settings.mlflow_tracking_uri)
    assert predictor.vocab == dataset.vocab and predictor.window == 4
    local = Path(mlflow.artifacts.download_artifacts(run.data.tags["perfspec.model_uri"]))
    assert (local / "input_example.json").is_file() and "signature" in (local / "MLmodel").read_text()


def test_champion_rule(settings: Settings, first_run) -> None:
    import mlflow

    _dataset, _run_dir, metrics, run_id = first_run
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    first = register_and_promote(settings, run_id, metrics)
    assert first.promoted and first.reason.startswith("no @champion")
    champion = client.get_model_version_by_alias("perfspec", "champion")
    assert str(champion.version) == first.version

    # the same score on the same data does not move the alias
    tie = register_and_promote(settings, run_id, metrics)
    assert not tie.promoted and tie.same_dataset and tie.champion_version == first.version
    assert client.get_run(run_id).data.tags["champion_decision"] == "kept"

    # better by less than the margin: kept; better with no margin: promoted
    top1 = metrics["test"]["lstm"]["top1"]
    better = {
        **metrics,
        "test": {**metrics["test"], "lstm": {**metrics["test"]["lstm"], "top1": top1 + 0.01}},
    }
    strict = settings.with_section("mlflow", promotion_margin=0.05)
    assert not register_and_promote(strict, run_id, better).promoted
    promoted = register_and_promote(settings, run_id, better)
    assert promoted.promoted and promoted.champion_top1 == pytest.approx(top1)
    assert str(client.get_model_version_by_alias("perfspec", "champion").version) == promoted.version
    assert client.get_run(run_id).data.tags["champion_decision"] == "promoted"
    assert client.get_model_version("perfspec", promoted.version).tags["champion_decision"] == "promoted"


def test_other_dataset_is_decided_by_reevaluating_the_champion(settings: Settings, first_run) -> None:
    import mlflow

    _, _, metrics, run_id = first_run
    register_and_promote(settings, run_id, metrics)  # make sure a champion exists
    other = settings.with_section("dataset", window=5)
    dataset, run_dir_b, metrics_b = _trained_run(other, "second", seed=5)
    run_b = log_run(other, dataset, run_dir_b, metrics_b)
    decision = register_and_promote(other, run_b, metrics_b)
    assert decision.same_dataset is False and "re-evaluated" in decision.reason

    # recompute the champion's top-1 on the second dataset's test windows independently
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    champion = Predictor.load(
        f"models:/perfspec/{decision.champion_version}", tracking_uri=settings.mlflow_tracking_uri
    )
    x, y = dataset.windows("test")
    ids = np.array(
        [[champion.vocab.id_of(t) for t in dataset.vocab.decode(row)][-champion.window :] for row in x]
    )
    padded = np.zeros((len(ids), champion.window), dtype=np.int32)
    padded[:, champion.window - ids.shape[1] :] = ids
    probs = champion.model.predict(padded, verbose=0)
    truth = np.array([champion.vocab.id_of(t) for t in dataset.vocab.decode(y)])
    assert decision.champion_top1 == pytest.approx(
        float(np.mean(np.argmax(probs, axis=1) == truth)), abs=1e-9
    )
    assert decision.promoted == (decision.challenger_top1 > decision.champion_top1)
    alias = str(client.get_model_version_by_alias("perfspec", "champion").version)
    assert (alias == decision.version) == decision.promoted
