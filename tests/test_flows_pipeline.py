"""The pipeline flow on the bundled real sample, under a real Prefect test server and a temporary MLflow
SQLite store: it completes, MLflow holds the run + model + @champion, Prefect holds the artifacts, a
re-run is served from the cache, and bad input fails naming the step."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from perfspec.errors import InputError
from tests import prefect_harness

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "audit-logs.csv.gz"


@pytest.fixture(scope="module", autouse=True)
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perfspec-data")


@pytest.fixture(scope="module")
def first_run(data_dir: Path):
    """One real pipeline run on the sample (2 epochs), shared by the assertions below."""
    import os

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the embedded SQLite store under the data dir
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
    assert trained.train.epochs_done == 2 and Path(trained.train.model_path).is_file()
    assert trained.metrics["test"]["lstm"]["top1"] > 0


@pytest.mark.slow
def test_mlflow_has_the_run_the_model_and_the_champion(first_run, data_dir: Path) -> None:
    from mlflow import MlflowClient

    trained = first_run.trained
    assert trained.tracking_uri == f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(trained.tracking_uri)
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_lstm_top1"] == pytest.approx(trained.metrics["test"]["lstm"]["top1"])
    for model in ("ngram", "most_frequent"):
        assert f"test_{model}_top5" in run.data.metrics
    assert len(client.get_metric_history(trained.run_id, "val_loss")) == 2  # one point per epoch
    assert run.data.tags["dataset_fingerprint"] == first_run.prepared.dataset.fingerprint
    champion = client.get_model_version_by_alias("perfspec", "champion")
    assert champion.run_id == trained.run_id and trained.promotion.promoted
    import mlflow

    mlflow.set_tracking_uri(trained.tracking_uri)
    model = mlflow.models.get_model_info("models:/perfspec@champion")
    assert model.signature is not None and model.run_id == trained.run_id
    artifacts = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"metrics.json", "history.json"} <= artifacts


@pytest.mark.slow
def test_prefect_has_the_artifacts(first_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    def latest(key: str):
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        assert found, f"no Prefect artifact {key!r}"
        return max(found, key=lambda a: a.created)

    summary = latest("pipeline-summary")
    assert summary.type == "markdown"
    assert "2163 actions" in summary.data and first_run.trained.run_id in summary.data
    assert "## Champion decision" in summary.data and "| lstm |" in summary.data

    table = latest("topk-metrics")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["model"] for r in rows] == ["lstm", "ngram", "most_frequent"]
    assert rows[0]["top1"] == pytest.approx(first_run.trained.metrics["test"]["lstm"]["top1"], abs=1e-4)

    progress = latest("training-progress")
    assert progress.type == "progress" and float(progress.data) == pytest.approx(100.0)


@pytest.mark.slow
def test_rerun_on_unchanged_data_skips_cleaning_and_dataset_building(first_run, data_dir: Path) -> None:
    from flows.pipeline import pipeline

    since = datetime.now(UTC)
    again = pipeline(sources=[str(SAMPLE)], epochs=2, data_dir=data_dir)
    states = {r.name.rsplit("-", 1)[0]: r.state.name for r in _task_runs_since(since)}
    assert states["clean-audit-logs"] == "Cached"
    assert states["build-actions"] == "Cached"
    assert states["build-dataset"] == "Cached"
    assert again.prepared == first_run.prepared
    # same data + settings -> same run dir; training had nothing left to do (resumed at epoch 2 of 2)
    assert again.trained.train.run_dir == first_run.trained.train.run_dir
    assert again.trained.train.epochs_this_call == 0
    # ... and nothing new in MLflow: the same run, the same registered version and decision
    assert again.trained.run_id == first_run.trained.run_id
    assert again.trained.promotion.decision["version"] == first_run.trained.promotion.decision["version"]


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
