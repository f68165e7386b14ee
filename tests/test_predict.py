"""Prediction: the NumPy fast path equals model.predict; unknown, short and long inputs; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfspec.dataset import dataset_from_actions
from perfspec.errors import InputError
from perfspec.model import build_model
from perfspec.predict import Predictor
from perfspec.settings import DatasetSettings, TrainSettings
from perfspec.vocab import Vocabulary

REPO = Path(__file__).resolve().parent.parent


def _vocab(n: int) -> Vocabulary:
    return Vocabulary(("<unk>", *(f"create_r{i}" for i in range(n - 1))), (0, *([1] * (n - 1))))


def _saved_model(tmp_path: Path, layers: int = 1, window: int = 6, vocab_size: int = 23) -> Path:
    """An untrained but randomly initialised model (weights are what matters for equivalence)."""
    import keras

    keras.utils.set_random_seed(layers)
    settings = TrainSettings(embedding_dim=5, lstm_units=7, lstm_layers=layers, dropout=0.2)
    model = build_model(vocab_size, window, settings)
    # push the biases away from zero so every gate term matters in the comparison
    for weights in model.weights:
        if "bias" in weights.path:
            weights.assign(np.random.default_rng(1).normal(0, 0.5, weights.shape).astype("float32"))
    model.save(tmp_path / "model.keras")
    _vocab(vocab_size).save(tmp_path / "vocab.json")
    return tmp_path


@pytest.mark.parametrize("layers", [1, 2])
def test_numpy_path_equals_model_predict(tmp_path: Path, layers: int) -> None:
    predictor = Predictor.load(_saved_model(tmp_path, layers=layers))
    assert predictor._numpy is not None, "the fast path must be used for this architecture"
    ids = np.random.default_rng(0).integers(0, 23, size=(64, 6)).astype("int32")
    expected = predictor.model.predict(ids, verbose=0)
    got = predictor.probabilities_batch(ids)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    single = predictor.probabilities(predictor.vocab.decode(ids[5]))
    np.testing.assert_allclose(single, expected[5], atol=2e-6, rtol=1e-4)


def test_top_k_is_sorted_and_matches_the_probabilities(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path) / "model.keras")
    actions = ["create_r1", "create_r2", "create_r3", "create_r4", "create_r5", "create_r6"]
    probs = predictor.probabilities(actions)
    top = predictor.top_k(actions, 4)
    assert [name for name, _ in top] == [predictor.vocab.tokens[i] for i in np.argsort(-probs)[:4]]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][1] == pytest.approx(float(probs.max()))


def test_unknown_actions_are_mapped_and_reported(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    with pytest.warns(UserWarning, match="unknown action"):
        top = predictor.top_k(["create_r1", "delete_never_seen"], 3)
    assert len(top) == 3
    prediction = predictor.predict(["create_r1", "delete_never_seen"], 3)
    assert prediction.unknown == ["delete_never_seen"]
    window = np.array([[0, 0, 0, 0, predictor.vocab.id_of("create_r1"), 0]])  # padding, r1, unknown -> 0
    expected = predictor.probabilities_batch(window)[0]
    assert prediction.actions[0][1] == pytest.approx(float(expected.max()))


def test_all_unknown_or_empty_input_is_an_input_error(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    with pytest.raises(InputError, match="none of the actions"):
        predictor.top_k(["delete_x", "delete_y"], 3)
    with pytest.raises(InputError, match="no actions"):
        predictor.top_k([], 3)


def test_short_inputs_are_padded_and_long_ones_keep_the_last_window(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    short = predictor.predict(["create_r3"], 2)
    assert short.padded == 5 and short.truncated == 0
    long_input = [f"create_r{i}" for i in range(1, 10)]
    long = predictor.predict(long_input, 2)
    assert long.truncated == 3 and long.padded == 0
    assert long.actions == predictor.predict(long_input[-6:], 2).actions


def test_missing_model_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no model"):
        Predictor.load(tmp_path / "nothing")


def test_vocab_of_another_model_is_refused(tmp_path: Path) -> None:
    _saved_model(tmp_path)
    _vocab(5).save(tmp_path / "vocab.json")
    with pytest.raises(InputError, match="different trainings"):
        Predictor.load(tmp_path)


def test_single_window_latency_is_well_under_a_millisecond(tmp_path: Path) -> None:
    import time

    predictor = Predictor.load(_saved_model(tmp_path))
    actions = [f"create_r{i}" for i in range(1, 7)]
    predictor.top_k(actions, 5)
    timings = []
    for _ in range(300):
        start = time.perf_counter()
        predictor.top_k(actions, 5)
        timings.append(time.perf_counter() - start)
    assert float(np.median(timings)) < 0.002  # target is < 1 ms; slack for a loaded CI machine


@pytest.mark.slow
def test_cli_predict_json_on_a_run_dir(tmp_path: Path) -> None:
    _saved_model(tmp_path)
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "perfspec", "predict", "--model", str(tmp_path), "--top", "3", "--json"]
    done = subprocess.run(
        [*command, "create_r1", "delete_unknown"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert len(payload["predictions"]) == 3 and payload["unknown"] == ["delete_unknown"]
    assert payload["padded"] == 4
    bad = subprocess.run([*command, "delete_unknown"], capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "none of the actions" in bad.stderr and "Traceback" not in bad.stderr


def test_dataset_vocab_round_trips_through_the_predictor(tmp_path: Path) -> None:
    actions = [f"create_r{i % 7}" for i in range(400)]
    dataset = dataset_from_actions(actions, DatasetSettings(window=6))
    dataset.vocab.save(tmp_path / "vocab.json")
    _saved_model(tmp_path, vocab_size=len(dataset.vocab))
    dataset.vocab.save(tmp_path / "vocab.json")
    predictor = Predictor.load(tmp_path)
    x, _ = dataset.windows("test")
    ids, unknown, _, _ = predictor.encode(dataset.vocab.decode(x[0]))
    np.testing.assert_array_equal(ids, x[0])
    assert unknown == []
