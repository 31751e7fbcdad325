"""``open_scan``: one entry point for every kind of scan xlabel reads."""

from __future__ import annotations

import copy
import glob
import os
import re
from pathlib import Path

import h5py
import numpy as np

from ..errors import ScanArgumentError, ScanError, missing_file_message
from .base import ArraySource, FrameSource
from .hdf5 import combine_masks, open_hdf5
from .images import FABIO_SUFFIXES, TIFF_SUFFIXES, ImageSeriesSource, NpySource

__all__ = ["open_scan", "natural_key", "expand_paths"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".nx", ".cxi", ".he5")
IMAGE_SUFFIXES = TIFF_SUFFIXES + FABIO_SUFFIXES
INVALID_VALUE_MODES = ("auto", "none")
_PART_SUFFIX = re.compile(r"([_-](part|master|data)?[_-]?\d*|[_-]master)$", re.IGNORECASE)


def natural_key(path) -> list:
    """Sort key that orders ``part2`` before ``part10`` (numbers compared as numbers).

    >>> sorted(["s_10.tif", "s_9.tif", "s_100.tif"], key=natural_key)
    ['s_9.tif', 's_10.tif', 's_100.tif']
    """
    return [int(tok) if tok.isdigit() else tok.lower()
            for tok in re.split(r"(\d+)", str(path))]


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def expand_paths(path_or_paths) -> list[str]:
    """A path, glob, folder or list of them -> the files of the scan, in natural order.

    Lists keep the order given (each glob in a list is sorted naturally); a folder
    becomes its image files.

    >>> import shutil, tempfile
    >>> run7 = tempfile.mkdtemp()
    >>> for i in (10, 2, 1):
    ...     open(os.path.join(run7, f"scan_part{i}.nxs"), "w").close()
    >>> [os.path.basename(p) for p in expand_paths(os.path.join(run7, "scan_part*.nxs"))]
    ['scan_part1.nxs', 'scan_part2.nxs', 'scan_part10.nxs']
    >>> shutil.rmtree(run7)
    """
    items = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) \
        else list(path_or_paths)
    files: list[str] = []
    for item in items:
        text = str(item)
        if _is_glob(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text), key=natural_key)
            if not matches:
                raise ScanError(f"no file matches the pattern {text!r}")
            files += matches
        elif os.path.isdir(text):
            files += _folder_images(text)
        else:
            files.append(text)
    if not files:
        raise ScanError("no files given")
    return files


def _folder_images(folder: str) -> list[str]:
    entries = sorted(os.listdir(folder), key=natural_key)
    images = [os.path.join(folder, e) for e in entries if e.lower().endswith(IMAGE_SUFFIXES)]
    if images:
        return images
    hdf = [e for e in entries if e.lower().endswith(HDF5_SUFFIXES)]
    hint = (f" It holds HDF5 files ({', '.join(hdf[:3])}...): open the master file or a "
            "glob of the part files instead.") if hdf else ""
    raise ScanError(f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)}).{hint}",
                    path=folder)


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    if lower.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if not os.path.exists(path):
        raise ScanError(missing_file_message("file", path), path=path)
    if h5py.is_hdf5(path):
        return "hdf5"
    raise ScanError("unknown file type: not HDF5, .npy or an image format "
                    f"({', '.join(IMAGE_SUFFIXES)})", path=path)


def _scan_name(files: list[str]) -> str:
    stem = Path(files[0]).stem
    if len(files) > 1 or stem.lower().endswith("_master"):
        stem = _PART_SUFFIX.sub("", stem) or stem
    return stem


def _check_invalid_values(mode) -> str:
    mode = "none" if mode in (None, False) else mode
    if mode not in INVALID_VALUE_MODES:
        raise ScanArgumentError(
            f"invalid_values must be one of {INVALID_VALUE_MODES}, got {mode!r}")
    return mode


