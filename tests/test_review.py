"""Suspected label errors (xlabel.review) on synthetic scans with known flipped labels,
and the ``xlabel review`` command run as a subprocess on real HDF5 files."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xlabel.features import frame_stats
from xlabel.review import (ReviewError, find_label_issues, flip_labels, next_to_label,
                           out_of_fold_proba,
                           rank_label_issues)
from xlabel.synth import make_scan, write_scan


@pytest.fixture(scope="module")
def noisy():
    """Six 1000-frame scans, 3 % of labels flipped (half near the class boundary)."""
    scans = [make_scan(1000, (32, 32), seed=s, name=f"s{s}") for s in range(6)]
    table = frame_stats([s.source() for s in scans], progress=False)
    labels, flipped = zip(*[flip_labels(s.truth, seed=s.seed) for s in scans])
    return table, np.concatenate(labels), np.concatenate(flipped)


def test_flipped_labels_are_ranked_first(noisy):
    table, labels, flipped = noisy
    issues = find_label_issues(table, labels)
    k = int(flipped.sum())
    ranked = flipped[issues["row"].to_numpy()]
    assert k == 180
    assert ranked[:k].mean() >= 0.80          # precision at k
    assert ranked[:2 * k].sum() >= 0.90 * k   # 90 % of the flipped frames within the top 2k
    assert (issues["suggested"] != issues["label"]).all()


def test_true_labels_are_not_flagged_much(noisy):
    table, _, _ = noisy
    truth = np.concatenate([make_scan(1000, (32, 32), seed=s).truth["label"] for s in range(6)])
    issues = find_label_issues(table, truth)
    assert issues["flagged"].mean() < 0.01


def test_folds_keep_whole_scans_apart():
    """A scan whose frames all carry the other class's label: a model that saw the scan
    would learn its labels; out of fold, every one of them is suspect."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    truth = np.where(x[:, 0] > 0, "bad", "good").astype(object)
    groups = np.repeat(np.arange(4), 100)
    x[300:, 1] += 50  # scan 3 sits apart in feature space...
    labels = truth.copy()
    labels[300:] = np.where(truth[300:] == "bad", "good", "bad")  # ...with every label wrong
    proba = out_of_fold_proba(x, labels, groups, ("good", "bad"))
    wrong = (proba[300:, 1] > 0.5) != (labels[300:] == "bad")
    assert wrong.mean() > 0.9


def test_unlabeled_frames_are_not_ranked():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [np.nan, np.nan]])
    issues = rank_label_issues(np.array(["good", "good", ""], dtype=object), proba,
                               ("good", "bad"))
    assert sorted(issues["row"]) == [0, 1]


def test_rank_refuses_unknown_labels_and_wrong_shapes():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ReviewError, match="not among"):
        rank_label_issues(np.array(["good", "godo"], dtype=object), proba, ("good", "bad"))
    with pytest.raises(ReviewError, match="shape"):
        rank_label_issues(np.array(["good"], dtype=object), proba, ("good", "bad"))


@pytest.mark.parametrize("labels, groups, message", [
    (["good", "bad"] * 50, [0] * 100, "at least 2 scans"),
    (["good"] * 100, [0, 1] * 50, "at least 2 classes"),
    (["good", "maybe"] * 50, [0, 1] * 50, "not among the classes"),
])
def test_clear_errors(labels, groups, message):
    x = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ReviewError, match=message):
        out_of_fold_proba(x, np.array(labels, dtype=object), np.array(groups), ("good", "bad"))


