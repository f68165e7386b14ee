"""The next-action network: Embedding -> LSTM layer(s) -> softmax over the vocabulary (Keras 3).

Why this shape: it is the paper's model, small enough to train on 2 CPU cores in minutes, and its
forward pass is simple enough for ``perfspec.learn.predict`` to re-implement in NumPy for sub-ms answers.
"""

from __future__ import annotations

from typing import Any

from perfspec.settings import TrainSettings


def build_model(vocab_size: int, window: int, settings: TrainSettings, steps_per_epoch: int = 1) -> Any:
    """A compiled Keras model: int32 ``(batch, window)`` ids -> ``(batch, vocab_size)`` probabilities."""
    import keras

    inputs = keras.Input(shape=(window,), dtype="int32", name="actions")
    hidden = keras.layers.Embedding(vocab_size, settings.embedding_dim, name="embedding")(inputs)
    for layer in range(settings.lstm_layers):
        last = layer == settings.lstm_layers - 1
        hidden = keras.layers.LSTM(settings.lstm_units, return_sequences=not last, name=f"lstm_{layer}")(
            hidden
        )
        if settings.dropout > 0:
            hidden = keras.layers.Dropout(settings.dropout, name=f"dropout_{layer}")(hidden)
    outputs = keras.layers.Dense(vocab_size, activation="softmax", name="next_action")(hidden)
    model = keras.Model(inputs, outputs, name="perfspec_lstm")
    compile_model(model, settings, steps_per_epoch)
    return model


def compile_model(model: Any, settings: TrainSettings, steps_per_epoch: int = 1) -> None:
    """Adam; with ``lr_schedule="cosine"`` the rate decays over ``epochs`` to ``lr_floor`` x the start.

    The schedule is a function of the optimizer's step counter, which checkpoints save, so a resumed
    training continues on the same curve.
    """
    import keras

    rate: Any = settings.learning_rate
    if settings.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            settings.learning_rate,
            decay_steps=max(1, settings.epochs * steps_per_epoch),
            alpha=settings.lr_floor,
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
