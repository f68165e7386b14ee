"""Next-action prediction for one window at a time, fast enough for a runtime (well under 1 ms).

Why NumPy instead of ``model.predict``: ``predict`` builds a dataset pipeline per call (~45 ms here);
a single window through Embedding -> LSTM -> Dense is a few small matrix products. The weights are
read out of the Keras model once, the embedding is pre-multiplied into the first LSTM's input kernel
(one table row per action), and the recurrence runs in float32. ``tests/test_predict.py`` checks it
against ``model.predict``. Models with layers this path does not know fall back to a ``tf.function``.

Unknown actions map to ``<unk>`` (reported in ``Prediction.unknown``, with a warning from ``top_k``);
if none of the given actions is known the input says nothing and an ``InputError`` is raised.
Inputs shorter than the window are left-padded with ``<unk>``; longer ones keep the last W actions.

Why an exported bundle (``predictor.npz``, beside ``model.keras``): importing TensorFlow and reading the
``.keras`` file take ~10 s and ~700 MB, while the answer itself is NumPy. Training (and the MLflow logged
model) also write the folded NumPy weights, the vocabulary and the window into one ``.npz`` (plain arrays,
no pickle, fixed zip timestamps: the same model always gives the same bytes), and ``Predictor.load``
prefers it, so a runtime process never imports TensorFlow or Keras. Without a bundle (older run dirs and
models) or with an architecture the NumPy path does not implement, it loads the Keras model as before.
The bundle is only paired with a file named ``model.keras`` in the same directory; training removes it
before replacing ``model.keras`` and writes it again after, so the two never disagree.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import EnvironmentProblem, InputError
from perfspec.fileio import atomic_path
from perfspec.learn.vocab import UNK, Vocabulary
from perfspec.mlflow_store import use_store

MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
BUNDLE_NAME = "predictor.npz"  # beside model.keras in a run dir, and in the MLflow logged model
BUNDLE_FORMAT = "perfspec-predictor"
BUNDLE_VERSION = 1  # bump on any change a reader of the previous version would misread
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry timestamps: same model -> same bytes


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most likely next actions, and what had to be done to the input."""

    actions: list[tuple[str, float]]
    unknown: list[str] = field(default_factory=list)
    padded: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class _LSTMWeights:
    kernel: np.ndarray | None  # (input, 4u); None for the first layer (folded into ``table``)
    recurrent: np.ndarray  # (u, 4u)
    bias: np.ndarray | None  # (4u,); None for the first layer (folded into ``table``)


@dataclass(frozen=True)
class NumpyWeights:
    """Everything the NumPy forward pass needs (what ``predictor.npz`` holds, besides the vocabulary)."""

    window: int
    table: np.ndarray  # (vocab, 4u): embedding @ first LSTM kernel + its bias, one row per action
    lstms: tuple[_LSTMWeights, ...]
    dense_kernel: np.ndarray  # (u, vocab)
    dense_bias: np.ndarray  # (vocab,)

    @property
    def classes(self) -> int:
        return int(self.dense_bias.shape[0])


