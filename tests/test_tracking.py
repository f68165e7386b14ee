"""MLflow tracking and the champion rule, against a real MLflow store (temporary SQLite file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.evaluation import evaluate
from perfspec.learn.predict import BUNDLE_NAME, Predictor
from perfspec.learn.tracking import (
    RUN_RECORD,
    TAG_FINGERPRINT,
    TAG_MODEL_URI,
    log_run,
    register_and_promote,
)
from perfspec.learn.training import train
from perfspec.settings import DatasetSettings, Settings, TrainSettings
from tests.synthetic import chain_actions

TINY = TrainSettings(embedding_dim=4, lstm_units=8, epochs=2, batch_size=32, learning_rate=0.02, seed=2)


def _trained_run(settings: Settings, name: str, seed: int, actions: list[str] | None = None):
    dataset = dataset_from_actions(actions or chain_actions(500, seed), settings.dataset)
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


def _another_run_of(settings: Settings, run_id: str) -> str:
    """A cheap second MLflow run of the same model and dataset (a challenger with its own run id)."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    source = client.get_run(run_id)
    tags = {k: source.data.tags[k] for k in (TAG_FINGERPRINT, TAG_MODEL_URI)}
    run = client.create_run(source.info.experiment_id, tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_champion_rule(settings: Settings, first_run) -> None:
    import mlflow

    _dataset, _run_dir, metrics, run_id = first_run
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    first = register_and_promote(settings, run_id, metrics)
    assert first.promoted and first.reason.startswith("no @champion")
    champion = client.get_model_version_by_alias("perfspec", "champion")
    assert str(champion.version) == first.version

    # the same score on the same data does not move the alias
    run_id = _another_run_of(settings, run_id)
    tie = register_and_promote(settings, run_id, metrics)
    assert not tie.promoted and tie.same_dataset and tie.champion_version == first.version
    assert tie.version != first.version
    assert client.get_run(run_id).data.tags["champion_decision"] == "kept"

    # better by less than the margin: kept; better with no margin: promoted
    top1 = metrics["test"]["lstm"]["top1"]
    better = {
        **metrics,
        "test": {**metrics["test"], "lstm": {**metrics["test"]["lstm"], "top1": top1 + 0.01}},
    }
    strict = settings.with_section("mlflow", promotion_margin=0.05)
    assert not register_and_promote(strict, _another_run_of(settings, run_id), better).promoted
    run_id = _another_run_of(settings, run_id)
    promoted = register_and_promote(settings, run_id, better)
    assert promoted.promoted and promoted.champion_top1 == pytest.approx(top1)
    assert str(client.get_model_version_by_alias("perfspec", "champion").version) == promoted.version
    assert client.get_run(run_id).data.tags["champion_decision"] == "promoted"
    assert client.get_model_version("perfspec", promoted.version).tags["champion_decision"] == "promoted"


def test_the_logged_model_carries_the_bundle_and_only_it_is_downloaded(
    settings: Settings, first_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    dataset, _run_dir, metrics, run_id = first_run
    register_and_promote(settings, run_id, metrics)  # makes sure @champion exists (idempotent)
    model_uri = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(run_id).data.tags[TAG_MODEL_URI]
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    downloaded: list[str] = []
    real = LocalArtifactRepository._download_file

    def recording(self, remote_file_path, local_path):
        downloaded.append(Path(remote_file_path).name)
        return real(self, remote_file_path, local_path)

    monkeypatch.setattr(LocalArtifactRepository, "_download_file", recording)
    x, _ = dataset.windows("test")
    for uri in (model_uri, "models:/perfspec@champion"):
        downloaded.clear()
        bundled = Predictor.load(uri, tracking_uri=settings.mlflow_tracking_uri)
        assert bundled.backend == "bundle" and bundled.vocab == dataset.vocab
        assert downloaded == [BUNDLE_NAME]  # not the Keras file, not MLmodel
        from_keras = Predictor.load(uri, tracking_uri=settings.mlflow_tracking_uri, use_bundle=False)
        assert from_keras.backend == "numpy"
        np.testing.assert_array_equal(bundled.probabilities_batch(x), from_keras.probabilities_batch(x))

    script = (
        "import sys\n"
        "from perfspec.learn.predict import Predictor\n"
        f"p = Predictor.load('models:/perfspec@champion', tracking_uri={settings.mlflow_tracking_uri!r})\n"
        "print(p.backend, p.top_k(['create_ns', 'create_sa'], 2))\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bundle ")


def test_a_second_train_on_a_finished_run_dir_logs_and_registers_nothing_new(
    settings: Settings, first_run
) -> None:
    import mlflow

    dataset, run_dir, metrics, run_id = first_run
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    decision = register_and_promote(settings, run_id, metrics, run_dir=run_dir)  # (again, maybe)
    runs = {r.info.run_id for r in client.search_runs([client.get_run(run_id).info.experiment_id])}
    versions = {v.version for v in client.search_model_versions("name = 'perfspec'")}

    again = train(dataset, settings.train, run_dir)  # finished: returned as it is
    assert again.epochs_this_call == 0
    metrics_again = evaluate(dataset, run_dir)
    assert log_run(settings, dataset, run_dir, metrics_again) == run_id
    assert register_and_promote(settings, run_id, metrics_again, run_dir=run_dir) == decision
    assert {r.info.run_id for r in client.search_runs([client.get_run(run_id).info.experiment_id])} == runs
    assert {v.version for v in client.search_model_versions("name = 'perfspec'")} == versions
    record = json.loads((run_dir / RUN_RECORD).read_text())
    assert record["run_id"] == run_id and record["version"] == decision.version


def test_log_run_after_a_failure_leaves_no_failed_run(
    settings: Settings, first_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    import perfspec.learn.tracking as tracking

    dataset, run_dir, metrics, run_id = first_run
    (run_dir / RUN_RECORD).unlink()  # as if never logged
    real = tracking._log_contents

    def flaky(run, *args, **kwargs):
        mlflow.log_param("partial", 1)
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(tracking, "_log_contents", flaky)
    with pytest.raises(ConnectionError):
        log_run(settings, dataset, run_dir, metrics)
    monkeypatch.setattr(tracking, "_log_contents", real)
    retried = log_run(settings, dataset, run_dir, metrics)
    assert retried != run_id
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    assert not client.search_runs([experiment], "attributes.status = 'FAILED'")
    assert client.get_run(retried).info.status == "FINISHED"


def _champion_top1_from_names(champion: Predictor, actions: list[str], dataset) -> float:
    """The champion's top-1 on ``dataset``'s test targets, from the raw action names (independent)."""
    hits = []
    for start, end in dataset.segments["test"]:
        for pos in range(start + dataset.window, end):
            history = actions[max(start, pos - champion.window) : pos]
            ids = np.zeros((1, champion.window), dtype=np.int32)
            ids[0, champion.window - len(history) :] = [champion.vocab.id_of(a) for a in history]
            probs = champion.model.predict(ids, verbose=0)[0]
            hits.append(int(np.argmax(probs)) == champion.vocab.id_of(actions[pos]))
    return float(np.mean(hits))


def test_other_dataset_is_decided_by_reevaluating_the_champion(settings: Settings, first_run) -> None:
    """The champion is scored on the challenger's test part by action NAME: an action the challenger
    never trained on (``update_cm`` only in its test part) reaches the champion as itself."""
    import mlflow

    _, _, metrics, run_id = first_run
    register_and_promote(settings, run_id, metrics)  # make sure a champion exists
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    champion_version = str(client.get_model_version_by_alias("perfspec", "champion").version)
    other = settings.with_section("dataset", window=5)
    actions = chain_actions(500, seed=5)
    cut = int(len(actions) * 0.9)
    actions = [("update_secret" if a == "update_cm" and i < cut else a) for i, a in enumerate(actions)]
    dataset, run_dir_b, metrics_b = _trained_run(other, "second", seed=5, actions=actions)
    assert "update_cm" not in dataset.vocab and "update_cm" in actions[cut:]
    run_b = log_run(other, dataset, run_dir_b, metrics_b)
    decision = register_and_promote(other, run_b, metrics_b)
    assert decision.same_dataset is False and "re-evaluated" in decision.reason
    assert decision.champion_version == champion_version

    champion = Predictor.load(
        f"models:/perfspec/{champion_version}", tracking_uri=settings.mlflow_tracking_uri
    )
    assert "update_cm" in champion.vocab
    expected_champion = _champion_top1_from_names(champion, actions, dataset)
    assert decision.champion_top1 == pytest.approx(expected_champion, abs=1e-9)
    challenger = metrics_b["test"]["lstm"]["top1"]  # from evaluate(), not from the decision
    assert decision.promoted == (challenger > expected_champion + settings.mlflow.promotion_margin)
    alias = str(client.get_model_version_by_alias("perfspec", "champion").version)
    assert alias == (decision.version if decision.promoted else champion_version)
