"""What an actor-stream run adds to the report: the global reference, unseen actors, per-actor scores,
and intervals that say how much a small hold-out can tell.

Why a global reference on the same positions: an actor-stream score is only a gain if the global
stream, asked about the very same next actions, does worse; the global bigram (Kneser–Ney, order 2)
trained on the same training part of the log answers that. Why unseen actors: an actor that made no
action in the training part is predicted by the same pooled models from its own window (the models do
not take the actor's identity), so no fallback model is needed, but its share and its hit rate are
reported apart. Why block-bootstrap intervals: the real corpus with requesters has ~2,000 actions, its
hold-out ~200; neighbouring test targets are not independent, so the positions are resampled in
contiguous blocks of the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perfspec.learn.dataset import Dataset
from perfspec.learn.families.ngram import NGram
from perfspec.learn.scoring import MISS, target_ranks, topk_from_ranks
from perfspec.learn.selection import ModelScores
from perfspec.learn.streams import padded_contexts

GLOBAL_ORDER = 2  # "the global bigram"
REFERENCE_KS = (1, 3, 5, 10)
TOP_ACTORS = 10
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_BLOCK = 10  # consecutive test targets (log order) resampled together
UNSEEN_HANDLING = (
    "predicted from the actor's own window by the same pooled models (they do not take the actor's "
    "identity); no fallback model"
)


def log_positions(dataset: Dataset, split: str = "test") -> np.ndarray:
    """The log position of each window target of ``split`` (dataset positions on the global stream)."""
    positions = dataset.positions(split)
    return dataset.layout.order[positions] if dataset.layout is not None else positions


def global_bigram(dataset: Dataset) -> tuple[NGram, np.ndarray]:
    """The global bigram trained on the log's training part, and the dataset's ids in log order."""
    if dataset.layout is None:
        raise ValueError("the global reference is for actor-stream datasets")
    log_ids = dataset.layout.log_ids(dataset.ids)
    train = [log_ids[a:b] for a, b in dataset.log_split["train"]]
    return NGram.fit(train, len(dataset.vocab), dataset.window, GLOBAL_ORDER), log_ids


def global_probabilities(dataset: Dataset, model: NGram, log_ids: np.ndarray, split: str) -> np.ndarray:
    """The global model asked about ``split``'s targets with their preceding actions in the log (inside
    their segment, padded)."""
    contexts = padded_contexts(
        log_ids, dataset.log_split[split], log_positions(dataset, split), dataset.window
    )
    return model.probabilities(contexts)


def global_reference_ranks(dataset: Dataset) -> np.ndarray:
    """Ranks of the test targets under the global bigram."""
    model, log_ids = global_bigram(dataset)
    return target_ranks(global_probabilities(dataset, model, log_ids, "test"), dataset.windows("test")[1])


def _stream_of_test(dataset: Dataset) -> np.ndarray:
    assert dataset.layout is not None
    return dataset.layout.codes[dataset.positions("test")]


def unseen_mask(dataset: Dataset) -> np.ndarray:
    """Per test window: its actor made no action in the training part."""
    assert dataset.layout is not None
    seen = np.zeros(len(dataset.layout.names), dtype=bool)
    for a, b in dataset.segments["train"]:
        seen[dataset.layout.codes[a:b]] = True
    return ~seen[_stream_of_test(dataset)]


def block_bootstrap(
    ranks: np.ndarray, k: int, order: np.ndarray, reference: np.ndarray | None = None, seed: int = 0
) -> list[float]:
    """95 % interval of top-``k`` (or of its gain over ``reference`` ranks) by resampling blocks of
    ``BOOTSTRAP_BLOCK`` consecutive targets (in log ``order``)."""
    hits = (ranks[np.argsort(order, kind="stable")] < k).astype(np.float64)
    if reference is not None:
        hits -= reference[np.argsort(order, kind="stable")] < k
    n = len(hits)
    if n == 0:
        return [0.0, 0.0]
    block = min(BOOTSTRAP_BLOCK, n)
    starts = np.arange(n - block + 1)
    rng = np.random.default_rng(seed)
    per_sample = int(np.ceil(n / block))
    chosen = rng.choice(starts, size=(BOOTSTRAP_SAMPLES, per_sample))
    index = (chosen[:, :, None] + np.arange(block)[None, None, :]).reshape(BOOTSTRAP_SAMPLES, -1)[:, :n]
    means = hits[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def intervals(
    dataset: Dataset, scores: Mapping[str, ModelScores], reference: str, ks: tuple[int, ...] = (1, 5)
) -> dict[str, Any]:
    """``test_ci.<model>.top<k>`` and ``test_gain_ci.<model>.top<k>`` (vs ``reference``), block bootstrap."""
    order = log_positions(dataset)
    base = scores[reference].test_ranks if reference in scores else None
    ci: dict[str, dict[str, list[float]]] = {}
    gain: dict[str, dict[str, list[float]]] = {}
    for name, s in scores.items():
        if s.test_ranks is None:
            continue
        ci[name] = {f"top{k}": block_bootstrap(s.test_ranks, k, order) for k in ks}
        if base is not None and name != reference:
            gain[name] = {f"top{k}": block_bootstrap(s.test_ranks, k, order, base) for k in ks}
    return {
        "test_ci": ci,
        "test_gain_ci": gain,
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "block": BOOTSTRAP_BLOCK, "level": 0.95},
    }


def _weight(p_a: np.ndarray, p_b: np.ndarray) -> float:
    """The grid weight ``w`` of ``w * a + (1 - w) * b`` with the best mean log-likelihood of the true
    actions (``p_a``, ``p_b``: each model's probability of them), as the mixture family fits it."""
    from perfspec.learn.families.mixture import WEIGHTS

    best, best_ll = 0.0, -np.inf
    for weight in WEIGHTS:
        ll = float(np.mean(np.log(weight * p_a + (1 - weight) * p_b + 1e-12))) if len(p_a) else 0.0
        if ll > best_ll + 1e-12:
            best, best_ll = weight, ll
    return best


def what_inputs_add(dataset: Dataset, order: int) -> dict[str, Any]:
    """Test top-1/top-5 of the n-gram family given more inputs, each added by an interpolation whose
    weight is fitted on validation: the actor's own window (the pooled per-actor n-gram), + the actor's
    identity (an n-gram of that actor's actions alone), + the global context (the global bigram)."""
    assert dataset.layout is not None
    layout, classes, window = dataset.layout, len(dataset.vocab), dataset.window
    pooled = NGram.fit(dataset.sequences("train"), classes, window, order)
    global_model, log_ids = global_bigram(dataset)
    own: dict[int, NGram] = {}
    for code in range(len(layout.names)):
        mine = [dataset.ids[a:b] for a, b in dataset.segments["train"] if layout.codes[a] == code]
        if sum(len(part) for part in mine) > 1:
            own[code] = NGram.fit(mine, classes, window, order)

    def inputs(split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x, y = dataset.windows(split)
        positions = dataset.positions(split)
        p_pooled = pooled.probabilities(x)
        p_own = p_pooled.copy()  # an actor without training actions keeps the pooled answer
        codes = layout.codes[positions]
        for code, model in own.items():
            rows = codes == code
            if rows.any():
                p_own[rows] = model.probabilities(x[rows])
        p_global = global_probabilities(dataset, global_model, log_ids, split)
        return y, {"pooled": p_pooled, "own": p_own, "global": p_global}

    y_val, val = inputs("val")
    y_test, test = inputs("test")
    known = y_val != 0
    truth = lambda p: p[np.flatnonzero(known), y_val[known]]  # noqa: E731 - a local formula
    w_identity = _weight(truth(val["own"]), truth(val["pooled"]))
    identity_val = w_identity * val["own"] + (1 - w_identity) * val["pooled"]
    w_global = _weight(truth(val["global"]), truth(val["pooled"]))
    w_both = _weight(truth(val["global"]), truth(identity_val))
    identity = w_identity * test["own"] + (1 - w_identity) * test["pooled"]
    variants = {
        "actor_window": test["pooled"],
        "actor_window+identity": identity,
        "actor_window+global_context": w_global * test["global"] + (1 - w_global) * test["pooled"],
        "actor_window+identity+global_context": w_both * test["global"] + (1 - w_both) * identity,
        "global_context_only": test["global"],
    }
    out: dict[str, Any] = {
        name: topk_from_ranks(target_ranks(p, y_test), (1, 5)) for name, p in variants.items()
    }
    out["weights"] = {"identity": w_identity, "global_context": w_global, "both_global": w_both}
    out["order"] = order
    return out


def actor_section(
    dataset: Dataset, scores: Mapping[str, ModelScores], candidate: str, reference: str
) -> dict[str, Any]:
    """The actor-stream keys of ``metrics.json``: ``test_global_reference``, ``unseen_actor_share``,
    ``test_unseen_actors``, ``per_actor`` (the busiest actors in the test part)."""
    assert dataset.layout is not None
    global_ranks = global_reference_ranks(dataset)
    order = log_positions(dataset)
    unseen = unseen_mask(dataset)
    streams = _stream_of_test(dataset)
    shown = [m for m in dict.fromkeys([candidate, reference]) if scores[m].test_ranks is not None]
    ranks = {m: np.asarray(scores[m].test_ranks) for m in shown}
    counts = np.bincount(streams, minlength=len(dataset.layout.names))
    busiest = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0][:TOP_ACTORS]
    per_actor = []
    for code in busiest:
        mine = streams == code
        row: dict[str, Any] = {
            "actor": str(dataset.layout.names[code]),
            "test_actions": int(mine.sum()),
            "seen_in_training": not bool(unseen[mine][0]),
        }
        for name, r in {**ranks, "global_reference": global_ranks}.items():
            row |= {f"{name}_top{k}": round(float(np.mean(r[mine] < k)), 4) for k in (1, 5)}
        per_actor.append(row)
    ngram_order = int(scores[reference].info.get("order", GLOBAL_ORDER))
    return {
        "inputs": what_inputs_add(dataset, ngram_order),
        "test_global_reference": {
            "ngram": topk_from_ranks(global_ranks, REFERENCE_KS),
            "order": GLOBAL_ORDER,
            "ci": {f"top{k}": block_bootstrap(global_ranks, k, order) for k in (1, 5)},
        },
        "unseen_actor_share": round(float(unseen.mean()), 4) if len(unseen) else 0.0,
        "unseen_actor_handling": UNSEEN_HANDLING,
        "test_unseen_actors": {
            name: topk_from_ranks(r[unseen], (1, 5)) if unseen.any() else None for name, r in ranks.items()
        },
        "per_actor": per_actor,
        "actors": {
            "total": len(dataset.layout.names),
            "in_test": int((counts > 0).sum()),
            "unknown_targets": int(np.sum(global_ranks == MISS)),
        },
    }
