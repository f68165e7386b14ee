"""Training: outputs, validation-only model choice, and resume after a real crash (SIGKILL)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfspec.errors import InputError
from perfspec.learn.bundle import BUNDLE_NAME, read_bundle
from perfspec.learn.dataset import Dataset, dataset_from_actions
from perfspec.learn.network import load_network
from perfspec.learn.predict import Predictor
from perfspec.learn.training import RESUMABLE_CHANGES, best_path, read_state, run_name, saved_epoch, train
from perfspec.settings import DatasetSettings, TrainSettings
from tests.synthetic import chain_actions

TINY = TrainSettings(embedding_dim=4, lstm_units=8, epochs=2, batch_size=32, learning_rate=0.01, seed=3)


def tiny_dataset() -> Dataset:
    return dataset_from_actions(chain_actions(), DatasetSettings(window=4))


def test_train_writes_model_history_and_checkpoints(tmp_path: Path) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    result = train(tiny_dataset(), TINY, tmp_path, on_epoch_end=lambda e, logs: seen.append((e, logs)))
    assert [e for e, _ in seen] == [1, 2]
    assert all(set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy"} for _, logs in seen)
    for name in ("model.keras", "vocab.json", "history.json", "train_state.json", BUNDLE_NAME):
        assert (tmp_path / name).is_file(), name
    assert [p.name for p in result.checkpoints] == ["model_at_epoch_1.keras", "model_at_epoch_2.keras"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["val_loss"] == [logs["val_loss"] for _, logs in seen]
    # the kept model is the epoch with the lowest VALIDATION loss
    assert result.best_epoch == int(np.argmin(history["val_loss"])) + 1 == history["best_epoch"]
    assert result.windows_per_second > 0


def test_finished_training_is_not_redone(tmp_path: Path) -> None:
    train(tiny_dataset(), TINY, tmp_path)
    calls: list[int] = []
    again = train(tiny_dataset(), TINY, tmp_path, on_epoch_end=lambda e, _: calls.append(e))
    assert calls == [] and again.epochs_this_call == 0 and again.epochs_done == 2


def test_the_bundle_matches_the_kept_model_and_an_older_run_dir_gets_one(tmp_path: Path) -> None:
    train(tiny_dataset(), TINY, tmp_path)
    written = (tmp_path / BUNDLE_NAME).read_bytes()
    bundled, from_keras = Predictor.load(tmp_path), Predictor.load(tmp_path, use_bundle=False)
    assert bundled.backend == "bundle" and bundled.vocab == tiny_dataset().vocab
    x, _ = tiny_dataset().windows("test")
    np.testing.assert_allclose(
        bundled.probabilities_batch(x), from_keras.model.predict(x, verbose=0), atol=2e-6, rtol=1e-4
    )
    (tmp_path / BUNDLE_NAME).unlink()  # a run dir finished before bundles existed
    again = train(tiny_dataset(), TINY, tmp_path)
    assert again.epochs_this_call == 0 and (tmp_path / BUNDLE_NAME).read_bytes() == written


@pytest.mark.parametrize("family", ["gru", "transformer"])
def test_every_family_gets_a_bundle_that_answers_like_its_model(tmp_path: Path, family: str) -> None:
    settings = TINY.model_copy(update={"family": family, "epochs": 2})
    result = train(tiny_dataset(), settings, tmp_path)
    assert result.epochs_done == 2 and (tmp_path / BUNDLE_NAME).is_file()
    scorer, vocab, _ = read_bundle(tmp_path / BUNDLE_NAME)
    assert scorer.family == family and vocab == tiny_dataset().vocab
    predictor = Predictor.load(tmp_path)
    assert (predictor.backend, predictor.family, predictor.window) == ("bundle", family, 4)
    x, _ = tiny_dataset().windows("test")
    expected = load_network(tmp_path / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(predictor.probabilities_batch(x), expected, atol=2e-6, rtol=1e-4)


def test_a_model_the_numpy_path_cannot_run_is_an_input_error(tmp_path: Path, monkeypatch: Any) -> None:
    """Every network ``build_model`` makes has a NumPy path; anything else must not be left half-served."""
    import keras

    from perfspec.learn import network

    def unsupported(vocab_size: int, window: int, settings: TrainSettings, steps_per_epoch: int = 1) -> Any:
        inputs = keras.Input(shape=(window,), dtype="int32")
        hidden = keras.layers.Embedding(vocab_size, settings.embedding_dim)(inputs)
        hidden = keras.layers.SimpleRNN(settings.lstm_units)(hidden)
        model = keras.Model(inputs, keras.layers.Dense(vocab_size, activation="softmax")(hidden))
        network.compile_model(model, settings, steps_per_epoch)
        return model

    monkeypatch.setattr(network, "build_model", unsupported)
    (tmp_path / BUNDLE_NAME).write_bytes(b"stale")
    with pytest.raises(InputError, match="NumPy predictor does not implement"):
        train(tiny_dataset(), TINY.model_copy(update={"epochs": 1}), tmp_path)
    assert not (tmp_path / BUNDLE_NAME).exists()  # no stale bundle beside a model it does not describe


def test_more_epochs_continue_a_finished_training(tmp_path: Path) -> None:
    train(tiny_dataset(), TINY.model_copy(update={"lr_schedule": "constant"}), tmp_path)
    calls: list[int] = []
    longer = TINY.model_copy(update={"lr_schedule": "constant", "epochs": 3})
    result = train(tiny_dataset(), longer, tmp_path, on_epoch_end=lambda e, _: calls.append(e))
    assert calls == [3] and result.resumed_from == 2 and len(result.history["loss"]) == 3
    # the bundle describes the new model.keras, not the one of the first call
    x, _ = tiny_dataset().windows("test")
    np.testing.assert_array_equal(
        Predictor.load(tmp_path).probabilities_batch(x),
        Predictor.load(tmp_path, use_bundle=False).probabilities_batch(x),
    )


def test_other_settings_in_the_same_out_dir_are_refused(tmp_path: Path) -> None:
    train(tiny_dataset(), TINY, tmp_path)
    with pytest.raises(InputError, match="another dataset or with other model settings"):
        train(tiny_dataset(), TINY.model_copy(update={"lstm_units": 9}), tmp_path)


def test_early_stopping_uses_patience_on_validation_loss(tmp_path: Path) -> None:
    # a learning rate this high makes validation loss go up quickly; patience 1 stops at the first rise
    settings = TINY.model_copy(
        update={"epochs": 30, "patience": 1, "learning_rate": 0.5, "lr_schedule": "constant"}
    )
    result = train(tiny_dataset(), settings, tmp_path)
    val = result.history["val_loss"]
    assert result.stopped_early and len(val) < 30
    assert val[-1] >= min(val[:-1])  # stopped right after a non-improving epoch
    assert result.best_epoch == int(np.argmin(val)) + 1


CRASHING_TRAINER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_training import tiny_dataset, TINY
    from perfspec.learn.training import train

    def crash(epoch, logs):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # a real, abrupt crash: no cleanup, no atexit

    train(tiny_dataset(), TINY.model_copy(update={{"epochs": 4}}), {out!r}, on_epoch_end=crash)
    """
)


