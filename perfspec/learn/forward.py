"""TensorFlow-free NumPy forward passes of the three networks ``perfspec.learn.network`` builds.

Why: ``model.predict`` builds a dataset pipeline per call (~45 ms) and TensorFlow takes seconds and
hundreds of MB to import, while one window through any of these networks is a few small matrix products.
Each class holds the weights of one family, answers ``probabilities(ids)`` in float32 (vectorised over
the batch) and converts to and from plain named float32 arrays (``to_arrays`` / ``from_arrays``: what an
exported bundle stores, with a JSON-able ``meta``).

- ``LSTMNet`` / ``GRUNet``: the embedding is folded into the first recurrent layer's input kernel (and
  its input bias) in float64 and rounded once to float32, so the table (one row per action) does not
  depend on the BLAS summation order: the same model always gives the same arrays.
- ``TransformerNet``: embedding and position tables are kept apart; every block but the last runs all
  positions, the last one only the newest position's query (all a prediction needs).

The stored arrays keep Keras' layout (gate order, 3-D attention kernels); the forward passes use
layouts derived from them once at construction (gate columns reordered, sigmoid gates halved so one
``tanh`` serves all gates, LayerNorm scale/shift and the attention scale folded into the next kernel).

``extract(model)`` reads the weights out of a Keras model and returns None unless the model is exactly
one of these architectures (checked through its layer graph, configs and call arguments), so a caller
can fall back to Keras for anything else. ``tests/test_forward.py`` checks every family against
``model.predict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

_F32 = np.float32


# --- shared helpers -----------------------------------------------------------------------------
def _dim(array: np.ndarray, axis: int) -> int:
    """``array.shape[axis]``, or -1 when the array has too few axes (the shape check then fails)."""
    return int(array.shape[axis]) if array.ndim > axis else -1


def _require_arrays(named: dict[str, Any]) -> dict[str, Any]:
    not_arrays = [name for name, array in named.items() if not isinstance(array, np.ndarray)]
    if not_arrays:
        raise ValueError(f"not NumPy arrays: {', '.join(not_arrays)}")
    return named


def _validate(window: int, named: dict[str, Any], expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights that do not fit together before they can answer nonsense (all checked at once)."""
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be a positive int, not {window!r}")
    wrong = [name for name, shape in expected.items() if tuple(named[name].shape) != shape]
    if wrong or min((s for shape in expected.values() for s in shape), default=1) < 1:
        raise ValueError(f"inconsistent shapes: {', '.join(wrong) or 'empty dimension'}")
    not_f32 = [name for name, array in named.items() if array.dtype != np.float32]
    if not_f32:
        raise ValueError(f"weights must be float32: {', '.join(not_f32)}")


def _take(arrays: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"missing arrays: {', '.join(missing)}")
    return {name: np.asarray(arrays[name]) for name in names}


def _meta_int(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"meta[{key!r}] must be an int, not {value!r}")
    return value


def _check_meta(family: str, meta: Mapping[str, Any], expected: dict[str, Any]) -> None:
    """``meta`` must name this family (when it names one) and agree with the arrays."""
    if meta.get("family", family) != family:
        raise ValueError(f"meta is for family {meta.get('family')!r}, not {family!r}")
    wrong = [key for key, value in expected.items() if key in meta and meta[key] != value]
    if wrong:
        raise ValueError(f"meta does not fit the arrays: {', '.join(wrong)}")


