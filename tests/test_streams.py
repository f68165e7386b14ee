"""Actor streams (issue 9): per-requester windows, a split by time with no future leakage across
streams, the per-actor n-gram against the global reference, and a predictor that knows whose window
it is answering for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfspec.actions import build_actions
from perfspec.actions.actors import NO_ACTOR, actor_class
from perfspec.audit.clean import clean_sources
from perfspec.errors import InputError
from perfspec.learn.configs import ngram_name
from perfspec.learn.dataset import Dataset, build_dataset, dataset_from_actions
from perfspec.learn.experiment import finish, score_counts
from perfspec.learn.predict import Predictor
from perfspec.learn.selection import fold_view
from perfspec.settings import ActionsSettings, CleanSettings, DatasetSettings, Settings

REPO = Path(__file__).resolve().parent.parent
ROUTINES = {  # each actor repeats its own routine; the global stream interleaves them at random
    "kubernetes-admin": ["create_namespaces", "create_secrets", "create_deployments", "get_pods"],
    "system:serviceaccount:kube-system:deployment-controller": ["create_replicasets", "update_deployments"],
    "system:serviceaccount:kube-system:replicaset-controller": [
        "create_pods",
        "patch_replicasets",
        "delete_pods",
    ],
    "system:node:worker-1": ["patch_nodes", "update_leases"],
    "system:node:worker-2": ["patch_nodes", "update_leases"],
}


def interleaved(n: int, seed: int = 0, late_actor: str | None = None) -> tuple[list[str], list[str]]:
    """Actions and who made them: each actor follows its routine, the speaker is random."""
    rng = np.random.default_rng(seed)
    names = list(ROUTINES)
    step = dict.fromkeys(names, 0)
    actions, actors = [], []
    for position in range(n):
        actor = names[int(rng.integers(len(names)))]
        if late_actor is not None and position > 0.95 * n and rng.random() < 0.3:
            actor = late_actor  # appears only in the test part
            actions.append("create_configmaps")
            actors.append(actor)
            continue
        routine = ROUTINES[actor]
        actions.append(routine[step[actor] % len(routine)])
        actors.append(actor)
        step[actor] += 1
    return actions, actors


def _settings(**dataset: object) -> Settings:
    return Settings().with_section("dataset", streams="actor", window=4, **dataset)


def test_actor_classes_group_nodes_and_keep_service_accounts_apart() -> None:
    assert actor_class("system:node:worker-1") == actor_class("system:node:worker-2") == "system:node:*"
    assert actor_class("system:serviceaccount:a:b") != actor_class("system:serviceaccount:a:c")
    assert actor_class("kubernetes-admin", ()) == "kubernetes-admin"
    assert actor_class(None) == actor_class("") == NO_ACTOR


def test_no_future_leakage_across_streams() -> None:
    """Every test window (context and target) is later in the log than every training target, and no
    window mixes two actors."""
    actions, actors = interleaved(3000, seed=1)
    dataset = dataset_from_actions(actions, _settings().dataset, actors=actors)
    layout = dataset.layout
    assert layout is not None and dataset.streams == "actor" and len(layout.names) == 4  # nodes grouped
    last_train_target = layout.order[dataset.positions("train")].max()
    x, _y = dataset.windows("test")
    for row, position in enumerate(dataset.positions("test")):
        assert layout.order[position] > last_train_target
        context = [position - 1 - i for i in range(4) if x[row, 3 - i] != 0]  # non-padded slots
        segment = next((a, b) for a, b in dataset.segments["test"] if a <= position < b)
        assert all(segment[0] <= p < position for p in context)
        assert all(layout.order[p] > last_train_target for p in context)
        assert all(layout.codes[p] == layout.codes[position] for p in context)
    # every action but the first of each (actor, split) segment is a target: short histories padded
    segments = sum(len(parts) for parts in dataset.segments.values())
    windows = sum(len(dataset.windows(split)[1]) for split in ("train", "val", "test"))
    assert windows == len(dataset.ids) - segments


def test_saved_and_loaded_dataset_keeps_its_streams(tmp_path: Path) -> None:
    actions, actors = interleaved(800, seed=2)
    dataset = dataset_from_actions(actions, _settings().dataset, actors=actors)
    loaded = Dataset.load(dataset.save(tmp_path / "ds"))
    assert loaded.streams == "actor" and loaded.log_segments == dataset.log_segments
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.windows(split)[0], dataset.windows(split)[0])
        np.testing.assert_array_equal(loaded.positions(split), dataset.positions(split))
    assert loaded.layout is not None and list(loaded.layout.names) == list(dataset.layout.names)  # type: ignore[union-attr]
    # the global dataset of the same actions has another fingerprint: who acted shapes the windows
    assert dataset_from_actions(actions, DatasetSettings(window=4)).fingerprint != dataset.fingerprint


def test_cv_folds_split_by_log_time_for_every_actor() -> None:
    actions, actors = interleaved(3000, seed=3)
    dataset = dataset_from_actions(actions, _settings().dataset, actors=actors)
    assert dataset.layout is not None
    for fold in range(3):
        view = fold_view(dataset, 3, fold)
        assert view.log_segments is not None
        ((t0, t1),) = view.log_segments["test"]
        logged = dataset.layout.order[view.positions("test")]
        assert len(logged) and logged.min() >= t0 and logged.max() < t1


def test_per_actor_ngram_beats_the_global_reference_and_metrics_keep_the_contract(tmp_path: Path) -> None:
    actions, actors = interleaved(3000, seed=4, late_actor="system:serviceaccount:late:newcomer")
    settings = _settings().with_section("selection", cv_folds=3, ngram_orders=(1, 2, 3))
    dataset = dataset_from_actions(actions, settings.dataset, actors=actors)
    reference = ngram_name("actor")
    score_counts(dataset, tmp_path, settings.selection)
    metrics = finish(dataset, tmp_path, settings, [reference, "most_frequent"])
    assert metrics["streams"] == "actor" and reference == "ngram_actor"
    assert set(metrics["test"][reference]) >= {"top1", "top3", "top5", "top10"}
    ours, theirs = metrics["test"][reference], metrics["test_global_reference"]["ngram"]
    # each routine is deterministic given its actor (the two nodes, one class, interleave; the late
    # actor's action is unknown to the vocabulary): far above the global stream, which must guess who speaks
    assert ours["top1"] > 0.7 and ours["top1"] > theirs["top1"] + 0.3
    assert set(theirs) >= {"top1", "top5"}
    assert 0 < metrics["unseen_actor_share"] < 0.2 and "no fallback" in metrics["unseen_actor_handling"]
    low, high = metrics["test_ci"][reference]["top1"]
    assert low <= ours["top1"] <= high
    assert any(not row["seen_in_training"] for row in metrics["per_actor"])
    inputs = metrics["inputs"]  # what the actor's identity and the global context add, each measured
    assert inputs["actor_window"] == {k: ours[k] for k in ("top1", "top5")}
    assert inputs["global_context_only"]["top1"] == pytest.approx(theirs["top1"])
    assert 0 <= inputs["weights"]["global_context"] <= 1
    assert (tmp_path / "plots" / "per_actor.png").stat().st_size > 10_000
    assert (tmp_path / "per_actor.csv").read_text().startswith("actor,")

    predictor = Predictor.load(tmp_path)  # the candidate's bundle, with its stream kind
    assert predictor.streams == "actor"
    with pytest.raises(InputError, match="per actor"):
        predictor.top_k(["create_namespaces"], 3)
    answer = predictor.predict(["create_namespaces", "create_secrets"], 3, actor="kubernetes-admin")
    assert answer.actions[0][0] == "create_deployments" and not answer.unseen_actor
    node = predictor.predict(["patch_nodes"], 1, actor="system:node:worker-9")
    assert node.actor == "system:node:*" and node.actions[0][0] == "update_leases"
    assert predictor.predict(["patch_nodes"], 1, actor="someone-new").unseen_actor


def test_a_global_model_refuses_an_actor(tmp_path: Path) -> None:
    actions, _actors = interleaved(1500, seed=5)
    settings = Settings().with_section("dataset", window=4).with_section("selection", cv_folds=0)
    dataset = dataset_from_actions(actions, settings.dataset)
    score_counts(dataset, tmp_path, settings.selection)
    finish(dataset, tmp_path, settings, ["ngram", "most_frequent"])
    predictor = Predictor.load(tmp_path)
    assert predictor.streams == "global"
    with pytest.raises(InputError, match="global stream"):
        predictor.top_k(["create_pods"], 3, actor="kubernetes-admin")
    assert predictor.top_k(["create_pods"], 3)


def test_actor_streams_need_usernames(tmp_path: Path) -> None:
    text = tmp_path / "actions.txt"
    text.write_text("create_pods\n" * 50)
    with pytest.raises(InputError, match=r"actions\.parquet"):
        build_dataset(text, DatasetSettings(streams="actor"))
    table = pa.table({"action": ["create_pods"] * 50, "username": pa.array([None] * 50, pa.string())})
    pq.write_table(table, tmp_path / "actions.parquet")
    with pytest.raises(InputError, match=r"no action .* has a username"):
        build_dataset(tmp_path / "actions.parquet", DatasetSettings(streams="actor"))


def test_the_bundled_sample_per_actor_is_far_above_the_global_stream(tmp_path: Path) -> None:
    """The paper's audit sample (2,163 actions with usernames): clean -> actions -> actor streams."""
    clean_sources([REPO / "sample" / "audit-logs.csv.gz"], tmp_path / "clean", CleanSettings())
    build_actions(tmp_path / "clean" / "events.parquet", tmp_path / "actions.txt", ActionsSettings())
    settings = Settings().with_section("dataset", streams="actor")
    dataset = build_dataset(tmp_path / "actions.parquet", settings.dataset)
    assert dataset.layout is not None and len(dataset.ids) > 2000
    score_counts(dataset, tmp_path / "run", settings.selection)
    metrics = finish(dataset, tmp_path / "run", settings, ["ngram_actor", "most_frequent"])
    actor, reference = (
        metrics["test"]["ngram_actor"]["top5"],
        metrics["test_global_reference"]["ngram"]["top5"],
    )
    assert actor > reference + 0.1
    busiest = metrics["per_actor"][0]["actor"]
    assert busiest.startswith("system:serviceaccount:kube-prometheus-stack:")