def test_resume_after_a_killed_process_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = CRASHING_TRAINER.format(tests=str(Path(__file__).parent), out=str(out))
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    state = read_state(out)
    assert state is not None and state["epochs_done"] == 2
    assert not (out / "model.keras").exists()
    before = {k: state["history"][k][:2] for k in ("loss", "val_loss")}

    calls: list[int] = []
    result = train(
        tiny_dataset(), TINY.model_copy(update={"epochs": 4}), out, on_epoch_end=lambda e, _: calls.append(e)
    )
    assert calls == [3, 4], "epochs 1-2 must not be redone"
    assert result.resumed_from == 2 and result.epochs_done == 4
    assert len(result.history["loss"]) == 4
    assert (
        result.history["loss"][:2] == before["loss"] and result.history["val_loss"][:2] == before["val_loss"]
    )
    assert (out / "model.keras").is_file()
    assert sorted(p.name for p in result.checkpoints)[-1] == "model_at_epoch_4.keras"


class _Crash(Exception):
    pass


def test_resume_between_checkpoints_restores_the_checkpoint_s_early_stopping_state(tmp_path: Path) -> None:
    """checkpoint_every=2, crash after epoch 3: epoch 3 (an improvement) is abandoned, so the resume
    must take best epoch, patience counter and best.keras from epoch 2, and end exactly like a run
    that never crashed (patience 1: counting the re-run epoch 3 as "no gain" would stop it there).
    With dropout: Keras does not save its seed state, so the masks must come from (seed, epoch) too."""
    settings = TINY.model_copy(
        update={"epochs": 5, "checkpoint_every": 2, "patience": 1, "seed": 5, "dropout": 0.5}
    )
    reference = train(tiny_dataset(), settings, tmp_path / "reference")
    assert reference.best_epoch >= 3 and not reference.stopped_early  # epoch 3 improved on epoch 2

    out = tmp_path / "run"

    def crash(epoch: int, _logs: dict[str, float]) -> None:
        if epoch == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train(tiny_dataset(), settings, out, on_epoch_end=crash)
    state = read_state(out)
    assert state is not None and state["epochs_done"] == 2 and len(state["history"]["loss"]) == 2
    assert state["best_epoch"] <= 2 and saved_epoch(best_path(out)) == state["best_epoch"]

    calls: list[int] = []
    result = train(tiny_dataset(), settings, out, on_epoch_end=lambda e, _: calls.append(e))
    assert calls == [3, 4, 5] and result.resumed_from == 2
    assert result.history["val_loss"] == pytest.approx(reference.history["val_loss"], rel=1e-5)
    assert (result.best_epoch, result.stopped_early) == (reference.best_epoch, reference.stopped_early)
    assert saved_epoch(out / "model.keras") == saved_epoch(best_path(out)) == result.best_epoch


def test_a_best_model_from_an_abandoned_epoch_is_replaced_on_resume(tmp_path: Path) -> None:
    """best.keras not holding the state's best epoch (crash between the two writes): re-derived."""
    import shutil

    settings = TINY.model_copy(update={"lr_schedule": "constant"})
    first = train(tiny_dataset(), settings, tmp_path)
    wrong = 2 if first.best_epoch == 1 else 1
    shutil.copyfile(tmp_path / "checkpoints" / f"model_at_epoch_{wrong}.keras", best_path(tmp_path))
    (tmp_path / "model.keras").unlink()  # as if the crash came before the final copy
    result = train(tiny_dataset(), settings, tmp_path)
    assert result.epochs_this_call == 0 and result.best_epoch == first.best_epoch
    assert saved_epoch(tmp_path / "model.keras") == saved_epoch(best_path(tmp_path)) == first.best_epoch


def test_run_name_ignores_resumable_settings_only() -> None:
    fingerprint = "ab" * 32
    name = run_name(fingerprint, TINY)
    assert name.startswith(fingerprint[:12] + "-") and len(name) == 12 + 1 + 8
    for field in RESUMABLE_CHANGES:
        changed = TINY.model_copy(update={field: getattr(TINY, field) + 1})
        assert run_name(fingerprint, changed) == name, field
    assert run_name(fingerprint, TINY.model_copy(update={"lstm_units": 9})) != name
