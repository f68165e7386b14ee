"""MLflow tracking, the registry and the champion rule, against a real MLflow store (temporary SQLite file).

One experiment (n-gram, most frequent, a tiny LSTM and its mixture on 3 blocked CV folds + hold-out) is
scored once per module and logged; the tests read what MLflow holds, register it, and challenge it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from perfspec.learn.bundle import BUNDLE_NAME
from perfspec.learn.configs import neural_config
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.experiment import run_experiment
from perfspec.learn.predict import Predictor
from perfspec.learn.promotion import (
    RUN_RECORD,
    TAG_DECISION,
    TAG_FINGERPRINT,
    TAG_HISTORY,
    TAG_MODEL_URI,
    decide,
    register_and_promote,
)
from perfspec.learn.tracking import log_run
from perfspec.settings import Settings
from tests.synthetic import chain_actions

KS = (1, 3, 5, 10, 20)
ACTIONS = 500


def tiny_settings(data_dir: Path) -> Settings:
    """A tiny LSTM, window 4, 3 blocked CV folds, n-gram orders 1-3; MLflow in SQLite under data_dir."""
    settings = Settings().with_section("paths", data_dir=data_dir)
    settings = settings.with_section("mlflow", tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    settings = settings.with_section("dataset", window=4)
    settings = settings.with_section(
        "train", embedding_dim=4, lstm_units=8, epochs=2, batch_size=32, learning_rate=0.02
    )
    return settings.with_section("selection", cv_folds=3, ngram_orders=(1, 2, 3))


def _client(settings: Settings):
    import mlflow

    return mlflow.MlflowClient(settings.mlflow_tracking_uri)


def _run_ids(settings: Settings) -> set[str]:
    client = _client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    return {r.info.run_id for r in client.search_runs([experiment.experiment_id], max_results=1000)}


def _versions(settings: Settings) -> set[str]:
    name = settings.mlflow.registered_model
    return {str(v.version) for v in _client(settings).search_model_versions(f"name = '{name}'")}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return tiny_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def first(settings: Settings) -> SimpleNamespace:
    """The scored experiment, logged once (not registered: ``registered`` does that)."""
    dataset = dataset_from_actions(chain_actions(ACTIONS, 0), settings.dataset)
    config = neural_config(settings.train)
    run_dir = settings.paths.runs_dir / "first"
    metrics = run_experiment(dataset, [config], run_dir, settings)
    run_id = log_run(settings, dataset, run_dir, metrics)
    return SimpleNamespace(
        dataset=dataset, neural=config.name, run_dir=run_dir, metrics=metrics, run_id=run_id
    )


@pytest.fixture(scope="module")
def registered(settings: Settings, first: SimpleNamespace):
    """The first run registered as v1 of an empty registry (so it becomes @champion)."""
    return register_and_promote(settings, first.run_id, first.metrics, run_dir=first.run_dir)


def test_the_experiment_writes_the_metrics_contract(first: SimpleNamespace) -> None:
    metrics, neural = first.metrics, first.neural
    assert json.loads((first.run_dir / "metrics.json").read_text()) == metrics
    models = {"ngram", "most_frequent", neural, f"mixture-{neural}"}
    assert set(metrics["models"]) == models and set(metrics["test"]) == models
    for model in models:
        assert set(metrics["test"][model]) == {f"top{k}" for k in KS}
        assert all(0.0 <= v <= 1.0 for v in metrics["test"][model].values())
        cv = metrics["cv"][model]["top5"]
        assert len(cv["folds"]) == 3 and cv["mean"] == pytest.approx(np.mean(cv["folds"]), abs=1e-6)
        assert cv["std"] >= 0.0
    assert metrics["models"]["ngram"]["order"] in (1, 2, 3)
    assert metrics["models"][neural]["best_epoch"] in (1, 2)
    assert set(metrics["leakage"]) >= {"val", "test"}
    assert 0.0 <= metrics["leakage"]["test"] <= 1.0 and 0.0 <= metrics["leakage"]["val"] <= 1.0
    assert metrics["dataset"]["actions"] == ACTIONS and metrics["dataset"]["repeats_removed"] == 0
    # the n-gram is the reference of the paired CV differences: its own difference is zero
    assert metrics["cv_paired"]["ngram"]["top5"]["mean"] == 0.0
    candidate = metrics["champion_candidate"]
    assert candidate in models and metrics["verdict"]["candidate"] == candidate
    best = max(metrics["cv"][m]["top5"]["mean"] for m in models)
    assert metrics["cv"][candidate]["top5"]["mean"] == pytest.approx(best)
    # the candidate's bundle is what the run dir serves
    predictor = Predictor.load(first.run_dir)
    assert predictor.backend == "bundle" and predictor.vocab == first.dataset.vocab
    assert json.loads((first.run_dir / "model.json").read_text())["name"] == candidate


def test_log_run_records_params_metrics_inputs_and_artifacts(
    settings: Settings, first: SimpleNamespace
) -> None:
    dataset, metrics, neural = first.dataset, first.metrics, first.neural
    client = _client(settings)
    run = client.get_run(first.run_id)
    candidate = metrics["champion_candidate"]
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith(candidate) and run.info.run_name.endswith(
        f" · w4 · {ACTIONS} actions"
    )
    assert run.data.tags[TAG_FINGERPRINT] == dataset.fingerprint
    assert run.data.tags["champion_candidate"] == candidate
    assert "**Leakage**" in run.data.tags["mlflow.note.content"]
    params = run.data.params
    assert params["dataset.window"] == "4" and params["selection.cv_folds"] == "3"
    assert params["candidate"] == candidate and params["ngram.order"] == str(
        metrics["models"]["ngram"]["order"]
    )

    logged = run.data.metrics
    # the headline metrics: the candidate's, beside the n-gram's
    assert logged["top5"] == pytest.approx(metrics["test"][candidate]["top5"])
    assert logged["top5_ngram"] == pytest.approx(metrics["test"]["ngram"]["top5"])
    assert logged["leakage_test"] == pytest.approx(metrics["leakage"]["test"])
    assert logged["cv_top5_mean"] == pytest.approx(metrics["cv"][candidate]["top5"]["mean"])
    assert logged["actions"] == ACTIONS
    for model, scores in metrics["test"].items():
        for k in KS:
            assert logged[f"test_{model}_top{k}"] == pytest.approx(scores[f"top{k}"])
        assert logged[f"cv_{model}_top5_mean"] == pytest.approx(metrics["cv"][model]["top5"]["mean"])
    assert len(client.get_metric_history(first.run_id, f"coverage_{candidate}")) == 20

    # per-epoch curves (step = epoch); the final loss/val_loss are the kept epoch's, not the last one's
    history = json.loads((first.run_dir / "models" / neural / "history.json").read_text())
    best = history["best_epoch"]
    assert [m.step for m in client.get_metric_history(first.run_id, "epoch_val_loss")] == [1, 2]
    assert logged["best_epoch"] == best
    assert logged["loss"] == pytest.approx(history["loss"][best - 1])
    assert logged["val_loss"] == pytest.approx(history["val_loss"][best - 1])

    digests = {d.dataset.digest for d in run.inputs.dataset_inputs}
    assert digests == {f"{dataset.fingerprint[:24]}-train", f"{dataset.fingerprint[:24]}-test"}
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"metrics.json", "vocab.json", "cv.csv", "coverage.csv", "plots", "dataset"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "perfspec"
    assert experiment.artifact_location.startswith(
        (settings.paths.mlflow_dir / "artifacts").resolve().as_uri()
    )
    record = json.loads((first.run_dir / RUN_RECORD).read_text())
    assert record["run_id"] == first.run_id and record["tracking_uri"] == settings.mlflow_tracking_uri


def test_the_logged_model_is_a_pyfunc_over_the_bundle(settings: Settings, first: SimpleNamespace) -> None:
    import mlflow
    import pandas as pd

    model_uri = _client(settings).get_run(first.run_id).data.tags[TAG_MODEL_URI]
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    assert (local / "artifacts" / BUNDLE_NAME).is_file() and not list(local.rglob("*.keras"))
    mlmodel = (local / "MLmodel").read_text()
    assert "python_function" in mlmodel and "signature" in mlmodel
    assert (local / "input_example.json").is_file()

    served = Predictor.load(first.run_dir)
    x, _ = first.dataset.windows("test")
    rows = [first.dataset.vocab.decode(row) for row in x[:3]]
    frame = pd.DataFrame(rows, columns=[f"a{i}" for i in range(4)])
    answer = mlflow.pyfunc.load_model(model_uri).predict(frame)
    for row, (_, out) in zip(rows, answer.iterrows(), strict=True):
        expected = served.predict(row, 5).actions
        assert [out[f"action_{r}"] for r in range(1, 6)] == [a for a, _ in expected]
        assert [out[f"probability_{r}"] for r in range(1, 6)] == pytest.approx([p for _, p in expected])


def test_loading_a_registered_version_downloads_only_the_bundle_and_never_tensorflow(
    settings: Settings, first: SimpleNamespace, registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    assert registered.version == "1"
    downloaded: list[str] = []
    real = LocalArtifactRepository._download_file  # noqa: SLF001 - spies on MLflow's per-file download

    def recording(self, remote_file_path, local_path):
        downloaded.append(Path(remote_file_path).name)
        return real(self, remote_file_path, local_path)

    monkeypatch.setattr(LocalArtifactRepository, "_download_file", recording)
    x, _ = first.dataset.windows("test")
    for uri in ("models:/perfspec/1", "models:/perfspec@champion"):
        downloaded.clear()
        predictor = Predictor.load(uri, tracking_uri=settings.mlflow_tracking_uri)
        assert downloaded == [BUNDLE_NAME]  # not MLmodel, not the input example, no Keras file
        assert predictor.backend == "bundle" and predictor.vocab == first.dataset.vocab
        np.testing.assert_allclose(
            predictor.probabilities_batch(x), Predictor.load(first.run_dir).probabilities_batch(x)
        )

    script = (
        "import sys\n"
        "from perfspec.learn.predict import Predictor\n"
        f"p = Predictor.load('models:/perfspec/1', tracking_uri={settings.mlflow_tracking_uri!r})\n"
        "print(p.backend, p.top_k(['create_ns', 'create_sa'], 2))\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("bundle ")


def test_log_run_is_idempotent(settings: Settings, first: SimpleNamespace) -> None:
    before = _run_ids(settings)
    assert log_run(settings, first.dataset, first.run_dir, first.metrics) == first.run_id
    assert _run_ids(settings) == before


def test_a_failed_log_run_deletes_its_half_logged_run(
    settings: Settings, first: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import perfspec.learn.tracking as tracking

    copy = tmp_path / "copy"
    shutil.copytree(first.run_dir, copy, ignore=shutil.ignore_patterns(RUN_RECORD))
    before = _run_ids(settings)
    client = _client(settings)
    attempted: list[str] = []

    def flaky(client_, run_id, *_args, **_kwargs):
        attempted.append(run_id)
        client_.log_param(run_id, "partial", 1)
        raise ConnectionError("tracking server went away")

    real = tracking._log_contents  # noqa: SLF001 - the test wraps the internal step to make it fail
    monkeypatch.setattr(tracking, "_log_contents", flaky)
    with pytest.raises(ConnectionError):
        log_run(settings, first.dataset, copy, first.metrics)
    [half] = attempted
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert _run_ids(settings) == before and not (copy / RUN_RECORD).exists()

    monkeypatch.setattr(tracking, "_log_contents", real)
    retried = log_run(settings, first.dataset, copy, first.metrics)
    assert retried not in (half, first.run_id)
    assert client.get_run(retried).info.status == "FINISHED"
    assert _run_ids(settings) == before | {retried}
    experiment = client.get_run(retried).info.experiment_id
    assert not client.search_runs([experiment], "attributes.status = 'FAILED'")


# --- the champion rule, alone --------------------------------------------------------------------------
def test_decide_promotes_a_clear_win() -> None:
    champion = np.tile([True, False], 500)
    outcome = decide(np.ones(1000, dtype=bool), champion, blocks=10, standard_errors=2.0, margin=0.0)
    assert outcome.promoted and outcome.gain == pytest.approx(0.5) and outcome.se == pytest.approx(0.0)
    assert outcome.challenger == 1.0 and outcome.champion == 0.5
    # ... unless the margin asks for more
    assert not decide(np.ones(1000, dtype=bool), champion, 10, 2.0, margin=0.6).promoted


def test_decide_does_not_promote_a_tie() -> None:
    hits = np.random.default_rng(0).random(1000) < 0.6
    outcome = decide(hits, hits.copy(), blocks=10, standard_errors=2.0, margin=0.0)
    assert not outcome.promoted and outcome.gain == 0.0


def test_decide_does_not_promote_a_small_gain_within_the_noise() -> None:
    champion = np.random.default_rng(1).random(1000) < 0.5
    challenger = champion.copy()
    block0, block1 = np.arange(0, 100), np.arange(100, 200)
    challenger[block0[~champion[block0]][:9]] = True  # 9 more hits in the first block
    challenger[block1[champion[block1]][:6]] = False  # 6 fewer in the second
    outcome = decide(challenger, champion, blocks=10, standard_errors=2.0, margin=0.0)
    assert outcome.gain == pytest.approx(0.003)
    assert outcome.se > outcome.gain / 2 and not outcome.promoted
    # the same per-window hits, but spread evenly over every block: beyond the noise
    even = champion.copy()
    for block in np.array_split(np.arange(1000), 10):
        even[block[~champion[block]][:3]] = True
    assert decide(even, champion, blocks=10, standard_errors=2.0, margin=0.0).promoted


def test_decide_needs_the_same_windows() -> None:
    with pytest.raises(ValueError):
        decide(np.ones(10, dtype=bool), np.ones(9, dtype=bool), 5, 2.0, 0.0)
    with pytest.raises(ValueError):
        decide(np.ones(0, dtype=bool), np.ones(0, dtype=bool), 5, 2.0, 0.0)


# --- the registry -------------------------------------------------------------------------------------
def test_the_first_version_becomes_champion_and_a_rerun_replays_the_decision(
    settings: Settings, first: SimpleNamespace, registered
) -> None:
    client = _client(settings)
    assert registered.promoted and registered.version == "1" and not registered.replayed
    assert registered.reason.startswith("no @champion")
    assert str(client.get_model_version_by_alias("perfspec", "champion").version) == "1"
    assert client.get_run(first.run_id).data.tags[TAG_DECISION] == "promoted"
    assert client.get_model_version("perfspec", "1").tags[TAG_DECISION] == "promoted"
    model = client.get_registered_model("perfspec")
    assert model.description  # the Models page says what it is
    history = json.loads(model.tags[TAG_HISTORY])
    assert [h["version"] for h in history] == ["1"] and history[0]["reason"] == registered.reason
    record = json.loads((first.run_dir / RUN_RECORD).read_text())
    assert record["version"] == "1" and record["decision"]["promoted"]

    # the same run again (a re-run, a retry): the recorded decision, said as such; nothing moves
    versions, runs = _versions(settings), _run_ids(settings)
    assert log_run(settings, first.dataset, first.run_dir, first.metrics) == first.run_id
    again = register_and_promote(settings, first.run_id, first.metrics, run_dir=first.run_dir)
    assert again.replayed and again.promoted and again.version == "1" and again.current_champion == "1"
    assert "was promoted to @champion when first logged" in again.describe()
    assert "@champion is v1" in again.describe()
    assert _versions(settings) == versions and _run_ids(settings) == runs
    assert json.loads(client.get_registered_model("perfspec").tags[TAG_HISTORY]) == history


def test_a_second_identical_run_is_registered_but_not_promoted(
    settings: Settings,
    first: SimpleNamespace,
    registered,  # noqa: ARG001 - needed for its side effect: v1 registered as @champion
) -> None:
    client = _client(settings)
    champion = str(client.get_model_version_by_alias("perfspec", "champion").version)
    history = client.get_registered_model("perfspec").tags[TAG_HISTORY]
    run_dir = settings.paths.runs_dir / "second"
    shutil.copytree(first.run_dir, run_dir, ignore=shutil.ignore_patterns(RUN_RECORD))
    # the same experiment in its own run dir: resumed from the scores, nothing trained again
    metrics = run_experiment(first.dataset, [neural_config(settings.train)], run_dir, settings)
    assert metrics["test"] == first.metrics["test"] and metrics["cv"] == first.metrics["cv"]
    run_id = log_run(settings, first.dataset, run_dir, metrics)
    assert run_id != first.run_id

    decision = register_and_promote(settings, run_id, metrics, run_dir=run_dir)
    assert not decision.promoted and not decision.replayed
    assert decision.version != champion and decision.champion_version == champion
    assert decision.gain == 0.0 and decision.champion_score == pytest.approx(decision.challenger_score)
    assert "does not beat" in decision.reason
    assert str(client.get_model_version_by_alias("perfspec", "champion").version) == champion
    assert client.get_run(run_id).data.tags[TAG_DECISION] == "kept"
    assert client.get_model_version("perfspec", decision.version).tags[TAG_DECISION] == "kept"
    assert client.get_registered_model("perfspec").tags[TAG_HISTORY] == history  # no champion change


def test_a_run_on_other_data_is_decided_by_rescoring_the_champion_by_action_name(
    settings: Settings,
    registered,  # noqa: ARG001 - needed for its side effect: v1 registered as @champion
) -> None:
    """The champion is scored on the challenger's hold-out windows by action NAME: an action the
    challenger never trained on (``update_cm`` only in its test part) reaches the champion as itself."""
    client = _client(settings)
    champion_version = str(client.get_model_version_by_alias("perfspec", "champion").version)
    other = settings.with_section("dataset", window=5)
    actions = chain_actions(ACTIONS, seed=5)
    cut = int(len(actions) * 0.9)
    actions = [("update_secret" if a == "update_cm" and i < cut else a) for i, a in enumerate(actions)]
    dataset = dataset_from_actions(actions, other.dataset)
    assert "update_cm" not in dataset.vocab and "update_cm" in actions[cut:]
    run_dir = other.paths.runs_dir / "other"
    metrics = run_experiment(dataset, [], run_dir, other)  # counts models only: quick
    run_id = log_run(other, dataset, run_dir, metrics)
    decision = register_and_promote(other, run_id, metrics, run_dir=run_dir)
    assert decision.champion_version == champion_version

    def hits(predictor: Predictor) -> np.ndarray:
        """Per test target: among the predictor's top 5 after up to its window of preceding names."""
        out = []
        for start, end in dataset.segments["test"]:
            for pos in range(start + dataset.window, end):
                history = actions[max(start, pos - predictor.window) : pos]
                out.append(actions[pos] in [a for a, _ in predictor.predict(history, 5).actions])
        return np.array(out)

    champion = Predictor.load(
        f"models:/perfspec/{champion_version}", tracking_uri=settings.mlflow_tracking_uri
    )
    assert "update_cm" in champion.vocab and champion.window == 4
    champion_hits, challenger_hits = hits(champion), hits(Predictor.load(run_dir))
    assert decision.challenger_score == pytest.approx(np.mean(challenger_hits))
    assert decision.champion_score == pytest.approx(np.mean(champion_hits))
    expected = decide(
        challenger_hits,
        champion_hits,
        other.selection.promotion_blocks,
        other.selection.promotion_standard_errors,
        other.mlflow.promotion_margin,
    )
    assert decision.promoted == expected.promoted and decision.gain == pytest.approx(expected.gain)
    alias = str(client.get_model_version_by_alias("perfspec", "champion").version)
    assert alias == (decision.version if decision.promoted else champion_version)


