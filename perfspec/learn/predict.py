"""Next-action prediction for one window at a time, fast enough for a runtime (well under 1 ms).

Why NumPy instead of ``model.predict``: ``predict`` builds a dataset pipeline per call (~45 ms here);
every family's answer is a few small array operations (``perfspec.learn.families``,
``perfspec.learn.forward``). ``Predictor.load`` prefers the TensorFlow-free bundle ``predictor.npz``
(``perfspec.learn.bundle``), so a runtime process never imports TensorFlow or Keras; without one (an
older run dir, a bare ``model.keras``) it reads the Keras model and, for an architecture the NumPy path
does not implement, falls back to a ``tf.function``.

Unknown actions map to ``<unk>`` (reported in ``Prediction.unknown``, with a warning from ``top_k``);
if none of the given actions is known the input says nothing and an ``InputError`` is raised. ``<unk>``
is never predicted. Inputs shorter than the window are left-padded with ``<unk>``; longer ones keep
the last W actions.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.actions.actors import actor_class
from perfspec.errors import EnvironmentProblem, InputError
from perfspec.learn.bundle import BUNDLE_NAME, BundleError, read_bundle
from perfspec.learn.families import Scorer
from perfspec.learn.vocab import UNK, Vocabulary
from perfspec.mlflow_store import use_store
from perfspec.settings import DEFAULT_ACTOR_GROUPS

MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most likely next actions, and what had to be done to the input."""

    actions: list[tuple[str, float]]
    unknown: list[str] = field(default_factory=list)
    padded: int = 0
    truncated: int = 0
    actor: str | None = None  # the actor class whose window this is (actor-stream models)
    unseen_actor: bool = False  # that actor made no action in the training part


