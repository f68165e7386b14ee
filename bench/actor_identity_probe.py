"""Exploration (not a benchmark): does a GRU given the actor's identity (a class embedding beside its
window) beat the per-actor n-gram? One chronological hold-out, three seeds: a hint, not a result.

    python -m bench.actor_identity_probe perfspec-data/actions/<name>/actions.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> None:
    import keras
    from keras import layers

    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.families.ngram import NGram
    from perfspec.learn.scoring import target_ranks
    from perfspec.settings import DatasetSettings

    dataset = build_dataset(Path(argv[0]), DatasetSettings(streams="actor"))
    assert dataset.layout is not None
    classes, window, actors = len(dataset.vocab), dataset.window, len(dataset.layout.names)

    def part(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y = dataset.windows(split)
        return x, y, dataset.layout.codes[dataset.positions(split)][:, None]  # type: ignore[union-attr]

    (xt, yt, at), (xv, yv, av), (xs, ys, as_) = part("train"), part("val"), part("test")
    ngram = NGram.fit(dataset.sequences("train"), classes, window, 3)
    ng_val, ng_test = ngram.probabilities(xv), ngram.probabilities(xs)
    print(f"per-actor n-gram (order 3) hold-out top-5 {np.mean(target_ranks(ng_test, ys) < 5):.4f}")
    rows = np.arange(len(yv))
    for seed in (42, 7, 1234):
        for with_actor in (False, True):
            keras.utils.set_random_seed(seed)
            ids, who = keras.Input((window,), dtype="int32"), keras.Input((1,), dtype="int32")
            hidden = layers.GRU(64, dropout=0.3)(layers.Embedding(classes, 32)(ids))
            if with_actor:
                hidden = layers.Concatenate()([hidden, layers.Flatten()(layers.Embedding(actors, 8)(who))])
            out = layers.Dense(classes, activation="softmax")(layers.Dropout(0.3)(hidden))
            model = keras.Model([ids, who], out)
            model.compile(keras.optimizers.Adam(5e-3), "sparse_categorical_crossentropy")
            stop = keras.callbacks.EarlyStopping(patience=8, restore_best_weights=True)
            model.fit([xt, at], yt, validation_data=([xv, av], yv), epochs=30, batch_size=64, verbose=0,
                      callbacks=[stop])  # fmt: skip
            p_val, p_test = model.predict([xv, av], verbose=0), model.predict([xs, as_], verbose=0)

            def likelihood(w: float, p_val: np.ndarray = p_val) -> float:
                mixed = w * p_val[rows, yv] + (1 - w) * ng_val[rows, yv]
                return float(np.mean(np.log(mixed + 1e-12)))

            weight = max(np.linspace(0, 1, 21), key=likelihood)
            alone = target_ranks(p_test, ys)
            mixed = target_ranks(weight * p_test + (1 - weight) * ng_test, ys)
            print(
                f"seed {seed} {'with actor' if with_actor else 'pooled   '}: GRU top-1/5 "
                f"{np.mean(alone < 1):.4f}/{np.mean(alone < 5):.4f}; mixture (w={weight:.2f}) "
                f"{np.mean(mixed < 1):.4f}/{np.mean(mixed < 5):.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
