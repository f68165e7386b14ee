"""A served model (issue 12): `mlflow models serve -m models:/perfspec@champion --env-manager local` on
loopback answers a window over HTTP with exactly what `perfspec predict` answers (global and per actor)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.experiment import run_experiment
from perfspec.learn.predict import Predictor
from perfspec.learn.promotion import register_and_promote
from perfspec.learn.tracking import log_run
from perfspec.settings import Settings
from tests.test_servers import BIN, REPO, _free_port, _server
from tests.test_streams import interleaved

pytestmark = pytest.mark.slow


def _champion(tmp_path: Path, streams: str) -> tuple[Settings, str]:
    """A counts-model run (fast) logged, registered and promoted in a SQLite store; its model name."""
    settings = (
        Settings()
        .with_section("paths", data_dir=tmp_path / "data")
        .with_section("mlflow", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        .with_section("dataset", window=4, streams=streams)
        .with_section("selection", cv_folds=2, ngram_orders=(1, 2, 3))
    )
    actions, actors = interleaved(1500, seed=8)
    dataset = dataset_from_actions(actions, settings.dataset, actors=actors)
    run_dir = tmp_path / f"run-{streams}"
    metrics = run_experiment(dataset, [], run_dir, settings)
    run_id = log_run(settings, dataset, run_dir, metrics)
    decision = register_and_promote(settings, run_id, metrics, run_dir=run_dir)
    assert decision.promoted
    return settings, decision.registered_model


@pytest.mark.parametrize("streams", ["global", "actor"])
def test_mlflow_models_serve_answers_like_perfspec_predict(tmp_path: Path, streams: str) -> None:
    settings, name = _champion(tmp_path, streams)
    uri = f"models:/{name}@champion"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PERFSPEC_"))}
    env |= {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the scoring server (uvicorn) of this venv
    port = _free_port()
    command = [
        str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    window = ["create_namespaces", "create_secrets", "create_deployments", "get_pods"]
    row: dict[str, object] = {f"a{i}": action for i, action in enumerate(window)}
    actor = "kubernetes-admin" if streams == "actor" else None
    if actor is not None:
        row["actor"] = actor
    with _server(command, env, tmp_path / "serve.log", f"http://127.0.0.1:{port}/ping"):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": {"columns": list(row), "data": [list(row.values())]}},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    [served] = answer.json()["predictions"]

    expected = Predictor.load(uri, tracking_uri=settings.mlflow_tracking_uri).predict(window, 5, actor)
    assert [served[f"action_{rank}"] for rank in range(1, 6)] == [a for a, _ in expected.actions]
    for rank, (_, probability) in enumerate(expected.actions, start=1):
        assert served[f"probability_{rank}"] == pytest.approx(probability, rel=1e-9)

    # the CLI's answer is the same (what a user compares against)
    args = ["predict", "--model", uri, "--top", "5", "--json", *window] + (
        ["--actor", actor] if actor else []
    )
    cli = subprocess.run(
        [sys.executable, "-m", "perfspec", *args],
        env=env | {"PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    import json

    printed = [p["action"] for p in json.loads(cli.stdout)["predictions"]]
    assert printed == [served[f"action_{rank}"] for rank in range(1, 6)]
