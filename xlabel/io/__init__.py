"""Scans in: a lazy, chunked frame source over HDF5/NeXus, image series and arrays."""

from .base import ArraySource, FrameSource, invalid_pixels  # noqa: F401
