"""What a user sees in the Prefect and MLflow UIs after the flows (issue 14), under a real Prefect test
server and a real MLflow SQLite store: flow runs named and tagged from what they do, their effective
settings recorded, the training-progress artifact finished at 100 % with what happened (also on a re-run
that trains nothing), the MLflow run opened when training starts, and the action distribution logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import prefect_harness
from tests.synthetic import chain_actions

TINY = {
    "PERFSPEC_TRAIN__LSTM_UNITS": "8",
    "PERFSPEC_TRAIN__EMBEDDING_DIM": "4",
    "PERFSPEC_TRAIN__PATIENCE": "1",
    "PERFSPEC_DATASET__WINDOW": "4",
    "PERFSPEC_SELECTION__CV_FOLDS": "2",
    "PERFSPEC_SELECTION__NGRAM_ORDERS": "[1, 2, 3]",
    "PERFSPEC_SELECTION__TRAIN_FAMILIES": '["gru"]',
}


@pytest.fixture(scope="module", autouse=True)
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


@pytest.fixture(scope="module", autouse=True)
def tiny_settings() -> Iterator[None]:
    with prefect_harness.settings_env(TINY):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """prepare (an actions file) then train twice with the same settings: the second trains nothing."""
    from flows.prepare import prepare
    from flows.train import train

    base = tmp_path_factory.mktemp("ux-flows")
    data_dir = base / "data"
    actions = base / "actions" / "demo" / "actions.txt"
    actions.parent.mkdir(parents=True)
    actions.write_text("\n".join(chain_actions(600, 7)) + "\n")
    # a distribution plot beside the actions, as `perfspec actions` writes it
    (actions.parent / "distribution.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    prepared = prepare(actions_file=actions, data_dir=data_dir)
    first = train(dataset_dir=Path(prepared.dataset.dataset_dir), epochs=3, data_dir=data_dir)
    second = train(dataset_dir=Path(prepared.dataset.dataset_dir), epochs=3, data_dir=data_dir)
    return {"data_dir": data_dir, "prepared": prepared, "first": first, "second": second}


def _flow_runs(flow_name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_ASC
        )


def _artifacts(key: str, flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            ),
            sort=ArtifactSort.CREATED_DESC,
        )


@pytest.mark.slow
def test_flow_runs_are_named_and_tagged_from_what_they_do(trained: dict) -> None:
    fingerprint = trained["prepared"].dataset.fingerprint[:12]
    runs = _flow_runs("train")[-2:]
    for run in runs:
        assert run.name.startswith("train gru-8x1-e4-"), run.name
        assert run.name.endswith(f", 3 epochs, data {fingerprint}"), run.name
        assert {"family:gru", "streams:global", f"data:{fingerprint}", "epochs:3"} <= set(run.tags)
    prepare_run = _flow_runs("prepare")[-1]
    assert prepare_run.name.startswith("prepare actions actions.txt, paper actions, w4")
    assert "source:demo" in prepare_run.tags


@pytest.mark.slow
@pytest.mark.usefixtures("trained")
def test_the_effective_settings_are_recorded_with_their_origin() -> None:
    run = _flow_runs("train")[-1]
    found = _artifacts("effective-settings", run.id)
    assert found, "no effective-settings artifact on the train run"
    markdown = found[0].data
    assert "| `train.lstm_units` | `8` | env PERFSPEC_TRAIN__LSTM_UNITS |" in markdown
    assert "| `train.epochs` | `3` |" in markdown  # the flow parameter, not null
    assert "gru: gru-8x1-e4-" in markdown


@pytest.mark.slow
def test_training_progress_ends_at_100_percent_saying_what_happened(trained: dict) -> None:
    first, second = _flow_runs("train")[-2:]
    done = _artifacts("training-progress", first.id)[0]
    gru = trained["first"].metrics["models"]["gru"]
    assert float(done.data) == 100.0
    if gru["stopped_early"]:
        expected = f"gru: stopped early at epoch {gru['epochs']} of 3, kept epoch {gru['best_epoch']}"
    else:
        expected = f"gru: ran {gru['epochs']} of 3 epochs, kept epoch {gru['best_epoch']}"
    assert done.description.startswith(expected), done.description
    again = _artifacts("training-progress", second.id)[0]  # the re-run trained nothing
    assert float(again.data) == 100.0
    assert again.description.endswith("(done earlier: nothing trained now)"), again.description


@pytest.mark.slow
def test_the_mlflow_run_opens_when_training_starts_and_holds_the_distribution(trained: dict) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    first = trained["first"]
    assert trained["second"].run_id == first.run_id  # the re-run logged nothing new
    client = MlflowClient(first.tracking_uri)
    run = client.get_run(first.run_id)
    train_run = _flow_runs("train")[-2]
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[train_run.id])))
    training = next(t for t in tasks if t.name.startswith("train-model"))
    assert run.info.status == "FINISHED"
    assert run.info.start_time <= training.start_time.timestamp() * 1000  # opened before training
    assert run.info.end_time >= training.end_time.timestamp() * 1000
    assert "plots/distribution.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # nothing left RUNNING, nothing doubled
    record = json.loads((Path(first.run_dir) / "mlflow.json").read_text())
    assert record["run_id"] == first.run_id and "results" in record