def _ids(ids: np.ndarray, window: int, classes: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != window:
        raise ValueError(f"ids must have shape (n, {window}), not {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, not {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= classes):
        raise ValueError(f"ids must lie in [0, {classes})")
    return ids


_CHUNK = 256  # windows per pass: each step's arrays stay in cache (2x faster on batches of thousands)


def _in_chunks(forward: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, classes: int) -> np.ndarray:
    if ids.shape[0] <= _CHUNK:
        return forward(ids)
    out = np.empty((ids.shape[0], classes), dtype=_F32)
    for start in range(0, ids.shape[0], _CHUNK):
        out[start : start + _CHUNK] = forward(ids[start : start + _CHUNK])
    return out


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place."""
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    return logits


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=_F32)


class _Net:
    """What every net shares: ``classes`` and the checked, chunked ``probabilities``."""

    window: int
    dense_bias: np.ndarray

    @property
    def classes(self) -> int:
        return int(self.dense_bias.shape[0])

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        """(n, window) int ids -> (n, classes) float32 next-action probabilities (rows sum to 1)."""
        return _in_chunks(self._forward, _ids(ids, self.window, self.classes), self.classes)

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _RecurrentNet(_Net):
    """What LSTMNet and GRUNet share besides that."""

    family: ClassVar[str]
    layers: tuple[Any, ...]

    @property
    def units(self) -> list[int]:
        return [int(layer.recurrent.shape[0]) for layer in self.layers]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(window={self.window}, classes={self.classes}, units={self.units})"

    def _named(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"family": self.family, "window": self.window, "vocab_size": self.classes, "units": self.units}
        return meta, self._named()


# --- LSTM -----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, repr=False)
class LSTMLayer:
    """One LSTM layer in Keras' layout (gates i, f, g, o)."""

    recurrent: np.ndarray  # (u, 4u)
    kernel: np.ndarray | None = None  # (input, 4u); None for the first layer (folded into the table)
    bias: np.ndarray | None = None  # (4u,); None for the first layer (folded into the table)


def _lstm_columns(array: np.ndarray) -> np.ndarray:
    """Keras gates (i, f, g, o) -> (i, f, o, g), the sigmoid gates halved (exact): tanh(z/2) gives them."""
    i, f, g, o = np.split(array, 4, axis=-1)
    return _f32(np.concatenate([i * _F32(0.5), f * _F32(0.5), o * _F32(0.5), g], axis=-1))


def _lstm_layer(proj: np.ndarray, recurrent: np.ndarray, keep_sequence: bool) -> np.ndarray:
    """Run one layer over time-major pre-activations ``proj`` (W, n, 4u), overwritten in place.

    Columns are (i, f, o, g) with i, f, o halved: ``tanh`` of the whole row, then ``0.5 * t + 0.5`` on
    the first three quarters, is sigmoid(i, f, o) and tanh(g). Returns the last h (n, u), or every h
    (W, n, u) when the next layer needs the sequence.
    """
    steps, n, width = proj.shape
    u = width // 4
    three = 3 * u
    sequence = np.empty((steps, n, u), dtype=_F32)
    c = np.empty((n, u), dtype=_F32)
    h = sequence[0]
    for t in range(steps):
        z = proj[t]
        if t:
            z += h @ recurrent
        np.tanh(z, out=z)
        gates = z[:, :three]
        gates *= 0.5
        gates += 0.5
        if t:
            c *= z[:, u : 2 * u]
            c += z[:, :u] * z[:, three:]
        else:  # c starts at zero
            np.multiply(z[:, :u], z[:, three:], out=c)
        h = sequence[t]
        np.tanh(c, out=h)
        h *= z[:, 2 * u : three]
    return sequence if keep_sequence else h


@dataclass(frozen=True, eq=False, repr=False)
class LSTMNet(_RecurrentNet):
    """Embedding -> stacked LSTMs (the last returns its final state) -> Dense softmax."""

    family: ClassVar[str] = "lstm"
    window: int
    table: np.ndarray  # (vocab, 4u): embedding @ first kernel + its bias, one row per action
    layers: tuple[LSTMLayer, ...]
    dense_kernel: np.ndarray  # (u_last, vocab)
    dense_bias: np.ndarray  # (vocab,)
    _fast: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("an LSTM net needs at least one layer")
        if self.layers[0].kernel is not None or self.layers[0].bias is not None:
            raise ValueError("the first LSTM layer's kernel and bias belong in the table")
        if any(layer.kernel is None or layer.bias is None for layer in self.layers[1:]):
            raise ValueError("every LSTM layer after the first needs a kernel and a bias")
        named = _require_arrays(self._named())
        units = [_dim(layer.recurrent, 0) for layer in self.layers]
        vocab = _dim(self.dense_bias, 0)
        expected: dict[str, tuple[int, ...]] = {"table": (vocab, 4 * units[0])}
        for index, u in enumerate(units):
            expected[f"lstm{index}_recurrent"] = (u, 4 * u)
            if index:
                expected[f"lstm{index}_kernel"] = (units[index - 1], 4 * u)
                expected[f"lstm{index}_bias"] = (4 * u,)
        expected["dense_kernel"] = (units[-1], vocab)
        expected["dense_bias"] = (vocab,)
        _validate(self.window, named, expected)
        fast = tuple(
            (
                _lstm_columns(layer.recurrent),
                None if layer.kernel is None else _lstm_columns(layer.kernel),
                None if layer.bias is None else _lstm_columns(layer.bias),
            )
            for layer in self.layers
        )
        object.__setattr__(
            self, "_fast", (_lstm_columns(self.table), fast, _f32(self.dense_kernel), _f32(self.dense_bias))
        )

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        table, layers, dense_kernel, dense_bias = self._fast
        proj = table[ids.T]  # (W, n, 4u), time-major: each step's rows are contiguous
        last = len(layers) - 1
        hidden = proj
        for index, (recurrent, kernel, bias) in enumerate(layers):
            if index:
                proj = hidden @ kernel
                proj += bias
            hidden = _lstm_layer(proj, recurrent, keep_sequence=index < last)
        logits = hidden @ dense_kernel
        logits += dense_bias
        return _softmax_rows(logits)

    def _named(self) -> dict[str, Any]:
        named: dict[str, Any] = {"table": self.table}
        for index, layer in enumerate(self.layers):
            named[f"lstm{index}_recurrent"] = layer.recurrent
            if index:
                named[f"lstm{index}_kernel"] = layer.kernel
                named[f"lstm{index}_bias"] = layer.bias
        named["dense_kernel"] = self.dense_kernel
        named["dense_bias"] = self.dense_bias
        return named

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """From ``to_arrays``' output; meta ``lstm_units`` (version-1 bundles) stands for ``units``."""
        units = meta.get("units", meta.get("lstm_units"))
        if not isinstance(units, list) or not units:
            raise ValueError(f"meta['units'] must be a non-empty list, not {units!r}")
        names = ["table"]
        for index in range(len(units)):
            names.append(f"lstm{index}_recurrent")
            if index:
                names += [f"lstm{index}_kernel", f"lstm{index}_bias"]
        names += ["dense_kernel", "dense_bias"]
        got = _take(arrays, names)
        layers = tuple(
            LSTMLayer(
                got[f"lstm{index}_recurrent"], got.get(f"lstm{index}_kernel"), got.get(f"lstm{index}_bias")
            )
            for index in range(len(units))
        )
        net = cls(_meta_int(meta, "window"), got["table"], layers, got["dense_kernel"], got["dense_bias"])
        _check_meta(cls.family, {**meta, "units": units}, {"vocab_size": net.classes, "units": net.units})
        return net


# --- GRU ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, repr=False)
class GRULayer:
    """One GRU layer (``reset_after=True``) in Keras' layout (gates z, r, h)."""

    recurrent: np.ndarray  # (u, 3u)
    recurrent_bias: np.ndarray  # (3u,): Keras' bias[1], added to h @ recurrent (inside the reset gate)
    kernel: np.ndarray | None = None  # (input, 3u); None for the first layer (folded into the table)
    input_bias: np.ndarray | None = None  # (3u,): Keras' bias[0]; None for the first layer (in the table)


def _gru_halve(array: np.ndarray) -> np.ndarray:
    """The z and r columns halved (exact), so ``0.5 * tanh(x) + 0.5`` of them is their sigmoid."""
    u = array.shape[-1] // 3
    out = np.array(array, dtype=_F32, copy=True)
    out[..., : 2 * u] *= _F32(0.5)
    return out


def _gru_layer(
    proj: np.ndarray, recurrent: np.ndarray, bias_h: np.ndarray, keep_sequence: bool
) -> np.ndarray:
    """Run one GRU layer over time-major input pre-activations ``proj`` (W, n, 3u), overwritten in place.

    ``proj`` and ``recurrent`` have the z, r columns halved, and ``proj`` already holds the recurrent
    bias of z and r; ``bias_h`` is the recurrent bias of the candidate (it sits inside the reset gate).
    """
    steps, n, width = proj.shape
    u = width // 3
    sequence = np.empty((steps, n, u), dtype=_F32)
    h = sequence[0]
    for t in range(steps):
        x = proj[t]
        gates = x[:, : 2 * u]
        if t:
            m = h @ recurrent
            gates += m[:, : 2 * u]
            candidate = m[:, 2 * u :]
            candidate += bias_h
        np.tanh(gates, out=gates)
        gates *= 0.5
        gates += 0.5  # sigmoid(z), sigmoid(r)
        if t:
            candidate *= gates[:, u:]
        else:  # h starts at zero: h @ recurrent is zero
            candidate = gates[:, u:] * bias_h
        candidate += x[:, 2 * u :]
        np.tanh(candidate, out=candidate)
        out = sequence[t]
        if t:  # h = z * h + (1 - z) * candidate = candidate + z * (h - candidate)
            np.subtract(h, candidate, out=out)
            out *= gates[:, :u]
            out += candidate
        else:
            np.multiply(gates[:, :u], candidate, out=out)
            np.subtract(candidate, out, out=out)
        h = out
    return sequence if keep_sequence else h


@dataclass(frozen=True, eq=False, repr=False)
class GRUNet(_RecurrentNet):
    """Embedding -> stacked GRUs (Keras defaults, ``reset_after=True``) -> Dense softmax."""

    family: ClassVar[str] = "gru"
    window: int
    table: np.ndarray  # (vocab, 3u): embedding @ first kernel + its input bias, one row per action
    layers: tuple[GRULayer, ...]
    dense_kernel: np.ndarray  # (u_last, vocab)
    dense_bias: np.ndarray  # (vocab,)
    _fast: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a GRU net needs at least one layer")
        if self.layers[0].kernel is not None or self.layers[0].input_bias is not None:
            raise ValueError("the first GRU layer's kernel and input bias belong in the table")
        if any(layer.kernel is None or layer.input_bias is None for layer in self.layers[1:]):
            raise ValueError("every GRU layer after the first needs a kernel and an input bias")
        named = _require_arrays(self._named())
        units = [_dim(layer.recurrent, 0) for layer in self.layers]
        vocab = _dim(self.dense_bias, 0)
        expected: dict[str, tuple[int, ...]] = {"table": (vocab, 3 * units[0])}
        for index, u in enumerate(units):
            expected[f"gru{index}_recurrent"] = (u, 3 * u)
            expected[f"gru{index}_recurrent_bias"] = (3 * u,)
            if index:
                expected[f"gru{index}_kernel"] = (units[index - 1], 3 * u)
                expected[f"gru{index}_input_bias"] = (3 * u,)
        expected["dense_kernel"] = (units[-1], vocab)
        expected["dense_bias"] = (vocab,)
        _validate(self.window, named, expected)
        fast = []
        for layer in self.layers:
            u = layer.recurrent.shape[0]
            zr_bias = np.zeros(3 * u, dtype=_F32)  # the recurrent bias of z and r joins the input side
            zr_bias[: 2 * u] = layer.recurrent_bias[: 2 * u]
            input_bias = None if layer.input_bias is None else _gru_halve(layer.input_bias + zr_bias)
            kernel = None if layer.kernel is None else _gru_halve(layer.kernel)
            fast.append(
                (_gru_halve(layer.recurrent), _f32(layer.recurrent_bias[2 * u :]), kernel, input_bias)
            )
        first = self.layers[0]
        table = self.table + np.concatenate([first.recurrent_bias[: 2 * units[0]], np.zeros(units[0], _F32)])
        object.__setattr__(
            self, "_fast", (_gru_halve(table), tuple(fast), _f32(self.dense_kernel), _f32(self.dense_bias))
        )

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        table, layers, dense_kernel, dense_bias = self._fast
        proj = table[ids.T]  # (W, n, 3u), time-major
        last = len(layers) - 1
        hidden = proj
        for index, (recurrent, bias_h, kernel, input_bias) in enumerate(layers):
            if index:
                proj = hidden @ kernel
                proj += input_bias
            hidden = _gru_layer(proj, recurrent, bias_h, keep_sequence=index < last)
        logits = hidden @ dense_kernel
        logits += dense_bias
        return _softmax_rows(logits)

    def _named(self) -> dict[str, Any]:
        named: dict[str, Any] = {"table": self.table}
        for index, layer in enumerate(self.layers):
            named[f"gru{index}_recurrent"] = layer.recurrent
            named[f"gru{index}_recurrent_bias"] = layer.recurrent_bias
            if index:
                named[f"gru{index}_kernel"] = layer.kernel
                named[f"gru{index}_input_bias"] = layer.input_bias
        named["dense_kernel"] = self.dense_kernel
        named["dense_bias"] = self.dense_bias
        return named

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        units = meta.get("units")
        if not isinstance(units, list) or not units:
            raise ValueError(f"meta['units'] must be a non-empty list, not {units!r}")
        names = ["table"]
        for index in range(len(units)):
            names += [f"gru{index}_recurrent", f"gru{index}_recurrent_bias"]
            if index:
                names += [f"gru{index}_kernel", f"gru{index}_input_bias"]
        names += ["dense_kernel", "dense_bias"]
        got = _take(arrays, names)
        layers = tuple(
            GRULayer(
                got[f"gru{index}_recurrent"],
                got[f"gru{index}_recurrent_bias"],
                got.get(f"gru{index}_kernel"),
                got.get(f"gru{index}_input_bias"),
            )
            for index in range(len(units))
        )
        net = cls(_meta_int(meta, "window"), got["table"], layers, got["dense_kernel"], got["dense_bias"])
        _check_meta(cls.family, meta, {"vocab_size": net.classes, "units": net.units})
        return net


# --- Transformer ------------------------------------------------------------------------------------
_ATTENTION_ARRAYS = tuple(
    f"{part}_{kind}" for part in ("query", "key", "value", "output") for kind in ("kernel", "bias")
)
_FFN_ARRAYS = ("ff1_kernel", "ff1_bias", "ff2_kernel", "ff2_bias")
_BLOCK_ARRAYS = ("ln1_gamma", "ln1_beta", *_ATTENTION_ARRAYS, "ln2_gamma", "ln2_beta", *_FFN_ARRAYS)


@dataclass(frozen=True, eq=False, repr=False)
class TransformerBlock:
    """One pre-norm block: x + MHA(LN1(x)) (causal), then x + FF2(relu(FF1(LN2(x)))); Keras' layouts."""

    ln1_gamma: np.ndarray  # (d,)
    ln1_beta: np.ndarray  # (d,)
    query_kernel: np.ndarray  # (d, heads, key_dim)
    query_bias: np.ndarray  # (heads, key_dim)
    key_kernel: np.ndarray  # (d, heads, key_dim)
    key_bias: np.ndarray  # (heads, key_dim)
    value_kernel: np.ndarray  # (d, heads, value_dim)
    value_bias: np.ndarray  # (heads, value_dim)
    output_kernel: np.ndarray  # (heads, value_dim, d)
    output_bias: np.ndarray  # (d,)
    ln2_gamma: np.ndarray  # (d,)
    ln2_beta: np.ndarray  # (d,)
    ff1_kernel: np.ndarray  # (d, ffn)
    ff1_bias: np.ndarray  # (ffn,)
    ff2_kernel: np.ndarray  # (ffn, d)
    ff2_bias: np.ndarray  # (d,)


def _fold_norm(gamma: np.ndarray, beta: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> tuple[Any, Any]:
    """(x_hat * gamma + beta) @ kernel + bias == x_hat @ kernel' + bias' (folded in float64, rounded once)."""
    kernel64 = kernel.astype(np.float64)
    folded = gamma.astype(np.float64)[:, None] * kernel64
    return _f32(folded), _f32(beta.astype(np.float64) @ kernel64 + bias.astype(np.float64))


def _normalize(x: np.ndarray, epsilon: float) -> np.ndarray:
    """LayerNormalization over the last axis without scale and shift (those are folded into the next
    kernel); a new array."""
    scale = _F32(1.0 / x.shape[-1])
    mean = np.add.reduce(x, axis=-1, keepdims=True)
    mean *= scale
    centred = x - mean
    variance = np.add.reduce(centred * centred, axis=-1, keepdims=True)
    variance *= scale
    variance += _F32(epsilon)
    np.sqrt(variance, out=variance)
    centred /= variance
    return centred


@dataclass(frozen=True, eq=False)
class _FastBlock:
    heads: int
    key_dim: int
    value_dim: int
    qkv_kernel: np.ndarray  # (d, heads*(2*key_dim + value_dim)): LN1 folded in, queries scaled
    qkv_bias: np.ndarray
    q_kernel: np.ndarray  # the query part alone (the last block: the newest position's query only)
    q_bias: np.ndarray
    kv_kernel: np.ndarray  # the key and value part alone
    kv_bias: np.ndarray
    output_kernel: np.ndarray  # (heads*value_dim, d)
    output_bias: np.ndarray
    ff1_kernel: np.ndarray  # LN2 folded in
    ff1_bias: np.ndarray
    ff2_kernel: np.ndarray
    ff2_bias: np.ndarray


def _fast_block(block: TransformerBlock) -> _FastBlock:
    d, heads, key_dim = block.query_kernel.shape
    value_dim = block.value_kernel.shape[2]
    scale = 1.0 / math.sqrt(float(key_dim))  # what Keras' MultiHeadAttention applies to the queries
    kernel = np.concatenate(
        [
            block.query_kernel.reshape(d, -1).astype(np.float64) * scale,
            block.key_kernel.reshape(d, -1),
            block.value_kernel.reshape(d, -1),
        ],
        axis=1,
    )
    bias = np.concatenate(
        [
            block.query_bias.reshape(-1).astype(np.float64) * scale,
            block.key_bias.reshape(-1),
            block.value_bias.reshape(-1),
        ]
    )
    qkv_kernel, qkv_bias = _fold_norm(block.ln1_gamma, block.ln1_beta, kernel, bias)
    ff1_kernel, ff1_bias = _fold_norm(block.ln2_gamma, block.ln2_beta, block.ff1_kernel, block.ff1_bias)
    q = heads * key_dim
    return _FastBlock(
        heads=int(heads),
        key_dim=int(key_dim),
        value_dim=int(value_dim),
        qkv_kernel=qkv_kernel,
        qkv_bias=qkv_bias,
        q_kernel=_f32(qkv_kernel[:, :q]),
        q_bias=_f32(qkv_bias[:q]),
        kv_kernel=_f32(qkv_kernel[:, q:]),
        kv_bias=_f32(qkv_bias[q:]),
        output_kernel=_f32(block.output_kernel.reshape(heads * value_dim, d)),
        output_bias=_f32(block.output_bias),
        ff1_kernel=ff1_kernel,
        ff1_bias=ff1_bias,
        ff2_kernel=_f32(block.ff2_kernel),
        ff2_bias=_f32(block.ff2_bias),
    )


@dataclass(frozen=True, eq=False, repr=False)
class TransformerNet(_Net):
    """Embedding + positions -> pre-norm causal blocks -> LayerNorm -> newest position -> Dense softmax."""

    family: ClassVar[str] = "transformer"
    window: int
    embedding: np.ndarray  # (vocab, d)
    positions: np.ndarray  # (window, d); position 0 is the oldest
    blocks: tuple[TransformerBlock, ...]
    final_gamma: np.ndarray  # (d,)
    final_beta: np.ndarray  # (d,)
    dense_kernel: np.ndarray  # (d, vocab)
    dense_bias: np.ndarray  # (vocab,)
    epsilon: float = 1e-6  # of every LayerNormalization
    _fast: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not isinstance(self.epsilon, float) or not self.epsilon > 0:
            raise ValueError(f"epsilon must be a positive float, not {self.epsilon!r}")
        named = _require_arrays(self._named())
        vocab, d = _dim(self.embedding, 0), _dim(self.embedding, 1)
        expected: dict[str, tuple[int, ...]] = {"embedding": (vocab, d), "positions": (self.window, d)}
        for index, block in enumerate(self.blocks):
            heads, key_dim = _dim(block.query_kernel, 1), _dim(block.query_kernel, 2)
            value_dim, ffn = _dim(block.value_kernel, 2), _dim(block.ff1_bias, 0)
            shapes: dict[str, tuple[int, ...]] = {
                "ln1_gamma": (d,),
                "ln1_beta": (d,),
                "query_kernel": (d, heads, key_dim),
                "query_bias": (heads, key_dim),
                "key_kernel": (d, heads, key_dim),
                "key_bias": (heads, key_dim),
                "value_kernel": (d, heads, value_dim),
                "value_bias": (heads, value_dim),
                "output_kernel": (heads, value_dim, d),
                "output_bias": (d,),
                "ln2_gamma": (d,),
                "ln2_beta": (d,),
                "ff1_kernel": (d, ffn),
                "ff1_bias": (ffn,),
                "ff2_kernel": (ffn, d),
                "ff2_bias": (d,),
            }
            expected.update({f"block{index}_{name}": shape for name, shape in shapes.items()})
        expected.update(
            {"final_gamma": (d,), "final_beta": (d,), "dense_kernel": (d, vocab), "dense_bias": (vocab,)}
        )
        _validate(self.window, named, expected)
        dense_kernel, dense_bias = _fold_norm(
            self.final_gamma, self.final_beta, self.dense_kernel, self.dense_bias
        )
        mask = np.triu(np.full((self.window, self.window), -np.inf, dtype=_F32), k=1)  # no look at the future
        fast = (
            _f32(self.embedding),
            _f32(self.positions),
            tuple(_fast_block(block) for block in self.blocks),
            dense_kernel,
            dense_bias,
            mask,
        )
        object.__setattr__(self, "_fast", fast)

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{key}={value}" for key, value in self._sizes().items() if key != "vocab_size")
        return f"TransformerNet(window={self.window}, classes={self.classes}, {sizes})"

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        embedding, positions, blocks, dense_kernel, dense_bias, mask = self._fast
        n, steps = ids.shape
        x = embedding[ids]  # (n, W, d)
        x += positions
        for index, block in enumerate(blocks):
            heads, key_dim, value_dim = block.heads, block.key_dim, block.value_dim
            q_width = heads * key_dim
            y = _normalize(x, self.epsilon)
            if index < len(blocks) - 1:  # every position: the next block needs them all
                qkv = y @ block.qkv_kernel
                qkv += block.qkv_bias
                q = qkv[..., :q_width].reshape(n, steps, heads, key_dim).transpose(0, 2, 1, 3)
                k = qkv[..., q_width : 2 * q_width].reshape(n, steps, heads, key_dim).transpose(0, 2, 3, 1)
                v = qkv[..., 2 * q_width :].reshape(n, steps, heads, value_dim).transpose(0, 2, 1, 3)
                scores = q @ k  # (n, heads, W, W)
                scores += mask
                attended = _softmax_rows(scores) @ v  # (n, heads, W, value_dim)
                attended = attended.transpose(0, 2, 1, 3).reshape(n, steps, heads * value_dim)
            else:  # the last block: only the newest position's query
                kv = y @ block.kv_kernel
                kv += block.kv_bias
                q = y[:, -1] @ block.q_kernel
                q += block.q_bias
                k = kv[..., :q_width].reshape(n, steps, heads, key_dim).transpose(0, 2, 1, 3)
                v = kv[..., q_width:].reshape(n, steps, heads, value_dim).transpose(0, 2, 1, 3)
                scores = k @ q.reshape(n, heads, key_dim, 1)  # (n, heads, W, 1): sees every position
                weights = _softmax_rows(scores.reshape(n, heads, 1, steps))
                attended = (weights @ v).reshape(n, heads * value_dim)
                x = x[:, -1]
            update = attended @ block.output_kernel
            update += block.output_bias
            x = x + update  # a new array: ``x`` may be a view of the last position
            inner = _normalize(x, self.epsilon) @ block.ff1_kernel
            inner += block.ff1_bias
            np.maximum(inner, 0, out=inner)
            update = inner @ block.ff2_kernel
            update += block.ff2_bias
            x += update
        if not blocks:
            x = x[:, -1]
        logits = _normalize(x, self.epsilon) @ dense_kernel
        logits += dense_bias
        return _softmax_rows(logits)

    def _named(self) -> dict[str, Any]:
        named: dict[str, Any] = {"embedding": self.embedding, "positions": self.positions}
        for index, block in enumerate(self.blocks):
            named.update({f"block{index}_{name}": getattr(block, name) for name in _BLOCK_ARRAYS})
        named.update(
            {
                "final_gamma": self.final_gamma,
                "final_beta": self.final_beta,
                "dense_kernel": self.dense_kernel,
                "dense_bias": self.dense_bias,
            }
        )
        return named

    def _sizes(self) -> dict[str, Any]:
        return {
            "vocab_size": self.classes,
            "dim": self.dim,
            "blocks": len(self.blocks),
            "heads": [int(block.query_kernel.shape[1]) for block in self.blocks],
            "key_dim": [int(block.query_kernel.shape[2]) for block in self.blocks],
            "value_dim": [int(block.value_kernel.shape[2]) for block in self.blocks],
            "ffn_units": [int(block.ff1_bias.shape[0]) for block in self.blocks],
            "epsilon": self.epsilon,
        }

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"family": self.family, "window": self.window, **self._sizes()}, self._named()

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        blocks = _meta_int(meta, "blocks")
        if blocks < 0:
            raise ValueError(f"meta['blocks'] must not be negative, not {blocks}")
        epsilon = meta.get("epsilon", 1e-6)
        if not isinstance(epsilon, float):
            raise ValueError(f"meta['epsilon'] must be a float, not {epsilon!r}")
        names = ["embedding", "positions"]
        names += [f"block{index}_{name}" for index in range(blocks) for name in _BLOCK_ARRAYS]
        names += ["final_gamma", "final_beta", "dense_kernel", "dense_bias"]
        got = _take(arrays, names)
        net = cls(
            window=_meta_int(meta, "window"),
            embedding=got["embedding"],
            positions=got["positions"],
            blocks=tuple(
                TransformerBlock(**{name: got[f"block{index}_{name}"] for name in _BLOCK_ARRAYS})
                for index in range(blocks)
            ),
            final_gamma=got["final_gamma"],
            final_beta=got["final_beta"],
            dense_kernel=got["dense_kernel"],
            dense_bias=got["dense_bias"],
            epsilon=epsilon,
        )
        _check_meta(cls.family, meta, net._sizes())
        return net


Net = LSTMNet | GRUNet | TransformerNet
NETS: dict[str, type[LSTMNet] | type[GRUNet] | type[TransformerNet]] = {
    cls.family: cls for cls in (LSTMNet, GRUNet, TransformerNet)
}


def net_from_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Net:
    """The net ``meta["family"]`` names, from ``to_arrays``' output; ValueError if it does not fit."""
    family = meta.get("family")
    if family not in NETS:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(NETS)})")
    return NETS[family].from_arrays(meta, arrays)


