"""Train/test splits that do not leak between neighbouring frames, and that cannot lie.

Frames of one scan are strongly correlated, so a random frame split overstates
accuracy. With several scans, whole scans are held out (scikit-learn's
``GroupShuffleSplit``, or ``StratifiedGroupKFold`` when labels are given); with one
scan, contiguous blocks of frames are.

Given ``labels``, both sides hold every labeled class: whole scans when some choice of
scans allows it, else contiguous blocks within scans (with a :class:`HeldOutWarning`
saying why), else a ModelError naming the class and the scans that hold it. A test set
without a bad frame would report a perfect balanced accuracy that means nothing.

>>> groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
>>> train, test = split(groups, test_size=0.34, seed=1)
>>> len(set(np.array(groups)[test])), len(set(np.array(groups)[train]))
(1, 2)
>>> split(10, test_size=0.2, n_blocks=5, seed=0)[1].tolist()  # one block of 2 frames
[8, 9]
>>> labels = ["good"] * 8 + ["bad"] * 2 + ["good"] * 8 + ["bad"] * 2
>>> train, test = split(20, test_size=0.25, labels=labels, seed=0)
>>> [sorted(map(str, set(np.array(labels)[side]))) for side in (test, train)]
[['bad', 'good'], ['bad', 'good']]
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from ..errors import ModelError
from .evaluate import HeldOutWarning

__all__ = ["split", "HeldOutWarning"]

#: Finer block sizes tried (multiples of ``n_blocks``) before giving up on a class.
_BLOCK_REFINEMENTS = (1, 2, 4, 8)
#: Refined blocks are at least this long: neighbouring frames are nearly copies of each
#: other, so held-out frames next to training frames would test little.
MIN_BLOCK_FRAMES = 10


def split(groups, test_size: float = 0.25, seed: int = 0, n_blocks: int = 10, labels=None):
    """Return ``(train_indices, test_indices)`` (sorted int arrays).

    ``groups``: the scan of every frame (a sequence, or a ``frame_stats`` table whose
    ``scan`` column is used), or an int ``n`` for one scan of ``n`` frames.
    Several scans: about ``test_size`` of the scans (at least one, never all) go to
    test, whole. One scan: it is cut into ``n_blocks`` contiguous blocks and about
    ``test_size`` of the blocks (at least one) go to test.
    ``labels`` (optional; names or indices, ``-1``/``""`` unlabeled): every labeled
    class must then be on both sides (see the module docstring).
    """
    if not 0 < test_size < 1:
        raise ModelError(f"test_size must be between 0 and 1, got {test_size}")
    codes, names = _groups(groups)
    if labels is not None:
        label_codes, label_names = _label_codes(labels, len(codes))
        return _split_every_class(codes, names, label_codes, label_names, test_size, seed,
                                  n_blocks)
    if len(names) < 2:
        return _block_split(len(codes), test_size, np.random.default_rng(seed), n_blocks)
    n_test = int(np.clip(round(test_size * len(names)), 1, len(names) - 1))
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    train, test = next(splitter.split(codes, groups=codes))
    return np.sort(train), np.sort(test)


def _groups(groups):
    if isinstance(groups, (int, np.integer)):
        if groups < 2:
            raise ModelError(f"cannot split {groups} frame(s) into train and test")
        return np.zeros(int(groups), dtype=np.int64), np.array(["scan"], dtype=object)
    if isinstance(groups, pd.DataFrame):
        if "scan" not in groups.columns:
            raise ModelError("a table passed to split() needs a 'scan' column")
        groups = groups["scan"]
    codes, names = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), sort=True)
    return codes, np.asarray(names, dtype=object)


def _label_codes(labels, n):
    values = pd.Series(np.asarray(labels, dtype=object).ravel())
    if len(values) != n:
        raise ModelError(f"{len(values)} labels for {n} frames")
    unlabeled = values.isna() | values.isin(["", -1])
    codes = np.full(n, -1, dtype=np.int64)
    codes[~unlabeled.to_numpy()], names = pd.factorize(values[~unlabeled], sort=True)
    return codes, np.asarray(names, dtype=object)


def _split_every_class(codes, names, labels, label_names, test_size, seed, n_blocks):
    if len(names) >= 2:
        found = _scan_split(codes, labels, test_size, seed)
        if found is not None:
            return found
    found = _blocks_every_class(codes, labels, test_size, seed, n_blocks)
    if found is None:
        raise ModelError(_impossible(codes, names, labels, label_names))
    if len(names) >= 2:
        warnings.warn("no choice of whole scans puts every class on both sides of the split "
                      f"({_where_classes(codes, names, labels, label_names)}): held out "
                      "contiguous blocks within scans instead, an optimistic test; label every "
                      "class in more scans", HeldOutWarning, stacklevel=3)
    return found


def _scan_split(codes, labels, test_size, seed):
    """Whole-scan folds of StratifiedGroupKFold; the first holding every class on both sides."""
    labeled = labels >= 0
    n_scans = len(np.unique(codes[labeled]))
    if n_scans < 2:
        return None
    needed, counts = np.unique(labels[labeled], return_counts=True)
    # sklearn refuses more folds than the most common class has frames
    n_splits = int(min(np.clip(round(1 / test_size), 2, n_scans), counts.max()))
    if n_splits < 2:
        return None
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    needed = set(needed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" notes
        for _, test in folds.split(codes[labeled], labels[labeled], groups=codes[labeled]):
            is_test = np.isin(codes, np.unique(codes[labeled][test]))
            if _covers(labels, is_test, needed):
                return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return None


def _blocks_every_class(codes, labels, test_size, seed, n_blocks):
    """Contiguous blocks within each scan, chosen so both sides hold every class."""
    needed = set(np.unique(labels[labels >= 0]))
    rng = np.random.default_rng(seed)
    tried = None
    for factor in _BLOCK_REFINEMENTS:
        block = _block_ids(codes, n_blocks, factor)
        if tried is not None and np.array_equal(block, tried):
            continue
        tried = block
        is_test = _choose_blocks(block, labels, needed, test_size, rng)
        if is_test is not None:
            return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return None


def _block_ids(codes, n_blocks, factor=1):
    """Block number of every frame: each scan cut into ``n_blocks`` contiguous blocks, or
    ``factor`` times more where blocks stay at least :data:`MIN_BLOCK_FRAMES` long."""
    block = np.empty(len(codes), dtype=np.int64)
    offset = 0
    for scan in np.unique(codes):
        where = np.flatnonzero(codes == scan)
        finer = min(n_blocks * factor, max(n_blocks, len(where) // MIN_BLOCK_FRAMES))
        k = int(min(max(finer, 2), len(where)))
        edges = np.linspace(0, len(where), k + 1).round().astype(np.int64)
        block[where] = offset + np.searchsorted(edges, np.arange(len(where)), side="right") - 1
        offset += k
    return block


def _choose_blocks(block, labels, needed, test_size, rng):
    """Seeded greedy choice: first a block for each class (rarest first) that leaves the class
    in train too, then random blocks up to ``test_size`` that keep every class in train."""
    labeled = labels >= 0
    holds = {c: set(np.unique(block[labeled & (labels == c)])) for c in needed}
    n_blocks = int(block.max()) + 1
    n_test = int(np.clip(round(test_size * n_blocks), 1, n_blocks - 1))
    chosen: set = set()
    for c in sorted(needed, key=lambda c: len(holds[c])):
        if holds[c] & chosen:
            continue
        options = [b for b in rng.permutation(sorted(holds[c]))
                   if all(holds[d] - chosen - {b} for d in needed)]
        if not options:
            return None
        chosen.add(int(options[0]))
    for b in rng.permutation(n_blocks):
        if len(chosen) >= n_test:
            break
        if b not in chosen and all(holds[d] - chosen - {b} for d in needed):
            chosen.add(int(b))
    return np.isin(block, sorted(chosen))


def _covers(labels, is_test, needed) -> bool:
    labeled = labels >= 0
    return (set(np.unique(labels[labeled & is_test])) >= needed
            and set(np.unique(labels[labeled & ~is_test])) >= needed)


def _where_classes(codes, names, labels, label_names) -> str:
    """E.g. "class 'bad': 100 frames in k11.nxs (frames 0-99)"."""
    parts = []
    for c in np.unique(labels[labels >= 0]):
        places = []
        for s in np.unique(codes[labels == c]):
            frames = np.flatnonzero(codes == s)
            inside = np.flatnonzero(labels[frames] == c)
            places.append(f"{names[s]} (frames {inside.min()}-{inside.max()})")
        parts.append(f"class {label_names[c]!r}: {int((labels == c).sum())} frames in "
                     f"{', '.join(places)}")
    return "; ".join(parts)


def _impossible(codes, names, labels, label_names) -> str:
    return ("cannot hold out frames of every class and still train on them: "
            f"{_where_classes(codes, names, labels, label_names)}; a class needs labeled "
            "frames in at least two scans or two separate places of one scan")


def _block_split(n: int, test_size: float, rng, n_blocks: int):
    """Contiguous blocks of one scan (scikit-learn has no seeded choice of contiguous blocks)."""
    if n < 2:
        raise ModelError(f"cannot split {n} frame(s) into train and test")
    n_blocks = int(min(max(n_blocks, 2), n))
    edges = np.linspace(0, n, n_blocks + 1).round().astype(np.int64)
    n_test = int(np.clip(round(test_size * n_blocks), 1, n_blocks - 1))
    is_test = np.zeros(n, dtype=bool)
    for block in rng.choice(n_blocks, size=n_test, replace=False):
        is_test[edges[block]:edges[block + 1]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
