"""Image series (TIFF, EDF, CBF) and ``.npy`` stacks behind the FrameSource interface.

TIFF files are read with ``tifffile``; EDF/CBF (and other formats fabio knows)
need ``fabio`` (``pip install xlabel[images]``). Each file holds one frame, or
several for multi-page TIFFs / multi-frame EDFs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ScanError, missing_file_message
from .base import ConcatenatedSource, FrameSource, check_frame_shape

__all__ = ["ImageSeriesSource", "NpySource", "TIFF_SUFFIXES", "FABIO_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff")
FABIO_SUFFIXES = (".edf", ".cbf", ".img", ".mccd", ".sfrm", ".esperanto")


def _fabio():
    try:
        import fabio
    except ImportError:
        raise MissingDependencyError(
            "reading EDF/CBF images needs fabio: pip install 'xlabel[images]'") from None
    return fabio


def _read_image(path: str) -> np.ndarray:
    """All frames of one image file as ``(n, H, W)``."""
    try:
        if path.lower().endswith(TIFF_SUFFIXES):
            import tifffile
            data = tifffile.imread(path)
        else:
            image = _fabio().open(path)
            frames = [image.getframe(i).data for i in range(image.nframes)] \
                if image.nframes > 1 else [image.data]
            data = np.stack(frames)
    except ScanError:
        raise
    except MissingDependencyError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ScanError(f"cannot read image file ({type(err).__name__}: {err})",
                        path=path) from None
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ScanError(f"image of shape {data.shape} is not a 2-D frame or a stack of frames",
                        path=path)
    return data


def _frame_count(path: str) -> int:
    if path.lower().endswith(TIFF_SUFFIXES):
        import tifffile
        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        except Exception as err:  # noqa: BLE001
            raise ScanError(f"cannot read TIFF header ({err})", path=path) from None
        return 1 if len(shape) == 2 else int(shape[0])
    return _read_image(path).shape[0]


class ImageSeriesSource(ConcatenatedSource):
    """Frames from a sorted list of image files (one or more frames per file).

    Frame shape and dtype come from the first file; every file read later is
    checked against them (a mismatch names the file). Multi-frame files are
    counted when the source is made.

    >>> import shutil, tempfile, tifffile
    >>> series = Path(tempfile.mkdtemp())
    >>> for i in range(3):  # three files of two frames each
    ...     tifffile.imwrite(series / f"raw_{i:03d}.tiff", np.full((2, 135, 160), i, np.uint16))
    >>> src = ImageSeriesSource(sorted(series.glob("raw_*.tiff")))
    >>> len(src), src.frame_shape
    (6, (135, 160))
    >>> int(src[4].max())  # frame 4 is the first frame of the third file
    2
    >>> shutil.rmtree(series)
    """

    def __init__(self, files, name=None, pixel_mask=None, invalid_values="auto"):
        self.files = [str(f) for f in files]
        if not self.files:
            raise ScanError("no image files given")
        self.path = str(Path(self.files[0]).parent)
        self.name = name or Path(self.path).name
        self.pixel_mask = pixel_mask
        self.invalid_values = invalid_values
        first = _read_image(self.files[0])
        self._frame_shape = check_frame_shape(first.shape[1:], path=self.files[0])
        self._dtype = first.dtype
        counts = [first.shape[0]]
        if first.shape[0] > 1 or not self.files[0].lower().endswith(TIFF_SUFFIXES):
            counts += [_frame_count(f) for f in self.files[1:]]
        else:  # one frame per file: verified when each file is read
            counts += [1] * (len(self.files) - 1)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.part_starts = (0,)
        self.chunk_frames = 1

    def _load(self, i: int) -> np.ndarray:
        path = self.files[i]
        data = _read_image(path)
        expected = int(self._offsets[i + 1] - self._offsets[i])
        if tuple(data.shape[1:]) != self._frame_shape or data.dtype != self._dtype \
                or data.shape[0] != expected:
            raise ScanError(
                f"holds {data.shape[0]} frame(s) of {tuple(data.shape[1:])} {data.dtype}, but "
                f"the series has {expected} frame(s) of {self._frame_shape} {self._dtype} per "
                f"file (from {Path(self.files[0]).name}); select matching files with a glob",
                path=path, frame=int(self._offsets[i]))
        return data

    def _read(self, start, stop):
        out = np.empty((max(0, stop - start), *self._frame_shape), dtype=self._dtype)
        if stop <= start:
            return out
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        last = int(np.searchsorted(self._offsets, stop - 1, side="right")) - 1
        for i in range(first, last + 1):
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            a, b = max(start, lo), min(stop, hi)
            out[a - start:b - start] = self._load(i)[a - lo:b - lo]
        return out


_CHANGED_RETRIES = 8  # reads of a file that changed meanwhile (see NpySource)


class NpySource(FrameSource):
    """A ``.npy`` stack read frame block by frame block (no pickles); pickles as its path.

    Frames are read with plain file reads, not a memory map: a file that another
    process truncates while it is mapped kills the reading process (SIGBUS), while a
    read just comes back short (a ScanError naming the frame). Fortran-ordered files
    are loaded whole (their frames are not contiguous on disk).

    >>> import shutil, tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> np.save(tmp / "frames.npy", np.arange(24, dtype=np.float32).reshape(6, 2, 2))
    >>> src = NpySource(tmp / "frames.npy")
    >>> len(src), src.frame_shape, src.dtype
    (6, (2, 2), dtype('float32'))
    >>> src[5]
    array([[20., 21.],
           [22., 23.]], dtype=float32)
    >>> shutil.rmtree(tmp)
    """

    def __init__(self, path, name=None, pixel_mask=None, invalid_values="auto"):
        self.path = str(path)
        self.name = name or Path(self.path).stem
        self.pixel_mask = pixel_mask
        self.invalid_values = invalid_values
        self.chunk_frames = 1
        self._array = None
        shape, self._dtype, fortran, self._offset = self._header()
        if len(shape) != 3:
            raise ScanError(f"is a {len(shape)}-D array of shape {shape}; a scan needs a "
                            "3-D frame stack (n_frames, height, width)", path=self.path)
        if shape[0] == 0:
            raise ScanError("the scan has zero frames", path=self.path)
        self._shape = tuple(int(x) for x in shape)
        check_frame_shape(self._shape[1:], path=self.path)
        if fortran:
            self._array = self._load_whole()

    def _header(self):
        """(shape, dtype, Fortran order, byte offset of the data) from the file's header."""
        if not os.path.exists(self.path):
            raise ScanError(missing_file_message("file", self.path), path=self.path)
        try:  # a map only to read the header: no data page is touched
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ScanError(f"not a readable .npy array ({err})", path=self.path) from None
        try:
            fortran = arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous
            return arr.shape, arr.dtype, fortran, int(arr.offset)
        finally:
            del arr  # unmaps the file

    def _load_whole(self):
        try:
            return np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ScanError(f"not a readable .npy array ({err})", path=self.path) from None

    def __getstate__(self):
        state = self.__dict__.copy()
        if state["_array"] is not None:  # Fortran order: reload in the other process
            state["_array"] = None
            state["_reload"] = True
        return state

    def __setstate__(self, state):
        reload = state.pop("_reload", False)
        self.__dict__.update(state)
        if reload:
            self._array = self._load_whole()

    def __len__(self):
        return self._shape[0]

    @property
    def frame_shape(self):
        return self._shape[1:]

    @property
    def dtype(self):
        return self._dtype

    def _read(self, start, stop):
        if self._array is not None:
            return np.array(self._array[start:stop])
        out = np.empty((max(0, stop - start), *self._shape[1:]), self._dtype)
        frame_nbytes = out[:1].nbytes
        try:
            with open(self.path, "rb", buffering=0) as fh:
                for _ in range(_CHANGED_RETRIES):
                    before = os.fstat(fh.fileno())
                    got = self._pread_into(fh, out, start * frame_nbytes)
                    after = os.fstat(fh.fileno())
                    # A read that overlaps a truncation can return the zeroed page tail with
                    # a full count: a file that changed during the read is read again.
                    if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns,
                                                                after.st_size):
                        break
                    got = min(got, max(0, after.st_size - self._offset - start * frame_nbytes))
                    if got < out.nbytes:
                        break  # cut short: named below
                else:
                    raise ScanError("the file kept changing while frames were read (another "
                                    "process is rewriting it)", path=self.path, frame=start)
        except ScanError:
            raise
        except OSError as err:
            raise ScanError(f"cannot read: {err}", path=self.path, frame=start) from None
        if got < out.nbytes:
            frame = start + got // frame_nbytes
            raise ScanError(f"the file ends before the data of frame {frame} (truncated file)",
                            path=self.path, frame=frame)
        return out

    def _pread_into(self, fh, out, skip) -> int:
        """Read ``out``'s bytes from the data start + ``skip``; the count read (short at EOF)."""
        view, got = memoryview(out.reshape(-1).view(np.uint8)), 0
        while got < out.nbytes:
            n = os.preadv(fh.fileno(), [view[got:]], self._offset + skip + got)
            if n == 0:
                break
            got += n
        return got