def test_cli_review_writes_suspects_most_suspicious_first(tmp_path):
    masters, csvs, flips = [], [], []
    for seed in (1, 2, 3):
        scan = make_scan(400, (32, 32), seed=seed, name=f"scan{seed}", losses=3, ramp_frames=10)
        masters.append(write_scan(scan, tmp_path / f"scan{seed}"))
        labels, flipped = flip_labels(scan.truth, seed=seed)
        csvs.append(tmp_path / f"scan{seed}.csv")
        pd.DataFrame({"frame": scan.truth["frame"], "label": labels}).to_csv(csvs[-1], index=False)
        flips.append(set(np.flatnonzero(flipped)))
    out = tmp_path / "suspects.csv"
    result = subprocess.run([sys.executable, "-m", "xlabel.cli", "review", *map(str, masters),
                             "--labels", *map(str, csvs), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    suspects = pd.read_csv(out, keep_default_na=False)
    assert list(suspects.columns) == ["frame", "scan", "label", "suggested", "score"]
    assert suspects["score"].is_monotonic_decreasing
    assert set(suspects["scan"]) == set(map(str, masters))
    k = sum(len(f) for f in flips)
    top = suspects.head(k)
    hits = sum(frame in flips[masters.index(next(m for m in masters if str(m) == scan))]
               for frame, scan in zip(top["frame"], top["scan"]))
    assert hits >= 0.6 * k


def test_cli_review_one_scan_is_a_clear_error(tmp_path):
    scan = make_scan(200, (32, 32), seed=1, name="only")
    master = write_scan(scan, tmp_path / "only")
    csv = tmp_path / "only.csv"
    scan.truth[["frame", "label"]].to_csv(csv, index=False)
    result = subprocess.run([sys.executable, "-m", "xlabel.cli", "review", str(master),
                             "--labels", str(csv), "--out", str(tmp_path / "s.csv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "at least 2 scans" in result.stderr.strip().splitlines()[-1]


def test_next_to_label_picks_uncertain_and_diverse_frames():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    truth = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "bad", "good").astype(object)
    labels = truth.copy()
    labels[rng.random(4000) < 0.9] = ""
    picks = next_to_label(x, labels, ("good", "bad"), n=12)
    rows = picks["row"].to_numpy()
    assert len(set(rows)) == 12 and (labels[rows] == "").all()
    distance = np.abs(x[:, 0] + 0.5 * x[:, 1])
    assert np.median(distance[rows]) < np.quantile(distance, 0.2)   # near the boundary
    assert np.ptp(x[rows, 1]) > 2.0                                 # spread along it
    assert picks["score"].is_monotonic_decreasing


def test_uncertainty_order_beats_random_order():
    """Accuracy after labeling 5 rounds x 8 frames: uncertainty order >= random order."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 2))
    truth = np.where(x[:, 0] - 0.3 * x[:, 1] > 0.4, "bad", "good").astype(object)
    start = np.concatenate([np.flatnonzero(truth == "bad")[:3], np.flatnonzero(truth == "good")[:3]])

    def accuracy(order):
        labels = np.full(3000, "", dtype=object)
        labels[start] = truth[start]
        for _ in range(5):
            rows = order(labels)
            labels[rows] = truth[rows]
        known = labels != ""
        fit = LogisticRegression().fit(x[known], labels[known])
        return (fit.predict(x) == truth).mean()

    active = accuracy(lambda labels: next_to_label(
        x, labels, ("good", "bad"), n=8, model=LogisticRegression())["row"].to_numpy())
    random = accuracy(lambda labels: rng.choice(np.flatnonzero(labels == ""), 8, replace=False))
    assert active >= random and active > 0.97


def xlabel_cli(*args):
    return subprocess.run([sys.executable, "-m", "xlabel.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def filtered_with_audit(tmp_path_factory):
    """A model trained on two scans, filtering a third with --audit 10 (twice, same seed)."""
    folder = tmp_path_factory.mktemp("audit")
    made = []
    for seed in (1, 2, 3):
        scan = make_scan(400, (32, 32), seed=seed, name=f"scan{seed}", losses=3, ramp_frames=10)
        master = write_scan(scan, folder / f"scan{seed}")
        csv = folder / f"scan{seed}.csv"
        scan.truth[["frame", "label"]].to_csv(csv, index=False)
        made.append((master, csv, scan.truth))
    # --test-size: the held-out split of train; flux_rel/frac_saturated separate the classes
    train = xlabel_cli("train", made[0][0], made[1][0], "--labels", made[0][1], made[1][1],
                       "--columns", "flux_rel,frac_saturated", "--out", folder / "model")
    assert train.returncode == 0, train.stderr
    runs = [xlabel_cli("filter", made[2][0], "--model", folder / "model", "--out",
                       folder / f"out{i}", "--audit", 10, "--no-progress") for i in (1, 2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return folder, made[2][2]


def test_filter_audit_writes_a_seeded_sample_of_dropped_and_kept(filtered_with_audit):
    folder, truth = filtered_with_audit
    audit = pd.read_csv(folder / "out1" / "scan3_audit.csv", keep_default_na=False)
    again = pd.read_csv(folder / "out2" / "scan3_audit.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(audit, again)
    result = pd.read_csv(folder / "out1" / "scan3_filter.csv", keep_default_na=False)
    assert (audit["keep"] == False).sum() == 10 and (audit["keep"] == True).sum() == 10  # noqa: E712
    assert audit["frame"].is_unique
    decided = result.set_index("frame").loc[audit["frame"], "keep"].to_numpy()
    assert (decided == audit["keep"].to_numpy()).all()
    assert (audit["judged"] == "").all() and set(audit["keep_class"]) == {"good"}


def test_audit_summary_of_a_judged_sample(filtered_with_audit):
    folder, truth = filtered_with_audit
    path = folder / "out1" / "scan3_audit.csv"
    audit = pd.read_csv(path, keep_default_na=False)
    judged = truth.set_index("frame").loc[audit["frame"], "label"].to_numpy().copy()
    judged[-1] = ""                                  # one frame not judged yet
    audit["judged"] = judged
    audit.to_csv(path, index=False)
    result = xlabel_cli("audit", path)
    assert result.returncode == 0, result.stderr
    import json
    summary = json.loads(path.with_suffix(".summary.json").read_text())
    dropped = audit[~audit["keep"]]
    kept = audit[audit["keep"] & (audit["judged"] != "")]
    assert summary["false_reject"]["errors"] == int((dropped["judged"] == "good").sum())
    assert summary["false_keep"]["judged"] == len(kept) == 9
    assert summary["false_keep"]["errors"] == int((kept["judged"] != "good").sum())
    assert summary["not_judged"] == 1
    low, high = summary["false_reject"]["ci95"]
    assert 0 <= low <= summary["false_reject"]["rate"] <= high <= 1 and high > 0.2  # n = 10
    assert "false-reject" in result.stdout and "95% CI" in result.stdout

    audit.loc[3, "judged"] = "godo"                  # a typo is an error naming the line
    audit.to_csv(path, index=False)
    result = xlabel_cli("audit", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "line 5" in result.stderr and "'godo'" in result.stderr
