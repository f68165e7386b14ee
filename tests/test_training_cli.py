"""`perfspec train` / `sweep` / `predict` end to end, as a user runs them (real subprocesses, real MLflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic import chain_actions

REPO = Path(__file__).resolve().parent.parent

TINY_FLAGS = [
    "--cv",
    "2",
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
    "--learning-rate",
    "0.02",
]


def _perfspec(args: list[str], data_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "perfspec", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _actions_file(path: Path, actions: list[str]) -> Path:
    path.write_text("\n".join(actions) + "\n")
    return path


def _line(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(prefix))


@pytest.mark.slow
def test_train_prints_the_comparison_and_the_verdicts_then_predict_answers(tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "run"
    actions = _actions_file(tmp_path / "actions.txt", chain_actions(600, 3))
    done = _perfspec(["train", str(actions), "--out", str(out), *TINY_FLAGS], data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    candidate = metrics["champion_candidate"]
    assert metrics["dataset"]["actions"] == 600 and metrics["cv_folds"] == 2
    # the comparison: every model in the table, the candidate starred, the n-gram with its order
    assert "Chronological hold-out" in done.stdout and "blocked CV (2 folds)" in done.stdout
    for model in metrics["test"]:
        assert model in done.stdout
    assert f"{candidate} *" in done.stdout and f"(order {metrics['models']['ngram']['order']})" in done.stdout
    # the verdicts, each of them computed
    assert _line(done.stdout, "leakage (windows seen verbatim in training): val ")
    assert (
        _line(done.stdout, "candidate (* best CV mean top5): ")
        == f"candidate (* best CV mean top5): {candidate}"
    )
    if candidate == "ngram":
        assert "no other model beats the n-gram on CV: the n-gram is the candidate" in done.stdout
    else:
        beyond = "yes" if metrics["verdict"]["beats_reference_beyond_noise"] else "NO"
        assert f"{candidate} beats the n-gram beyond noise" in done.stdout and f": {beyond}" in done.stdout
    assert _line(done.stdout, "run dir:") == f"run dir:  {out}"
    assert "registered: perfspec v1 promoted to @champion (no @champion yet)" in done.stdout
    assert "compare runs: http" in done.stdout
    assert (data_dir / "mlflow" / "mlflow.db").is_file() and any((data_dir / "datasets").iterdir())
    run_line = _line(done.stdout, "mlflow run:")

    # the same command again: nothing retrained, the same MLflow run, the recorded decision replayed
    again = _perfspec(["train", str(actions), "--out", str(out), *TINY_FLAGS], data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "hold-out training" not in again.stderr and "fold 1/2" not in again.stderr
    assert run_line in again.stdout.splitlines()
    replayed = _line(again.stdout, "registered:")
    assert "v1 was promoted to @champion when first logged" in replayed and "@champion is v1" in replayed

    # predict from the run dir, and from @champion in the data dir's store (the default model)
    for model in (["--model", str(out)], []):
        predicted = _perfspec(["predict", *model, "--top", "2", "--json", "create_ns", "create_sa"], data_dir)
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        payload = json.loads(predicted.stdout)
        assert len(payload["predictions"]) == 2 and payload["unknown"] == []
        assert payload["model"]["family"] == metrics["models"][candidate]["family"]


@pytest.mark.slow
def test_two_identical_copies_are_reported_and_half_is_trained(tmp_path: Path) -> None:
    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.experiment import default_configs, experiment_name
    from perfspec.settings import Settings

    data_dir = tmp_path / "data"
    half = chain_actions(600, 4)
    actions = _actions_file(tmp_path / "copies.txt", half + half)
    done = _perfspec(["train", str(actions), *TINY_FLAGS, "--no-mlflow"], data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    repeats = _line(done.stdout, "repeats:")
    assert "600 of 1,200 actions repeat earlier spans verbatim" in repeats
    assert repeats.endswith("trained on 600 actions")
    assert "mlflow run:" not in done.stdout

    # the default run dir: the name the train flow uses too, so each resumes the other's runs
    settings = (
        Settings()
        .with_section("dataset", window=4)
        .with_section("selection", cv_folds=2)
        .with_section("train", epochs=2, lstm_units=8, embedding_dim=4, batch_size=32, learning_rate=0.02)
    )
    dataset = build_dataset(actions, settings.dataset)
    name = experiment_name(dataset.fingerprint, settings, default_configs(settings))
    metrics = json.loads((data_dir / "runs" / name / "metrics.json").read_text())
    assert metrics["dataset"]["actions"] == 600 and metrics["dataset"]["original_actions"] == 1200
    assert metrics["dataset"]["repeats_removed"] == 600
    assert len(dataset.ids) == 600 and metrics["counts"]["test"] == len(dataset.windows("test")[1])


def test_an_audit_log_is_refused_in_one_line_with_a_hint(tmp_path: Path) -> None:
    done = _perfspec(["train", str(REPO / "sample" / "audit-logs.csv.gz"), "--no-mlflow"], tmp_path / "data")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and "not a text file of actions" in lines[0]
    assert lines[1].strip().startswith("hint: ") and "perfspec pipeline --source" in lines[1]
    assert not (tmp_path / "data" / "runs").exists()


@pytest.mark.slow
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    done = _perfspec(["train", str(empty), "--out", str(tmp_path / "run"), "--no-mlflow"], tmp_path / "data")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no actions") and "Traceback" not in done.stderr
    one = _actions_file(tmp_path / "one.txt", ["create_pods"])
    done = _perfspec(["train", str(one), "--no-mlflow"], tmp_path / "data")
    assert done.returncode == 2 and "too few actions" in done.stderr
    missing = _perfspec(["predict", "create_pods"], tmp_path / "data")
    assert missing.returncode == 2 and "cannot load models:/perfspec@champion" in missing.stderr


def test_sweep_help(tmp_path: Path) -> None:
    done = _perfspec(["sweep", "--help"], tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    for option in ("--families", "--grid", "--cv", "--epochs", "--no-mlflow"):
        assert option in done.stdout


@pytest.mark.slow
def test_paper_corpus_short_experiment(tmp_path: Path) -> None:
    """A short experiment on the real corpus: its second copy is removed, the leakage is measured and the
    neural model is already far above the most-frequent baseline."""
    from perfspec.learn.configs import neural_config
    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.experiment import run_experiment
    from perfspec.settings import Settings

    settings = (
        Settings()
        .with_section("selection", cv_folds=0, ngram_orders=(1, 2, 3))
        .with_section("train", epochs=3, lstm_units=64, embedding_dim=32, batch_size=128)
    )
    # the bundled sample is the paper corpus (byte-identical to ../shared's copy): runs in a fresh clone too
    sample = Path(__file__).resolve().parent.parent / "sample" / "events-dataset.txt"
    dataset = build_dataset(sample, settings.dataset)
    config = neural_config(settings.train)
    metrics = run_experiment(dataset, [config], tmp_path / "run", settings)
    data = metrics["dataset"]
    assert data["original_actions"] == 21642 and data["repeats_removed"] >= 10_000
    assert data["actions"] == data["original_actions"] - data["repeats_removed"]
    assert metrics["leakage"]["test"] < 0.5 and not metrics["leakage"]["warning"]
    test = metrics["test"]
    assert test[config.name]["top5"] > test["most_frequent"]["top5"] + 0.2
    assert test["ngram"]["top5"] > test["most_frequent"]["top5"] + 0.2
