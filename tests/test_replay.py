"""The live engine and ``perfspec replay``: streaming scores equal batch scores; the sample replays."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from perfspec.actions import build_actions
from perfspec.audit.clean import clean_sources
from perfspec.learn.bundle import write_bundle
from perfspec.learn.families.ngram import NGram
from perfspec.learn.predict import Predictor
from perfspec.learn.vocab import Vocabulary
from perfspec.live.engine import HIT_KS, Engine, Scored
from perfspec.live.replay import parse_speed
from perfspec.settings import ActionsSettings, CleanSettings
from tests.synthetic import chain_actions

REPO = Path(__file__).resolve().parent.parent
WINDOW = 4


def ngram_predictor(actions: list[str]) -> Predictor:
    vocab = Vocabulary.from_counts(Counter(actions))
    scorer = NGram.fit([vocab.encode(actions)], len(vocab), WINDOW, order=3)
    return Predictor(scorer, vocab, "ngram in memory")


def batch_ranks(predictor: Predictor, actions: list[str]) -> np.ndarray:
    """The rank of each action (from WINDOW on) in the batch prediction of its full window."""
    ids = predictor.vocab.encode(actions)
    windows = np.stack([ids[p - WINDOW : p] for p in range(WINDOW, len(ids))])
    probs = predictor.probabilities_batch(windows).astype(np.float64)
    probs[:, 0] = -np.inf
    order = np.argsort(-probs, axis=1, kind="stable")
    return np.array([int(np.flatnonzero(order[i] == ids[WINDOW + i])[0]) for i in range(len(windows))])


def test_the_engine_scores_every_action_as_the_batch_scorer_does() -> None:
    actions = chain_actions(400, seed=3)
    predictor = ngram_predictor(actions[:300])  # the last 100 are new to it
    seen: list[Scored] = []
    engine = Engine(predictor, top=3, on_unexpected=seen.append)
    scored = [engine.observe(action, at=float(i)) for i, action in enumerate(actions)]
    expected = batch_ranks(predictor, actions)
    streamed = [s.rank for s in scored[WINDOW:]]
    assert [r if r is not None and r < max(HIT_KS) else None for r in expected.tolist()] == streamed
    metrics = engine.metrics
    assert metrics.actions == 400 and metrics.predictions == 400 and metrics.scored == 399
    assert len(seen) == metrics.unexpected == sum(1 for s in scored[1:] if s.rank is None or s.rank >= 3)
    assert all(0 < lead < 1000 for lead in metrics.lead_ms)  # next arrival 1 s later minus the latency
    assert metrics.summary()["precomputed_at"] == metrics.summary()["hit_at"]  # every prediction in time


def test_streams_are_kept_apart_and_bounded() -> None:
    predictor = ngram_predictor(chain_actions(200))
    engine = Engine(predictor, max_streams=2)
    for i, stream in enumerate(["a", "b", "a", "c", "a"]):
        engine.observe("create_pods", float(i), stream)
    assert engine.evicted_streams == 1 and engine.latest("b") is None and engine.latest("a") is not None
    assert engine.by_stream["a"].scored == 2 and engine.by_stream["c"].scored == 0


def test_speed_is_max_or_a_positive_factor() -> None:
    assert parse_speed("max") is None and parse_speed("10") == 10.0
    with pytest.raises(Exception, match="not 'max' or a positive number"):
        parse_speed("0")


@pytest.mark.slow
def test_replay_of_the_bundled_sample_matches_batch_scores_and_is_fast(tmp_path: Path) -> None:
    clean_sources([REPO / "sample" / "audit-logs.csv.gz"], tmp_path / "clean", CleanSettings())
    events = tmp_path / "clean" / "events.parquet"
    build_actions(events, tmp_path / "actions" / "actions.txt", ActionsSettings())
    actions = (tmp_path / "actions" / "actions.txt").read_text().split()
    model = _bundle(tmp_path, actions[: int(len(actions) * 0.8)])  # trained on the first 80 %
    command = ["replay", str(events), "--model", model, "--out", str(tmp_path / "r"), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "perfspec", *command], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.loads((tmp_path / "r" / "replay.json").read_text())
    assert report["actions"] == len(actions) and report["scored"] == len(actions) - 1
    ranks = batch_ranks(Predictor.load(model), actions)
    assert abs(report["hit_at"]["5"] - float(np.mean(ranks < 5))) < 0.01  # the acceptance bar of issue 10
    assert report["latency_ms"]["p99"] < 1.0
    assert 0 < report["in_time"] < 1 and report["precomputed_at"]["5"] <= report["hit_at"]["5"]
    unexpected = (tmp_path / "r" / "unexpected.jsonl").read_text().splitlines()
    assert len(unexpected) == report["unexpected"]
    plots = {p.name for p in (tmp_path / "r" / "plots").iterdir()}
    assert plots == {"lead_time.png", "hit_at_k.png", "per_actor.png"}


def _bundle(tmp_path: Path, actions: list[str]) -> str:
    """A ``predictor.npz`` of an n-gram trained on ``actions``."""
    predictor = ngram_predictor(actions)
    target = tmp_path / "model" / "predictor.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert predictor._scorer is not None  # noqa: SLF001 - the test builds the bundle from its scorer
    write_bundle(predictor._scorer, predictor.vocab, target)  # noqa: SLF001
    return str(target)


def test_a_log_that_is_not_parquet_is_one_line_and_exit_2(tmp_path: Path) -> None:
    model = _bundle(tmp_path, ["create_pods", "delete_pods", "patch_nodes"] * 50)
    for content in (b"", b"PAR1 not really"):
        events = tmp_path / "events.parquet"
        events.write_bytes(content)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "perfspec",
                "replay",
                str(events),
                "--model",
                model,
                "--out",
                str(tmp_path / "r"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert "is not a readable Parquet file" in done.stderr.splitlines()[0]
