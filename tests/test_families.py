"""Model families: proper n-gram probabilities, the mixture weight, ranks with <unk> excluded, bundles."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from perfspec.learn.bundle import read_bundle, write_bundle
from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.families.frequency import MostFrequent
from perfspec.learn.families.mixture import Mixture
from perfspec.learn.families.ngram import NGram
from perfspec.learn.scoring import MISS, coverage_curve, target_ranks, topk_from_ranks
from perfspec.settings import DatasetSettings
from tests.synthetic import chain_actions


@pytest.fixture(scope="module")
def dataset():
    return dataset_from_actions(chain_actions(900, seed=4), DatasetSettings(window=4))


def test_ngram_gives_a_proper_distribution_for_seen_and_unseen_contexts(dataset) -> None:
    model = NGram.fit(dataset.sequences("train"), len(dataset.vocab), 4, order=3)
    seen = model.context_probabilities(dataset.ids[:3])
    unseen = model.context_probabilities([0, 0, 0])
    for p in (seen, unseen):
        assert p.sum() == pytest.approx(1.0) and (p > 0).all()  # smoothing: nothing is impossible
    assert model.discounts and all(0 < d < 1 for d in model.discounts)


def test_ngram_learns_the_chains_and_beats_most_frequent(dataset) -> None:
    x, y = dataset.windows("test")
    ngram = NGram.fit(dataset.sequences("train"), len(dataset.vocab), 4, order=3)
    frequent = MostFrequent.fit(dataset.sequences("train"), len(dataset.vocab), 4)
    ngram_top1 = topk_from_ranks(target_ranks(ngram.probabilities(x), y))["top1"]
    assert ngram_top1 > topk_from_ranks(target_ranks(frequent.probabilities(x), y))["top1"] + 0.2
    # inside a chain the next action is certain: the n-gram must know it
    chain = [dataset.vocab.id_of(a) for a in ("create_ns", "create_sa")]
    assert dataset.vocab.tokens[int(np.argmax(ngram.context_probabilities(chain)))] == "create_pods"


def test_ngram_matches_hand_computed_kneser_ney_on_a_tiny_sequence() -> None:
    seq = np.array([1, 2, 1, 2, 1, 3], dtype=np.int64)
    model = NGram.fit([seq], 4, window=2, order=2)
    # bigram counts after context (1,): 2 -> 2, 3 -> 1; D from counts {2:1... } falls back to 0.5
    d1, d0 = model.discounts[1], model.discounts[0]
    continuation = Counter({2: 1, 1: 1, 3: 1})  # distinct left neighbours of each action
    total = sum(continuation.values())
    unigram = np.full(4, 1 / 4) * (d0 * len(continuation) / total)
    for w, c in continuation.items():
        unigram[w] += max(c - d0, 0) / total
    expected = unigram * (d1 * 2 / 3)
    expected[2] += (2 - d1) / 3
    expected[3] += (1 - d1) / 3
    np.testing.assert_allclose(model.context_probabilities([1]), expected)


def test_ngram_and_most_frequent_round_trip_through_a_bundle(tmp_path: Path, dataset) -> None:
    x, _ = dataset.windows("test")
    for model in (
        NGram.fit(dataset.sequences("train"), len(dataset.vocab), 4, order=4),
        MostFrequent.fit(dataset.sequences("train"), len(dataset.vocab), 4),
    ):
        path = write_bundle(model, dataset.vocab, tmp_path / f"{model.family}.npz", {"name": model.family})
        loaded, vocab, info = read_bundle(path)
        assert vocab == dataset.vocab and info == {"name": model.family} and loaded.family == model.family
        np.testing.assert_allclose(loaded.probabilities(x), model.probabilities(x), rtol=1e-6)


def test_mixture_weight_is_fitted_on_validation_and_never_worse_there(dataset) -> None:
    x_val, y_val = dataset.windows("val")
    ngram = NGram.fit(dataset.sequences("train"), len(dataset.vocab), 4, order=3)
    frequent = MostFrequent.fit(dataset.sequences("train"), len(dataset.vocab), 4)
    mixture = Mixture.fit(frequent, ngram, x_val, y_val)  # a useless "neural" part gets little weight
    assert mixture.weight <= 0.2

    def loglik(model) -> float:
        keep = y_val != 0
        return float(np.mean(np.log(model.probabilities(x_val)[keep][np.arange(keep.sum()), y_val[keep]])))

    assert loglik(mixture) >= loglik(ngram) - 1e-9


def test_ranks_exclude_unk_and_count_unknown_targets_as_misses() -> None:
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.3, 0.6], [0.5, 0.2, 0.3]])
    ranks = target_ranks(scores, np.array([1, 1, 0]))
    assert ranks[0] == 0  # <unk> scored highest but is no prediction: id 1 ties id 2, lower id first
    assert ranks[1] == 1 and ranks[2] == MISS
    assert coverage_curve(ranks, 3) == pytest.approx([1 / 3, 2 / 3, 2 / 3])