# --- weights out of Keras ---------------------------------------------------------------------------
class _Unsupported(Exception):
    """The model is not exactly an architecture this module implements."""


def _require(condition: Any) -> None:
    if not condition:
        raise _Unsupported


def _node(layer: Any) -> Any:
    nodes = getattr(layer, "_inbound_nodes", None)
    if not isinstance(nodes, list) or len(nodes) != 1:  # a layer used once, in this model only
        raise _Unsupported
    return nodes[0]


def _call_kwargs(node: Any, required: Mapping[str, Any] | None = None) -> None:
    """The call had no keyword arguments but ``required`` (``training`` not forced on; None = default,
    e.g. the ``mask=None`` recurrent layers record)."""
    kwargs = {key: value for key, value in node.arguments.kwargs.items() if value is not None}
    _require(kwargs.pop("training", None) is not True)
    _require(kwargs == dict(required or {}))


def _parents(layer: Any) -> list[Any]:
    node = _node(layer)
    _call_kwargs(node)
    return [parent.operation for parent in node.parent_nodes]


def _parent(layer: Any) -> Any:
    parents = _parents(layer)
    _require(len(parents) == 1)
    return parents[0]


def _plain(layer: Any) -> None:
    """Float32 compute and variables; no LoRA, no quantization."""
    _require(getattr(layer.dtype_policy, "name", None) == "float32")
    _require(not getattr(layer, "lora_enabled", False))
    _require(getattr(layer, "quantization_mode", None) is None)


