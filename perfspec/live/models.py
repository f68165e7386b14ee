"""Which model serves, by version: a registry alias resolved to a version, and hot updates while serving.

Why resolve the alias first and then load ``models:/NAME/N``: the alias may move between the two calls;
loading the version it names makes "which version produced this prediction" exact. A live service
polls the alias (``LiveSettings.poll_seconds``) in a background thread and loads a new version there;
the engine thread takes it between two events (``take``), so no event is predicted half by one model.
A version that fails to load keeps the old one serving; one line says so (once per version), and the
failure is counted for ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from perfspec.errors import InputError
from perfspec.learn.predict import Predictor, check_store

MODELS_PREFIX = "models:/"


def split_alias(model: str) -> tuple[str, str] | None:
    """(name, alias) of ``models:/NAME@ALIAS``; None for anything else (a path, a fixed version)."""
    if not model.startswith(MODELS_PREFIX):
        return None
    name, _, alias = model.removeprefix(MODELS_PREFIX).partition("@")
    return (name, alias) if name and alias else None


def version_of(model: str, source: str) -> str:
    """What produced the predictions: a registry alias resolved to its version (``models:/perfspec/3``),
    else the file or URI that was loaded (``source``). Uses the store ``Predictor.load`` set."""
    parts = split_alias(model)
    if parts is None:
        return source
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias = parts
    try:
        return f"{MODELS_PREFIX}{name}/{MlflowClient().get_model_version_by_alias(name, alias).version}"
    except MlflowException:
        return source


@dataclass(frozen=True)
class Served:
    """A loaded model and the version that names it in every record it produces."""

    predictor: Predictor
    version: str


def _tracking_uri(tracking_uri: str | None) -> str:
    if tracking_uri is not None:
        return tracking_uri
    from perfspec.settings import get_settings

    return get_settings().mlflow_tracking_uri


def load_served(model: str, tracking_uri: str | None = None) -> Served:
    """The model to serve now: an alias is resolved to its version first (raises PerfspecError)."""
    parts = split_alias(model)
    if parts is None:
        predictor = Predictor.load(model, tracking_uri=tracking_uri)
        return Served(predictor, predictor.source)
    name, alias = parts
    uri = _tracking_uri(tracking_uri)
    check_store(uri, model)  # never create an empty store just to read from it
    version = _alias_version(name, alias, uri)
    if version is None:
        raise InputError(
            f"cannot load {model}: no version of {name!r} has the alias @{alias} in {uri}",
            hint="check the name and alias (MLflow UI, Models), or the store: --data-dir / "
            "PERFSPEC_PATHS__DATA_DIR / MLFLOW_TRACKING_URI",
        )
    target = f"{MODELS_PREFIX}{name}/{version}"
    return Served(Predictor.load(target, tracking_uri=uri), target)


def _alias_version(name: str, alias: str, tracking_uri: str) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        # the registry named too: else a store set process-wide earlier (mlflow_store.use_store) answers
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


class ModelWatcher:
    """Polls ``models:/NAME@ALIAS`` for a new version and loads it beside the serving one.

    ``take()`` (engine thread) returns a newly loaded model once, else None. A model given otherwise (a
    path, a fixed version) is never polled.
    """

    def __init__(
        self,
        model: str,
        current: Served,
        poll_seconds: float,
        *,
        tracking_uri: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.model = model
        self.current_version = current.version
        self.poll_seconds = poll_seconds
        self.tracking_uri = tracking_uri
        self.log = log
        self.failures = 0
        self.loads = 0
        self._alias = split_alias(model)
        self._ready: Served | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failed_versions: set[str] = set()
        self._thread: threading.Thread | None = None

    @property
    def polling(self) -> bool:
        return self._alias is not None

    def start(self) -> ModelWatcher:
        if self.polling:
            self._thread = threading.Thread(target=self._run, name="perfspec-live-models", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def take(self) -> Served | None:
        """The model loaded since the last call, if any (the engine swaps to it between two events)."""
        if self._ready is None:  # read without the lock: a reference, swapped whole
            return None
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> Served | None:
        """One poll: load the alias' version if it is new; returns what was loaded (None otherwise)."""
        assert self._alias is not None
        name, alias = self._alias
        uri = _tracking_uri(self.tracking_uri)
        try:
            version = _alias_version(name, alias, uri)
        except Exception as error:  # a registry hiccup must never stop the service
            self._failed(f"{self.model} (registry)", error)
            return None
        target = f"{MODELS_PREFIX}{name}/{version}"
        if version is None or target == self.current_version:
            return None
        try:
            served = Served(Predictor.load(target, tracking_uri=uri), target)
        except Exception as error:  # any failure keeps the old model serving
            self._failed(target, error)
            return None
        with self._lock:
            self._ready = served
        self.current_version = target
        self.loads += 1
        self.log(f"loaded {target} ({self.model}); it serves from the next action on")
        return served

    def _failed(self, target: str, error: BaseException) -> None:
        self.failures += 1
        if target not in self._failed_versions:
            self._failed_versions.add(target)
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.log(f"cannot load {target}: {reason}; {self.current_version} keeps serving")
