"""Spot finding: candidate pixels, DBSCAN into spots, per-frame spot counts.

A frame's Bragg spots (or any compact bright blobs) are found in three steps:

1. **Background and noise.** A robust local background: the median of each
   ``tile`` x ``tile`` block of valid pixels, smoothed by a 3x3 median over the
   blocks and interpolated bilinearly back to every pixel (the mesh-median of
   SExtractor / photutils ``Background2D``; scipy's ``median_filter`` with a 9x9
   window alone costs 9x this whole step: BENCHMARKS.md, spot finding). The noise is
   ``1.4826 * MAD`` of each block, interpolated the same way; for integer
   (counting) data it is at least ``sqrt(background + 1)``, the Poisson noise.
   The significance of a pixel is ``z = (value - background) / noise``.
2. **Candidate pixels**, one of two selections:

   - ``method="threshold"``: ``z > k`` (default ``k = 4``);
   - ``method="unet"``: a small U-Net (``xlabel.models.unet``, trained with focal
     loss) reads the significance map and keeps the pixels it calls spot with
     probability ``>= model.threshold``; it learns to ignore rings and noise.

   Either way, invalid pixels (:func:`xlabel.io.invalid_pixels`: pixel mask, gap
   and defect values) and hot pixels never become candidates, and isolated
   candidates (no candidate among their 8 neighbours) are dropped. Hot pixels
   (``hot_pixels="auto"``): pixels that are candidates in at least half of up to
   32 frames sampled evenly over the scan and form groups of at most 2 pixels
   (so persistent rings or a static spot pattern are not taken for hot pixels).
3. **DBSCAN** (scikit-learn) on the candidates' coordinates (``eps`` 1.5 pixels,
   ``min_samples`` 3; frames never share a cluster) gives the spots, one row each:
   ``frame``, ``y``, ``x`` (centroid weighted by the counts above background),
   ``intensity`` (counts above background summed over the spot's pixels),
   ``pixels`` (how many).

The scan is streamed block by block (memory does not grow with its length).
``frame_stats(..., spots=True)`` adds the per-frame ``n_spots``,
``spot_intensity`` and ``spot_max`` columns (:func:`spot_columns`).

>>> from xlabel.synth import make_spot_scan
>>> scan = make_spot_scan(n_frames=4, frame_shape=(64, 64), seed=1, rings=(0, 0))
>>> table = find_spots(scan.source(), progress=False)
>>> list(table.columns)
['frame', 'y', 'x', 'intensity', 'pixels']
>>> result = match_spots(table, scan.spots)
>>> result["n_true"], result["recall"], result["false_spots"]
(17, 1.0, 0)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import FeatureError, XLabelError
from .io.base import ArraySource, FrameSource, invalid_pixels

__all__ = ["find_spots", "significance", "select_candidates", "cluster_candidates",
           "estimate_hot_pixels", "match_spots", "tune_threshold", "spot_columns", "SPOT_COLUMNS",
           "FRAME_COLUMNS", "METHODS"]

#: Columns of the spot table returned by :func:`find_spots`.
SPOT_COLUMNS = ["frame", "y", "x", "intensity", "pixels"]
#: Per-frame columns added by ``frame_stats(..., spots=...)``.
FRAME_COLUMNS = ["n_spots", "spot_intensity", "spot_max"]
METHODS = ("threshold", "unet")

_HOT_SAMPLE = 32       # frames sampled to find hot pixels
_HOT_MIN_FRAMES = 8    # fewer frames than this: no persistence test
_HOT_FRACTION = 0.5    # candidate in at least this fraction of the sampled frames
_MAD_TO_SIGMA = 1.4826


# -- step 1: background, noise, significance ------------------------------------------

def significance(stack, invalid=None, *, tile: int = 8, counting: bool | None = None):
    """Background, noise and significance maps of a stack of frames.

    ``stack``: ``(n, H, W)`` (or one ``(H, W)`` frame); ``invalid``: boolean mask of
    the same shape (or ``(H, W)``), True = excluded; ``counting``: integer photon
    counts, so the noise is at least ``sqrt(background + 1)`` (default: True for
    integer dtypes). Returns ``(z, background, noise)`` as float32 arrays of the
    stack's shape; ``z`` is 0 on invalid pixels.

    >>> import numpy as np
    >>> frame = np.random.default_rng(0).poisson(20, (1, 32, 32)).astype(np.uint16)
    >>> frame[0, 10, 10] += 200
    >>> z, background, noise = significance(frame)
    >>> bool(z[0, 10, 10] > 20), bool(abs(float(np.median(background)) - 20) < 2)
    (True, True)
    """
    stack = np.asarray(stack)
    single = stack.ndim == 2
    stack = stack[None] if single else stack
    if stack.ndim != 3:
        raise FeatureError(f"expected frames (n, H, W), got an array of shape {stack.shape}")
    if counting is None:
        counting = np.issubdtype(stack.dtype, np.integer)
    values = stack.astype(np.float32)
    bad = ~np.isfinite(values)
    if invalid is not None:
        bad |= np.broadcast_to(np.asarray(invalid, bool), values.shape)
    values[bad] = np.nan
    med, mad = _tile_stats(values, int(tile))
    background = _upsample(med, values.shape[1:], int(tile))
    noise = _upsample(mad, values.shape[1:], int(tile)) * _MAD_TO_SIGMA
    if counting:
        np.maximum(noise, np.sqrt(np.maximum(background, 0) + 1), out=noise)
    else:
        np.maximum(noise, 1e-6 * (np.abs(background) + 1), out=noise)
    z = (values - background) / noise
    z[bad] = 0
    if single:
        return z[0], background[0], noise[0]
    return z, background, noise


def _tile_stats(values, tile):
    """Median and MAD of each tile of valid pixels, gaps filled from the nearest tile,
    then a 3x3 median over the tiles (robust to a tile taken by a spot)."""
    import warnings

    from scipy import ndimage

    n, h, w = values.shape
    th, tw = -(-h // tile), -(-w // tile)
    padded = np.full((n, th * tile, tw * tile), np.nan, np.float32)
    padded[:, :h, :w] = values
    blocks = padded.reshape(n, th, tile, tw, tile).transpose(0, 1, 3, 2, 4).reshape(n, th, tw, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN tiles: filled below
        med = np.nanmedian(blocks, axis=-1)
        mad = np.nanmedian(np.abs(blocks - med[..., None]), axis=-1)
    med, mad = _fill_empty_tiles(med), _fill_empty_tiles(mad)
    if min(th, tw) >= 3:
        med = ndimage.median_filter(med, size=(1, 3, 3), mode="nearest")
        mad = ndimage.median_filter(mad, size=(1, 3, 3), mode="nearest")
    return med, mad


def _fill_empty_tiles(grid):
    """Replace NaN tiles (no valid pixel) by the nearest valid tile; 0 if none is valid."""
    from scipy import ndimage

    out = grid.copy()
    for i in range(len(out)):
        empty = np.isnan(out[i])
        if not empty.any():
            continue
        if empty.all():
            out[i] = 0
            continue
        nearest = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
        out[i] = out[i][tuple(nearest)]
    return out


def _interpolation_matrix(size, tile, n_tiles):
    """(size, n_tiles) bilinear weights from tile centres to pixel centres (clamped at edges)."""
    position = np.clip((np.arange(size) + 0.5) / tile - 0.5, 0, n_tiles - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_tiles - 1)
    frac = (position - low).astype(np.float32)
    matrix = np.zeros((size, n_tiles), np.float32)
    np.add.at(matrix, (np.arange(size), low), 1 - frac)
    np.add.at(matrix, (np.arange(size), high), frac)
    return matrix


def _upsample(grid, shape, tile):
    rows = _interpolation_matrix(shape[0], tile, grid.shape[1])
    cols = _interpolation_matrix(shape[1], tile, grid.shape[2])
    return (rows @ grid @ cols.T).astype(np.float32)


# -- step 2: candidate pixels -----------------------------------------------------------

def select_candidates(z, invalid=None, *, method="threshold", k: float = 4.0, model=None,
                      hot=None, drop_isolated: bool = True):
    """Boolean ``(n, H, W)`` candidate pixels from a significance map ``z`` (see module doc).

    ``method="threshold"``: ``z > k``. ``method="unet"``: ``model.select(z)`` (a
    :class:`xlabel.models.unet.SpotSelector`). Invalid pixels, ``hot`` pixels
    (``(H, W)`` mask) and, with ``drop_isolated``, candidates without a candidate
    neighbour are removed.

    >>> import numpy as np
    >>> z = np.zeros((1, 5, 5)); z[0, 1, 1:3] = 9; z[0, 4, 4] = 9   # a pair and a lone pixel
    >>> select_candidates(z).sum(), select_candidates(z, drop_isolated=False).sum()
    (np.int64(2), np.int64(3))
    """
    z = np.asarray(z)
    if method == "threshold":
        chosen = z > k
    elif method == "unet":
        if model is None or not hasattr(model, "select"):
            raise FeatureError("method='unet' needs model=, a SpotSelector from "
                               "xlabel.models.unet.train_spot_unet")
        chosen = np.asarray(model.select(z), bool)
    else:
        raise FeatureError(f"method must be one of {METHODS}, got {method!r}")
    return _clean(chosen, invalid, hot, drop_isolated)


def _clean(chosen, invalid, hot, drop_isolated):
    """Remove invalid and hot pixels, and (``drop_isolated``) candidates without neighbours."""
    from scipy import ndimage

    if invalid is not None:
        chosen &= ~np.broadcast_to(np.asarray(invalid, bool), chosen.shape)
    if hot is not None:
        chosen &= ~np.asarray(hot, bool)
    if drop_isolated and chosen.any():
        neighbours = ndimage.convolve(chosen.astype(np.uint8), np.ones((1, 3, 3), np.uint8),
                                      mode="constant")
        chosen &= neighbours > 1
    return chosen


def estimate_hot_pixels(source, *, tile: int = 8, k: float = 4.0, sample: int = _HOT_SAMPLE,
                        fraction: float = _HOT_FRACTION):
    """Hot pixels of a scan: ``(H, W)`` mask, or None when too few frames to tell.

    A pixel is hot when it is a threshold candidate (``z > k``) in at least
    ``fraction`` of up to ``sample`` frames taken evenly over the scan, and the
    persistent pixels it belongs to form a group of at most 2 pixels.
    """
    from scipy import ndimage

    n = len(source)
    if n < _HOT_MIN_FRAMES:
        return None
    index = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(int))
    stack = source[index]
    invalid = invalid_pixels(stack, source)
    z, _, _ = significance(stack, invalid, tile=tile)
    persistent = (z > k).mean(axis=0) >= fraction
    if not persistent.any():
        return None
    groups, count = ndimage.label(persistent, structure=np.ones((3, 3)))
    sizes = np.bincount(groups.ravel(), minlength=count + 1)
    hot = persistent & (sizes[groups] <= 2)
    return hot if hot.any() else None


# -- step 3: DBSCAN into spots ------------------------------------------------------------

def cluster_candidates(candidates, excess, *, first_frame: int = 0, eps: float = 1.5,
                       min_samples: int = 3) -> pd.DataFrame:
    """DBSCAN of candidate pixel coordinates into a spot table (:data:`SPOT_COLUMNS`).

    ``candidates``: boolean ``(n, H, W)``; ``excess``: counts above background, same
    shape; frame numbers start at ``first_frame``. One DBSCAN call per block: frames
    are stacked along y with a gap wider than ``eps``, so no cluster spans two frames.

    >>> import numpy as np
    >>> cand = np.zeros((2, 8, 8), bool); cand[1, 2:4, 2:4] = True
    >>> cluster_candidates(cand, np.ones((2, 8, 8)), first_frame=10).to_dict("records")
    [{'frame': 11, 'y': 2.5, 'x': 2.5, 'intensity': 4.0, 'pixels': 4}]
    """
    from sklearn.cluster import DBSCAN

    frame, y, x = np.nonzero(candidates)
    if frame.size == 0:
        return _empty_table()
    stride = candidates.shape[1] + 2 * int(np.ceil(eps)) + 1
    points = np.column_stack([frame * stride + y, x]).astype(np.float64)
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(points)
    keep = labels >= 0
    if not keep.any():
        return _empty_table()
    labels, frame, y, x = labels[keep], frame[keep], y[keep], x[keep]
    value = np.asarray(excess)[frame, y, x].astype(np.float64)
    weight = np.maximum(value, 0)
    count = labels.max() + 1
    pixels = np.bincount(labels, minlength=count)
    total = np.bincount(labels, weights=weight, minlength=count)
    safe = np.where(total > 0, total, 1.0)
    mean_y = np.bincount(labels, weights=y, minlength=count) / pixels
    mean_x = np.bincount(labels, weights=x, minlength=count) / pixels
    _, first = np.unique(labels, return_index=True)  # every pixel of a cluster: same frame
    table = pd.DataFrame({
        "frame": (frame[first] + first_frame).astype(np.int64),
        "y": np.where(total > 0, np.bincount(labels, weights=weight * y, minlength=count) / safe, mean_y),
        "x": np.where(total > 0, np.bincount(labels, weights=weight * x, minlength=count) / safe, mean_x),
        "intensity": np.bincount(labels, weights=value, minlength=count),
        "pixels": pixels.astype(np.int64),
    })
    return table.sort_values(["frame", "y", "x"], kind="stable").reset_index(drop=True)


def _empty_table():
    return pd.DataFrame({"frame": np.zeros(0, np.int64), "y": np.zeros(0), "x": np.zeros(0),
                         "intensity": np.zeros(0), "pixels": np.zeros(0, np.int64)})


# -- the whole scan -------------------------------------------------------------------------

def find_spots(source, method: str = "threshold", *, model=None, k: float = 4.0, tile: int = 8,
               eps: float = 1.5, min_samples: int = 3, hot_pixels="auto",
               drop_isolated: bool = True, chunk_frames: int | None = None, progress: bool = True,
               return_info: bool = False):
    """Spots of every frame of a scan, as a DataFrame (:data:`SPOT_COLUMNS`, one row per spot).

    ``source``: a :class:`~xlabel.io.FrameSource`, a path (``open_scan``) or an array
    ``(n, H, W)`` / ``(H, W)``. ``method``: ``"threshold"`` (``z > k``) or ``"unet"``
    (needs ``model=``, a ``SpotSelector`` from :func:`xlabel.models.unet.train_spot_unet`).
    ``hot_pixels``: ``"auto"`` (estimated, see :func:`estimate_hot_pixels`), None, or an
    ``(H, W)`` mask. ``tile``: background mesh size; ``eps``/``min_samples``: DBSCAN.
    ``chunk_frames``: frames per block read (results do not depend on it).
    ``return_info=True`` also returns a dict: ``frames``, ``candidates`` (pixels sent
    to DBSCAN), ``select_s`` (background + selection seconds), ``dbscan_s``, ``hot_pixels``.

    Raises :class:`~xlabel.errors.FeatureError` (naming the file, dataset and frame)
    when a block cannot be read or has the wrong shape.

    >>> import numpy as np
    >>> frames = np.random.default_rng(1).poisson(10, (3, 48, 48)).astype(np.uint16)
    >>> frames[1, 20:23, 30:33] += 300          # one bright 3x3 spot in frame 1
    >>> find_spots(frames, progress=False)[["frame", "pixels"]].to_dict("records")
    [{'frame': 1, 'pixels': 9}]
    """
    if method not in METHODS:
        raise FeatureError(f"method must be one of {METHODS}, got {method!r}")
    source = _as_source(source)
    hot = _hot_mask(source, hot_pixels, tile=tile, k=k)
    info = {"frames": len(source), "candidates": 0, "select_s": 0.0, "dbscan_s": 0.0,
            "hot_pixels": 0 if hot is None else int(hot.sum())}
    tables = []
    with _progress_bar(len(source), progress) as bar:
        for start, stack in _blocks(source, chunk_frames):
            t0 = time.perf_counter()
            invalid = invalid_pixels(stack, source)
            z, background, _ = significance(stack, invalid, tile=tile)
            chosen = select_candidates(z, invalid, method=method, k=k, model=model, hot=hot,
                                       drop_isolated=drop_isolated)
            t1 = time.perf_counter()
            tables.append(cluster_candidates(chosen, stack.astype(np.float32) - background,
                                             first_frame=start, eps=eps, min_samples=min_samples))
            info["select_s"] += t1 - t0
            info["dbscan_s"] += time.perf_counter() - t1
            info["candidates"] += int(chosen.sum())
            bar.update(len(stack))
    table = pd.concat(tables, ignore_index=True) if tables else _empty_table()
    return (table, info) if return_info else table


def _as_source(source) -> FrameSource:
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (str, Path)):
        from .io import open_scan
        return open_scan(source)
    array = np.asarray(source)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise FeatureError(f"expected a scan, a path or frames (n, H, W), got shape {array.shape}")
    return ArraySource(array, name="frames")


def _hot_mask(source, hot_pixels, *, tile, k):
    if isinstance(hot_pixels, str):
        if hot_pixels != "auto":
            raise FeatureError(f"hot_pixels must be 'auto', None or a mask, got {hot_pixels!r}")
        return estimate_hot_pixels(source, tile=tile, k=k)
    if hot_pixels is None:
        return None
    mask = np.asarray(hot_pixels, bool)
    if mask.shape != tuple(source.frame_shape):
        raise FeatureError(f"hot_pixels mask has shape {mask.shape}, frames are "
                           f"{tuple(source.frame_shape)}", path=source.path, dataset=source.dataset)
    return mask


def _blocks(source, chunk_frames):
    """``source.iter_chunks`` with read errors and wrong shapes named by file and frame."""
    position = 0
    chunks = source.iter_chunks(chunk_frames)
    while True:
        try:
            start, stack = next(chunks)
        except StopIteration:
            return
        except XLabelError as err:
            if err.frame is not None:
                raise
            raise FeatureError(err.reason, path=err.path or source.path,
                               dataset=err.dataset or source.dataset, frame=position) from err
        except Exception as err:  # noqa: BLE001 - name the file and frame, no bare traceback
            raise FeatureError(f"cannot read frames: {err}", path=source.path,
                               dataset=source.dataset, frame=position) from err
        if stack.ndim != 3 or tuple(stack.shape[1:]) != tuple(source.frame_shape):
            raise FeatureError(f"block of shape {stack.shape} does not match the frame shape "
                               f"{tuple(source.frame_shape)}", path=source.path,
                               dataset=source.dataset, frame=start)
        position = start + len(stack)
        yield start, stack


def _progress_bar(total, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc="find_spots", disable=not progress)


# -- per-frame columns and evaluation --------------------------------------------------------

def spot_columns(source, spots=True, *, chunk_frames=None, progress=True) -> pd.DataFrame:
    """Per-frame ``n_spots``, ``spot_intensity`` (sum over the frame's spots) and
    ``spot_max`` (brightest spot; 0 without spots), one row per frame in order.

    ``spots``: True or ``"threshold"`` (defaults), ``"unet"`` is not enough on its own
    (it needs a model): pass a ``SpotSelector`` or a dict of :func:`find_spots` keywords
    (e.g. ``{"method": "unet", "model": selector, "k": 5}``).

    >>> import numpy as np
    >>> frames = np.random.default_rng(1).poisson(10, (2, 48, 48)).astype(np.uint16)
    >>> frames[1, 20:23, 30:33] += 300
    >>> spot_columns(frames, progress=False)["n_spots"].tolist()
    [0, 1]
    """
    source = _as_source(source)
    table = find_spots(source, chunk_frames=chunk_frames, progress=progress,
                       **_spot_options(spots))
    n = len(source)
    frames = table["frame"].to_numpy()
    intensity = table["intensity"].to_numpy()
    brightest = np.zeros(n)
    np.maximum.at(brightest, frames, intensity)
    return pd.DataFrame({
        "n_spots": np.bincount(frames, minlength=n).astype(np.int64),
        "spot_intensity": np.bincount(frames, weights=intensity, minlength=n),
        "spot_max": brightest,
    })


def _spot_options(spots) -> dict:
    if spots is True or spots == "threshold":
        return {}
    if isinstance(spots, dict):
        return dict(spots)
    if hasattr(spots, "select"):
        return {"method": "unet", "model": spots}
    raise FeatureError(f"spots= must be True, 'threshold', a SpotSelector or a dict of "
                       f"find_spots options, got {spots!r}")


def match_spots(found: pd.DataFrame, truth: pd.DataFrame, radius: float = 2.0) -> dict:
    """Compare found spots with true ones, frame by frame (one-to-one, nearest first).

    A true spot is found when a spot of the same frame lies within ``radius`` pixels
    (optimal assignment, ``scipy.optimize.linear_sum_assignment``). Returns ``recall``,
    ``n_true``, ``n_found``, ``matched``, ``false_spots`` (found spots matching no true one)
    and ``missed`` (the unmatched rows of ``truth``).

    >>> import pandas as pd
    >>> truth = pd.DataFrame({"frame": [0, 0], "y": [5.0, 20.0], "x": [5.0, 20.0]})
    >>> found = pd.DataFrame({"frame": [0, 0], "y": [5.4, 40.0], "x": [5.2, 40.0]})
    >>> r = match_spots(found, truth); (r["recall"], r["false_spots"])
    (0.5, 1)
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    matched_truth = np.zeros(len(truth), bool)
    matched = 0
    found_by_frame = {f: g for f, g in found.groupby("frame")}
    for frame, group in truth.groupby("frame"):
        other = found_by_frame.get(frame)
        if other is None or other.empty:
            continue
        dist = cdist(group[["y", "x"]].to_numpy(float), other[["y", "x"]].to_numpy(float))
        rows, cols = linear_sum_assignment(np.where(dist <= radius, dist, 1e6))
        good = dist[rows, cols] <= radius
        matched_truth[np.flatnonzero(truth["frame"].to_numpy() == frame)[rows[good]]] = True
        matched += int(good.sum())
    n_true = len(truth)
    return {"recall": matched / n_true if n_true else 1.0, "n_true": n_true,
            "n_found": len(found), "matched": matched, "false_spots": len(found) - matched,
            "missed": truth[~matched_truth]}


def tune_threshold(selector, validation, *, recall: float = 0.99,
                   grid=(0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7),
                   eps: float = 1.5, min_samples: int = 3, criterion: str = "pooled") -> pd.DataFrame:
    """Choose a U-Net's decision threshold on validation scans with known spots.

    ``validation``: a list of ``(source_or_frames, truth)`` pairs (``truth``: a table
    with ``frame``, ``y``, ``x``, e.g. ``SpotScan.spots``) or of objects with
    ``.source()`` and ``.spots`` (:class:`xlabel.synth.SpotScan`). Sets
    ``selector.threshold`` to the largest value of ``grid`` whose recall is at least
    ``recall`` (if none is: the largest giving the best recall) and returns the table of
    ``threshold``, ``recall`` (pooled), ``worst_recall`` (the worst validation scan),
    ``false_spots``, ``candidates`` per grid value. ``criterion``: "pooled" (the recall
    over all validation spots must reach ``recall``) or "worst" (every validation scan's
    must: a scan-level guarantee, usually a lower threshold). The network runs once per
    scan; scans are held in memory, so keep them small.
    """
    if criterion not in ("pooled", "worst"):
        raise FeatureError(f"criterion must be 'pooled' or 'worst', got {criterion!r}")
    rows = {float(t): [0, 0, 0, 0, 1.0] for t in grid}  # matched, true, false, cand., worst
    for item in validation:
        source, truth = (item.source(), item.spots) if hasattr(item, "source") else item
        source = _as_source(source)
        stack = source.read_all()
        invalid = invalid_pixels(stack, source)
        z, background, _ = significance(stack, invalid)
        prob = selector.probability(z)
        hot = estimate_hot_pixels(source)
        for t in rows:
            chosen = _clean(prob >= t, invalid, hot, True)
            table = cluster_candidates(chosen, stack.astype(np.float32) - background,
                                       eps=eps, min_samples=min_samples)
            result = match_spots(table, truth)
            for j, v in enumerate((result["matched"], result["n_true"], result["false_spots"],
                                   int(chosen.sum()))):
                rows[t][j] += v
            rows[t][4] = min(rows[t][4], result["recall"])
    out = pd.DataFrame([(t, m / n if n else 1.0, w, f, c) for t, (m, n, f, c, w) in rows.items()],
                       columns=["threshold", "recall", "worst_recall", "false_spots", "candidates"])
    score = out["recall"] if criterion == "pooled" else out["worst_recall"]
    good = out[score >= recall]
    if good.empty:  # none reaches the target: the best recall, then the fewest candidates
        good = out[score == score.max()]
    selector.threshold = float(good["threshold"].max())
    return out
