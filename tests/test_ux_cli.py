"""What a user sees on the command line (issue 14): each message and exit code, from real subprocesses
on a real MLflow SQLite store (no mocks).

- the UI commands printed after a run work from any folder (absolute programs and paths);
- `predict` never creates a store to read from one, takes --data-dir, says which registered version (and
  run) answered, names what the registry holds when a name/alias/version is wrong, and never lists <unk>;
- `train` says which epoch was kept and why the champion was kept; TensorFlow's start-up lines are gone;
- `collect --dry-run` in an 80-column terminal keeps chart and namespace names whole.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.synthetic import chain_actions

REPO = Path(__file__).resolve().parent.parent
TINY = ["--cv", "2", "--epochs", "3", "--window", "4", "--lstm-units", "8", "--embedding-dim", "4"]
TINY += ["--batch-size", "32", "--learning-rate", "0.02", "--family", "gru", "--patience", "1"]
TF_NOISE = re.compile(r"oneDNN custom operations|absl::InitializeLog|cpu_feature_guard")


def _perfspec(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    for key in ("MLFLOW_TRACKING_URI", "PERFSPEC_PATHS__DATA_DIR", "PREFECT_API_URL", "PREFECT_HOME"):
        if key not in (env or {}):
            environ.pop(key, None)  # the embedded defaults under the data dir, as a new user has them
    return subprocess.run(
        [sys.executable, "-m", "perfspec", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=timeout,
    )


# --- point 8: the UI commands work from anywhere ------------------------------------------------------
def test_the_ui_commands_printed_after_a_run_work_from_another_folder(tmp_path: Path) -> None:
    from perfspec.runtime import configure_embedded
    from perfspec.settings import Settings

    env: dict[str, str] = {}
    runtime = configure_embedded(Settings().with_section("paths", data_dir=tmp_path / "data"), env)
    prefect_hint, mlflow_hint = runtime.ui_hints()
    venv_bin = Path(sys.executable).absolute().parent
    assert f"{venv_bin}/prefect server start" in prefect_hint and ".venv/bin/" not in prefect_hint.replace(
        str(venv_bin), ""
    )
    assert f"PREFECT_HOME={(tmp_path / 'data' / 'prefect').resolve()}" in prefect_hint
    assert f"{venv_bin}/mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}" in mlflow_hint
    # the very programs, run from a folder that is not the checkout: they exist and answer (not exit 127)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for hint in (prefect_hint, mlflow_hint):
        program = next(word for word in hint.split() if word.startswith(str(venv_bin)))
        done = subprocess.run(
            [program, "--version"], cwd=elsewhere, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]


# --- point 9: predict never creates a store to read from one ------------------------------------------
def test_predict_from_another_folder_creates_no_store_and_names_the_setting(tmp_path: Path) -> None:
    done = _perfspec(["predict", "create_pods"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (
        "error: cannot load models:/perfspec@champion: no MLflow store at "
        f"{tmp_path.resolve() / 'perfspec-data' / 'mlflow' / 'mlflow.db'}"
    )
    assert lines[1].strip().startswith("hint: ") and "--data-dir" in lines[1]
    assert "PERFSPEC_PATHS__DATA_DIR" in lines[1]
    assert not (tmp_path / "perfspec-data").exists()  # nothing created
    # the same with --data-dir pointing at an empty folder: still nothing created there
    empty = tmp_path / "empty"
    done = _perfspec(["predict", "--data-dir", str(empty), "create_pods"], tmp_path)
    assert done.returncode == 2 and f"no MLflow store at {empty.resolve()}" in done.stderr
    assert not empty.exists()


def test_live_and_replay_take_data_dir_and_create_no_store_either(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    events = tmp_path / "events.parquet"
    events.write_bytes(b"")  # never read: the model is looked up first
    for args in (
        ["live", "--data-dir", str(empty), "--follow", str(tmp_path), "--out", str(tmp_path / "live")],
        ["replay", "--data-dir", str(empty), str(events), "--out", str(tmp_path / "replay")],
    ):
        done = _perfspec(args, tmp_path, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert f"no MLflow store at {empty.resolve()}" in done.stderr.splitlines()[0]
        assert not (empty / "mlflow").exists()


# --- points 4, 9, 10, 11 on one real store: two trainings, then predict -----------------------------------
@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`perfspec train` twice on the same actions into one data dir (v1 @champion, then v2 kept), run
    from a folder that is not the checkout, the data dir given by --data-dir only."""
    base = tmp_path_factory.mktemp("ux-cli")
    data_dir, cwd = base / "data", base / "cwd"
    cwd.mkdir()
    actions = base / "actions.txt"
    actions.write_text("\n".join(chain_actions(600, 5)) + "\n")
    runs = []
    for out in ("first", "second"):
        done = _perfspec(
            ["train", str(actions), "--out", str(base / out), "--data-dir", str(data_dir), *TINY], cwd
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(done)
    assert not (cwd / "perfspec-data").exists()  # --data-dir wins over the default
    return {"data_dir": data_dir, "cwd": cwd, "runs": runs, "base": base}


@pytest.mark.slow
def test_train_says_which_epoch_was_kept_and_why_the_champion_was_kept(trained_twice: dict) -> None:
    first, second = trained_twice["runs"]
    metrics = json.loads((trained_twice["base"] / "second" / "metrics.json").read_text())
    gru = metrics["models"]["gru"]
    kept = next(line for line in second.stdout.splitlines() if line.startswith("training: gru: "))
    if gru["stopped_early"]:
        assert kept == (
            f"training: gru: stopped early at epoch {gru['epochs']} of 3, kept epoch {gru['best_epoch']}"
        )
    else:
        assert kept == f"training: gru: ran {gru['epochs']} of 3 epochs, kept epoch {gru['best_epoch']}"
    assert "registered: perfspec v1 promoted to @champion (no @champion yet)" in first.stdout
    registered = next(line for line in second.stdout.splitlines() if line.startswith("registered: "))
    assert registered.startswith("registered: perfspec v2 not promoted (champion kept) (v2 top5 ")
    assert "does not beat v1" in registered and "beyond noise" in registered  # the computed reason
    assert "compare runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning" in (
        second.stdout
    )
    # point 11: neither TensorFlow's start-up lines nor MLflow's pip warning on a run that trains a network
    for done in (first, second):
        assert not TF_NOISE.search(done.stderr), done.stderr[-2000:]
        assert "Failed to resolve installed pip version" not in done.stderr


@pytest.mark.slow
def test_the_mlflow_run_spans_the_training(trained_twice: dict) -> None:
    from mlflow import MlflowClient

    record = json.loads((trained_twice["base"] / "second" / "mlflow.json").read_text())
    client = MlflowClient(f"sqlite:///{trained_twice['data_dir'].resolve() / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(record["run_id"])
    metrics = json.loads((trained_twice["base"] / "second" / "metrics.json").read_text())
    # opened before training, so its duration covers at least the hold-out training of the network
    assert run.info.status == "FINISHED"
    assert (run.info.end_time - run.info.start_time) / 1000 >= metrics["models"]["gru"]["train_seconds"]
    assert run.info.run_name.startswith(metrics["champion_candidate"])
    assert "**Settings changed from the defaults**" in run.data.tags["mlflow.note.content"]
    assert "`train.epochs=3`" in run.data.tags["mlflow.note.content"]
    assert "**Training**: gru: " in run.data.tags["mlflow.note.content"]
    # one run per training: nothing left RUNNING, nothing doubled
    runs = client.search_runs([record["experiment_id"]])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_predict_says_which_version_and_run_answered(trained_twice: dict) -> None:
    data_dir, cwd = trained_twice["data_dir"], trained_twice["cwd"]
    first_run = json.loads((trained_twice["base"] / "first" / "mlflow.json").read_text())["run_id"]
    done = _perfspec(["predict", "--data-dir", str(data_dir), "--top", "3", "create_ns"], cwd)
    assert done.returncode == 0, done.stderr
    model_line = next(line for line in done.stdout.splitlines() if line.startswith("model: "))
    assert model_line.startswith(f"model: models:/perfspec/1 (run {first_run}, ")
    assert model_line.endswith("; asked for models:/perfspec@champion)")
    as_json = _perfspec(["predict", "--data-dir", str(data_dir), "--json", "create_ns"], cwd)
    assert as_json.returncode == 0
    model = json.loads(as_json.stdout)["model"]
    assert model["model_version"] == "models:/perfspec/1" and model["run_id"] == first_run
    assert model["registered_model"] == "perfspec" and model["registered_version"] == "1"
    # the env variable works the same as the flag (one settings object)
    by_env = _perfspec(["predict", "create_ns"], cwd, env={"PERFSPEC_PATHS__DATA_DIR": str(data_dir)})
    assert by_env.returncode == 0 and "model: models:/perfspec/1 (run " in by_env.stdout
    assert not (cwd / "perfspec-data").exists()


@pytest.mark.slow
def test_predict_names_what_the_registry_holds_when_a_name_alias_or_version_is_wrong(
    trained_twice: dict,
) -> None:
    data_dir, cwd = trained_twice["data_dir"], trained_twice["cwd"]
    cases = {
        "models:/perfspec@nosuch": (
            "error: cannot load models:/perfspec@nosuch: no version of 'perfspec' has the alias @nosuch",
            "hint: perfspec has versions 1, 2 and aliases @champion (v1): use models:/perfspec@ALIAS or "
            "models:/perfspec/N",
        ),
        "models:/perfspec/7": (
            "error: cannot load models:/perfspec/7: 'perfspec' has no version 7",
            "hint: perfspec has versions 1, 2 and aliases @champion (v1)",
        ),
        "models:/nosuch@champion": (
            "error: cannot load models:/nosuch@champion: no registered model 'nosuch'",
            "hint: registered models in this store: perfspec",
        ),
    }
    for uri, (error, hint) in cases.items():
        done = _perfspec(["predict", "--data-dir", str(data_dir), "--model", uri, "create_pods"], cwd)
        assert done.returncode == 2, (uri, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[0] == error and lines[1].strip().startswith(hint), (uri, lines)
        assert "train a model first" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_predict_top_larger_than_the_vocabulary_never_lists_unk(trained_twice: dict) -> None:
    done = _perfspec(
        ["predict", "--data-dir", str(trained_twice["data_dir"]), "--top", "500", "--json", "create_pods"],
        trained_twice["cwd"],
    )
    assert done.returncode == 0
    predictions = [p["action"] for p in json.loads(done.stdout)["predictions"]]
    assert "<unk>" not in predictions and len(predictions) == len(set(predictions))
    table = _perfspec(
        ["predict", "--data-dir", str(trained_twice["data_dir"]), "--top", "500", "create_pods"],
        trained_twice["cwd"],
    )
    assert table.returncode == 0 and "<unk>" not in table.stdout
    assert f"note: --top 500, but the model knows {len(predictions)} actions: all of them are listed" in (
        table.stderr
    )


# --- point 11 at the source -------------------------------------------------------------------------
@pytest.mark.slow
def test_tensorflow_is_imported_without_its_start_up_lines(tmp_path: Path) -> None:
    code = (
        "import sys; from perfspec.runtime import import_tensorflow_quietly; import_tensorflow_quietly(); "
        "import keras; print('kept', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert not TF_NOISE.search(done.stderr) and done.stderr.strip() == "kept"


# --- point 13: collect --dry-run in an 80-column terminal -------------------------------------------------
def _run_in_terminal(args: list[str], columns: int) -> str:
    """``perfspec ARGS`` with its stdout on a pseudo-terminal of ``columns`` columns (as a user sees it)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "dumb", "NO_COLOR": "1"}
    env.pop("COLUMNS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "perfspec", *args], stdout=follower, stderr=follower, env=env, cwd=REPO
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=120) == 0
    os.close(leader)
    text = b"".join(chunks).decode()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def test_collect_dry_run_in_80_columns_keeps_chart_and_namespace_names_whole() -> None:
    charts = REPO / "sample" / "helm-charts.json"
    text = _run_in_terminal(["collect", "--charts", str(charts), "--dry-run"], 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in text  # nothing cut
    header = next(line for line in lines if " chart " in line and "release = namespace" in line)
    chart_at, version_at, release_at = (header.index(n) for n in (" chart ", " version ", "release"))
    rows: list[list[str]] = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.strip() or (not line.startswith(" " * 3) and not line[:4].strip().isdigit()):
            break
        if line[:4].strip().isdigit():
            rows.append([])
        rows[-1].append(line)
    assert len(rows) == 120
    planned = json.loads(
        subprocess.run(
            [sys.executable, "-m", "perfspec", "collect", "--charts", str(charts), "--dry-run", "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout
    )
    for row, step in zip(rows, planned, strict=True):
        chart = "".join(line[chart_at:version_at].strip() for line in row)
        release = "".join(line[release_at:].strip() for line in row)
        assert chart == f"{step['chart']['repo']}/{step['chart']['name']}" or chart.endswith(
            step["chart"]["name"]
        )
        assert release == step["release"]
    assert "timeout, pause after: install 45s, 10s, uninstall 120s, 6s" in text


# --- points 1, 4, 8, 11 for `perfspec pipeline`, run from another folder --------------------------------
@pytest.mark.slow
def test_pipeline_ends_with_the_kept_epoch_the_reason_the_compare_link_and_ui_commands(
    tmp_path: Path,
) -> None:
    actions = tmp_path / "actions.txt"
    actions.write_text("\n".join(chain_actions(600, 9)) + "\n")
    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    env = {
        "PERFSPEC_TRAIN__LSTM_UNITS": "8",
        "PERFSPEC_TRAIN__EMBEDDING_DIM": "4",
        "PERFSPEC_DATASET__WINDOW": "4",
        "PERFSPEC_SELECTION__CV_FOLDS": "2",
        "PERFSPEC_SELECTION__TRAIN_FAMILIES": '["gru"]',
    }
    done = _perfspec(
        ["pipeline", "--actions", str(actions), "--epochs", "2", "--data-dir", str(data_dir)],
        cwd,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(
        r"^training: gru: (ran \d of 2 epochs|stopped early at epoch \d of 2), kept epoch \d$", out, re.M
    )
    assert "model: v1 promoted to @champion (no @champion yet)" in out
    assert "compare runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning" in out
    venv_bin = Path(sys.executable).absolute().parent
    assert f"{venv_bin}/prefect server start" in out and f"{venv_bin}/mlflow ui --backend-store-uri" in out
    assert f"PREFECT_HOME={(data_dir / 'prefect').resolve()}" in out
    assert not TF_NOISE.search(done.stderr)
    assert not (cwd / "perfspec-data").exists()
