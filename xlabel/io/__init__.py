"""Scans in: a lazy, chunked frame source over HDF5/NeXus, image series and arrays.

>>> import numpy as np
>>> from xlabel.io import open_scan, invalid_pixels
>>> src = open_scan(np.array([[[1, 65535], [3, 4]]], dtype=np.uint16))
>>> int(invalid_pixels(src[0:1], src).sum())
1
"""

from .base import ArraySource, FrameSource, invalid_pixels  # noqa: F401
from .hdf5 import HDF5Source, find_pixel_mask, find_segments  # noqa: F401
from .images import ImageSeriesSource, NpySource  # noqa: F401
from .scan import expand_paths, natural_key, open_scan  # noqa: F401

__all__ = ["open_scan", "FrameSource", "ArraySource", "HDF5Source", "ImageSeriesSource",
           "NpySource", "invalid_pixels", "find_segments", "find_pixel_mask", "expand_paths",
           "natural_key"]