class Predictor:
    """A scorer + vocabulary; ``top_k`` answers one window, ``probabilities_batch`` many.

    ``backend``: ``"bundle"`` (from ``predictor.npz``, no TensorFlow), ``"numpy"`` (weights read out of
    a Keras model) or ``"tf.function"`` (the Keras fallback). ``family`` and ``info`` say which model.
    """

    def __init__(
        self,
        scorer: Scorer | None,
        vocab: Vocabulary,
        source: str = "",
        *,
        model: Any | None = None,
        model_file: Path | None = None,
        info: dict[str, Any] | None = None,
        backend: str = "bundle",
        keras_loader: Callable[[], Any] | None = None,
    ) -> None:
        self._scorer = scorer
        self._model = model
        self._model_file = model_file
        self.vocab = vocab
        self.source = source
        self.info = dict(info or {})
        self.backend = backend
        if scorer is not None:
            self.window, classes, self.family = scorer.window, scorer.classes, scorer.family
        elif model is not None:
            self.window, classes = int(model.input_shape[-1]), int(model.output_shape[-1])
            self.family = "keras"
        else:
            raise ValueError("a Predictor needs a scorer or a Keras model")
        if classes != len(vocab):
            raise InputError(
                f"model outputs {classes} classes but the vocabulary has {len(vocab)} actions",
                hint="the model and vocab.json come from different trainings",
            )
        self._compiled: Any = None
        self._keras_loader = keras_loader

    @property
    def model(self) -> Any:
        """The Keras model of a neural predictor; loaded on first use (imports TensorFlow)."""
        if self._model is None:
            if self._keras_loader is not None:
                self._model = self._keras_loader()
            elif self._model_file is not None and self._model_file.is_file():
                self._model = _load_keras(self._model_file)
            else:
                raise InputError(
                    f"{self.source} has no Keras model to give (family {self.family})",
                    hint="load the run dir or model.keras file of a neural model to get the Keras model",
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
        bundle: Path | None
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
        return cls.from_keras(
            _load_keras(model_file),
            Vocabulary.load(model_file.parent / "vocab.json"),
            str(model_file),
            model_file,
        )

    @classmethod
    def from_keras(
        cls, model: Any, vocab: Vocabulary, source: str = "", model_file: Path | None = None
    ) -> Predictor:
        """NumPy weights read out of ``model`` when its architecture is known, else a ``tf.function``."""
        from perfspec.learn.forward import extract

        net = extract(model)
        backend = "numpy" if net is not None else "tf.function"
        return cls(net, vocab, source, model=model, model_file=model_file, backend=backend)

    @classmethod
    def from_bundle(
        cls,
        bundle: Path,
        source: str | None = None,
        model_file: Path | None = None,
        keras_loader: Callable[[], Any] | None = None,
    ) -> Predictor:
        """From a ``predictor.npz`` (NumPy only); ``BundleError`` if it cannot be used.

        ``keras_loader``: how ``model`` gets the Keras model when there is no ``model_file`` to load.
        """
        scorer, vocab, info = read_bundle(bundle)
        return cls(
            scorer, vocab, source or str(bundle), model_file=model_file, info=info, keras_loader=keras_loader
        )

    @classmethod
    def _load_mlflow(cls, uri: str, tracking_uri: str | None, use_bundle: bool = True) -> Predictor:
        import mlflow
        from mlflow.exceptions import MlflowException

        if tracking_uri:
            check_store(tracking_uri, uri)  # never create an empty store just to read from it
            use_store(tracking_uri)  # runs and registry alike: models:/ resolves in the same store
        registered = resolve_registered(uri, tracking_uri)
        with tempfile.TemporaryDirectory(prefix="perfspec-model-") as tmp:
            if use_bundle:  # only the bundle: no Keras file, no TensorFlow
                try:
                    predictor = cls.from_bundle(
                        _download_bundle(uri, Path(tmp) / "bundle"),
                        source=uri,
                        keras_loader=lambda: cls._load_mlflow(uri, tracking_uri, False).model,
                    )
                    predictor.info |= registered
                    return predictor
                except (MlflowException, OSError, BundleError):
                    pass  # a model logged before bundles existed (or one we cannot read): the full model
            try:
                local = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(Path(tmp) / "all"))
                )
            except MlflowException as error:
                raise InputError(
                    f"cannot load {uri}: {error.message}",
                    hint="check the name and alias (`mlflow models` UI, registered model 'perfspec'), "
                    "or the store: --data-dir / PERFSPEC_PATHS__DATA_DIR / MLFLOW_TRACKING_URI",
                ) from error
            except OSError as error:
                raise EnvironmentProblem(f"cannot reach the MLflow store for {uri}: {error}") from error
            predictor = cls._from_model_dir(local, uri)
            predictor.info |= registered
            return predictor

    @classmethod
    def _from_model_dir(cls, local: Path, uri: str) -> Predictor:
        """From a downloaded MLflow model directory with a Keras model (logged before bundles)."""
        import yaml

        found = sorted(local.rglob("*.keras"))
        if not found:
            raise InputError(f"{uri} holds no usable model (no {BUNDLE_NAME}, no Keras file)")
        metadata = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("metadata") or {}
        if "vocab" in metadata:
            vocab = Vocabulary.from_json(metadata["vocab"])
        elif (local / "vocab.json").is_file():
            vocab = Vocabulary.load(local / "vocab.json")
        else:
            raise InputError(f"{uri} has no vocabulary (metadata 'vocab' missing)")
        return cls.from_keras(_load_keras(found[0]), vocab, uri)

    # --- streams -------------------------------------------------------------------------------
    @property
    def streams(self) -> str:
        """``global`` (one window over all actions) or ``actor`` (a window per requester)."""
        return str(self.info.get("streams", "global"))

    @property
    def actor_groups(self) -> tuple[str, ...]:
        return tuple(self.info.get("actor_groups", DEFAULT_ACTOR_GROUPS))

    def actor_class(self, username: str | None) -> str:
        """The stream of ``username`` under this model's grouping (``perfspec.actions.actors``)."""
        return actor_class(username, self.actor_groups)

    def _check_actor(self, actor: str | None) -> str | None:
        """The actor class for a call, or an InputError when the call does not fit the model's streams."""
        if self.streams == "actor":
            if actor is None:
                raise InputError(
                    f"{self.source} predicts per actor (trained with --streams actor): whose window is it?",
                    hint="pass --actor NAME (the username that made these actions)",
                )
            return self.actor_class(actor)
        if actor is not None:
            raise InputError(
                f"{self.source} predicts the global stream (trained with --streams global): it has no actors",
                hint="drop --actor, or use a model trained with --streams actor",
            )
        return None

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
        if self._scorer is not None:
            return self._scorer.probabilities(ids)
        return self._tf_forward(ids)

    def probabilities(self, actions: Sequence[str]) -> np.ndarray:
        ids, _, _, _ = self.encode(actions)
        return self.probabilities_batch(ids[None, :])[0]

    def predict(self, actions: Sequence[str], k: int = 5, actor: str | None = None) -> Prediction:
        if k < 1:
            raise InputError("k must be at least 1")
        group = self._check_actor(actor)
        ids, unknown, padded, truncated = self.encode(actions)
        probs = np.array(self.probabilities_batch(ids[None, :])[0], dtype=np.float64)
        probs[0] = -np.inf  # <unk> is never a prediction
        k = min(k, len(probs) - 1)
        best = np.argpartition(-probs, k - 1)[:k]
        best = best[np.lexsort((best, -probs[best]))]
        ranked = [(self.vocab.tokens[i], float(probs[i])) for i in best]
        known = self.info.get("actors")
        unseen = group is not None and known is not None and group not in known
        return Prediction(ranked, unknown, padded, truncated, group, unseen)

    def top_k(self, actions: Sequence[str], k: int = 5, actor: str | None = None) -> list[tuple[str, float]]:
        """The ``k`` most likely next actions with probabilities (warns about unknown actions).

        ``actor``: whose window ``actions`` is; required by an actor-stream model, refused by a global one.
        """
        prediction = self.predict(actions, k, actor)
        if prediction.unknown:
            warnings.warn(
                f"{len(prediction.unknown)} unknown action(s) mapped to {UNK}: "
                f"{', '.join(sorted(set(prediction.unknown))[:5])}",
                stacklevel=2,
            )
        return prediction.actions

    def _tf_forward(self, ids: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._compiled is None:
            self._compiled = tf.function(
                lambda x: self.model(x, training=False),
                input_signature=[tf.TensorSpec([None, self.window], tf.int32)],
                reduce_retracing=True,
            )
        return np.asarray(self._compiled(tf.constant(ids)))


STORE_HINT = (
    "the store is <data dir>/mlflow/mlflow.db: pass --data-dir DIR (or set PERFSPEC_PATHS__DATA_DIR, or "
    "MLFLOW_TRACKING_URI) to the data dir that holds it, or give --model a run dir"
)


def check_store(tracking_uri: str, uri: str = "the model") -> None:
    """An ``InputError`` when a local SQLite store does not exist: reading from it must not create it
    (MLflow would create an empty database, then say the model is not found)."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise InputError(f"cannot load {uri}: no MLflow store at {path}", hint=STORE_HINT)


def _registry_hint(client: Any, name: str) -> str:
    """What the registry holds, so the user can pick an existing name, alias or version."""
    from mlflow.exceptions import MlflowException

    try:
        models = client.search_registered_models(max_results=20)
    except MlflowException:
        return STORE_HINT
    if not models:
        return "this store has no registered model yet: train one (perfspec train / perfspec pipeline)"
    found = next((m for m in models if m.name == name), None)
    if found is None:
        names = ", ".join(sorted(m.name for m in models))
        return f"registered models in this store: {names}"
    aliases = ", ".join(f"@{a} (v{v})" for a, v in sorted((found.aliases or {}).items())) or "none"
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    listed = ", ".join(map(str, versions[-10:]))
    return f"{name} has versions {listed} and aliases {aliases}: use models:/{name}@ALIAS or models:/{name}/N"


def resolve_registered(uri: str, tracking_uri: str | None) -> dict[str, Any]:
    """For ``models:/NAME@ALIAS`` or ``models:/NAME/N``: which version (and run) answers, as
    ``{"registered_model", "registered_version", "model_version": "models:/NAME/N", "run_id"}``; an
    ``InputError`` naming what the registry holds when the name, alias or version does not exist.
    {} for other URIs."""
    import re

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        return {}
    name, alias, number = match.groups()
    client = MlflowClient(tracking_uri) if tracking_uri else MlflowClient()
    try:
        version = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, number)
        )
    except MlflowException as error:
        what = (
            f"no version of {name!r} has the alias @{alias}" if alias else f"{name!r} has no version {number}"
        )
        try:
            client.get_registered_model(name)
        except MlflowException:
            what = f"no registered model {name!r}"
        raise InputError(f"cannot load {uri}: {what}", hint=_registry_hint(client, name)) from error
    return {
        "registered_model": name,
        "registered_version": str(version.version),
        "model_version": f"models:/{name}/{version.version}",
        "run_id": version.run_id,
    }


def _download_bundle(uri: str, directory: Path) -> Path:
    """Download only ``predictor.npz`` of the MLflow model at ``uri`` (``MlflowException`` if absent).

    Through the artifact repository of ``uri`` rather than ``download_artifacts(f"{uri}/predictor.npz")``:
    MLflow misreads a sub-path of a logged-model URI (``models:/m-<id>/...``) as a model version. The
    bundle sits beside ``MLmodel`` (Keras flavour, older runs) or in the pyfunc's ``artifacts/``.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    directory.mkdir(parents=True, exist_ok=True)
    repository = get_artifact_repository(uri)
    for candidate in (f"artifacts/{BUNDLE_NAME}", BUNDLE_NAME):
        try:
            return Path(repository.download_artifacts(candidate, dst_path=str(directory)))
        except (MlflowException, OSError):
            continue
    raise MlflowException(f"{uri} has no {BUNDLE_NAME}")


def _load_keras(path: Path) -> Any:
    from perfspec.learn.network import load_network

    try:
        return load_network(path)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the model {path}: {error}") from error


def describe(prediction: Prediction, predictor: Predictor | None = None) -> dict[str, Any]:
    """JSON-ready form of a prediction (what ``perfspec predict --json`` prints)."""
    out: dict[str, Any] = {
        "predictions": [{"action": a, "probability": round(p, 6)} for a, p in prediction.actions],
        "unknown": prediction.unknown,
        "padded": prediction.padded,
        "truncated": prediction.truncated,
    }
    if prediction.actor is not None:
        out |= {"actor": prediction.actor, "unseen_actor": prediction.unseen_actor}
    if predictor is not None:
        out["model"] = {"source": predictor.source, "family": predictor.family, **predictor.info}
    return out