@pytest.mark.slow
def test_train_and_predict_per_actor_from_the_command_line(tmp_path: Path) -> None:
    """`perfspec train ACTIONS_PARQUET --streams actor --out DIR`, then `predict --actor`."""
    actions, actors = interleaved(1500, seed=6)
    table = pa.table({"action": actions, "username": actors})
    pq.write_table(table, tmp_path / "actions.parquet")
    env_args = {"env": {**_env(tmp_path)}, "capture_output": True, "text": True, "cwd": REPO, "timeout": 600}
    run = tmp_path / "run"
    tiny = ["--epochs", "2", "--cv", "2", "--window", "4", "--lstm-units", "8", "--embedding-dim", "4"]
    done = subprocess.run(
        [sys.executable, "-m", "perfspec", "train", str(tmp_path / "actions.parquet"), "--streams", "actor",
         "--out", str(run), "--family", "gru", *tiny],
        **env_args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "global bigram on the same next actions" in done.stdout
    assert "registered: perfspec-actor v1 promoted to @champion" in done.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["streams"] == "actor" and "ngram_actor" in metrics["test"] and "gru" in metrics["test"]
    asked = ["predict", "--model", str(run), "--actor", "kubernetes-admin", "--top", "2", "--json"]
    predicted = subprocess.run(
        [sys.executable, "-m", "perfspec", *asked, "create_namespaces", "create_secrets"], **env_args
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    payload = json.loads(predicted.stdout)
    assert payload["actor"] == "kubernetes-admin" and len(payload["predictions"]) == 2
    refused = subprocess.run(
        [sys.executable, "-m", "perfspec", "predict", "--model", str(run), "create_pods"], **env_args
    )
    assert refused.returncode == 2 and "--actor" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 2


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env
