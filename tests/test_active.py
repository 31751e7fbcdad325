"""xlabel.active: what to label next (uncertainty with diversity), learning curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlabel.active import (ActiveError, first_batch, heldout_scores, learning_curve,
                           next_to_label, uncertainty)
from xlabel.features import frame_stats
from xlabel.synth import make_fault_task

COLUMNS = ["flux_rel", "flux_rank", "frac_saturated", "frac_zero"]


@pytest.fixture(scope="module")
def faults():
    """Pool (4 scans) and held-out scans (2, exposures the pool never had) of the fault task."""
    task = make_fault_task(n_train=4, n_test=2, n_frames=500, seed=3)
    parts = []
    for scans in (task.train, task.test):
        table = frame_stats([s.source() for s in scans], progress=False)
        table["fault"] = np.concatenate([s.truth["fault"] for s in scans])
        parts.append(table)
    return parts


def kmeans_started(pool, n=12):
    """The pool's true faults, and labels holding only a K-means start of ``n`` frames."""
    truth = pool["fault"].to_numpy(object)
    labels = np.full(len(pool), "", dtype=object)
    start = first_batch(pool[COLUMNS], n)
    labels[start] = truth[start]
    return truth, labels


def test_uncertain_picks_sit_on_the_boundary_more_than_random_picks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4000, 2))
    margin = x[:, 0] - 0.5 * x[:, 1]
    labels = np.where(margin > 0.3, "bad", "good").astype(object)
    labels[rng.random(4000) < 0.95] = ""
    near = np.abs(margin - 0.3) < 0.25                     # ~17 % of the unlabeled frames
    base = near[labels == ""].mean()
    plain = next_to_label(x, labels, ("good", "bad"), n=20, diversity=False)["row"].to_numpy()
    spread = next_to_label(x, labels, ("good", "bad"), n=20)["row"].to_numpy()
    assert near[plain].mean() >= 0.75
    # diversity trades some of that for coverage (the forest is also unsure in the sparse tails)
    assert near[spread].mean() >= 1.5 * base


def test_uncertain_picks_find_the_rare_faults(faults):
    pool, _ = faults
    truth, labels = kmeans_started(pool)
    picks = next_to_label(pool[COLUMNS], labels, n=24)["row"].to_numpy()
    expected_at_random = 24 * (truth[labels == ""] != "good").mean()      # ~2.3
    assert (truth[picks] != "good").sum() >= 4 * expected_at_random


def test_diversity_keeps_near_duplicates_out_of_a_batch():
    """Ten tight groups of 40 near-copies sit on the boundary: one pick per group, not 10
    copies of the most uncertain one."""
    rng = np.random.default_rng(5)
    background = rng.normal(size=(3000, 2)) * 2
    centres = np.c_[np.zeros(10), np.linspace(-3, 3, 10)]
    copies = np.repeat(centres, 40, axis=0) + rng.normal(scale=1e-3, size=(400, 2))
    x = np.r_[background, copies]
    group = np.r_[np.full(3000, -1), np.repeat(np.arange(10), 40)]
    labels = np.full(len(x), "", dtype=object)
    known = np.flatnonzero((np.abs(background[:, 0]) > 0.5))[::10]
    labels[known] = np.where(x[known, 0] > 0, "bad", "good")
    plain = next_to_label(x, labels, ("good", "bad"), n=10, diversity=False)["row"].to_numpy()
    spread = next_to_label(x, labels, ("good", "bad"), n=10)["row"].to_numpy()
    in_groups = group[plain][group[plain] >= 0]
    assert len(in_groups) - len(set(in_groups)) >= 5     # the control: uncertainty alone piles up
    in_groups = group[spread][group[spread] >= 0]
    assert len(in_groups) == len(set(in_groups)) >= 4    # at most one copy of each group


def test_diversity_spreads_picks_over_beam_losses(faults):
    """On scans, frames next to each other (one beam loss) are near-duplicates."""
    pool, _ = faults
    truth, labels = kmeans_started(pool)

    def neighbours(rows):
        key = pool.iloc[np.sort(rows)][["scan", "frame"]].to_numpy()
        return sum(a[0] == b[0] and abs(a[1] - b[1]) <= 1 for a, b in zip(key[:-1], key[1:]))

    plain = next_to_label(pool[COLUMNS], labels, n=24, diversity=False)["row"].to_numpy()
    spread = next_to_label(pool[COLUMNS], labels, n=24)["row"].to_numpy()
    assert neighbours(spread) < neighbours(plain)