def _weights(layer: Any, *names: str, depth: int = 1) -> list[np.ndarray]:
    """The layer's variables named by the last ``depth`` parts of their paths, exactly these."""
    import keras

    found = {"/".join(w.path.split("/")[-depth:]): w for w in layer.weights}
    _require(len(layer.weights) == len(names) and set(found) == set(names))
    _require(all(found[name].dtype == "float32" for name in names))
    return [np.array(keras.ops.convert_to_numpy(found[name]), dtype=_F32) for name in names]


def _peel(layer: Any, seen: list[Any]) -> Any:
    """The layer below any Dropout layers (identity at inference)."""
    import keras

    while type(layer) is keras.layers.Dropout:
        _plain(layer)
        seen.append(layer)
        layer = _parent(layer)
    return layer


def _dense(layer: Any, activation: str, seen: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    import keras

    _require(type(layer) is keras.layers.Dense)
    _plain(layer)
    config = layer.get_config()
    _require(config.get("activation") == activation and config.get("use_bias", True))
    seen.append(layer)
    kernel, bias = _weights(layer, "kernel", "bias")
    return kernel, bias


def _embedding(layer: Any, seen: list[Any]) -> np.ndarray:
    import keras

    _require(type(layer) is keras.layers.Embedding)
    _plain(layer)
    _require(not layer.get_config().get("mask_zero"))
    _require(type(_parent(layer)) is keras.layers.InputLayer)
    seen.append(layer)
    return _weights(layer, "embeddings")[0]


def _layer_norm(layer: Any, seen: list[Any]) -> tuple[np.ndarray, np.ndarray, float]:
    import keras

    _require(type(layer) is keras.layers.LayerNormalization)
    _plain(layer)
    config = layer.get_config()
    _require(config.get("axis") in (-1, 2, [-1], [2], (-1,), (2,)))
    _require(config.get("center", True) and config.get("scale", True) and not config.get("rms_scaling"))
    seen.append(layer)
    gamma, beta = _weights(layer, "gamma", "beta")
    return gamma, beta, float(config["epsilon"])


def _window(model: Any) -> int:
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    _require(isinstance(inputs, list) and isinstance(outputs, list) and len(inputs) == len(outputs) == 1)
    shape = tuple(model.inputs[0].shape)
    _require(len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 1)
    return int(shape[1])


def _output_layer(model: Any) -> Any:
    history = getattr(model.outputs[0], "_keras_history", None)
    if history is None or history.tensor_index != 0:
        raise _Unsupported
    return history.operation


def _recurrent_stack(model: Any, window: int, seen: list[Any]) -> LSTMNet | GRUNet:
    """Input -> Embedding -> LSTM/GRU (-> Dropout) ... -> Dense softmax, walked from the output."""
    import keras

    dense_kernel, dense_bias = _dense(_output_layer(model), "softmax", seen)
    layer = _peel(_parent(seen[-1]), seen)
    kind = type(layer)
    _require(kind in (keras.layers.LSTM, keras.layers.GRU))
    found: list[list[np.ndarray]] = []  # (kernel, recurrent kernel, bias) of each layer, newest first
    while type(layer) is kind:
        _plain(layer)
        config = layer.get_config()
        _require(
            config.get("activation") == "tanh"
            and config.get("recurrent_activation") == "sigmoid"
            and config.get("use_bias", True)
            and not config.get("go_backwards")
            and not config.get("stateful")
            and not config.get("return_state")
            and bool(config.get("return_sequences")) == bool(found)  # all but the last give sequences
            and (kind is keras.layers.LSTM or config.get("reset_after", True))
        )
        seen.append(layer)
        found.append(_weights(layer, "kernel", "recurrent_kernel", "bias"))
        layer = _peel(_parent(layer), seen)
    embedding = _embedding(layer, seen).astype(np.float64)
    found.reverse()
    kernel, recurrent, bias = found[0]
    if kind is keras.layers.LSTM:
        table = embedding @ kernel.astype(np.float64) + bias.astype(np.float64)
        lstms = (LSTMLayer(recurrent), *(LSTMLayer(r, k, b) for k, r, b in found[1:]))
        return LSTMNet(window, _f32(table), lstms, dense_kernel, dense_bias)
    table = embedding @ kernel.astype(np.float64) + bias[0].astype(np.float64)
    grus = (
        GRULayer(recurrent, _f32(bias[1])),
        *(GRULayer(r, _f32(b[1]), k, _f32(b[0])) for k, r, b in found[1:]),
    )
    return GRUNet(window, _f32(table), grus, dense_kernel, dense_bias)


def _residual(add: Any, branch: type, seen: list[Any]) -> tuple[Any, Any]:
    """An Add of a residual and a (Dropout-wrapped) ``branch`` layer: (residual input, branch layer)."""
    import keras

    _require(type(add) is keras.layers.Add)
    _plain(add)
    parents = _parents(add)
    _require(len(parents) == 2)
    options = []
    for residual, other in ((parents[0], parents[1]), (parents[1], parents[0])):
        dropouts: list[Any] = []
        core = _peel(other, dropouts)
        if type(core) is branch:
            options.append((residual, core, dropouts))
    _require(len(options) == 1)
    residual, core, dropouts = options[0]
    seen += [add, *dropouts]
    return residual, core


def _attention(layer: Any, seen: list[Any]) -> tuple[list[np.ndarray], Any]:
    """A causal self-attention call (query = value, nothing else): its weights and its input layer."""
    _plain(layer)
    node = _node(layer)
    args = node.arguments.args
    _require(len(args) == 2 and args[0] is args[1])
    _call_kwargs(node, {"use_causal_mask": True})
    config = layer.get_config()
    _require(
        config.get("use_bias", True)
        and not config.get("use_gate")
        and config.get("output_shape") is None
        and config.get("attention_axes") in (None, 1, (1,), [1])
        and config.get("sliding_window") is None
    )
    names = [
        f"{part}/{kind}"
        for part in ("query", "key", "value", "attention_output")
        for kind in ("kernel", "bias")
    ]
    weights = _weights(layer, *names, depth=2)
    seen.append(layer)
    parents = [parent.operation for parent in node.parent_nodes]
    _require(len(parents) == 2 and parents[0] is parents[1])
    return weights, parents[0]


def _transformer_stack(model: Any, window: int, seen: list[Any]) -> TransformerNet:
    """Input -> Embedding -> PositionEmbedding -> blocks -> LN -> LastStep -> Dense softmax, walked from
    the output."""
    import keras

    from perfspec.learn.network import custom_layers

    position_embedding, last_step = custom_layers()
    dense_kernel, dense_bias = _dense(_output_layer(model), "softmax", seen)
    layer = _peel(_parent(seen[-1]), seen)
    _require(type(layer) is last_step)
    seen.append(layer)
    final_gamma, final_beta, epsilon = _layer_norm(_parent(layer), seen)
    x = _parent(seen[-1])
    blocks = []  # newest first
    epsilons = {epsilon}
    while type(x) is keras.layers.Add:
        add1, ff2 = _residual(x, keras.layers.Dense, seen)
        parts: dict[str, np.ndarray] = {}
        parts["ff2_kernel"], parts["ff2_bias"] = _dense(ff2, "linear", seen)
        parts["ff1_kernel"], parts["ff1_bias"] = _dense(_parent(ff2), "relu", seen)
        parts["ln2_gamma"], parts["ln2_beta"], eps2 = _layer_norm(_parent(seen[-1]), seen)
        _require(_parent(seen[-1]) is add1)
        previous, attention = _residual(add1, keras.layers.MultiHeadAttention, seen)
        weights, ln1 = _attention(attention, seen)
        parts.update(zip(_ATTENTION_ARRAYS, weights, strict=True))
        parts["ln1_gamma"], parts["ln1_beta"], eps1 = _layer_norm(ln1, seen)
        _require(_parent(ln1) is previous)
        epsilons |= {eps1, eps2}
        blocks.append(TransformerBlock(**parts))
        x = previous
    _require(type(x) is position_embedding and len(epsilons) == 1)
    _plain(x)
    seen.append(x)
    positions = _weights(x, "positions")[0]
    _require(positions.shape[0] == window)
    embedding = _embedding(_parent(x), seen)
    blocks.reverse()
    return TransformerNet(
        window,
        embedding,
        positions,
        tuple(blocks),
        final_gamma,
        final_beta,
        dense_kernel,
        dense_bias,
        epsilon,
    )


def extract(model: Any) -> Net | None:
    """The NumPy net of a Keras model ``network.build_model`` built (or the same architecture built
    otherwise, e.g. as a Sequential); None for anything this module does not implement exactly.

    Imports Keras. The model's layer graph is walked from its output, and every layer's type, config,
    call arguments and variables are checked; a layer outside the path also means None.
    """
    import keras

    seen: list[Any] = []
    try:
        window = _window(model)
        below = _peel(_parent(_output_layer(model)), [])
        if type(below) in (keras.layers.LSTM, keras.layers.GRU):
            net: Net = _recurrent_stack(model, window, seen)
        else:
            net = _transformer_stack(model, window, seen)
        visited = {id(layer) for layer in seen}
        _require(
            all(id(layer) in visited or type(layer) is keras.layers.InputLayer for layer in model.layers)
        )
    except _Unsupported:
        return None
    return net
