"""The FrameSource interface: a lazy, chunked stack of detector frames.

Every reader (HDF5/NeXus, multi-part scans, image series, .npy, in-memory
arrays) implements this one interface, so features, widgets and models never
care where frames come from.

>>> import numpy as np
>>> from xlabel.io.base import ArraySource
>>> src = ArraySource(np.zeros((10, 4, 5), dtype=np.uint16), name="demo")
>>> len(src), src.frame_shape, src.dtype
(10, (4, 5), dtype('uint16'))
>>> [start for start, stack in src.iter_chunks(chunk_frames=4)]
[0, 4, 8]
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import ScanArgumentError, ScanError

__all__ = ["FrameSource", "ConcatenatedSource", "ArraySource", "invalid_pixels",
           "check_frame_shape"]


def check_frame_shape(frame_shape, *, path=None, dataset=None) -> tuple:
    """``frame_shape`` as a tuple of two ints, or ScanError if frames hold no pixel.

    >>> check_frame_shape((0, 5))
    Traceback (most recent call last):
    ...
    xlabel.errors.ScanError: frames of shape (0, 5) hold no pixels: nothing to measure
    """
    shape = tuple(int(x) for x in frame_shape)
    if len(shape) != 2 or min(shape) <= 0:
        raise ScanError(f"frames of shape {shape} hold no pixels: nothing to measure",
                        path=path, dataset=dataset)
    return shape


class FrameSource:
    """Abstract lazy stack of 2-D frames.

    Subclasses implement ``__len__``, ``frame_shape``, ``dtype`` and
    ``_read(start, stop)`` (returns an ``(stop-start, H, W)`` array). Everything
    else is derived here.

    Attributes every source has:

    - ``name``: short scan name (used as the ``scan`` column of feature tables).
    - ``path``: the file or folder the frames come from (``None`` for arrays).
    - ``dataset``: the HDF5 dataset path, where there is one.
    - ``pixel_mask``: boolean array of ``frame_shape``, ``True`` = invalid pixel
      (NXdetector pixel_mask, user mask), or ``None`` when no static mask is known.
    - ``invalid_values``: how flagged pixel *values* are recognised, one of
      ``"auto"`` (dtype max of unsigned ints and negative values of signed ints
      are invalid: Eiger / Pilatus conventions), or ``"none"``.
    - ``chunk_frames``: natural number of frames per read (the HDF5 chunking
      along the frame axis; 1 for one-frame chunks).
    - ``part_starts``: first frame of each part of a multi-file scan
      (``(0,)`` for a single part); ``iter_chunks`` never crosses a part boundary.
    - ``frame_masks``: masks that differ from frame to frame (an object with
      ``read(start, stop) -> bool (n, H, W)`` and ``union``, True = invalid), or
      ``None``; they add to ``pixel_mask`` (see :func:`invalid_pixels`).
    - ``pixel_mask_applied``: the file's NXdetector flag (the detector already
      overwrote masked pixels), or ``None`` when unknown; masked pixels are
      excluded either way.

    File-backed sources are picklable (they pickle their path and reopen
    lazily), so they can be sent to worker processes and Dask workers.
    """

    name: str = "scan"
    path = None
    dataset = None
    pixel_mask = None
    frame_masks = None
    pixel_mask_applied = None
    invalid_values: str = "auto"
    chunk_frames: int = 1
    #: first frame index of each part (file) of the scan; ``(0,)`` for one part.
    part_starts: tuple = (0,)

    # -- to implement -------------------------------------------------------
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def frame_shape(self) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- derived ------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), *self.frame_shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise ScanArgumentError(f"frame index {key} out of range for a scan of {n} frames",
                                        path=self.path, dataset=self.dataset)
            return self._read(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._read(start, max(start, stop))
            return np.stack([self[i] for i in range(start, stop, step)]) if len(
                range(start, stop, step)) else np.empty((0, *self.frame_shape), self.dtype)
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if indices.ndim != 1:
            raise ScanArgumentError("frame indices must be an int, a slice or a 1-D index array",
                                    path=self.path, dataset=self.dataset)
        if indices.size == 0:
            return np.empty((0, *self.frame_shape), self.dtype)
        return np.stack([self[int(i)] for i in indices])

    def iter_chunks(self, chunk_frames: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame_index, stack)`` blocks covering frames ``start:stop``.

        Blocks are aligned to multiples of ``chunk_frames`` (default: the
        source's own chunking, grouped so a block holds at least ~8 MB), so an
        HDF5 chunk is never read twice. For scans made of several parts (Eiger
        data files, ``_part00000`` files) the alignment restarts at each part's
        first frame (``part_starts``) and no block spans two parts.
        """
        n = len(self)
        stop = n if stop is None else min(stop, n)
        step = chunk_frames or self.default_block_frames()
        starts = np.asarray(self.part_starts, dtype=np.int64)
        pos = start
        while pos < stop:
            part = int(np.searchsorted(starts, pos, side="right")) - 1
            base = int(starts[part])
            end = min(stop, base + ((pos - base) // step + 1) * step)
            if part + 1 < len(starts):
                end = min(end, int(starts[part + 1]))
            yield pos, self._read(pos, end)
            pos = end

    def default_block_frames(self, target_bytes: int = 8 << 20) -> int:
        """Frames per block: a multiple of ``chunk_frames`` near ``target_bytes``."""
        frame_bytes = max(1, int(np.prod(self.frame_shape)) * np.dtype(self.dtype).itemsize)
        per_chunk = max(1, self.chunk_frames)
        chunks = max(1, target_bytes // (frame_bytes * per_chunk))
        return int(chunks * per_chunk)

    def chunk_plans(self, start: int = 0, stop: int | None = None):
        """How to read frames ``start:stop`` straight from their files, or None.

        A list of :class:`xlabel.io.direct.ChunkPlan` (one per file part holding some of
        those frames; ``plan.frame_offset`` is its first frame in the scan) when every
        part can be read without h5py; ``None`` (the default) means: use ``iter_chunks``.
        """
        return None

    def read_all(self) -> np.ndarray:
        """Load the whole scan into memory (explicitly asked for; never done implicitly)."""
        return self._read(0, len(self))

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        if self.dataset:
            where += f":{self.dataset}"
        return (f"<{type(self).__name__} {self.name!r}{where} {len(self)} frames "
                f"{self.frame_shape[0]}x{self.frame_shape[1]} {np.dtype(self.dtype).name}>")


class ConcatenatedSource(FrameSource):
    """Base of sources that join several parts (files) into one frame axis.

    Subclasses set ``_offsets`` (frame index where each part starts, plus the total at the
    end), ``_frame_shape`` and ``_dtype``; length, frame shape and dtype follow from them.
    """

    _offsets = np.zeros(1, dtype=np.int64)
    _frame_shape: tuple = (0, 0)
    _dtype = np.dtype(np.uint16)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def frame_shape(self):
        return self._frame_shape

    @property
    def dtype(self):
        return self._dtype


class ArraySource(FrameSource):
    """Frames held in a numpy array (or anything array-like of shape (n, H, W)).

    >>> import numpy as np
    >>> float(ArraySource(np.ones((3, 2, 2)))[1].sum())
    4.0
    """

    def __init__(self, array, name: str = "array", pixel_mask=None,
                 invalid_values: str = "auto"):
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise ScanError(f"expected a 3-D frame stack (n, H, W), got an array of shape {arr.shape}")
        check_frame_shape(arr.shape[1:])
        self._array = arr
        self.name = name
        self.pixel_mask = None if pixel_mask is None else np.asarray(pixel_mask, dtype=bool)
        self.invalid_values = invalid_values
        self.chunk_frames = 1

    def __len__(self) -> int:
        return self._array.shape[0]

    @property
    def frame_shape(self):
        return tuple(self._array.shape[1:])

    @property
    def dtype(self):
        return self._array.dtype

    def _read(self, start, stop):
        return self._array[start:stop]


def invalid_pixels(stack: np.ndarray, source: FrameSource | None = None,
                   start: int | None = None) -> np.ndarray | None:
    """Boolean mask of the pixels to exclude from statistics (``True`` = invalid).

    The one place that decides which pixels are flagged: the source's static
    ``pixel_mask`` (NXdetector ``pixel_mask``, Eiger ``detectorSpecific/pixel_mask``,
    or a user mask) OR, when ``source.invalid_values == "auto"``, the value
    conventions of photon-counting detectors: the dtype's maximum value for
    unsigned integers (Eiger gaps/defects) and negative values for signed
    integers (Pilatus -1/-2). Returns ``None`` when no pixel is invalid, so
    callers can take the fast unmasked path. Sources with per-frame masks
    (``source.frame_masks``) add the masks of frames ``start:start + len(stack)``;
    without ``start``, every pixel masked in any frame (the union) is flagged.

    >>> import numpy as np
    >>> stack = np.array([[[1, 65535], [3, 4]]], dtype=np.uint16)
    >>> invalid_pixels(stack).astype(int).tolist()
    [[[0, 1], [0, 0]]]
    """
    mode = "auto" if source is None else source.invalid_values
    static = None if source is None else source.pixel_mask
    per_frame = None if source is None else source.frame_masks
    if per_frame is not None:
        extra = per_frame.union if start is None else per_frame.read(start, start + len(stack))
        static = extra if static is None else static | extra
    flagged = None
    if mode == "auto":
        if np.issubdtype(stack.dtype, np.unsignedinteger):
            flagged = stack == np.iinfo(stack.dtype).max
        elif np.issubdtype(stack.dtype, np.signedinteger):
            flagged = stack < 0
        if flagged is not None and not flagged.any():
            flagged = None
    if static is not None and static.any():
        flagged = np.broadcast_to(static, stack.shape) if flagged is None else flagged | static
    return flagged
