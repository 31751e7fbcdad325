"""Per-frame features: one row of statistics per detector frame.

``frame_stats`` streams a scan block by block (memory does not grow with the
scan length), excludes flagged pixels, and runs on a pool of threads (a
compiled kernel that releases the GIL, HDF5 chunks decoded outside h5py's lock)
or on a Dask cluster. Its table feeds clustering, the flux scatter and the models.

>>> import numpy as np
>>> from xlabel.io.base import ArraySource
>>> frames = np.array([np.full((4, 4), v, np.uint16) for v in (10, 20, 30)])
>>> table = frame_stats(ArraySource(frames, name="demo"), progress=False)
>>> table["mean"].tolist(), table["flux_rank"].tolist()
([10.0, 20.0, 30.0], [0.0, 0.5, 1.0])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._frame_kernel import PIXEL_COLUMNS, range_stats
from .errors import FeatureError, MissingDependencyError, XLabelError
from .io.base import FrameSource

__all__ = ["frame_stats", "beam_context", "FEATURE_COLUMNS", "COLUMNS", "BEAM_LEVEL_QUANTILE",
           "BEAM_ON_FRACTION"]

#: Numeric columns usable by clustering and models.
FEATURE_COLUMNS = ["mean", "sum", "median", "std", "min", "max", "frac_saturated",
                   "frac_zero", "n_valid", "n_invalid", "flux_rel", "flux_rank",
                   "flux_scan", "flux_local", "no_beam"]
#: All columns of a ``frame_stats`` table, in order.
COLUMNS = ["scan", "frame", *FEATURE_COLUMNS, "problem"]

_STATS = ("default", "full")
#: The scan's "beam level": this quantile of its frames' ``mean`` (a block of frames without
#: beam, e.g. 50 darks or a long beam dump, cannot pull it down unless it holds more than
#: 90 % of the scan).
BEAM_LEVEL_QUANTILE = 0.9
#: A frame whose ``mean`` is at most this fraction of the beam level has no beam (``no_beam``);
#: darks are 0.3-0.5 % of the beam level on the K11, APS 2-BM and Savu detectors.
BEAM_ON_FRACTION = 0.1
# Frames per Dask task: about this many bytes.
_TASK_BYTES = 64 << 20


def frame_stats(scans, *, dataset=None, stats="default", workers=None, progress=True,
                client=None, dask=False, chunk_frames=None, exclude_invalid=True,
                saturation=None, window=51, spots=None) -> pd.DataFrame:
    """Per-frame statistics of one scan or many, as a DataFrame (one row per frame).

    ``scans``: a :class:`~xlabel.io.FrameSource`, a path (opened with
    ``xlabel.io.open_scan(path, dataset=dataset)``), a numpy array ``(n, H, W)``, or
    a list of these (one table; the ``scan`` column tells them apart, names are
    made unique with ``-2``, ``-3``... suffixes; ``frame`` restarts at 0 per scan).

    ======================  ====================================================
    column                  meaning
    ======================  ====================================================
    ``scan``                scan name (``source.name``)
    ``frame``               frame index within the scan
    ``mean``                average flux over the valid pixels (``sum / n_valid``)
    ``sum``                 sum of the valid pixels (exact integer sum for int data)
    ``median``              median of the valid pixels; ``stats="default"``: median
                            of the valid pixels among ~1024 pixel positions taken
                            with a prime step (so rows are sampled at shifting
                            columns; approximate, cheap; exact for frames of up to
                            2047 pixels); ``stats="full"``: exact
    ``std``                 standard deviation of the valid pixels (ddof=0)
    ``min``, ``max``        smallest / largest valid pixel
    ``frac_saturated``      fraction of valid pixels ``>= saturation``
    ``frac_zero``           fraction of valid pixels equal to 0
    ``n_valid``             number of pixels used
    ``n_invalid``           pixels excluded (flagged, masked or NaN/inf)
    ``flux_rel``            ``mean`` / running median of the scan's ``mean``
                            (centered window of ``window`` frames, shrinking at the
                            ends); NaN where that median is 0
    ``flux_rank``           rank of ``mean`` within its scan, 0 (lowest) .. 1
    ``flux_scan``           ``mean`` / the scan's beam-on reference: the median
                            ``mean`` of the frames with beam (``no_beam`` 0); a
                            block of darks or a beam dump cannot pull it down
                            (darks: ~0.003, flats ~1.2, projections ~1); NaN
                            when no frame of the scan has beam
    ``flux_local``          ``mean`` / running median (``window``) of the
                            ``mean`` of the frames with beam around it (the
                            scan's reference where the window holds none):
                            like ``flux_rel`` but inside a dark block or at a
                            shutter-closed start it stays ~0, not ~1 or NaN
    ``no_beam``             1.0 when the frame's ``mean`` is at most
                            ``BEAM_ON_FRACTION`` (10 %) of the scan's beam level
                            (``BEAM_LEVEL_QUANTILE``, the 90 % quantile of
                            ``mean``) or no valid pixel is above 0: the frame is
                            indistinguishable from a dark / closed shutter;
                            0.0 otherwise; NaN for frames without valid pixels
    ``problem``             "" when fine; "nan pixels" when NaN/inf pixels (outside
                            the pixel mask) were skipped; "no valid pixels" (all
                            stats NaN)
    ======================  ====================================================

    Options:

    - ``exclude_invalid`` (default True): leave out the pixels that
      :func:`xlabel.io.invalid_pixels` flags (pixel mask, user mask, dtype-max /
      negative values). False: use every finite pixel.
    - ``saturation``: the count level at or above which a pixel is saturated.
      Default: ``source.saturation`` if the reader knows the detector's cutoff,
      else the largest value a valid pixel can take (integer dtype max, minus one
      when dtype-max pixels are flagged); float data without a level: 0 saturated.
    - ``chunk_frames``: frames per block read through the source (default: HDF5
      chunks are read directly, other sources in ~8 MB blocks). Results do not
      depend on it.
    - ``workers``: threads (default: the cores this process may use). HDF5 scans
      stored uncompressed, with gzip (+shuffle) or bitshuffle/LZ4/zstd, whole frames
      per chunk (the usual detector layout, Eiger included) are read and decoded by
      the threads themselves, outside h5py's global lock; other sources are read by
      the calling thread while the threads compute. Statistics are computed by a
      compiled kernel (numba) that releases the GIL; its first use in a fresh
      environment compiles it (a few seconds, cached afterwards).
    - ``spots`` (opt-in): also ``n_spots``, ``spot_intensity``, ``spot_max`` per frame,
      from :func:`xlabel.spots.spot_columns` (True / "threshold", a dict of
      ``find_spots`` options, or a U-Net ``SpotSelector``); a second streamed pass;
      invalid pixels never make spots, whatever ``exclude_invalid``.
    - ``dask=True`` / ``client=``: run one task per scan block range on Dask
      (``client``: any ``dask.distributed.Client``; ``dask=True`` without a client
      starts a ``LocalCluster`` for the call). Needs the ``dask`` extra.

    Raises :class:`~xlabel.errors.FeatureError` (naming file, dataset, frame) for an
    empty scan or a block whose frames do not have the scan's frame shape.

    >>> import numpy as np
    >>> frames = np.zeros((3, 2, 2), np.uint16); frames[:, 0, 0] = 65535  # flagged pixel
    >>> frame_stats(frames, progress=False)["mean"].tolist()
    [0.0, 0.0, 0.0]
    """
    if stats not in _STATS:
        raise FeatureError(f"stats must be one of {_STATS}, got {stats!r}")
    sources = _unique_names([_as_source(s, dataset) for s in _as_list(scans)])
    opts = dict(full=stats == "full", exclude_invalid=exclude_invalid,
                saturation=saturation, chunk_frames=chunk_frames)
    for src, _ in sources:
        if len(src) == 0:
            raise FeatureError("empty scan: no frames", path=src.path, dataset=src.dataset)
    tasks = [(i, a, b) for i, (src, _) in enumerate(sources)
             for a, b in _split(len(src), _task_frames(src, dask or client is not None))]
    runner = _run_dask if (dask or client is not None) else _run_local
    parts = runner(sources, tasks, opts, workers=workers, client=client,
                   progress=progress)
    tables = [_scan_table(src, parts[i], window) for i, src in enumerate(sources)]
    if spots is not None and spots is not False:
        from .spots import spot_columns
        tables = [t.join(spot_columns(src, spots, chunk_frames=chunk_frames, progress=progress))
                  for t, (src, _) in zip(tables, sources)]
    return pd.concat(tables, ignore_index=True)


# -- inputs -----------------------------------------------------------------------

def _as_list(scans):
    if isinstance(scans, (list, tuple)):
        if not scans:
            raise FeatureError("no scans given")
        return list(scans)
    return [scans]


def _as_source(scan, dataset):
    if isinstance(scan, FrameSource):
        return scan
    from .io import open_scan

    try:
        return open_scan(scan, dataset=dataset)
    except XLabelError:
        raise
    except Exception as err:  # noqa: BLE001 - give the user a clear error, not a traceback
        raise FeatureError(f"cannot open scan: {err}", path=_path_or_none(scan),
                           dataset=dataset) from err


def _path_or_none(scan):
    return scan if isinstance(scan, (str, Path)) else None


def _unique_names(sources):
    """Pair each source with a unique scan name (``x``, ``x-2``, ``x-3``...)."""
    used: set[str] = set()
    named = []
    for src in sources:
        base = name = str(src.name)
        suffix = 2
        while name in used:
            name = f"{base}-{suffix}"
            suffix += 1
        used.add(name)
        named.append((src, name))
    return named


# -- splitting work ------------------------------------------------------------------

def _task_frames(source, distributed):
    """Frames per task: the whole scan in-process, ~64 MB ranges for Dask."""
    n = len(source)
    if not distributed:
        return n
    frame_bytes = max(1, source.nbytes // n)
    step = max(1, source.chunk_frames or 1)
    return max(step, _TASK_BYTES // frame_bytes // step * step)


def _split(n, frames_per_task):
    return [(a, min(n, a + frames_per_task)) for a in range(0, n, frames_per_task)]


def _n_workers(workers):
    if workers:
        return int(workers)
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# -- runners: each returns {scan index: list of (start, stats dict)} ------------------

def _progress_bar(total, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc="frame_stats", disable=not progress)


def _run_local(sources, tasks, opts, *, workers, client, progress):
    parts = {i: [] for i in range(len(sources))}
    with _progress_bar(sum(b - a for _, a, b in tasks), progress) as bar:
        for i, a, b in tasks:
            parts[i].append((a, range_stats(sources[i][0], a, b, opts, bar.update,
                                            workers=_n_workers(workers))))
    return parts


def _run_dask(sources, tasks, opts, *, workers, client, progress):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MissingDependencyError(
            "frame_stats(dask=True) needs dask.distributed: pip install 'xlabel[dask]'") from None
    cluster = None
    if client is None:
        cluster = LocalCluster(n_workers=_n_workers(workers), threads_per_worker=1,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        parts = {i: [] for i in range(len(sources))}
        scattered = [client.scatter(src, broadcast=False) for src, _ in sources]
        futures = {client.submit(range_stats, scattered[i], a, b, opts, pure=False): (i, a, b)
                   for i, a, b in tasks}
        with _progress_bar(sum(b - a for _, a, b in tasks), progress) as bar:
            for fut in as_completed(list(futures)):
                i, a, b = futures[fut]
                parts[i].append((a, fut.result()))
                bar.update(b - a)
        return parts
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


# -- scan context ---------------------------------------------------------------------

def _scan_table(src_and_name, parts, window):
    source, name = src_and_name
    parts = sorted(parts, key=lambda p: p[0])
    cols = {c: np.concatenate([p[1][c] for p in parts]) for c in (*PIXEL_COLUMNS, "problem")}
    n = len(cols["sum"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = cols["sum"] / cols["n_valid"]
    table = pd.DataFrame({"scan": name, "frame": np.arange(n), "mean": mean, **cols})
    table["n_valid"] = table["n_valid"].astype(np.int64)
    table["n_invalid"] = table["n_invalid"].astype(np.int64)
    running = table["mean"].rolling(_odd(window), center=True, min_periods=1).median()
    table["flux_rel"] = (table["mean"] / running.where(running != 0)).to_numpy()
    ranks = table["mean"].rank(method="average")
    valid = int(ranks.notna().sum())
    table["flux_rank"] = (ranks - 1) / (valid - 1) if valid > 1 else ranks * 0.0
    table = table.assign(**beam_context(table["mean"], table["max"], window))
    table["problem"] = table["problem"].astype(str)
    return table[COLUMNS]


def beam_context(mean: pd.Series, max_: pd.Series, window: int = 51) -> dict:
    """The scan-level columns ``flux_scan``, ``flux_local`` and ``no_beam`` of one scan.

    Written here (not a library call): they need the scan's beam-on frames, which no
    rolling/quantile helper knows about. See :func:`frame_stats` for their meaning.

    >>> means = pd.Series([0.0, 0.0, 100.0, 110.0, 5.0, 100.0, 90.0])
    >>> cols = beam_context(means, means, window=3)
    >>> cols["no_beam"].tolist(), cols["flux_scan"].round(2).tolist()
    ([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.1, 0.05, 1.0, 0.9])
    >>> cols["flux_local"].round(2).tolist()
    [0.0, 0.0, 0.95, 1.05, 0.05, 1.05, 0.95]
    """
    mean = pd.Series(np.asarray(mean, dtype=np.float64))
    finite = mean.notna()
    level = mean[finite].quantile(BEAM_LEVEL_QUANTILE) if finite.any() else np.nan
    beam_on = finite & (mean > BEAM_ON_FRACTION * level) & (np.asarray(max_) > 0)
    reference = mean[beam_on].median() if beam_on.any() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        flux_scan = mean / reference if reference > 0 else mean * np.nan
        running = mean.where(beam_on).rolling(_odd(window), center=True, min_periods=1).median()
        running = running.fillna(reference)
        flux_local = mean / running.where(running > 0)
    no_beam = (~beam_on).astype(np.float64).where(finite)
    return {"flux_scan": flux_scan.to_numpy(), "flux_local": flux_local.to_numpy(),
            "no_beam": no_beam.to_numpy()}


def _odd(window):
    window = max(1, int(window))
    return window if window % 2 else window + 1
