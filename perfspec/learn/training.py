"""Train the LSTM with early stopping on validation, periodic checkpoints and crash-resume.

Why a hand-rolled epoch loop around ``model.fit(epochs=1)``: the shuffle order of epoch N is drawn
from ``(seed, N)``, so a run resumed from a checkpoint sees the same batches as an uninterrupted run,
and the early-stopping state (best epoch, patience counter) is rebuilt from the history stored with
each checkpoint in ``train_state.json`` instead of living in a callback that dies with the process.
``train_state.json`` and ``checkpoints/best.keras`` are only written at checkpoint epochs, so after a
crash between two checkpoints nothing of the abandoned epochs survives (every saved model carries its
epoch inside the file, which a resume checks). Only validation data steers stopping and the choice of
the kept model; the test split is never touched here.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import InputError
from perfspec.fileio import atomic_path, write_json_atomic
from perfspec.learn.bundle import BUNDLE_NAME, write_bundle
from perfspec.learn.dataset import Dataset
from perfspec.learn.network import load_network
from perfspec.learn.vocab import Vocabulary
from perfspec.settings import TrainSettings

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
EpochCallback = Callable[[int, dict[str, float]], None]
# Settings that may change between a crash and a resume without invalidating the checkpoints; the only
# definition (the run-dir name and flows/config.py use it too).
RESUMABLE_CHANGES = frozenset({"epochs", "patience", "checkpoint_every", "keep_checkpoints"})
_EPOCH_ENTRY = "perfspec_epoch.txt"  # extra zip entry in every saved .keras file (Keras ignores it)


@dataclass
class TrainResult:
    """What a (possibly resumed) training produced. Epoch numbers are 1-based."""

    out_dir: Path
    model_path: Path
    history: dict[str, list[float]]
    best_epoch: int
    best_val_loss: float
    epochs_done: int
    resumed_from: int = 0
    stopped_early: bool = False
    epochs_this_call: int = 0
    train_seconds: float = 0.0
    windows_per_second: float = 0.0
    checkpoints: list[Path] = field(default_factory=list)


def resume_key(dataset: Dataset, settings: TrainSettings) -> dict[str, Any]:
    """What must match for checkpoints in an out dir to be reused."""
    relevant = {k: v for k, v in settings.model_dump().items() if k not in RESUMABLE_CHANGES}
    return {"dataset_fingerprint": dataset.fingerprint, "vocab_size": len(dataset.vocab), "train": relevant}


def run_name(fingerprint: str, settings: TrainSettings) -> str:
    """``<fingerprint12>-<hash8>`` of the dataset and the model-shaping train settings.

    Same data + same model settings -> same run dir, so a re-run resumes there; ``perfspec train`` and
    the Prefect ``train`` flow both name their run dirs with this, so they resume each other's runs.
    Settings in ``RESUMABLE_CHANGES`` (epochs, patience, ...) do not change the name.
    """
    shaping = {k: v for k, v in settings.model_dump(mode="json").items() if k not in RESUMABLE_CHANGES}
    digest = hashlib.sha256(repr(sorted(shaping.items())).encode()).hexdigest()[:8]
    return f"{fingerprint[:12]}-{digest}"


def checkpoint_path(out_dir: Path, epoch: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"model_at_epoch_{epoch}.keras"


def best_path(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints" / "best.keras"


def saved_epoch(path: Path) -> int | None:
    """The epoch a model file written by ``train`` holds (None: absent, or written by older code)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return int(archive.read(_EPOCH_ENTRY))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def read_state(out_dir: Path) -> dict[str, Any] | None:
    import json

    path = Path(out_dir) / "train_state.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a torn state file cannot happen with atomic writes; treat it as absent anyway


