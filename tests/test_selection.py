"""Blocked CV folds (disjoint, gapped, inside the first 90 %), paired differences and the candidate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfspec.learn.dataset import dataset_from_actions
from perfspec.learn.promotion import decide
from perfspec.learn.selection import beyond_noise, choose_candidate, cv_segments, fold_view, paired_difference
from perfspec.settings import DatasetSettings
from tests.synthetic import chain_actions


@pytest.mark.parametrize("fold", range(5))
def test_folds_are_disjoint_gapped_and_never_touch_the_holdout(fold: int) -> None:
    dataset = dataset_from_actions(chain_actions(3000, seed=1), DatasetSettings(window=6))
    parts = cv_segments(dataset, 5, fold)
    holdout_start = dataset.segments["test"][0][0]
    covered = {
        name: set().union(*(set(range(a, b)) for a, b in segs)) if segs else set()
        for name, segs in parts.items()
    }
    assert not covered["train"] & covered["test"] and not covered["train"] & covered["val"]
    assert max(max(c) for c in covered.values() if c) < holdout_start
    held = covered["test"] | covered["val"]
    for position in covered["train"]:  # a gap of `window` actions between training and held-out blocks
        assert all(abs(position - h) > dataset.window for h in (min(held), max(held)))
    view = fold_view(dataset, 5, fold)
    assert view.vocab is dataset.vocab and view.fingerprint.endswith(f"cv5-{fold}")
    assert len(view.windows("test")[1]) > 0


def test_paired_difference_and_noise_rule() -> None:
    diff = paired_difference([0.60, 0.62, 0.58, 0.64, 0.61], [0.55, 0.58, 0.55, 0.60, 0.57])
    assert diff["mean"] == pytest.approx(0.04) and diff["se"] == pytest.approx(0.0031623, rel=1e-4)
    assert beyond_noise(diff, 2.0)
    noisy = paired_difference([0.70, 0.50, 0.66, 0.52, 0.60], [0.55, 0.58, 0.55, 0.60, 0.57])
    assert noisy["mean"] > 0 and not beyond_noise(noisy, 2.0)
    assert math.isnan(paired_difference([0.5], [0.4])["se"])
    assert choose_candidate({"a": {"top5": {"mean": 0.5}}, "b": {"top5": {"mean": 0.5}}}, 5) == "a"


def test_promotion_rule_needs_a_gain_beyond_noise() -> None:
    rng = np.random.default_rng(0)
    champion = rng.random(1000) < 0.6
    better = champion | (rng.random(1000) < 0.2)  # wins many windows, loses none
    assert decide(better, champion, 10, 2.0, 0.0).promoted
    assert not decide(champion, champion, 10, 2.0, 0.0).promoted  # a tie never moves the alias
    one_more = champion.copy()
    one_more[np.flatnonzero(~champion)[0]] = True  # one window better: noise
    assert not decide(one_more, champion, 10, 2.0, 0.0).promoted
    assert not decide(better, champion, 10, 2.0, 0.5).promoted  # the margin still applies
