"""A minimal picklable HDF5 frame source, used only until ``xlabel.io.open_scan`` exists.

``xlabel.features`` opens paths with ``xlabel.io.open_scan`` when the io package
provides it; this stand-in keeps ``frame_stats(path)`` (and its worker-process /
Dask paths, which need a picklable, file-backed source) working without it.

>>> import h5py, numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
>>> with h5py.File(path, "w") as f:
...     _ = f.create_dataset("entry/data", data=np.zeros((3, 2, 2), np.uint16))
>>> H5Source(path).shape
(3, 2, 2)
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .errors import ScanError
from .io.base import FrameSource


def _first_stack(h5file) -> str | None:
    """Name of the first 3-D dataset in the file (depth-first), or None."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and not found:
            found.append(name)

    h5file.visititems(visit)
    return "/" + found[0] if found else None


class H5Source(FrameSource):
    """Frames of one 3-D HDF5 dataset; pickles its path and reopens lazily."""

    def __init__(self, path, dataset: str | None = None, invalid_values: str = "auto"):
        self.path = str(path)
        self.name = Path(path).stem
        self.invalid_values = invalid_values
        self._file = None
        try:
            ds = self._open(dataset)
        except (OSError, KeyError) as err:
            raise ScanError(f"cannot open frame stack: {err}", path=path, dataset=dataset) from None
        self.dataset = ds.name
        self._shape = ds.shape
        self._dtype = ds.dtype
        self.chunk_frames = ds.chunks[0] if ds.chunks else 1

    def _open(self, dataset=None):
        import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4 and friends)

        self._file = h5py.File(self.path, "r")
        dataset = dataset or _first_stack(self._file)
        if dataset is None:
            raise ScanError("no 3-D frame stack found", path=self.path)
        self._ds = self._file[dataset]
        return self._ds

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = state["_ds"] = None
        return state

    def __len__(self):
        return self._shape[0]

    @property
    def frame_shape(self):
        return tuple(self._shape[1:])

    @property
    def dtype(self):
        return np.dtype(self._dtype)

    def _read(self, start, stop):
        if self._file is None:
            self._open(self.dataset)
        try:
            return self._ds[start:stop]
        except OSError as err:
            raise ScanError(f"cannot read frames {start}:{stop}: {err}", path=self.path,
                            dataset=self.dataset, frame=start) from None
