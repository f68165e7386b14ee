"""Prediction: the NumPy fast path equals model.predict; unknown, short and long inputs; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from perfspec.errors import InputError
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.network import build_model
from perfspec.learn.predict import BUNDLE_NAME, BundleError, Predictor, export_bundle, read_bundle
from perfspec.learn.vocab import Vocabulary
from perfspec.settings import DatasetSettings, TrainSettings

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


# --- the exported bundle (predictor.npz): TensorFlow-free loading ---------------------------------
def _with_bundle(tmp_path: Path, layers: int = 1) -> Path:
    import keras

    run_dir = _saved_model(tmp_path, layers=layers)
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert export_bundle(model, Vocabulary.load(run_dir / "vocab.json"), run_dir / BUNDLE_NAME) is not None
    return run_dir


@pytest.mark.parametrize("layers", [1, 2])
def test_bundle_answers_like_the_keras_model(tmp_path: Path, layers: int) -> None:
    run_dir = _with_bundle(tmp_path, layers)
    bundled = Predictor.load(run_dir)
    keras_path = Predictor.load(run_dir, use_bundle=False)
    assert (bundled.backend, keras_path.backend) == ("bundle", "numpy")
    assert bundled.window == 6 and bundled.vocab == keras_path.vocab
    ids = np.random.default_rng(0).integers(0, 23, size=(64, 6)).astype("int32")
    expected = keras_path.model.predict(ids, verbose=0)
    np.testing.assert_allclose(bundled.probabilities_batch(ids), expected, atol=2e-6, rtol=1e-4)
    # same folded weights, same arithmetic: the bundle and the in-memory NumPy path agree exactly
    np.testing.assert_array_equal(bundled.probabilities_batch(ids), keras_path.probabilities_batch(ids))
    actions = ["create_r1", "create_r2", "create_r7"]
    assert bundled.top_k(actions, 5) == keras_path.top_k(actions, 5)


def test_bundle_bytes_are_deterministic_and_hold_no_pickle(tmp_path: Path) -> None:
    import keras

    (tmp_path / "a").mkdir()
    run_dir = _with_bundle(tmp_path / "a")
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    again = export_bundle(model, Vocabulary.load(run_dir / "vocab.json"), tmp_path / "b" / BUNDLE_NAME)
    assert again is not None and again.read_bytes() == (run_dir / BUNDLE_NAME).read_bytes()
    with zipfile.ZipFile(again) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "table.npy" in archive.namelist() and "vocab_tokens.npy" in archive.namelist()
    with np.load(again, allow_pickle=False) as data:  # plain arrays only
        assert data["table"].dtype == np.float32
    assert not list((tmp_path / "b").glob(".*"))  # atomic write: no temp file left


def test_bundle_alone_is_enough_and_the_keras_model_is_loaded_only_on_demand(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    alone = tmp_path / "runtime"
    alone.mkdir()
    (run_dir / BUNDLE_NAME).rename(alone / BUNDLE_NAME)
    predictor = Predictor.load(alone / BUNDLE_NAME)
    assert predictor.backend == "bundle" and len(predictor.top_k(["create_r1"], 3)) == 3
    with pytest.raises(InputError, match="alone"):
        _ = predictor.model
    (alone / BUNDLE_NAME).rename(run_dir / BUNDLE_NAME)
    beside = Predictor.load(run_dir / "model.keras")
    assert beside.backend == "bundle" and beside.model.input_shape[-1] == 6  # lazily from model.keras


def test_an_unusable_bundle_falls_back_to_the_keras_model(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    (run_dir / BUNDLE_NAME).write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="not used"):
        predictor = Predictor.load(run_dir)
    assert predictor.backend == "numpy"
    (run_dir / "model.keras").unlink()  # nothing to fall back on
    with pytest.raises(InputError, match="cannot use"):
        Predictor.load(run_dir)


def test_a_bundle_of_a_newer_format_is_not_misread(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    with np.load(run_dir / BUNDLE_NAME) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"][0]))
    arrays["meta"] = np.array([json.dumps({**meta, "version": meta["version"] + 1})])
    np.savez(run_dir / BUNDLE_NAME, **arrays)
    with pytest.raises(BundleError, match="version"):
        read_bundle(run_dir / BUNDLE_NAME)
    with pytest.warns(UserWarning, match="not used"):
        assert Predictor.load(run_dir).backend == "numpy"


def test_an_architecture_the_numpy_path_cannot_run_gets_no_bundle(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(6,), dtype="int32")
    hidden = keras.layers.Embedding(23, 5)(inputs)
    hidden = keras.layers.GRU(7)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(23, activation="softmax")(hidden))
    model.save(tmp_path / "model.keras")
    _vocab(23).save(tmp_path / "vocab.json")
    (tmp_path / BUNDLE_NAME).write_bytes(b"stale")
    assert export_bundle(model, _vocab(23), tmp_path / BUNDLE_NAME) is None
    assert not (tmp_path / BUNDLE_NAME).exists()  # no stale bundle beside a model it does not describe
    predictor = Predictor.load(tmp_path)
    assert predictor.backend == "tf.function"
    ids = np.random.default_rng(0).integers(0, 23, size=(8, 6)).astype("int32")
    np.testing.assert_allclose(predictor.probabilities_batch(ids), model.predict(ids, verbose=0), atol=1e-6)


_NO_TF_CHECK = "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not heavy, heavy"


def test_loading_a_bundle_never_imports_tensorflow_or_keras(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    script = (
        "import sys\n"
        "from perfspec.learn.predict import Predictor\n"
        f"p = Predictor.load({str(run_dir)!r})\n"
        "print(p.backend, p.top_k(['create_r1', 'create_r2'], 3))\n"
        f"{_NO_TF_CHECK}\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bundle ")


def test_cli_predict_with_a_bundle_never_imports_tensorflow(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    argv = ["perfspec", "predict", "--model", str(run_dir), "--top", "3", "--json", "create_r1"]
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('heavy:', [m for m in ('tensorflow', 'keras') if m in sys.modules],"
        " file=sys.stderr))\n"
        f"sys.argv = {argv!r}\n"
        "from perfspec.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stderr
    assert len(json.loads(done.stdout)["predictions"]) == 3
