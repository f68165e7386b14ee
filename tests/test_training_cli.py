"""`perfspec train` / `perfspec predict` end to end, as a user runs them (real subprocesses, real MLflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _perfspec(args: list[str], data_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "perfspec", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _tiny_actions(path: Path) -> Path:
    chains = ["create_ns create_sa create_pods patch_pods", "delete_pods delete_sa", "update_cm"]
    lines = [token for i in range(260) for token in chains[(i * 7) % 3 if i % 5 else 2].split()]
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_FLAGS = [
    "--epochs",
    "2",
    "--window",
    "4",
    "--lstm-units",
    "8",
    "--embedding-dim",
    "4",
    "--batch-size",
    "32",
]


@pytest.mark.slow
def test_train_then_predict_from_the_champion(tmp_path: Path) -> None:
    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.training import run_name
    from perfspec.settings import DatasetSettings, TrainSettings

    data_dir = tmp_path / "data"
    actions = _tiny_actions(tmp_path / "actions.txt")
    done = _perfspec(["train", str(actions), *TINY_FLAGS], data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "n-gram" in done.stdout and "v1 promoted to @champion" in done.stdout
    # default run dir: the same name the pipeline uses, so each resumes the other's runs
    fingerprint = build_dataset(actions, DatasetSettings(window=4)).fingerprint
    train = TrainSettings(epochs=2, lstm_units=8, embedding_dim=4, batch_size=32)
    out = data_dir / "runs" / run_name(fingerprint, train)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"lstm", "ngram", "most_frequent"} <= set(metrics["test"])
    assert (data_dir / "mlflow" / "mlflow.db").is_file()
    assert any((data_dir / "datasets").iterdir())
    run_line = next(line for line in done.stdout.splitlines() if line.startswith("mlflow run:"))

    # the same command again: nothing retrained, no new MLflow run, no new registry version
    again = _perfspec(["train", str(actions), *TINY_FLAGS], data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "epoch 1:" not in again.stderr
    assert run_line in again.stdout.splitlines()
    # the re-run reports the recorded decision as such, not as a new promotion
    replayed = next(line for line in again.stdout.splitlines() if line.startswith("registered:"))
    assert "v1 was promoted to @champion when first logged" in replayed and "@champion is v1" in replayed

    # other model settings: a new run dir, not an error about the old one
    wider = _perfspec(
        ["train", str(actions), *TINY_FLAGS[:-2], "--batch-size", "16", "--no-mlflow"], data_dir
    )
    assert wider.returncode == 0, wider.stderr[-3000:]
    assert len(list((data_dir / "runs").iterdir())) == 2

    predicted = _perfspec(["predict", "--top", "2", "--json", "create_ns", "create_sa"], data_dir)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    payload = json.loads(predicted.stdout)
    assert len(payload["predictions"]) == 2 and payload["unknown"] == []


@pytest.mark.slow
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    done = _perfspec(["train", str(empty), "--out", str(tmp_path / "run"), "--no-mlflow"], tmp_path / "data")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no actions") and "Traceback" not in done.stderr
    one = tmp_path / "one.txt"
    one.write_text("create_pods\n")
    done = _perfspec(["train", str(one), "--no-mlflow"], tmp_path / "data")
    assert done.returncode == 2 and "too few actions" in done.stderr
    missing = _perfspec(["predict", "create_pods"], tmp_path / "data")
    assert missing.returncode == 2 and "cannot load models:/perfspec@champion" in missing.stderr


@pytest.mark.slow
def test_paper_corpus_short_training(shared_data: Path, tmp_path: Path) -> None:
    """A few epochs on the real corpus: the pipeline runs and the LSTM is already far above chance."""
    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.evaluation import evaluate
    from perfspec.learn.training import train
    from perfspec.settings import DatasetSettings, TrainSettings

    dataset = build_dataset(
        shared_data / "kubernetes-event-dataset" / "events-dataset.txt", DatasetSettings()
    )
    train(dataset, TrainSettings(epochs=3), tmp_path)
    metrics = evaluate(dataset, tmp_path)
    assert metrics["test"]["lstm"]["top5"] > metrics["test"]["most_frequent"]["top5"] + 0.2
    assert metrics["test"]["ngram"]["top1"] > 0.9
