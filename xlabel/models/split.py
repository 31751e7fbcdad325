"""Train/test splits that do not leak between neighbouring frames.

Frames of one scan are strongly correlated, so a random frame split overstates
accuracy. With several scans, whole scans are held out; with one scan,
contiguous blocks of frames are.

>>> train, test = split(["a"] * 4 + ["b"] * 4 + ["c"] * 4, test_size=0.34, seed=1)
>>> sorted(set(np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)[test]))
[np.str_('b')]
>>> split(10, test_size=0.2, n_blocks=5, seed=0)[1].tolist()  # one block of 2 frames
[8, 9]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ModelError

__all__ = ["split"]


def split(groups, test_size: float = 0.25, seed: int = 0, n_blocks: int = 10):
    """Return ``(train_indices, test_indices)`` (sorted int arrays).

    ``groups``: the scan of every frame (a sequence, or a ``frame_stats`` table whose
    ``scan`` column is used), or an int ``n`` for one scan of ``n`` frames.
    Several scans: about ``test_size`` of the scans (at least one, never all) go to
    test, whole. One scan: it is cut into ``n_blocks`` contiguous blocks and about
    ``test_size`` of the blocks (at least one) go to test.
    """
    if not 0 < test_size < 1:
        raise ModelError(f"test_size must be between 0 and 1, got {test_size}")
    rng = np.random.default_rng(seed)
    if isinstance(groups, (int, np.integer)):
        return _block_split(int(groups), test_size, rng, n_blocks)
    if isinstance(groups, pd.DataFrame):
        if "scan" not in groups.columns:
            raise ModelError("a table passed to split() needs a 'scan' column")
        groups = groups["scan"]
    codes, names = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), sort=True)
    if len(names) < 2:
        return _block_split(len(codes), test_size, rng, n_blocks)
    n_test = int(np.clip(round(test_size * len(names)), 1, len(names) - 1))
    test_groups = rng.choice(len(names), size=n_test, replace=False)
    is_test = np.isin(codes, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _block_split(n: int, test_size: float, rng, n_blocks: int):
    if n < 2:
        raise ModelError(f"cannot split {n} frame(s) into train and test")
    n_blocks = int(min(max(n_blocks, 2), n))
    edges = np.linspace(0, n, n_blocks + 1).round().astype(np.int64)
    n_test = int(np.clip(round(test_size * n_blocks), 1, n_blocks - 1))
    is_test = np.zeros(n, dtype=bool)
    for block in rng.choice(n_blocks, size=n_test, replace=False):
        is_test[edges[block]:edges[block + 1]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