class BundleError(ValueError):
    """A ``predictor.npz`` that this code cannot use (corrupt, other format, newer version)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Predictor:
    """Loaded weights + vocabulary; ``top_k`` answers one window, ``probabilities_batch`` many.

    ``backend`` says how it answers: ``"bundle"`` (NumPy, from ``predictor.npz``, no TensorFlow),
    ``"numpy"`` (NumPy, weights read out of a Keras model) or ``"tf.function"`` (the Keras fallback).
    """

    def __init__(
        self,
        model: Any | None,
        vocab: Vocabulary,
        source: str = "",
        weights: NumpyWeights | None = None,
        model_file: Path | None = None,
    ) -> None:
        if model is None and weights is None:
            raise ValueError("a Predictor needs a Keras model or NumPy weights")
        self._model = model
        self._model_file = model_file
        self.vocab = vocab
        self.source = source
        if model is not None:
            self.window = int(model.input_shape[-1])
            classes = int(model.output_shape[-1])
            self._numpy = weights if weights is not None else extract_weights(model)
            self.backend = "numpy" if self._numpy is not None else "tf.function"
        else:
            assert weights is not None
            self.window = weights.window
            classes = weights.classes
            self._numpy = weights
            self.backend = "bundle"
        if classes != len(vocab):
            raise InputError(
                f"model outputs {classes} classes but the vocabulary has {len(vocab)} actions",
                hint="the model and vocab.json come from different trainings",
            )
        self._compiled: Any = None
        self._keras_loader: Callable[[], Any] | None = None  # for ``model`` when not from a file

    @property
    def model(self) -> Any:
        """The Keras model; loaded on first use (imports TensorFlow) when this came from a bundle."""
        if self._model is None:
            if self._keras_loader is not None:
                self._model = self._keras_loader()
            elif self._model_file is not None and self._model_file.is_file():
                self._model = _load_keras(self._model_file)
            else:
                raise InputError(
                    f"{self.source} was loaded from {BUNDLE_NAME} alone: there is no Keras model to give",
                    hint="load the run dir or model.keras file to get the Keras model too",
                )
        return self._model

    # --- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path_or_uri: str | Path, tracking_uri: str | None = None, use_bundle: bool = True
    ) -> Predictor:
        """From a run dir, a ``model.keras`` file (``vocab.json`` beside it), a ``predictor.npz`` file or
        an MLflow model URI. ``predictor.npz`` is preferred when present (``use_bundle=False``: never)."""
        text = str(path_or_uri)
        if text.startswith(MODEL_URI_SCHEMES):
            if tracking_uri is None:  # the project's store (settings / MLFLOW_TRACKING_URI), not MLflow's own
                from perfspec.settings import get_settings

                tracking_uri = get_settings().mlflow_tracking_uri
            return cls._load_mlflow(text, tracking_uri, use_bundle)
        path = Path(text)
        if path.is_dir():
            model_file, bundle = path / "model.keras", path / BUNDLE_NAME
        elif path.suffix == ".npz":
            model_file, bundle = path.with_name("model.keras"), path
        else:  # a bundle belongs to the model.keras beside it, not to checkpoints or copies
            model_file = path
            bundle = path.with_name(BUNDLE_NAME) if path.name == "model.keras" else None
        if use_bundle and bundle is not None and bundle.is_file():
            try:
                return cls.from_bundle(bundle, model_file=model_file)
            except BundleError as error:
                if not model_file.is_file():
                    raise InputError(f"cannot use {bundle}: {error}") from error
                warnings.warn(f"{bundle} not used ({error}); loading {model_file}", stacklevel=2)
        if not model_file.is_file():
            raise InputError(
                f"no model at {path}",
                hint="give a run dir, a model.keras or predictor.npz file, or models:/NAME@ALIAS",
            )
        vocab_file = model_file.parent / "vocab.json"
        return cls(
            _load_keras(model_file), Vocabulary.load(vocab_file), str(model_file), model_file=model_file
        )

    @classmethod
    def from_bundle(
        cls, bundle: Path, source: str | None = None, model_file: Path | None = None
    ) -> Predictor:
        """From a ``predictor.npz`` (NumPy only); ``BundleError`` if it cannot be used."""
        weights, vocab = read_bundle(bundle)
        return cls(None, vocab, source or str(bundle), weights=weights, model_file=model_file)

    @classmethod
    def _load_mlflow(cls, uri: str, tracking_uri: str | None, use_bundle: bool = True) -> Predictor:
        import mlflow
        from mlflow.exceptions import MlflowException

        if tracking_uri:
            use_store(tracking_uri)  # runs and registry alike: models:/ resolves in the same store
        with tempfile.TemporaryDirectory(prefix="perfspec-model-") as tmp:
            if use_bundle:  # only the bundle: no Keras file, no TensorFlow
                try:
                    predictor = cls.from_bundle(_download_bundle(uri, Path(tmp) / "bundle"), source=uri)
                except (MlflowException, OSError, BundleError):
                    pass  # a model logged before bundles existed (or one we cannot read): the full model
                else:
                    predictor._keras_loader = lambda: cls._load_mlflow(uri, tracking_uri, False).model
                    return predictor
            try:
                local = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(Path(tmp) / "all"))
                )
            except MlflowException as error:
                raise InputError(
                    f"cannot load {uri}: {error.message}",
                    hint="train a model first (perfspec train) or check MLFLOW_TRACKING_URI",
                ) from error
            except OSError as error:
                raise EnvironmentProblem(f"cannot reach the MLflow store for {uri}: {error}") from error
            predictor = cls._from_model_dir(local, uri, use_bundle)
            if predictor._model is None:  # answered by its bundle; the Keras file goes with ``tmp``
                predictor._keras_loader = lambda: cls._load_mlflow(uri, tracking_uri, False).model
            return predictor

    @classmethod
    def _from_model_dir(cls, local: Path, uri: str, use_bundle: bool) -> Predictor:
        """From a downloaded MLflow model directory (MLmodel, the Keras file, maybe ``predictor.npz``)."""
        import yaml

        if use_bundle and (local / BUNDLE_NAME).is_file():
            try:
                return cls.from_bundle(local / BUNDLE_NAME, source=uri)
            except BundleError as error:
                warnings.warn(
                    f"{uri}: {BUNDLE_NAME} not used ({error}); loading the Keras model", stacklevel=3
                )
        found = sorted(local.rglob("*.keras"))
        if not found:
            raise InputError(f"{uri} holds no Keras model")
        metadata = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("metadata") or {}
        if "vocab" in metadata:
            vocab = Vocabulary.from_json(metadata["vocab"])
        elif (local / "vocab.json").is_file():
            vocab = Vocabulary.load(local / "vocab.json")
        else:
            raise InputError(f"{uri} has no vocabulary (metadata 'vocab' missing)")
        return cls(_load_keras(found[0]), vocab, uri)

    # --- encoding -------------------------------------------------------------------------------
    def encode(self, actions: Sequence[str]) -> tuple[np.ndarray, list[str], int, int]:
        """Ids of the last ``window`` actions, left-padded with ``<unk>``; plus unknowns, padded, cut."""
        if isinstance(actions, str):
            actions = [actions]
        if not actions:
            raise InputError("no actions given", hint="pass the most recent actions, oldest first")
        kept = list(actions)[-self.window :]
        unknown = [a for a in kept if a not in self.vocab or a == UNK]
        if len(unknown) == len(kept):
            raise InputError(
                f"none of the actions is known to the model: {', '.join(sorted(set(unknown))[:5])}",
                hint="actions look like verb_resource, e.g. create_pods",
            )
        ids = np.zeros(self.window, dtype=np.int32)
        ids[self.window - len(kept) :] = [self.vocab.id_of(a) for a in kept]
        return ids, unknown, self.window - len(kept), len(actions) - len(kept)

    # --- inference -------------------------------------------------------------------------------
    def probabilities_batch(self, ids: np.ndarray) -> np.ndarray:
        """(n, window) ids -> (n, vocab) probabilities, by the fast path."""
        ids = np.asarray(ids, dtype=np.int32).reshape(-1, self.window)
        if self._numpy is not None:
            return self._numpy_forward(ids)
        return self._tf_forward(ids)

    def probabilities(self, actions: Sequence[str]) -> np.ndarray:
        ids, _, _, _ = self.encode(actions)
        return self.probabilities_batch(ids[None, :])[0]

    def predict(self, actions: Sequence[str], k: int = 5) -> Prediction:
        if k < 1:
            raise InputError("k must be at least 1")
        ids, unknown, padded, truncated = self.encode(actions)
        probs = self.probabilities_batch(ids[None, :])[0]
        k = min(k, len(probs))
        best = np.argpartition(-probs, k - 1)[:k]
        best = best[np.argsort(-probs[best], kind="stable")]
        ranked = [(self.vocab.tokens[i], float(probs[i])) for i in best]
        return Prediction(ranked, unknown, padded, truncated)

    def top_k(self, actions: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most likely next actions with probabilities (warns about unknown actions)."""
        prediction = self.predict(actions, k)
        if prediction.unknown:
            warnings.warn(
                f"{len(prediction.unknown)} unknown action(s) mapped to {UNK}: "
                f"{', '.join(sorted(set(prediction.unknown))[:5])}",
                stacklevel=2,
            )
        return prediction.actions

    # --- the two fast paths ------------------------------------------------------------------
    def _numpy_forward(self, ids: np.ndarray) -> np.ndarray:
        weights = self._numpy
        assert weights is not None
        projected = weights.table[ids]  # (n, W, 4u)
        sequence = projected
        for index, layer in enumerate(weights.lstms):
            if index > 0:
                projected = sequence @ layer.kernel + layer.bias  # the previous layer's outputs
            units = layer.recurrent.shape[0]
            h = np.zeros((ids.shape[0], units), dtype=np.float32)
            c = np.zeros_like(h)
            outputs = []
            for t in range(ids.shape[1]):
                z = projected[:, t] + h @ layer.recurrent
                i = _sigmoid(z[:, :units])
                f = _sigmoid(z[:, units : 2 * units])
                g = np.tanh(z[:, 2 * units : 3 * units])
                o = _sigmoid(z[:, 3 * units :])
                c = f * c + i * g
                h = o * np.tanh(c)
                outputs.append(h)
            sequence = np.stack(outputs, axis=1)
        logits = h @ weights.dense_kernel + weights.dense_bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def _tf_forward(self, ids: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._compiled is None:
            self._compiled = tf.function(
                lambda x: self.model(x, training=False),
                input_signature=[tf.TensorSpec([None, self.window], tf.int32)],
                reduce_retracing=True,
            )
        return np.asarray(self._compiled(tf.constant(ids)))


# --- weights out of Keras, and the exported bundle ---------------------------------------------
def extract_weights(model: Any) -> NumpyWeights | None:
    """Weights for the NumPy path, or None if the model has layers it does not implement (imports Keras).

    The embedding is folded into the first LSTM's input kernel in float64 and rounded once to float32,
    so the table does not depend on the BLAS summation order (same model -> same bundle bytes).
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    embedding, lstms, dense = None, [], None
    sequences: list[bool] = []
    for layer in layers:
        config = layer.get_config()
        if isinstance(layer, keras.layers.Embedding) and embedding is None and not lstms:
            if config.get("mask_zero"):
                return None
            embedding = np.asarray(layer.get_weights()[0], dtype=np.float32)
        elif isinstance(layer, keras.layers.LSTM) and embedding is not None and dense is None:
            plain = (
                config.get("activation") == "tanh"
                and config.get("recurrent_activation") == "sigmoid"
                and config.get("use_bias", True)
                and not config.get("go_backwards")
                and not config.get("stateful")
                and not config.get("return_state")
            )
            if not plain:
                return None
            kernel, recurrent, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            lstms.append(_LSTMWeights(kernel, recurrent, bias))
            sequences.append(bool(config.get("return_sequences")))
        elif isinstance(layer, keras.layers.Dropout):
            continue  # identity at inference
        elif isinstance(layer, keras.layers.Dense) and lstms and dense is None:
            if config.get("activation") != "softmax":
                return None
            weights = layer.get_weights()
            dense = (np.asarray(weights[0], np.float32), np.asarray(weights[1], np.float32))
        else:
            return None
    # every LSTM but the last feeds the next one its whole sequence; the last gives its final state
    if embedding is None or not lstms or dense is None or sequences != [True] * (len(lstms) - 1) + [False]:
        return None
    first = lstms[0]
    assert first.kernel is not None and first.bias is not None
    table = embedding.astype(np.float64) @ first.kernel.astype(np.float64) + first.bias.astype(np.float64)
    return NumpyWeights(
        window=int(model.input_shape[-1]),
        table=np.ascontiguousarray(table, dtype=np.float32),  # (vocab, 4u): input projection per action
        lstms=(_LSTMWeights(None, first.recurrent, None), *lstms[1:]),
        dense_kernel=dense[0],
        dense_bias=dense[1],
    )


def export_bundle(model: Any, vocab: Vocabulary, target: Path) -> Path | None:
    """Write ``predictor.npz`` for a Keras model (atomically); None, and no file, if the NumPy path
    cannot run this architecture (then ``Predictor.load`` uses the Keras model)."""
    target = Path(target)
    weights = extract_weights(model)
    if weights is None:
        target.unlink(missing_ok=True)
        return None
    if weights.classes != len(vocab):
        raise InputError(
            f"model outputs {weights.classes} classes but the vocabulary has {len(vocab)} actions"
        )
    write_bundle(weights, vocab, target)
    return target


def write_bundle(weights: NumpyWeights, vocab: Vocabulary, target: Path) -> None:
    """``.npz`` of plain arrays (no pickle), uncompressed, entries in a fixed order with a fixed timestamp."""
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "window": weights.window,
        "vocab_size": len(vocab),
        "lstm_units": [int(layer.recurrent.shape[0]) for layer in weights.lstms],
        "unknown": UNK,
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.array([json.dumps(meta, sort_keys=True)]),  # one JSON string
        "vocab_tokens": np.array(vocab.tokens, dtype=np.str_),
        "vocab_counts": np.array(vocab.counts, dtype=np.int64),
        "table": weights.table,
    }
    for index, layer in enumerate(weights.lstms):
        arrays[f"lstm{index}_recurrent"] = layer.recurrent
        if index > 0:
            assert layer.kernel is not None and layer.bias is not None
            arrays[f"lstm{index}_kernel"] = layer.kernel
            arrays[f"lstm{index}_bias"] = layer.bias
    arrays["dense_kernel"] = weights.dense_kernel
    arrays["dense_bias"] = weights.dense_bias
    with atomic_path(Path(target), suffix=".npz") as tmp, open(tmp, "wb") as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def read_bundle(path: Path) -> tuple[NumpyWeights, Vocabulary]:
    """Weights and vocabulary of a ``predictor.npz`` (NumPy only); ``BundleError`` if unusable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"].reshape(-1)[0]))
            if meta.get("format") != BUNDLE_FORMAT:
                raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
            if meta.get("version") != BUNDLE_VERSION:
                raise BundleError(f"bundle version {meta.get('version')}, this code reads {BUNDLE_VERSION}")
            vocab = Vocabulary(
                tuple(str(t) for t in data["vocab_tokens"]), tuple(int(c) for c in data["vocab_counts"])
            )
            lstms = []
            for index in range(len(meta["lstm_units"])):
                recurrent = data[f"lstm{index}_recurrent"]
                if index == 0:
                    lstms.append(_LSTMWeights(None, recurrent, None))
                else:
                    lstms.append(
                        _LSTMWeights(data[f"lstm{index}_kernel"], recurrent, data[f"lstm{index}_bias"])
                    )
            weights = NumpyWeights(
                window=int(meta["window"]),
                table=data["table"],
                lstms=tuple(lstms),
                dense_kernel=data["dense_kernel"],
                dense_bias=data["dense_bias"],
            )
    except BundleError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as error:
        raise BundleError(f"unreadable bundle: {error}") from error
    _check_shapes(weights, len(vocab))
    return weights, vocab


def _check_shapes(weights: NumpyWeights, vocab_size: int) -> None:
    """A bundle whose arrays do not fit together is refused before it can answer nonsense."""
    units = [layer.recurrent.shape[0] for layer in weights.lstms]
    expected = {"table": (vocab_size, 4 * units[0]), "dense_kernel": (units[-1], vocab_size)}
    actual = {"table": weights.table.shape, "dense_kernel": weights.dense_kernel.shape}
    for index, layer in enumerate(weights.lstms):
        expected[f"lstm{index}_recurrent"] = (units[index], 4 * units[index])
        actual[f"lstm{index}_recurrent"] = layer.recurrent.shape
        if index > 0:
            assert layer.kernel is not None and layer.bias is not None
            expected[f"lstm{index}_kernel"] = (units[index - 1], 4 * units[index])
            actual[f"lstm{index}_kernel"] = layer.kernel.shape
            expected[f"lstm{index}_bias"] = (4 * units[index],)
            actual[f"lstm{index}_bias"] = layer.bias.shape
    expected["dense_bias"], actual["dense_bias"] = (vocab_size,), weights.dense_bias.shape
    wrong = [name for name in expected if tuple(actual[name]) != expected[name]]
    if wrong or weights.window < 1:
        raise BundleError(f"inconsistent shapes: {', '.join(wrong) or 'window'}")
    arrays = [weights.table, weights.dense_kernel, weights.dense_bias] + [
        a for layer in weights.lstms for a in (layer.kernel, layer.recurrent, layer.bias) if a is not None
    ]
    if any(a.dtype != np.float32 for a in arrays):
        raise BundleError("weights must be float32")


def _download_bundle(uri: str, directory: Path) -> Path:
    """Download only ``predictor.npz`` of the MLflow model at ``uri`` (``MlflowException`` if absent).

    Through the artifact repository of ``uri`` rather than ``download_artifacts(f"{uri}/predictor.npz")``:
    MLflow misreads a sub-path of a logged-model URI (``models:/m-<id>/...``) as a model version.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    directory.mkdir(parents=True, exist_ok=True)
    return Path(get_artifact_repository(uri).download_artifacts(BUNDLE_NAME, dst_path=str(directory)))


def _load_keras(path: Path) -> Any:
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the model {path}: {error}") from error


def describe(prediction: Prediction) -> dict[str, Any]:
    """JSON-ready form of a prediction (what ``perfspec predict --json`` prints)."""
    return {
        "predictions": [{"action": a, "probability": round(p, 6)} for a, p in prediction.actions],
        "unknown": prediction.unknown,
        "padded": prediction.padded,
        "truncated": prediction.truncated,
    }


def dumps(prediction: Prediction) -> str:
    return json.dumps(describe(prediction))