def test_kmeans_start_finds_more_classes_than_a_random_start(faults):
    pool, _ = faults
    truth = pool["fault"].to_numpy(object)
    found_kmeans = [len(set(truth[first_batch(pool[COLUMNS], 12, seed=s)])) for s in range(5)]
    rng = np.random.default_rng(0)
    found_random = [len(set(truth[rng.choice(len(pool), 12, replace=False)])) for _ in range(5)]
    assert np.mean(found_kmeans) >= np.mean(found_random) + 1


def test_uncertainty_order_beats_random_order_on_held_out_scans(faults):
    pool, test = faults
    args = (pool[COLUMNS], pool["fault"], test[COLUMNS], test["fault"], test["scan"])
    curves = {order: [learning_curve(*args, order=order, start=12, batch=12, rounds=4, seed=s)
                      for s in (0, 1)] for order in ("random", "uncertainty")}
    final = {order: np.mean([c["balanced_accuracy"].iloc[-1] for c in runs])
             for order, runs in curves.items()}
    assert curves["random"][0]["labels"].tolist() == [12, 24, 36, 48, 60]
    assert final["uncertainty"] >= final["random"] + 0.15
    assert final["uncertainty"] > 0.85
    last = curves["uncertainty"][0].iloc[-1]
    assert last["classes_found"] == 4 and last["recall_saturated"] == 1.0


def test_cold_start_returns_medoids_with_no_score():
    x = np.r_[np.zeros((300, 2)), np.full((3, 2), 8.0)]
    picks = next_to_label(x, np.full(303, ""), ("good", "bad"), n=3)
    assert picks["score"].isna().all() and set(picks["suggested"]) == {"good"}
    assert (picks["row"] >= 300).any()      # the odd little cluster is in the start


def test_heldout_scores_name_the_worst_scan():
    class Fixed:
        def predict(self, x):
            return np.where(np.asarray(x)[:, 0] > 0, "bad", "good")
    x = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    scores = heldout_scores(Fixed(), x, ["bad", "good", "good", "good"], ["a", "a", "b", "b"],
                            ("good", "bad"))
    assert scores["worst_scan"] == "b" and scores["worst_scan_balanced_accuracy"] == 0.5
    assert scores["recall_bad"] == 1.0 and scores["recall_good"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("call, message", [
    (lambda x, y: next_to_label(x, y[:-1]), "labels for"),
    (lambda x, y: next_to_label(x, y, strategy="greed"), "unknown strategy"),
    (lambda x, y: next_to_label(x, y, ("good",)), "not among the classes"),
    (lambda x, y: next_to_label(x, np.full(len(y), "")), "no classes"),
    (lambda x, y: next_to_label(np.where(np.arange(len(y))[:, None] == 7, np.nan, x), y),
     "row 7"),
    (lambda x, y: next_to_label(x, np.where(y == "", "good", y)), "every frame is labeled"),
    (lambda x, y: learning_curve(x, y, x, y, y, order="best"), "unknown order"),
    (lambda x, y: learning_curve(x, np.where(y == "", "bad", y), x, np.where(y == "", "bad", y),
                                 y, classes=("good",)), "not among the classes"),
    (lambda x, y: uncertainty(np.ones((2, 2)), "gini"), "unknown strategy"),
    (lambda x, y: next_to_label(x, y, n=0), "positive integer"),
    (lambda x, y: first_batch(np.array([["a", "b"]] * 50)), "numeric"),
    (lambda x, y: next_to_label(pd.DataFrame({"scan": ["s"] * 50, "mean": x[:, 0]}), y),
     r"\['scan'\] are not"),
])
def test_bad_input_is_a_clear_error(call, message):
    x = np.random.default_rng(0).normal(size=(50, 2))
    y = np.where(x[:, 0] > 0, "bad", "good").astype(object)
    y[::2] = ""
    with pytest.raises(ActiveError, match=message):
        call(x, y)


def test_entropy_and_margin_agree_on_the_extremes():
    proba = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0, 0, 0], [0.5, 0.5, 0, 0]])
    assert uncertainty(proba, "entropy").round(3).tolist() == [1.0, 0.0, 0.5]
    assert uncertainty(proba, "margin").round(3).tolist() == [1.0, 0.0, 1.0]