def open_scan(path_or_array, dataset: str | None = None, mask=None,
              invalid_values: str = "auto", *, file_mask: bool = True,
              name: str | None = None) -> FrameSource:
    """Open a scan lazily as a :class:`~xlabel.io.FrameSource`.

    ``path_or_array`` may be:

    - an HDF5/NeXus file; the frame stack is found by itself (NeXus
      ``@default``/``@signal``, ``/entry/data/data``, Eiger masters whose frames live
      in ``data_000001``, ``data_000002``... external files, ``/exchange/data``,
      NXdetector ``data``, the single 3-D dataset; see :mod:`xlabel.io.hdf5`), or
      ``dataset=`` names it;
    - a list or glob of part files (``scan_part00000.nxs``...), opened as one scan
      in natural order (``part2`` before ``part10``);
    - a folder or glob of TIFF (or, with fabio, EDF/CBF) images;
    - a ``.npy`` file (read block by block), or a numpy array ``(n, H, W)``.

    Invalid pixels: ``source.pixel_mask`` is the OR of the file's detector mask
    (NXdetector ``pixel_mask``, Eiger ``detectorSpecific/pixel_mask``; skip it with
    ``file_mask=False``) and ``mask`` (bool array, True = invalid). With
    ``invalid_values="auto"`` (default) pixels at the dtype's maximum (Eiger gaps,
    unsigned ints) and negative pixels (Pilatus -1/-2, signed ints) are excluded too;
    ``"none"`` keeps them. :func:`xlabel.io.invalid_pixels` applies both.

    Nothing is read until frames are asked for; file-backed sources pickle as
    names and reopen in worker processes. Bad input raises
    :class:`~xlabel.errors.ScanError` naming the file, dataset and frame.

    >>> import numpy as np, xlabel
    >>> src = xlabel.open_scan(np.zeros((5, 4, 4), np.uint16))
    >>> len(src), src.frame_shape
    (5, (4, 4))
    >>> from xlabel import samples
    >>> src = xlabel.open_scan(samples.path("scan_a"))  # an Eiger master file
    >>> src.name, len(src), src[0].shape
    ('scan_a', 400, (64, 64))
    """
    invalid_values = _check_invalid_values(invalid_values)
    if isinstance(path_or_array, FrameSource):
        return _with_mask(path_or_array, mask, invalid_values)
    if isinstance(path_or_array, np.ndarray):
        return _open_array(path_or_array, mask, invalid_values, name)
    files = expand_paths(path_or_array)
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise ScanError(f"a scan's files must all be of one kind, got {sorted(kinds)}: "
                        f"{', '.join(files[:4])}")
    kind = kinds.pop()
    name = name or _scan_name(files)
    if kind == "hdf5":
        return open_hdf5(files, dataset=dataset, pixel_mask=mask, invalid_values=invalid_values,
                         name=name, file_mask=file_mask)
    if kind == "npy":
        if len(files) > 1:
            raise ScanError("several .npy files are not one scan; stack them into one array",
                            path=files[0])
        src = NpySource(files[0], name=name, invalid_values=invalid_values)
    else:
        src = ImageSeriesSource(files, name=name, invalid_values=invalid_values)
    src.pixel_mask = combine_masks(None, mask, src)
    return src


def _open_array(array: np.ndarray, mask, invalid_values, name) -> ArraySource:
    if array.ndim != 3:
        raise ScanError(f"expected a 3-D frame stack (n_frames, height, width), got an array "
                        f"of shape {array.shape}")
    if array.shape[0] == 0:
        raise ScanError("the scan has zero frames")
    src = ArraySource(array, name=name or "array", invalid_values=invalid_values)
    src.pixel_mask = combine_masks(None, mask, src)
    return src


def _with_mask(src: FrameSource, mask, invalid_values) -> FrameSource:
    """An existing source, with a user mask added / value conventions switched off."""
    if mask is None and invalid_values == "auto":
        return src
    out = copy.copy(src)
    if invalid_values == "none":
        out.invalid_values = "none"
    out.pixel_mask = combine_masks(src.pixel_mask, mask, src) if mask is not None \
        else src.pixel_mask
    return out
