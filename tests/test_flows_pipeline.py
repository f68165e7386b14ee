"""The pipeline flow on the bundled real sample, under a real Prefect test server and a temporary MLflow
SQLite store: it completes, MLflow holds the run + model + @champion, Prefect holds the artifacts, a
re-run resumes (cached preparation, no new training, the same MLflow run), a sweep logs a parent run
with its children, and bad input fails naming the step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from perfspec.errors import InputError
from tests import prefect_harness

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "audit-logs.csv.gz"
# A small neural model and 3 CV folds keep the 4 trainings (3 folds + hold-out) of the sample short.
SMALL = {
    "PERFSPEC_TRAIN__LSTM_UNITS": "16",
    "PERFSPEC_TRAIN__EMBEDDING_DIM": "8",
    "PERFSPEC_SELECTION__CV_FOLDS": "3",
    "PERFSPEC_SELECTION__NGRAM_ORDERS": "[1, 2, 3, 4]",
    "PERFSPEC_SELECTION__TRAIN_FAMILIES": '["lstm"]',  # one neural family (the default fits lstm and gru)
}


@pytest.fixture(scope="module", autouse=True)
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


@pytest.fixture(scope="module", autouse=True)
def small_settings() -> Iterator[None]:
    with prefect_harness.settings_env(SMALL):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perfspec-data")


@pytest.fixture(scope="module")
def first_run(data_dir: Path):
    """One real pipeline run on the sample (2 epochs), shared by the assertions below."""
    from flows.pipeline import pipeline

    return pipeline(sources=[str(SAMPLE)], epochs=2, data_dir=data_dir)


def _task_runs_since(since: datetime) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since)), limit=200
        )
    return sorted(runs, key=lambda r: r.created)


def _stamps(run_dir: Path, names: list[str]) -> dict[str, int]:
    """Modification times of a neural model's scores, hold-out model and every CV fold's files."""
    files = [run_dir / "scores" / f"{name}.npz" for name in names]
    for name in names:
        files += sorted((run_dir / "models" / name).rglob("*")) + sorted(
            run_dir.glob(f"cv/fold-*/{name}/**/*")
        )
    return {str(f.relative_to(run_dir)): f.stat().st_mtime_ns for f in files if f.is_file()}


def _neural(trained) -> list[str]:
    return [m.name for m in trained.models if m.family in ("lstm", "gru", "transformer")]


@pytest.mark.slow
def test_pipeline_completes_on_the_sample(first_run, data_dir: Path) -> None:
    prepared, trained = first_run.prepared, first_run.trained
    # the seed's raw log: 16,564 rows -> 2,163 actions (the paper's events-dataset.txt prefix)
    assert prepared.clean.read == prepared.clean.kept + prepared.clean.duplicates + prepared.clean.rejected
    assert prepared.actions.actions == 2163
    expected = (Path(__file__).resolve().parent.parent / "sample" / "events-dataset.txt").read_text()
    produced = Path(prepared.actions.actions_txt).read_text()
    assert produced.splitlines() == expected.splitlines()[:2163]
    assert Path(prepared.dataset.dataset_dir).parent == data_dir / "datasets"

    run_dir = Path(trained.run_dir)
    assert run_dir.parent == (data_dir / "runs").resolve()
    assert json.loads((run_dir / "metrics.json").read_text()) == trained.metrics
    assert (run_dir / "predictor.npz").is_file()
    metrics = trained.metrics
    assert metrics["dataset"]["actions"] == 2163 and metrics["dataset"]["repeats_removed"] == 0
    assert metrics["cv_folds"] == 3 and metrics["models"]["ngram"]["order"] in (1, 2, 3, 4)
    # the scored models: the n-gram, the neural model and its mixture, each as in metrics.json
    [neural] = _neural(trained)
    assert [m.name for m in trained.models] == ["ngram", "lstm", "mixture"]  # the contract's names
    assert neural == "lstm" and metrics["models"]["lstm"]["label"].startswith("lstm-16x1-e8-")
    assert set(metrics["test"]) == {"ngram", "most_frequent", "lstm", "mixture"}
    for model in trained.models:
        assert model.run_dir == trained.run_dir
        assert model.test_top5 == pytest.approx(metrics["test"][model.name]["top5"])
        assert model.cv_top5_mean == pytest.approx(metrics["cv"][model.name]["top5"]["mean"])
        assert (run_dir / "scores" / f"{model.name}.npz").is_file()
    by_name = {m.name: m for m in trained.models}
    assert by_name[neural].info["epochs"] == 2 and by_name[neural].info["best_epoch"] in (1, 2)
    assert (run_dir / "models" / neural / "model.keras").is_file()
    assert len(list(run_dir.glob(f"cv/fold-*/{neural}/model.keras"))) == 3
    assert metrics["test"][neural]["top5"] > 0  # 2 epochs: trained, not good
    assert metrics["test"]["ngram"]["top5"] > metrics["test"]["most_frequent"]["top5"]


@pytest.mark.slow
def test_mlflow_has_the_run_the_model_and_the_champion(first_run, data_dir: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    trained = first_run.trained
    metrics, candidate = trained.metrics, trained.metrics["champion_candidate"]
    assert trained.tracking_uri == f"sqlite:///{(data_dir / 'mlflow' / 'mlflow.db').resolve()}"
    client = MlflowClient(trained.tracking_uri, registry_uri=trained.tracking_uri)
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith(candidate) and run.info.run_name.endswith(" · w10 · 2,163 actions")
    assert run.data.metrics["top5"] == pytest.approx(metrics["test"][candidate]["top5"])
    assert run.data.metrics["top5_ngram"] == pytest.approx(metrics["test"]["ngram"]["top5"])
    for model in metrics["test"]:
        assert run.data.metrics[f"test_{model}_top5"] == pytest.approx(metrics["test"][model]["top5"])
    assert len(client.get_metric_history(trained.run_id, "epoch_val_loss")) == 2  # one point per epoch
    assert run.data.tags["dataset_fingerprint"] == first_run.prepared.dataset.fingerprint

    champion = client.get_model_version_by_alias("perfspec", "champion")
    assert champion.run_id == trained.run_id
    assert trained.promotion.promoted and trained.promotion.run_id == trained.run_id
    assert trained.promotion.decision["version"] == str(champion.version)
    record = json.loads((Path(trained.run_dir) / "mlflow.json").read_text())
    assert record["run_id"] == trained.run_id and record["version"] == str(champion.version)

    mlflow.set_tracking_uri(trained.tracking_uri)
    model = mlflow.models.get_model_info("models:/perfspec@champion")
    assert model.signature is not None and model.run_id == trained.run_id
    artifacts = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"metrics.json", "cv.csv", "plots", "dataset"} <= artifacts


@pytest.mark.slow
def test_the_sample_also_trains_per_actor_streams_with_their_own_champion(first_run) -> None:
    """The sample has usernames: the pipeline trains the actor-stream model alongside, its own MLflow
    run and registered model (perfspec-actor), and serves it per actor."""
    from mlflow import MlflowClient

    from perfspec.learn.predict import Predictor

    prepared, actor = first_run.prepared, first_run.actor_trained
    assert prepared.actions.with_username == prepared.actions.actions == 2163
    assert prepared.actor_dataset is not None and actor is not None
    assert prepared.actor_dataset.fingerprint != prepared.dataset.fingerprint
    metrics = actor.metrics
    assert metrics["streams"] == "actor" and {"ngram_actor", "lstm", "mixture"} <= set(metrics["test"])
    assert metrics["test"]["ngram_actor"]["top5"] > metrics["test_global_reference"]["ngram"]["top5"]
    assert actor.run_id != first_run.trained.run_id
    assert actor.promotion.decision["registered_model"] == "perfspec-actor" and actor.promotion.promoted
    client = MlflowClient(actor.tracking_uri, registry_uri=actor.tracking_uri)
    assert client.get_run(actor.run_id).data.tags["streams"] == "actor"
    assert client.get_model_version_by_alias("perfspec-actor", "champion").run_id == actor.run_id
    predictor = Predictor.load("models:/perfspec-actor@champion", tracking_uri=actor.tracking_uri)
    assert predictor.streams == "actor"
    assert predictor.top_k(["create_namespaces"], 3, actor="kubernetes-admin")


@pytest.mark.slow
def test_prefect_has_the_artifacts(first_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    def latest(key: str):
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        assert found, f"no Prefect artifact {key!r}"
        return max(found, key=lambda a: a.created)

    trained = first_run.trained
    candidate = trained.metrics["champion_candidate"]
    summary = latest("pipeline-summary")
    assert summary.type == "markdown"
    assert "2163 actions" in summary.data and trained.run_id in summary.data
    assert f"- candidate: `{candidate}`" in summary.data
    assert "## Champion decision" in summary.data and "promoted to @champion" in summary.data
    for model in trained.metrics["test"]:
        assert f"| {model} |" in summary.data
    assert "## Per-actor streams" in summary.data and "global bigram on the same actions" in summary.data
    assert latest("topk-metrics-actor").type == "table"

    table = latest("topk-metrics")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["model"] for r in rows} == set(trained.metrics["test"])
    cv = [r["cv_top5"] for r in rows]
    assert cv == sorted(cv, reverse=True)  # best CV first: the candidate's row is on top
    by_model = {r["model"]: r for r in rows}
    assert by_model[candidate]["cv_top5"] == cv[0]
    assert by_model["ngram"]["top5"] == pytest.approx(trained.metrics["test"]["ngram"]["top5"], abs=1e-4)

    progress = latest("training-progress")
    assert progress.type == "progress" and float(progress.data) == pytest.approx(100.0)


@pytest.mark.slow
def test_rerun_on_unchanged_data_resumes(first_run, data_dir: Path) -> None:
    from flows.pipeline import pipeline

    run_dir = Path(first_run.trained.run_dir)
    before = _stamps(run_dir, _neural(first_run.trained))
    since = datetime.now(UTC)
    again = pipeline(sources=[str(SAMPLE)], epochs=2, data_dir=data_dir)
    states = {r.name.rsplit("-", 1)[0]: r.state.name for r in _task_runs_since(since)}
    assert states["clean-audit-logs"] == "Cached"
    assert states["build-actions"] == "Cached"
    assert states["build-dataset"] == "Cached"
    assert again.prepared == first_run.prepared
    # same data + settings -> the same run dir; the neural model's scores and trainings are reused as
    # they are (not one file rewritten), so nothing was trained again
    assert again.trained.run_dir == first_run.trained.run_dir
    assert _stamps(run_dir, _neural(again.trained)) == before
    assert again.trained.models == first_run.trained.models
    assert again.trained.metrics["test"] == first_run.trained.metrics["test"]
    # ... and nothing new in MLflow: the same run, the same registered version, the decision replayed
    assert again.trained.run_id == first_run.trained.run_id
    decision = again.trained.promotion.decision
    assert decision["version"] == first_run.trained.promotion.decision["version"]
    assert decision["replayed"] and "when first logged" in again.trained.promotion.describe()


@pytest.mark.slow
def test_sweep_flow_logs_a_parent_run_with_one_child_per_model(first_run, data_dir: Path) -> None:
    from mlflow import MlflowClient

    from flows.sweep import sweep

    swept = sweep(
        dataset_dir=Path(first_run.prepared.dataset.dataset_dir),
        families=["ngram"],  # counts models only: the flow's wiring, without training
        data_dir=data_dir,
    )
    assert Path(swept.run_dir).name.startswith("sweep-") and swept.run_dir != first_run.trained.run_dir
    assert [m.name for m in swept.models] == ["ngram"]
    assert set(swept.metrics["models"]) == {"ngram", "most_frequent"}
    client = MlflowClient(swept.tracking_uri)
    parent = client.get_run(swept.run_id)
    assert parent.data.tags["perfspec.kind"] == "sweep"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{swept.run_id}'", max_results=50
    )
    assert sorted(c.info.run_name for c in children) == [
        "most_frequent · w10 · 2,163 actions",
        "ngram · w10 · 2,163 actions",
    ]
    assert swept.promotion.run_id == swept.run_id and swept.promotion.decision["version"]


def test_bad_input_fails_the_flow_naming_the_step(tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    junk = tmp_path / "not-an-audit-log.jsonl"
    junk.write_text("hello\nthis is not json\n")
    with pytest.raises(InputError) as caught:
        pipeline(sources=[str(junk)], epochs=1, data_dir=tmp_path / "data")
    assert "step 'clean-audit-logs' failed" in str(caught.value)
    assert "hint:" in str(caught.value)

    with pytest.raises(InputError, match="audit log not found"):
        pipeline(sources=[str(tmp_path / "missing.jsonl")], data_dir=tmp_path / "data")