@dataclass
class _Progress:
    """Where a training stands: epochs done, history, early stopping, and the best epoch's weights."""

    settings: TrainSettings
    start: int = 0  # epochs done when this process began (a resume starts past them)
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    best_epoch: int = 0
    best_val_loss: float = math.inf
    wait: int = 0
    stopped_early: bool = False
    best_saved: int = 0  # the epoch best.keras holds
    best_weights: list[Any] | None = None  # weights of best_epoch until they are saved
    checkpoint_epoch: int = 0
    epochs_run: int = 0
    fit_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.start >= self.settings.epochs

    def record(self, epoch: int, logs: dict[str, float], weights: Callable[[], list[Any]]) -> None:
        """One epoch's results; the weights are taken only when the epoch is the best so far."""
        for k in HISTORY_KEYS:
            self.history[k].append(logs[k])
        if logs["val_loss"] < self.best_val_loss:
            self.best_epoch, self.best_val_loss, self.wait = epoch, logs["val_loss"], 0
            self.best_weights = weights()  # saved as best.keras at the next checkpoint
        else:
            self.wait += 1
        self.stopped_early = self.wait >= self.settings.patience


def _resume(out_dir: Path, state: dict[str, Any] | None, settings: TrainSettings) -> _Progress:
    """The progress a checkpoint left (nothing when there is none); early stopping from its history
    (patience may have changed since)."""
    progress = _Progress(settings)
    if state is None or state.get("epochs_done", 0) <= 0 or not (out_dir / state["checkpoint"]).is_file():
        return progress
    start = int(state["epochs_done"])
    progress.start = progress.checkpoint_epoch = start
    progress.history = {k: list(state["history"][k][:start]) for k in HISTORY_KEYS}
    best_epoch, best_val_loss = _best_of(progress.history["val_loss"])
    best_epoch, best_val_loss = _restore_best(out_dir, state, progress.history, best_epoch, best_val_loss)
    progress.best_epoch, progress.best_val_loss, progress.best_saved = best_epoch, best_val_loss, best_epoch
    progress.wait = start - best_epoch
    progress.stopped_early = progress.wait >= settings.patience
    return progress


def _checkpoint(model: Any, out_dir: Path, epoch: int, progress: _Progress, key: dict[str, Any]) -> None:
    """Save the epoch, best.keras if the best epoch changed, then the state that points at them (in
    that order: a crash between leaves the previous state valid)."""
    _save_model(model, checkpoint_path(out_dir, epoch), epoch)
    if progress.best_saved != progress.best_epoch:
        if progress.best_epoch == epoch:
            _copy_atomic(checkpoint_path(out_dir, epoch), best_path(out_dir))
        elif progress.best_weights is None:  # kept when best_epoch improved, dropped only once saved
            raise RuntimeError(f"the weights of the best epoch ({progress.best_epoch}) were not kept")
        else:
            _save_weights(model, progress.best_weights, best_path(out_dir), progress.best_epoch)
        progress.best_saved, progress.best_weights = progress.best_epoch, None
    progress.checkpoint_epoch = epoch
    _write_state(
        out_dir,
        key,
        epoch,
        progress.history,
        progress.best_epoch,
        progress.best_val_loss,
        progress.stopped_early,
    )
    _prune_checkpoints(out_dir, progress.settings.keep_checkpoints)


def _finish(out_dir: Path, dataset: Dataset, progress: _Progress, windows: int) -> TrainResult:
    """model.keras (the best epoch), vocab.json, predictor.npz, history.json; the result."""
    # the bundle of the previous model.keras must never sit beside a new one (a crash in between would
    # pair them): remove it first, write it again from the new model.keras after
    (out_dir / BUNDLE_NAME).unlink(missing_ok=True)
    _copy_atomic(best_path(out_dir), out_dir / "model.keras")
    dataset.vocab.save(out_dir / "vocab.json")
    _write_bundle(out_dir, dataset.vocab)
    history = progress.history
    write_json_atomic(
        out_dir / "history.json",
        {"epochs": len(history["loss"]), "best_epoch": progress.best_epoch, **history},
    )
    seconds = progress.fit_seconds
    return _result(
        out_dir,
        history,
        progress.best_epoch,
        progress.best_val_loss,
        progress.checkpoint_epoch,
        progress.start,
        progress.stopped_early,
        progress.epochs_run,
        seconds,
        progress.epochs_run * windows / seconds if seconds else 0.0,
    )


