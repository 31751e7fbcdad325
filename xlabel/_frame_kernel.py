"""How :func:`xlabel.features.frame_stats` walks one scan: blocks of frames on threads.

For HDF5 scans in the usual detector layouts the frames come straight from the file
(``source.chunk_plans``, :mod:`xlabel.io.direct`): each pool thread reads and decodes
its own chunks and runs the compiled statistics kernel (:mod:`xlabel._stats_kernel`)
on them, all outside the GIL and outside h5py's lock. Every other source is read block
by block by the calling thread (``source.iter_chunks``) while the pool computes
statistics of the blocks already read. Either way, at most ``workers`` blocks wait at
once. Threads: a ``concurrent.futures.ThreadPoolExecutor`` (it measured as fast as
the hand-made crew it replaced; BENCHMARKS.md). Per-frame pixel masks
(``source.frame_masks``) split blocks into runs of frames sharing one mask.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait

import numpy as np

from ._stats_kernel import (MAX, MEDIAN, MIN, N_NONFINITE, N_OUT, N_SAT, N_VALID, N_ZERO,
                            SUM, SUMSQ, KernelParams, block_stats)
from .errors import FeatureError

# Per-frame columns computed from the pixels (the rest come from the scan context).
PIXEL_COLUMNS = ("sum", "median", "std", "min", "max", "frac_saturated", "frac_zero",
                 "n_valid", "n_invalid")
#: Bytes of frames per thread task (big enough to make the per-task Python negligible).
TASK_BYTES = 8 << 20


def range_stats(source, start, stop, opts, on_block=None, workers=1):
    """Pixel statistics of frames ``start:stop`` of ``source``: dict of 1-D arrays.

    ``opts``: ``full`` (exact median), ``exclude_invalid``, ``saturation``,
    ``chunk_frames`` (frames per block for non-HDF5 sources). ``on_block(n)`` is
    called as blocks of ``n`` frames finish; ``workers``: threads.
    """
    params = kernel_params(source, opts)
    if opts["exclude_invalid"] and source.frame_masks is not None:
        params = _PerFrameParams(source, opts, params)
    out = np.full((stop - start, N_OUT), np.nan)
    tasks = _direct_tasks(source, start, stop, opts)
    # direct tasks hold no frames until they run: all are queued at once; blocks read
    # here hold their frames, so only ``workers`` wait at a time (memory stays bounded)
    max_pending = None if tasks is not None else workers
    if tasks is None:
        tasks = _block_tasks(source, start, stop, opts)
    _run(tasks, params, out, (start, stop), workers, max_pending, on_block or (lambda n: None))
    return _columns(out, int(np.prod(source.frame_shape)))


def kernel_params(source, opts) -> KernelParams:
    """Mask, flag values and saturation level for ``source`` (see ``frame_stats``)."""
    exclude = opts["exclude_invalid"]
    if np.dtype(source.dtype).kind not in "buif":
        raise FeatureError(f"frames of dtype {source.dtype} are not numbers",
                           path=source.path, dataset=source.dataset)
    if int(np.prod(source.frame_shape)) == 0:
        raise FeatureError(f"frames of shape {tuple(source.frame_shape)} hold no pixels: "
                           "nothing to measure", path=source.path, dataset=source.dataset)
    return KernelParams.for_frames(
        source.frame_shape, source.dtype, pixel_mask=source.pixel_mask if exclude else None,
        flag_values=exclude and source.invalid_values == "auto",
        saturation=_saturation_level(source, opts["saturation"]), full=opts["full"])


class _PerFrameParams:
    """Kernel parameters for a source whose pixel mask changes from frame to frame.

    ``runs(lo, hi)`` splits frames ``lo:hi`` into runs sharing one mask, each with its
    parameters (made once per distinct mask; masks usually change rarely).
    """

    def __init__(self, source, opts, base: KernelParams):
        self.source, self.opts, self.base = source, opts, base
        self._cache = {}

    def runs(self, lo, hi):
        masks = self.source.frame_masks.read(lo, hi).reshape(hi - lo, -1)
        change = np.flatnonzero((masks[1:] != masks[:-1]).any(axis=1)) + 1
        bounds = [0, *change.tolist(), hi - lo]
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield lo + a, lo + b, self._params(masks[a])

    def _params(self, mask):
        key = np.packbits(mask).tobytes()
        if key not in self._cache:
            static = self.source.pixel_mask if self.source.pixel_mask is not None else False
            self._cache[key] = KernelParams.for_frames(
                self.source.frame_shape, self.source.dtype,
                pixel_mask=mask.reshape(self.source.frame_shape) | static,
                flag_values=self.base.flag_value is not None or self.base.flag_negative,
                saturation=self.base.saturation, full=self.base.full)
        return self._cache[key]


def _saturation_level(source, saturation):
    if saturation is not None:
        return saturation
    known = getattr(source, "saturation", None)
    if known is not None:
        return known
    dtype = np.dtype(source.dtype)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        flagged = source.invalid_values == "auto" and np.issubdtype(dtype, np.unsignedinteger)
        return top - 1 if flagged else top
    return np.inf


# -- tasks: each returns pieces (first frame, frames as (n, pixels)) ----------------------

def _direct_tasks(source, start, stop, opts):
    """Tasks reading chunks straight from the files (``source.chunk_plans``), or None."""
    plans = None if opts.get("chunk_frames") else source.chunk_plans(start, stop)
    if plans is None:
        return None
    tasks = []
    for plan in plans:
        first = plan.frame_offset
        ranges = plan.chunk_ranges(max(0, start - first), min(plan.n_frames, stop - first),
                                   TASK_BYTES)
        tasks += [_DirectTask(plan, k0, k1) for k0, k1 in ranges]
    return tasks


class _DirectTask:
    _local = threading.local()

    def __init__(self, plan, k0, k1):
        self.plan, self.k0, self.k1 = plan, k0, k1

    def __call__(self):
        from .io.direct import ReadBuffers

        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = ReadBuffers()
        offset = self.plan.frame_offset
        for first, frames in self.plan.read_pieces(self.k0, self.k1, buffers):
            yield offset + first, frames


def _block_tasks(source, start, stop, opts):
    """Blocks read by the calling thread (h5py, images, arrays): tasks holding the data."""
    for first, stack in source.iter_chunks(opts["chunk_frames"], start=start, stop=stop):
        _check_block(source, first, stack, stop)
        frames = stack.reshape(len(stack), -1)
        yield lambda first=first, frames=frames: [(first, frames)]


def _check_block(source, first, stack, stop):
    expected = (min(len(stack), stop - first), *source.frame_shape)
    if stack.ndim != 3 or stack.shape[1:] != tuple(source.frame_shape) or len(stack) == 0:
        raise FeatureError(
            f"frames of unexpected shape {stack.shape[1:]} (the scan's frame shape is "
            f"{tuple(source.frame_shape)})", path=source.path, dataset=source.dataset,
            frame=first)
    if stack.shape != expected:
        raise FeatureError(f"read returned {len(stack)} frames, expected {expected[0]}",
                           path=source.path, dataset=source.dataset, frame=first)


# -- running -----------------------------------------------------------------------------

def _run(tasks, params, out, frame_range, workers, max_pending, on_block):
    start, stop = frame_range

    def work(task):
        done = 0
        for first, frames in task():
            lo, hi = max(first, start), min(first + len(frames), stop)
            if lo >= hi:
                continue
            runs = params.runs(lo, hi) if isinstance(params, _PerFrameParams) \
                else [(lo, hi, params)]
            for a, b, run_params in runs:
                block_stats(frames[a - first:b - first], run_params, out[a - start:b - start])
            done += hi - lo
        return done

    if workers <= 1:
        for task in tasks:
            on_block(work(task))
        return
    _run_threads(tasks, work, workers, on_block, max_pending)


def _run_threads(tasks, work, workers, on_block, max_pending=None):
    """``work(task)`` for every task on a thread pool; progress reported by this thread.

    Tasks are taken from the iterator by this thread (so a source read through h5py is
    read here while the pool computes); with ``max_pending`` at most that many wait or
    run at once, which bounds memory. The first error cancels what has not started and
    is raised.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="frame_stats") as pool:
        try:
            if max_pending is None:  # everything queued at once: the pool never waits on us
                for future in as_completed([pool.submit(work, task) for task in tasks]):
                    on_block(future.result())
                return
            pending = set()
            for task in tasks:
                if len(pending) >= max_pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_block(future.result())
                pending.add(pool.submit(work, task))
            for future in as_completed(pending):
                on_block(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _columns(out, n_pixels):
    n_valid = out[:, N_VALID]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = out[:, SUM] / n_valid
        var = np.maximum(out[:, SUMSQ] / n_valid - mean * mean, 0.0)
        cols = {"sum": out[:, SUM].copy(), "median": out[:, MEDIAN].copy(), "std": np.sqrt(var),
                "min": out[:, MIN].copy(), "max": out[:, MAX].copy(),
                "frac_saturated": out[:, N_SAT] / n_valid, "frac_zero": out[:, N_ZERO] / n_valid,
                "n_valid": n_valid.copy(), "n_invalid": n_pixels - n_valid}
    empty = n_valid == 0
    for name in ("sum", "frac_saturated", "frac_zero"):
        cols[name][empty] = np.nan
    problem = np.full(len(out), "", dtype=object)
    problem[out[:, N_NONFINITE] > 0] = "nan pixels"
    problem[empty] = "no valid pixels"
    cols["problem"] = problem
    return cols

