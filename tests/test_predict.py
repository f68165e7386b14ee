"""Prediction: the NumPy paths equal model.predict; unknown, short and long inputs; bundles; the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfspec.errors import InputError
from perfspec.learn.bundle import BUNDLE_NAME, BundleError, read_bundle, write_bundle
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.forward import LSTMNet, extract
from perfspec.learn.network import build_model, load_network
from perfspec.learn.predict import Predictor, describe
from perfspec.learn.vocab import UNK, Vocabulary
from perfspec.settings import DatasetSettings, TrainSettings

REPO = Path(__file__).resolve().parent.parent


def _vocab(n: int) -> Vocabulary:
    return Vocabulary((UNK, *(f"create_r{i}" for i in range(n - 1))), (0, *([1] * (n - 1))))


def _model(family: str = "lstm", layers: int = 1, window: int = 6, vocab_size: int = 23) -> Any:
    """An untrained but randomly initialised model (weights are what matters for equivalence)."""
    import keras

    keras.utils.set_random_seed(layers)
    settings = TrainSettings(
        family=family, embedding_dim=6, lstm_units=7, lstm_layers=layers, blocks=layers, dropout=0.2
    )
    model = build_model(vocab_size, window, settings)
    # push the biases away from zero so every gate term matters in the comparison
    for weights in model.weights:
        if "bias" in weights.path:
            weights.assign(np.random.default_rng(1).normal(0, 0.5, weights.shape).astype("float32"))
    return model


def _saved_model(tmp_path: Path, layers: int = 1, vocab_size: int = 23, family: str = "lstm") -> Path:
    _model(family, layers, vocab_size=vocab_size).save(tmp_path / "model.keras")
    _vocab(vocab_size).save(tmp_path / "vocab.json")
    return tmp_path


def _ids(n: int, vocab_size: int = 23, window: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab_size, size=(n, window)).astype("int32")


@pytest.mark.parametrize(("family", "layers"), [("lstm", 1), ("lstm", 2), ("gru", 1), ("transformer", 1)])
def test_numpy_path_equals_model_predict(tmp_path: Path, family: str, layers: int) -> None:
    predictor = Predictor.load(_saved_model(tmp_path, layers=layers, family=family))
    assert predictor.backend == "numpy", "the fast path must be used for this architecture"
    assert predictor.family == family
    ids = _ids(64)
    expected = predictor.model.predict(ids, verbose=0)
    got = predictor.probabilities_batch(ids)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    single = predictor.probabilities(predictor.vocab.decode(ids[5]))
    np.testing.assert_allclose(single, expected[5], atol=2e-6, rtol=1e-4)


def test_a_predictor_needs_a_scorer_or_a_model_that_fits_the_vocabulary() -> None:
    net = extract(_model())
    assert isinstance(net, LSTMNet)
    predictor = Predictor(net, _vocab(23), "in memory")
    assert (predictor.backend, predictor.family, predictor.window) == ("bundle", "lstm", 6)
    with pytest.raises(ValueError, match="scorer or a Keras model"):
        Predictor(None, _vocab(23))
    with pytest.raises(InputError, match="different trainings"):
        Predictor(net, _vocab(5))


def test_top_k_is_sorted_and_matches_the_probabilities(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path) / "model.keras")
    actions = ["create_r1", "create_r2", "create_r3", "create_r4", "create_r5", "create_r6"]
    probs = predictor.probabilities(actions)
    probs[0] = -1.0  # <unk> is never a prediction
    top = predictor.top_k(actions, 4)
    assert [name for name, _ in top] == [predictor.vocab.tokens[i] for i in np.argsort(-probs)[:4]]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][1] == pytest.approx(float(probs.max()))


def test_unk_is_never_predicted_and_k_is_capped_at_the_known_actions() -> None:
    model = _model(vocab_size=7)
    bias = model.get_layer("next_action").bias
    bias.assign(np.array([50.0, 0, 0, 0, 0, 0, 0], dtype="float32"))  # <unk> is by far the likeliest
    predictor = Predictor.from_keras(model, _vocab(7), "in memory")
    actions = ["create_r1", "create_r2"]
    assert int(np.argmax(predictor.probabilities(actions))) == 0
    prediction = predictor.predict(actions, 3)
    assert len(prediction.actions) == 3 and UNK not in [a for a, _ in prediction.actions]
    everything = predictor.predict(actions, 100)
    assert len(everything.actions) == 6  # vocab - 1: every known action, no <unk>
    assert sorted(a for a, _ in everything.actions) == sorted(predictor.vocab.tokens[1:])
    with pytest.raises(InputError, match="at least 1"):
        predictor.predict(actions, 0)


def test_unknown_actions_are_mapped_and_reported(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    with pytest.warns(UserWarning, match="unknown action"):
        top = predictor.top_k(["create_r1", "delete_never_seen"], 3)
    assert len(top) == 3
    prediction = predictor.predict(["create_r1", "delete_never_seen"], 3)
    assert prediction.unknown == ["delete_never_seen"]
    window = np.array([[0, 0, 0, 0, predictor.vocab.id_of("create_r1"), 0]])  # padding, r1, unknown -> 0
    expected = predictor.probabilities_batch(window)[0]
    assert prediction.actions[0][1] == pytest.approx(float(expected[1:].max()))


def test_all_unknown_or_empty_input_is_an_input_error(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    with pytest.raises(InputError, match="none of the actions"):
        predictor.top_k(["delete_x", "delete_y"], 3)
    with pytest.raises(InputError, match="none of the actions"):
        predictor.top_k([UNK], 3)  # <unk> itself says nothing either
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


def test_single_window_answers_never_go_through_tensorflow(tmp_path: Path, monkeypatch: Any) -> None:
    """The runtime path (one window at a time) is NumPy only: no tf.function, no model.predict."""
    predictor = Predictor.load(_saved_model(tmp_path))
    actions = [f"create_r{i}" for i in range(1, 7)]
    first = predictor.top_k(actions, 5)

    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("TensorFlow used on the fast path")

    monkeypatch.setattr(predictor, "_tf_forward", forbidden)
    monkeypatch.setattr(predictor.model, "predict", forbidden)
    for _ in range(20):
        assert predictor.top_k(actions, 5) == first
    assert predictor._compiled is None  # noqa: SLF001 - no tf.function was ever built


def test_describe_is_json_ready_and_names_the_model(tmp_path: Path) -> None:
    predictor = Predictor.load(_saved_model(tmp_path))
    prediction = predictor.predict(["create_r1", "delete_unknown"], 3)
    plain = describe(prediction)
    assert set(plain) == {"predictions", "unknown", "padded", "truncated"}
    assert plain["unknown"] == ["delete_unknown"] and plain["padded"] == 4
    assert [p["action"] for p in plain["predictions"]] == [a for a, _ in prediction.actions]
    named = describe(prediction, predictor)
    assert named["model"] == {"source": predictor.source, "family": "lstm"}
    assert json.loads(json.dumps(named)) == named


@pytest.mark.slow
def test_cli_predict_json_on_a_run_dir(tmp_path: Path) -> None:
    _saved_model(tmp_path)
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "perfspec", "predict", "--model", str(tmp_path), "--json"]
    done = subprocess.run(
        [*command, "--top", "3", "create_r1", "delete_unknown"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert len(payload["predictions"]) == 3 and payload["unknown"] == ["delete_unknown"]
    assert payload["padded"] == 4 and payload["model"]["family"] == "lstm"
    everything = subprocess.run(
        [*command, "--top", "50", "create_r1"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert everything.returncode == 0, everything.stderr
    actions = [p["action"] for p in json.loads(everything.stdout)["predictions"]]
    assert len(actions) == 22 and UNK not in actions
    bad = subprocess.run(
        [*command, "--top", "3", "delete_unknown"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert bad.returncode == 2 and "none of the actions" in bad.stderr and "Traceback" not in bad.stderr


def test_dataset_vocab_round_trips_through_the_predictor(tmp_path: Path) -> None:
    actions = [f"create_r{i % 7}" for i in range(400)]
    dataset = dataset_from_actions(actions, DatasetSettings(window=6))
    _saved_model(tmp_path, vocab_size=len(dataset.vocab))
    dataset.vocab.save(tmp_path / "vocab.json")
    predictor = Predictor.load(tmp_path)
    x, _ = dataset.windows("test")
    ids, unknown, _, _ = predictor.encode(dataset.vocab.decode(x[0]))
    np.testing.assert_array_equal(ids, x[0])
    assert unknown == []


# --- the bundle (predictor.npz): TensorFlow-free loading --------------------------------------------
def _write_bundle_for(run_dir: Path, target: Path | None = None) -> Path:
    net = extract(load_network(run_dir / "model.keras"))
    assert net is not None
    return write_bundle(net, Vocabulary.load(run_dir / "vocab.json"), target or run_dir / BUNDLE_NAME)


def _with_bundle(tmp_path: Path, layers: int = 1, family: str = "lstm") -> Path:
    run_dir = _saved_model(tmp_path, layers=layers, family=family)
    _write_bundle_for(run_dir)
    return run_dir


@pytest.mark.parametrize(("family", "layers"), [("lstm", 1), ("lstm", 2), ("gru", 2), ("transformer", 2)])
def test_bundle_answers_like_the_keras_model(tmp_path: Path, family: str, layers: int) -> None:
    run_dir = _with_bundle(tmp_path, layers, family)
    bundled = Predictor.load(run_dir)
    keras_path = Predictor.load(run_dir, use_bundle=False)
    assert (bundled.backend, keras_path.backend) == ("bundle", "numpy")
    assert bundled.family == keras_path.family == family
    assert bundled.window == 6 and bundled.vocab == keras_path.vocab
    ids = _ids(64)
    expected = keras_path.model.predict(ids, verbose=0)
    np.testing.assert_allclose(bundled.probabilities_batch(ids), expected, atol=2e-6, rtol=1e-4)
    # same arrays, same arithmetic: the bundle and the in-memory NumPy path agree exactly
    np.testing.assert_array_equal(bundled.probabilities_batch(ids), keras_path.probabilities_batch(ids))
    actions = ["create_r1", "create_r2", "create_r7"]
    assert bundled.top_k(actions, 5) == keras_path.top_k(actions, 5)


def test_bundle_bytes_are_deterministic_and_hold_no_pickle(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    run_dir = _with_bundle(tmp_path / "a")
    again = _write_bundle_for(run_dir, tmp_path / "b" / BUNDLE_NAME)
    assert again.read_bytes() == (run_dir / BUNDLE_NAME).read_bytes()
    with zipfile.ZipFile(again) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        names = archive.namelist()
        assert {"meta.npy", "model.table.npy", "vocab_tokens.npy"} <= set(names)
    with np.load(again, allow_pickle=False) as data:  # plain arrays only
        assert data["model.table"].dtype == np.float32
        meta = json.loads(str(data["meta"][0]))
    assert meta["version"] == 2 and meta["model"]["family"] == "lstm" and meta["window"] == 6
    assert not list((tmp_path / "b").glob(".*"))  # atomic write: no temp file left


def test_a_bundle_carries_its_info_and_refuses_a_vocabulary_of_another_size(tmp_path: Path) -> None:
    net = extract(_model())
    assert net is not None
    info = {"name": "lstm-small", "run": "abc123"}
    path = write_bundle(net, _vocab(23), tmp_path / BUNDLE_NAME, info=info)
    scorer, vocab, got = read_bundle(path)
    assert got == info and vocab == _vocab(23) and scorer.family == "lstm"
    predictor = Predictor.load(path)
    assert predictor.info == info and predictor.backend == "bundle"
    prediction = predictor.predict(["create_r1"], 2)
    assert describe(prediction, predictor)["model"] == {"source": str(path), "family": "lstm", **info}
    with pytest.raises(BundleError, match="classes"):
        write_bundle(net, _vocab(5), tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


def test_bundle_alone_is_enough_and_the_keras_model_is_loaded_only_on_demand(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    alone = tmp_path / "runtime"
    alone.mkdir()
    (run_dir / BUNDLE_NAME).rename(alone / BUNDLE_NAME)
    predictor = Predictor.load(alone / BUNDLE_NAME)
    assert predictor.backend == "bundle" and len(predictor.top_k(["create_r1"], 3)) == 3
    with pytest.raises(InputError, match="no Keras model"):
        _ = predictor.model
    (alone / BUNDLE_NAME).rename(run_dir / BUNDLE_NAME)
    beside = Predictor.load(run_dir / "model.keras")
    assert beside.backend == "bundle" and beside.model.input_shape[-1] == 6  # lazily from model.keras


def test_an_unusable_bundle_falls_back_to_the_keras_model(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    (run_dir / BUNDLE_NAME).write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="unreadable"):
        read_bundle(run_dir / BUNDLE_NAME)
    with pytest.warns(UserWarning, match="not used"):
        predictor = Predictor.load(run_dir)
    assert predictor.backend == "numpy"
    (run_dir / "model.keras").unlink()  # nothing to fall back on
    with pytest.raises(InputError, match="cannot use"):
        Predictor.load(run_dir)


def _rewrite_meta(path: Path, **changes: Any) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"][0]))
    arrays["meta"] = np.array([json.dumps({**meta, **changes})])
    np.savez(path, **arrays)


def test_a_bundle_of_a_newer_format_is_not_misread(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    _rewrite_meta(run_dir / BUNDLE_NAME, version=3)
    with pytest.raises(BundleError, match="version"):
        read_bundle(run_dir / BUNDLE_NAME)
    with pytest.warns(UserWarning, match="not used"):
        assert Predictor.load(run_dir).backend == "numpy"


def test_a_bundle_of_another_format_or_family_is_refused(tmp_path: Path) -> None:
    run_dir = _with_bundle(tmp_path)
    _rewrite_meta(run_dir / BUNDLE_NAME, format="something-else")
    with pytest.raises(BundleError, match="not a perfspec-predictor"):
        read_bundle(run_dir / BUNDLE_NAME)
    _write_bundle_for(run_dir)
    with np.load(run_dir / BUNDLE_NAME) as data:
        meta = json.loads(str(data["meta"][0]))
    _rewrite_meta(run_dir / BUNDLE_NAME, model={**meta["model"], "family": "perceptron"})
    with pytest.raises(BundleError, match="perceptron"):
        read_bundle(run_dir / BUNDLE_NAME)


def _version1_bundle(net: LSTMNet, vocab: Vocabulary, target: Path) -> Path:
    """A bundle as the code before model families wrote it (LSTM only, flat array names)."""
    meta = {
        "format": "perfspec-predictor",
        "version": 1,
        "window": net.window,
        "vocab_size": len(vocab),
        "lstm_units": net.units,
        "unknown": UNK,
    }
    arrays = {
        "meta": np.array([json.dumps(meta, sort_keys=True)]),
        "vocab_tokens": np.array(vocab.tokens, dtype=np.str_),
        "vocab_counts": np.array(vocab.counts, dtype=np.int64),
        "table": net.table,
        "lstm0_recurrent": net.layers[0].recurrent,
    }
    for index, layer in enumerate(net.layers[1:], start=1):
        arrays |= {
            f"lstm{index}_recurrent": layer.recurrent,
            f"lstm{index}_kernel": layer.kernel,
            f"lstm{index}_bias": layer.bias,
        }
    arrays |= {"dense_kernel": net.dense_kernel, "dense_bias": net.dense_bias}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return target


@pytest.mark.parametrize("layers", [1, 2])
def test_a_version_1_bundle_is_still_read(tmp_path: Path, layers: int) -> None:
    net = extract(_model(layers=layers))
    assert isinstance(net, LSTMNet) and len(net.units) == layers
    path = _version1_bundle(net, _vocab(23), tmp_path / BUNDLE_NAME)
    scorer, vocab, info = read_bundle(path)
    assert isinstance(scorer, LSTMNet) and scorer.units == net.units and scorer.window == 6
    assert vocab == _vocab(23) and info == {}
    predictor = Predictor.load(tmp_path)  # no model.keras beside it: the bundle alone
    assert (predictor.backend, predictor.family) == ("bundle", "lstm")
    ids = _ids(32)
    np.testing.assert_array_equal(predictor.probabilities_batch(ids), net.probabilities(ids))
    actions = ["create_r1", "create_r2", "create_r7"]
    assert predictor.top_k(actions, 5) == Predictor(net, _vocab(23)).top_k(actions, 5)


def test_an_architecture_the_numpy_path_cannot_run_uses_a_tf_function(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(6,), dtype="int32")
    hidden = keras.layers.Embedding(23, 5)(inputs)
    hidden = keras.layers.SimpleRNN(7)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(23, activation="softmax")(hidden))
    assert extract(model) is None
    model.save(tmp_path / "model.keras")
    _vocab(23).save(tmp_path / "vocab.json")
    predictor = Predictor.load(tmp_path)
    assert (predictor.backend, predictor.family) == ("tf.function", "keras")
    ids = _ids(8)
    np.testing.assert_allclose(predictor.probabilities_batch(ids), model.predict(ids, verbose=0), atol=1e-6)
    assert UNK not in [a for a, _ in predictor.top_k(["create_r1"], 50)]
    in_memory = Predictor.from_keras(model, _vocab(23), "in memory")
    assert in_memory.backend == "tf.function" and in_memory.window == 6


_NO_TF_CHECK = "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not heavy, heavy"


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_loading_a_bundle_never_imports_tensorflow_or_keras(tmp_path: Path, family: str) -> None:
    run_dir = _with_bundle(tmp_path, family=family)
    script = (
        "import sys\n"
        "from perfspec.learn.predict import Predictor\n"
        f"p = Predictor.load({str(run_dir)!r})\n"
        "print(p.backend, p.family, p.top_k(['create_r1', 'create_r2'], 3))\n"
        f"{_NO_TF_CHECK}\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"bundle {family} ")


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
    payload = json.loads(done.stdout)
    assert len(payload["predictions"]) == 3 and payload["model"]["family"] == "lstm"