def train(
    dataset: Dataset,
    settings: TrainSettings,
    out_dir: Path,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train (or resume, or return an already finished training) into ``out_dir``.

    Writes ``checkpoints/model_at_epoch_N.keras`` every ``checkpoint_every`` epochs,
    ``checkpoints/best.keras``, ``train_state.json``, and at the end ``model.keras`` (the epoch with the
    lowest validation loss), ``vocab.json``, ``predictor.npz`` (its TensorFlow-free inference bundle, see
    ``perfspec.learn.predict``) and ``history.json``.
    """
    import keras
    import tensorflow as tf

    from perfspec.learn.network import build_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = resume_key(dataset, settings)
    state = read_state(out_dir)
    if state is not None and state.get("key") != key:
        raise InputError(
            f"{out_dir} holds a training of another dataset or with other model settings",
            hint="use another --out directory, or delete this one to start over",
        )
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    progress = _resume(out_dir, state, settings)
    if progress.start and progress.finished and (out_dir / "model.keras").is_file():
        if not (out_dir / BUNDLE_NAME).is_file():  # finished by older code: add the bundle
            _write_bundle(out_dir, dataset.vocab)
        p = progress
        return _result(out_dir, p.history, p.best_epoch, p.best_val_loss, p.start, p.start, p.stopped_early)
    x, y = dataset.windows("train")
    if progress.start and state is not None:
        model = load_network(out_dir / state["checkpoint"], compile=True)
    else:
        steps = math.ceil(len(y) / settings.batch_size)
        model = build_model(len(dataset.vocab), dataset.window, settings, steps_per_epoch=steps)
    validation = dataset.windows("val")
    for epoch in range(progress.start + 1, settings.epochs + 1):
        if progress.stopped_early:
            break
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(y))
        _seed_dropout(model, settings.seed, epoch)
        began = time.perf_counter()
        fitted = model.fit(
            x[order],
            y[order],
            batch_size=settings.batch_size,
            epochs=1,
            shuffle=False,
            validation_data=validation,
            verbose=0,
        )
        progress.fit_seconds += time.perf_counter() - began
        progress.epochs_run += 1
        logs = {k: float(fitted.history[k][-1]) for k in HISTORY_KEYS}
        progress.record(epoch, logs, model.get_weights)
        if epoch % settings.checkpoint_every == 0 or progress.stopped_early or epoch == settings.epochs:
            _checkpoint(model, out_dir, epoch, progress, key)
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    return _finish(out_dir, dataset, progress, len(y))


def _result(
    out_dir: Path,
    history: dict[str, list[float]],
    best_epoch: int,
    best_val_loss: float,
    epochs_done: int,
    resumed_from: int,
    stopped_early: bool,
    epochs_this_call: int = 0,
    seconds: float = 0.0,
    rate: float = 0.0,
) -> TrainResult:
    return TrainResult(
        out_dir=out_dir,
        model_path=out_dir / "model.keras",
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_val_loss,
        epochs_done=epochs_done,
        resumed_from=resumed_from,
        stopped_early=stopped_early,
        epochs_this_call=epochs_this_call,
        train_seconds=seconds,
        windows_per_second=rate,
        checkpoints=sorted((out_dir / "checkpoints").glob("model_at_epoch_*.keras"), key=_epoch_of),
    )


def _best_of(val_loss: list[float]) -> tuple[int, float]:
    """(1-based epoch, value) of the lowest validation loss; the first one on ties, like the loop."""
    if not val_loss:
        return 0, math.inf
    index = int(np.argmin(val_loss))
    return index + 1, float(val_loss[index])


def _restore_best(
    out_dir: Path, state: dict[str, Any], history: dict[str, list[float]], best_epoch: int, best_val: float
) -> tuple[int, float]:
    """Make ``best.keras`` hold ``best_epoch`` (<= the checkpoint resumed from); returns the best kept.

    ``best.keras`` is only written at checkpoints, before the state, so it can only be ahead of the
    state after a crash between those two writes; then it is re-derived from the periodic checkpoint of
    that epoch, or, if that was pruned, the checkpoint resumed from becomes the best (with a warning).
    """
    start = int(state["epochs_done"])
    best = best_path(out_dir)
    held = saved_epoch(best)
    if held is None and best.is_file() and int(state.get("best_epoch", -1)) == best_epoch:
        held = best_epoch  # written by older code, which recorded the epoch of best.keras in the state
    if held == best_epoch:
        return best_epoch, best_val
    source = checkpoint_path(out_dir, best_epoch)
    if not source.is_file():
        warnings.warn(
            f"{out_dir}: the model of best epoch {best_epoch} is lost; keeping epoch {start} instead",
            RuntimeWarning,
            stacklevel=3,
        )
        best_epoch, best_val = start, float(history["val_loss"][start - 1])
        source = checkpoint_path(out_dir, start)
    _copy_atomic(source, best)
    return best_epoch, best_val


def _write_bundle(out_dir: Path, vocab: Vocabulary) -> None:
    """``predictor.npz`` of ``model.keras`` (every network ``build_model`` makes has a NumPy path)."""
    from perfspec.learn.forward import extract

    net = extract(load_network(out_dir / "model.keras"))
    if net is None:
        raise InputError(f"{out_dir / 'model.keras'} has layers the NumPy predictor does not implement")
    write_bundle(net, vocab, out_dir / BUNDLE_NAME)


def _seed_dropout(model: Any, seed: int, epoch: int) -> None:
    """Draw epoch N's dropout masks from ``(seed, N)``, like its shuffle order.

    Keras does not save the state of a layer's random seed generator with the model, so without this
    a run resumed from a checkpoint would draw other dropout masks than an uninterrupted run.
    """
    states = [v for v in model.variables if v.name == "seed_generator_state"]  # in layer order
    for index, state in enumerate(states):
        start = int(np.random.default_rng([seed, epoch, index]).integers(1, 2**31 - 1))
        state.assign(np.array([start, 0], dtype=state.dtype))


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _save_model(model: Any, target: Path, epoch: int) -> None:
    """Save atomically, with ``epoch`` recorded inside the file (see ``saved_epoch``).

    ``model.save`` insists on a ``.keras`` suffix, hence ``atomic_path``'s ``suffix``.
    """
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(_EPOCH_ENTRY, str(epoch))


def _save_weights(model: Any, weights: list[Any], target: Path, epoch: int) -> None:
    """Save ``model`` as it was at ``epoch`` (its weights then), leaving the model untouched."""
    current = model.get_weights()
    model.set_weights(weights)
    try:
        _save_model(model, target, epoch)
    finally:
        model.set_weights(current)


def _epoch_of(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _prune_checkpoints(out_dir: Path, keep: int) -> None:
    found = sorted((out_dir / "checkpoints").glob("model_at_epoch_*.keras"), key=_epoch_of)
    for old in found[:-keep]:
        old.unlink(missing_ok=True)


def _write_state(
    out_dir: Path,
    key: dict[str, Any],
    checkpoint_epoch: int,
    history: dict[str, list[float]],
    best_epoch: int,
    best_val_loss: float,
    stopped_early: bool,
) -> None:
    write_json_atomic(
        out_dir / "train_state.json",
        {
            "key": key,
            "epochs_done": checkpoint_epoch,
            "checkpoint": str(checkpoint_path(out_dir, checkpoint_epoch).relative_to(out_dir))
            if checkpoint_epoch
            else None,
            "history": history,
            "best_epoch": best_epoch,
            "best_val_loss": best_val_loss,
            "stopped_early": stopped_early,
        },
    )
