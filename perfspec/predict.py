"""Next-action prediction for one window at a time, fast enough for a runtime (well under 1 ms).

Why NumPy instead of ``model.predict``: ``predict`` builds a dataset pipeline per call (~45 ms here);
a single window through Embedding -> LSTM -> Dense is a few small matrix products. The weights are
read out of the Keras model once, the embedding is pre-multiplied into the first LSTM's input kernel
(one table row per action), and the recurrence runs in float32. ``tests/test_predict.py`` checks it
against ``model.predict``. Models with layers this path does not know fall back to a ``tf.function``.

Unknown actions map to ``<unk>`` (reported in ``Prediction.unknown``, with a warning from ``top_k``);
if none of the given actions is known the input says nothing and an ``InputError`` is raised.
Inputs shorter than the window are left-padded with ``<unk>``; longer ones keep the last W actions.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import EnvironmentProblem, InputError
from perfspec.vocab import UNK, Vocabulary

MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most likely next actions, and what had to be done to the input."""

    actions: list[tuple[str, float]]
    unknown: list[str] = field(default_factory=list)
    padded: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class _LSTMWeights:
    kernel: np.ndarray  # (input, 4u); for the first layer folded into ``table``
    recurrent: np.ndarray  # (u, 4u)
    bias: np.ndarray  # (4u,)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Predictor:
    """Loaded model + vocabulary; ``top_k`` answers one window, ``probabilities_batch`` many."""

    def __init__(self, model: Any, vocab: Vocabulary, source: str = "") -> None:
        self.model = model
        self.vocab = vocab
        self.source = source
        self.window = int(model.input_shape[-1])
        if int(model.output_shape[-1]) != len(vocab):
            raise InputError(
                f"model outputs {model.output_shape[-1]} classes but the vocabulary has {len(vocab)} actions",
                hint="the model and vocab.json come from different trainings",
            )
        self._numpy = self._extract(model)
        self._compiled: Any = None

    # --- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path_or_uri: str | Path, tracking_uri: str | None = None) -> Predictor:
        """From a run dir, a ``model.keras`` file (``vocab.json`` beside it) or an MLflow model URI."""
        text = str(path_or_uri)
        if text.startswith(MODEL_URI_SCHEMES):
            return cls._load_mlflow(text, tracking_uri)
        path = Path(text)
        model_file = path / "model.keras" if path.is_dir() else path
        if not model_file.is_file():
            raise InputError(
                f"no model at {path}", hint="give a run dir, a model.keras file or models:/NAME@ALIAS"
            )
        vocab_file = model_file.parent / "vocab.json"
        return cls(_load_keras(model_file), Vocabulary.load(vocab_file), str(model_file))

    @classmethod
    def _load_mlflow(cls, uri: str, tracking_uri: str | None) -> Predictor:
        import mlflow
        import yaml
        from mlflow.exceptions import MlflowException

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        with tempfile.TemporaryDirectory(prefix="perfspec-model-") as tmp:
            try:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            except MlflowException as error:
                raise InputError(
                    f"cannot load {uri}: {error.message}",
                    hint="train a model first (perfspec train) or check MLFLOW_TRACKING_URI",
                ) from error
            except OSError as error:
                raise EnvironmentProblem(f"cannot reach the MLflow store for {uri}: {error}") from error
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
    @staticmethod
    def _extract(model: Any) -> dict[str, Any] | None:
        """Weights for the NumPy path, or None if the model has layers it does not implement."""
        import keras

        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        embedding, lstms, dense = None, [], None
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
                )
                if not plain:
                    return None
                kernel, recurrent, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
                lstms.append(_LSTMWeights(kernel, recurrent, bias))
            elif isinstance(layer, keras.layers.Dropout):
                continue  # identity at inference
            elif isinstance(layer, keras.layers.Dense) and lstms and dense is None:
                if config.get("activation") != "softmax":
                    return None
                weights = layer.get_weights()
                dense = (np.asarray(weights[0], np.float32), np.asarray(weights[1], np.float32))
            else:
                return None
        if embedding is None or not lstms or dense is None:
            return None
        first = lstms[0]
        table = embedding @ first.kernel + first.bias  # (vocab, 4u): input projection per action
        return {"table": np.ascontiguousarray(table), "lstms": lstms, "dense": dense}

    def _numpy_forward(self, ids: np.ndarray) -> np.ndarray:
        weights = self._numpy
        assert weights is not None
        lstms: list[_LSTMWeights] = weights["lstms"]
        projected = weights["table"][ids]  # (n, W, 4u)
        sequence = projected
        for index, layer in enumerate(lstms):
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
        kernel, bias = weights["dense"]
        logits = h @ kernel + bias
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
