"""The neural next-action families as Keras 3 networks: LSTM, GRU and a small causal Transformer.

Why these three, this small: they are the paper's model (LSTM), its cheaper recurrent sibling (GRU) and
the attention alternative, each small enough to train on 2 CPU cores in minutes and simple enough for
``perfspec.learn.forward`` to re-implement in NumPy (sub-ms answers without TensorFlow). Every network
maps int32 ``(batch, window)`` action ids to ``(batch, vocab_size)`` next-action probabilities.
"""

from __future__ import annotations

from typing import Any

from perfspec.settings import TrainSettings

NEURAL_FAMILIES = ("lstm", "gru", "transformer")


def _custom_layers() -> tuple[type, type]:
    """Keras layers the Transformer needs (registered for ``load_model``), defined on first use."""
    import keras

    @keras.saving.register_keras_serializable(package="perfspec")
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned embedding of each position (0 = oldest) to the action embeddings."""

        def __init__(self, window: int, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.window, self.dim = window, dim

        def build(self, input_shape: Any) -> None:  # noqa: ARG002 - Keras passes it by keyword
            self.positions = self.add_weight(
                name="positions", shape=(self.window, self.dim), initializer="glorot_uniform"
            )

        def call(self, inputs: Any) -> Any:
            return inputs + self.positions[None, :, :]

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "window": self.window, "dim": self.dim}

    @keras.saving.register_keras_serializable(package="perfspec")
    class LastStep(keras.layers.Layer):
        """The newest position's vector: the causal stack's summary of the whole window."""

        def call(self, inputs: Any) -> Any:
            return inputs[:, -1, :]

    return PositionEmbedding, LastStep


_LAYERS: tuple[type, type] | None = None


def custom_layers() -> tuple[type, type]:
    global _LAYERS
    if _LAYERS is None:
        _LAYERS = _custom_layers()
    return _LAYERS


def load_network(path: Any, compile: bool = False) -> Any:
    """A saved network (the Transformer's own layers registered first)."""
    import keras

    custom_layers()
    return keras.models.load_model(path, compile=compile)


def build_model(vocab_size: int, window: int, settings: TrainSettings, steps_per_epoch: int = 1) -> Any:
    """A compiled Keras model of ``settings.family``: ids ``(batch, window)`` -> probabilities."""
    import keras

    inputs = keras.Input(shape=(window,), dtype="int32", name="actions")
    hidden = keras.layers.Embedding(vocab_size, settings.embedding_dim, name="embedding")(inputs)
    if settings.family == "transformer":
        hidden = _transformer_stack(hidden, window, settings)
    else:
        recurrent = keras.layers.LSTM if settings.family == "lstm" else keras.layers.GRU
        for layer in range(settings.lstm_layers):
            last = layer == settings.lstm_layers - 1
            hidden = recurrent(
                settings.lstm_units, return_sequences=not last, name=f"{settings.family}_{layer}"
            )(hidden)
            if settings.dropout > 0:
                hidden = keras.layers.Dropout(settings.dropout, name=f"dropout_{layer}")(hidden)
    outputs = keras.layers.Dense(vocab_size, activation="softmax", name="next_action")(hidden)
    model = keras.Model(inputs, outputs, name=f"perfspec_{settings.family}")
    compile_model(model, settings, steps_per_epoch)
    return model


def _transformer_stack(hidden: Any, window: int, settings: TrainSettings) -> Any:
    """Pre-norm causal blocks: x + MHA(LN(x)), x + FFN(LN(x)); then LN and the newest position."""
    import keras

    position_embedding, last_step = custom_layers()
    dim = settings.embedding_dim
    if dim % settings.heads:
        from perfspec.errors import InputError

        raise InputError(
            f"embedding_dim {dim} is not a multiple of heads {settings.heads}",
            hint="the Transformer splits the embedding across its attention heads",
        )
    hidden = position_embedding(window, dim, name="positions")(hidden)
    for block in range(settings.blocks):
        normed = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_ln1")(hidden)
        attended = keras.layers.MultiHeadAttention(
            num_heads=settings.heads, key_dim=dim // settings.heads, name=f"block{block}_attention"
        )(normed, normed, use_causal_mask=True)
        if settings.dropout > 0:
            attended = keras.layers.Dropout(settings.dropout, name=f"block{block}_drop1")(attended)
        hidden = keras.layers.Add(name=f"block{block}_add1")([hidden, attended])
        normed = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_ln2")(hidden)
        inner = keras.layers.Dense(2 * dim, activation="relu", name=f"block{block}_ff1")(normed)
        inner = keras.layers.Dense(dim, name=f"block{block}_ff2")(inner)
        if settings.dropout > 0:
            inner = keras.layers.Dropout(settings.dropout, name=f"block{block}_drop2")(inner)
        hidden = keras.layers.Add(name=f"block{block}_add2")([hidden, inner])
    hidden = keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(hidden)
    hidden = last_step(name="last_step")(hidden)
    if settings.dropout > 0:
        hidden = keras.layers.Dropout(settings.dropout, name="final_drop")(hidden)
    return hidden


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
