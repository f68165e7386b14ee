"""Baselines on tiny handmade sequences, where the right answer can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfspec.learn.baselines import MostFrequent, NGram, choose_ngram, ranks, topk_accuracy
from perfspec.learn.dataset import build_dataset
from perfspec.settings import DatasetSettings

# ids: 1=a 2=b 3=c 4=d ; vocabulary size 5 (0 is <unk>)
SEQ = np.array([1, 2, 3, 1, 2, 3, 1, 2, 4, 1, 2, 3])  # a b c a b c a b d a b c


def test_ranks_break_ties_towards_the_lower_id() -> None:
    scores = np.array([[0.1, 0.3, 0.3, 0.2, 0.1]])
    assert ranks(scores, 3).tolist() == [[1, 2, 3]]


def test_topk_accuracy_counts_hits_within_k() -> None:
    scores = np.array([[0.0, 0.5, 0.3, 0.2, 0.0], [0.0, 0.5, 0.3, 0.2, 0.0]])
    y = np.array([1, 3])
    assert topk_accuracy(scores, y, (1, 2, 3)) == {"top1": 0.5, "top2": 0.5, "top3": 1.0}


def test_most_frequent_ranks_by_training_counts() -> None:
    model = MostFrequent(5).fit([SEQ])
    np.testing.assert_allclose(model.distribution, np.array([0, 4, 4, 3, 1]) / 12)
    assert ranks(model.scores(np.zeros((2, 3), int)), 4).tolist() == [[1, 2, 3, 4]] * 2


def test_bigram_probabilities_match_counts() -> None:
    model = NGram(5, order=2).fit([SEQ])
    after_b = model.score_context([2])
    # after b: c three times, d once; others only through back-off (alpha * unigram), then normalised
    raw = 0.4 * np.array([0, 4, 4, 3, 1]) / 12
    raw[3], raw[4] = 3 / 4, 1 / 4
    np.testing.assert_allclose(after_b, raw / raw.sum())
    assert int(np.argmax(after_b)) == 3


def test_trigram_uses_the_longer_context_and_backs_off_when_unseen() -> None:
    model = NGram(5, order=3).fit([SEQ])
    # "a b" is followed by c (3x) and d (1x): c first
    assert ranks(model.score_context([1, 2])[None], 2).tolist() == [[3, 4]]
    # "d a" was seen once, followed by b
    assert int(np.argmax(model.score_context([4, 1]))) == 2
    # "c c" was never seen: back off to the bigram after c, which is always a
    assert int(np.argmax(model.score_context([3, 3]))) == 1
    # an unseen id everywhere: pure unigram ranking
    np.testing.assert_allclose(model.score_context([0, 0]), np.array([0, 4, 4, 3, 1]) / 12)


def test_ngram_never_counts_across_segments() -> None:
    model = NGram(5, order=2).fit([np.array([1, 2]), np.array([3, 4])])
    assert (2,) not in model.tables[1]  # b ends the first segment: never followed by c
    assert model.tables[1][(1,)] == {2: 1}
    assert model.tables[1][(3,)] == {4: 1}


def test_choose_ngram_picks_the_order_that_wins_on_validation() -> None:
    # b is followed by c after "a b" but by d after "c b": only an order >= 3 model gets both right
    train = np.array([1, 2, 3, 3, 2, 4] * 5)
    x_val = np.array([[1, 2], [3, 2]])
    y_val = np.array([3, 4])
    model, by_order = choose_ngram([train], x_val, y_val, 5, max_order=3)
    assert by_order[3] == 1.0 and by_order[2] < 1.0
    assert model.order == 3


def test_ngram_is_strong_on_the_paper_corpus(shared_data: Path) -> None:
    dataset = build_dataset(
        shared_data / "kubernetes-event-dataset" / "events-dataset.txt", DatasetSettings()
    )
    x_val, y_val = dataset.windows("val")
    model, _ = choose_ngram(dataset.sequences("train"), x_val, y_val, len(dataset.vocab), dataset.window + 1)
    x_test, y_test = dataset.windows("test")
    accuracy = topk_accuracy(model.scores(x_test), y_test)
    assert accuracy["top1"] > 0.9
    most = MostFrequent(len(dataset.vocab)).fit(dataset.sequences("train"))
    assert topk_accuracy(most.scores(x_test), y_test)["top1"] < 0.2


@pytest.mark.parametrize("order", [1, 2, 4])
def test_scores_are_distributions(order: int) -> None:
    model = NGram(5, order=order).fit([SEQ])
    scores = model.scores(np.array([[1, 2, 3], [0, 0, 0], [4, 1, 2]]))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    assert (scores >= 0).all()