# --- a sweep: one parent run, one child per model ------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_logs_a_parent_run_and_one_child_per_model(tmp_path: Path) -> None:
    from perfspec.learn.sweep import run_sweep

    settings = tiny_settings(tmp_path / "data")
    actions_file = tmp_path / "actions.txt"
    actions_file.write_text("\n".join(chain_actions(ACTIONS, 1)) + "\n")
    grid = {"lstm": [{"lstm_units": 8}], "gru": [{"lstm_units": 6}]}
    families = ["ngram", "lstm", "gru", "mixture"]
    outcome = run_sweep(actions_file, tmp_path / "sweep", settings, families=families, grid=grid)
    metrics = outcome.metrics
    lstm, gru = (c.name for c in outcome.configs)
    assert lstm.startswith("lstm-8x1-e4-d") and gru.startswith("gru-6x1-e4-d")  # d<dropout>
    models = set(metrics["models"])
    assert {"ngram", "most_frequent", lstm, gru} < models
    assert len([m for m in models if m.startswith("mixture-")]) == 1

    client = _client(settings)
    parent = client.get_run(outcome.run_id)
    assert parent.info.run_name == f"sweep · {len(models)} models · w4 · {ACTIONS} actions"
    assert parent.data.tags["perfspec.kind"] == "sweep" and "mlflow.parentRunId" not in parent.data.tags
    assert set(outcome.child_run_ids) == models
    for model, child_id in outcome.child_run_ids.items():
        child = client.get_run(child_id)
        assert child.data.tags["mlflow.parentRunId"] == outcome.run_id
        assert child.info.run_name == f"{model} · w4 · {ACTIONS} actions"
        assert child.data.metrics["top5"] == pytest.approx(metrics["test"][model]["top5"])
        assert child.data.metrics["cv_top5_mean"] == pytest.approx(metrics["cv"][model]["top5"]["mean"])
        assert child.data.tags["candidate"] == str(model == metrics["champion_candidate"]).lower()
    assert outcome.decision.promoted and outcome.decision.version == "1"  # an empty registry

    # the same sweep again: resumed, the same parent and children, the decision replayed
    runs = _run_ids(settings)
    again = run_sweep(actions_file, tmp_path / "sweep", settings, families=families, grid=grid)
    assert again.run_id == outcome.run_id and again.child_run_ids == outcome.child_run_ids
    assert again.decision.replayed and again.decision.version == "1"
    assert _run_ids(settings) == runs


def test_a_replay_names_the_registered_version_behind_an_alias(
    settings: Settings,
    registered,  # noqa: ARG001 - needed for its side effect: v1 registered as @champion
) -> None:
    from perfspec.learn.predict import Predictor
    from perfspec.live.replay import _version_of

    Predictor.load("models:/perfspec@champion", tracking_uri=settings.mlflow_tracking_uri)  # sets the store
    assert _version_of("models:/perfspec@champion", "x") == "models:/perfspec/1"
    assert _version_of("models:/perfspec@nobody", "fallback") == "fallback"
    assert _version_of("/some/run", "/some/run/predictor.npz") == "/some/run/predictor.npz"
