"""NumPy forward passes equal ``model.predict`` for every family; arrays round-trip; misfits are refused."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from perfspec.learn.forward import GRUNet, LSTMNet, TransformerNet, extract, net_from_arrays
from perfspec.learn.network import build_model
from perfspec.settings import TrainSettings

VOCAB, WINDOW = 13, 5
CASES = [
    (family, depth, dropout)
    for family in ("lstm", "gru", "transformer")
    for depth in (1, 2)
    for dropout in (0.0, 0.3)
]
NETS = {"lstm": LSTMNet, "gru": GRUNet, "transformer": TransformerNet}


@functools.cache
def _model(family: str, depth: int, dropout: float) -> Any:
    """A small untrained model with every weight (biases, LayerNorm scales too) random and non-trivial."""
    import keras

    keras.utils.set_random_seed(depth)
    settings = TrainSettings(
        family=family,
        embedding_dim=8,
        lstm_units=7,
        lstm_layers=depth,
        heads=2,
        blocks=depth,
        dropout=dropout,
    )
    model = build_model(VOCAB, WINDOW, settings)
    rng = np.random.default_rng(depth)
    for weights in model.weights:
        scale = 1.0 if "embedding" in weights.path or "positions" in weights.path else 0.5
        values = rng.normal(0, scale, weights.shape)
        if weights.path.endswith("gamma"):
            values += 1.0
        weights.assign(values.astype("float32"))
    return model


def _ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, WINDOW)).astype("int32")


@pytest.mark.parametrize(("family", "depth", "dropout"), CASES)
def test_numpy_net_equals_model_predict(family: str, depth: int, dropout: float) -> None:
    model = _model(family, depth, dropout)
    net = extract(model)
    assert isinstance(net, NETS[family]) and net.family == family
    assert (net.window, net.classes) == (WINDOW, VOCAB)
    ids = _ids(64)
    expected = model.predict(ids, verbose=0)
    got = net.probabilities(ids)
    assert got.dtype == np.float32 and got.shape == (64, VOCAB)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(net.probabilities(ids[7:8])[0], expected[7], atol=2e-6, rtol=1e-4)
    assert net.probabilities(ids[:0]).shape == (0, VOCAB)


@pytest.mark.parametrize(("family", "depth"), [(f, d) for f in NETS for d in (1, 2)])
def test_arrays_round_trip_exactly(family: str, depth: int) -> None:
    net = extract(_model(family, depth, 0.3))
    assert net is not None
    meta, arrays = net.to_arrays()
    assert all(a.dtype == np.float32 for a in arrays.values())
    again = net_from_arrays(json.loads(json.dumps(meta)), {k: a.copy() for k, a in arrays.items()})
    assert type(again) is type(net)
    ids = _ids(32, seed=1)
    assert np.array_equal(again.probabilities(ids), net.probabilities(ids))
    meta2, arrays2 = again.to_arrays()
    assert meta2 == meta and list(arrays2) == list(arrays)
    assert all(arrays2[k].tobytes() == arrays[k].tobytes() for k in arrays)
    _, fresh = extract(_model(family, depth, 0.3)).to_arrays()  # deterministic: same model, same bytes
    assert all(fresh[k].tobytes() == arrays[k].tobytes() for k in arrays)


def test_lstm_reads_version_one_bundle_meta() -> None:
    """Bundles written before the other families existed say ``lstm_units`` and name no family."""
    net = extract(_model("lstm", 2, 0.0))
    meta, arrays = net.to_arrays()
    old_meta = {"window": meta["window"], "vocab_size": meta["vocab_size"], "lstm_units": meta["units"]}
    ids = _ids(8)
    assert np.array_equal(LSTMNet.from_arrays(old_meta, arrays).probabilities(ids), net.probabilities(ids))


@pytest.mark.parametrize("family", list(NETS))
def test_from_arrays_refuses_misfits(family: str) -> None:
    net = extract(_model(family, 2, 0.0))
    assert net is not None
    meta, arrays = net.to_arrays()
    name = next(iter(arrays))  # table / embedding
    with pytest.raises(ValueError, match="inconsistent shapes"):
        net_from_arrays(meta, {**arrays, "dense_bias": arrays["dense_bias"][:-1]})
    with pytest.raises(ValueError, match="inconsistent shapes"):
        net_from_arrays(meta, {**arrays, name: arrays[name][:, :-1]})
    with pytest.raises(ValueError, match="float32"):
        net_from_arrays(meta, {**arrays, "dense_kernel": arrays["dense_kernel"].astype(np.float64)})
    with pytest.raises(ValueError, match="missing arrays"):
        net_from_arrays(meta, {k: a for k, a in arrays.items() if k != "dense_kernel"})
    with pytest.raises(ValueError, match="meta"):
        net_from_arrays({**meta, "vocab_size": VOCAB + 1}, arrays)
    with pytest.raises(ValueError, match="unknown family"):
        net_from_arrays({**meta, "family": "rnn"}, arrays)
    with pytest.raises(ValueError, match="shape"):
        net.probabilities(np.zeros((2, WINDOW + 1), dtype=np.int32))
    with pytest.raises(ValueError, match="ids must lie"):
        net.probabilities(np.full((1, WINDOW), VOCAB, dtype=np.int32))


def test_unsupported_architectures_give_none() -> None:
    import keras

    def model(*layers: Any) -> Any:
        inputs = keras.Input(shape=(WINDOW,), dtype="int32")
        hidden = inputs
        for layer in layers:
            hidden = layer(hidden)
        return keras.Model(inputs, hidden)

    def dense() -> Any:
        return keras.layers.Dense(VOCAB, activation="softmax")

    embedding = keras.layers.Embedding
    unsupported = [
        model(embedding(VOCAB, 4), keras.layers.Bidirectional(keras.layers.LSTM(3)), dense()),
        model(embedding(VOCAB, 4, mask_zero=True), keras.layers.LSTM(3), dense()),
        model(embedding(VOCAB, 4), keras.layers.GRU(3, reset_after=False), dense()),
        model(embedding(VOCAB, 4), keras.layers.LSTM(3, go_backwards=True), dense()),
        model(embedding(VOCAB, 4), keras.layers.LSTM(3), keras.layers.Dense(VOCAB, activation="relu")),
    ]
    assert [extract(m) for m in unsupported] == [None] * len(unsupported)
    # the same computation built another way is fine
    sequential = keras.Sequential(
        [keras.Input((WINDOW,), dtype="int32"), embedding(VOCAB, 4), keras.layers.GRU(3), dense()]
    )
    assert isinstance(extract(sequential), GRUNet)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_must_be_causal(causal: bool) -> None:
    """The Transformer built by hand (no names, no dropout) is found; one that may look ahead is not."""
    import keras

    from perfspec.learn.network import custom_layers

    position_embedding, last_step = custom_layers()
    inputs = keras.Input(shape=(WINDOW,), dtype="int32")
    x = position_embedding(WINDOW, 8)(keras.layers.Embedding(VOCAB, 8)(inputs))
    normed = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    attended = keras.layers.MultiHeadAttention(2, 4)(normed, normed, use_causal_mask=causal)
    x = keras.layers.Add()([x, attended])
    inner = keras.layers.Dense(16, activation="relu")(keras.layers.LayerNormalization(epsilon=1e-6)(x))
    x = keras.layers.Add()([x, keras.layers.Dense(8)(inner)])
    x = last_step()(keras.layers.LayerNormalization(epsilon=1e-6)(x))
    model = keras.Model(inputs, keras.layers.Dense(VOCAB, activation="softmax")(x))
    net = extract(model)
    if causal:
        assert isinstance(net, TransformerNet)
        ids = _ids(16)
        np.testing.assert_allclose(
            net.probabilities(ids), model.predict(ids, verbose=0), atol=2e-6, rtol=1e-4
        )
    else:
        assert net is None


def test_a_saved_and_loaded_model_is_extracted_alike(tmp_path: Any) -> None:
    import keras

    model = _model("transformer", 1, 0.3)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    _, arrays = extract(model).to_arrays()
    _, again = extract(loaded).to_arrays()
    assert list(again) == list(arrays) and all(again[k].tobytes() == arrays[k].tobytes() for k in arrays)
