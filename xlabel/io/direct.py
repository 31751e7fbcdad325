"""Direct chunk reading: HDF5 frames without h5py's global lock.

h5py serializes every HDF5 call behind one lock, so threads cannot read or
decompress a scan in parallel through it. For the common detector layouts (frames
stored whole in chunks or contiguously, uncompressed, gzip/deflate with or without
shuffle, or bitshuffle with LZ4/zstd as Eiger writes) this module asks HDF5 once
where every chunk lies in the file, then reads the raw bytes with plain file reads
and decodes them on the calling thread: zlib and the bitshuffle C library (the one
hdf5plugin ships, called through ctypes) both release the GIL, so several threads
decode at once. Datasets in any other layout get ``None`` from :func:`plan_dataset`
and are read through h5py as before.

Bitshuffle block headers are checked against the chunk's size before the C decoder
runs, so a corrupt chunk gives a :class:`~xlabel.errors.ScanError` naming the frame,
never a read outside the buffer.

>>> import os, shutil, tempfile, h5py, numpy as np
>>> tmp = tempfile.mkdtemp()
>>> with h5py.File(os.path.join(tmp, "direct-demo.h5"), "w") as f:
...     ds = f.create_dataset("d", data=np.ones((4, 2, 2), np.uint16), chunks=(1, 2, 2))
...     plan = plan_dataset(ds)
>>> first, frames = plan.read(0, plan.n_chunks, ReadBuffers())
>>> first, frames.shape, frames.dtype
(0, (4, 4), dtype('uint16'))
>>> shutil.rmtree(tmp)
"""

from __future__ import annotations

import ctypes
import glob
import os
import zlib

import h5py
import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ..errors import ScanError

__all__ = ["ChunkPlan", "ReadBuffers", "plan_dataset"]

try:  # ISA-L inflates ~1.7x faster than zlib (same format, also without the GIL)
    from isal.isal_zlib import decompress as _inflate
    from isal.isal_zlib import error as _InflateError
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate, _InflateError = zlib.decompress, zlib.error

_DEFLATE, _SHUFFLE, _BITSHUFFLE = 1, 2, 32008
_BSHUF_LZ4, _BSHUF_ZSTD = 2, 3
# Contiguous datasets are cut into pseudo-chunks of about this many bytes.
_CONTIGUOUS_PIECE = 8 << 20
#: Uncompressed frames are read in pieces of about this many bytes (at least one frame)
#: into a reused buffer, so the statistics find them in the CPU cache: read whole, the
#: copy out of the page cache cost 35% more than the memory map it replaced; in 256 KB
#: pieces about 10% (BENCHMARKS.md, "Reading without mmap").
PIECE_BYTES = 256 << 10
CHANGED_RETRIES = 8  # re-reads of a file that changed during a read (_read_into)


class ReadBuffers:
    """Reusable per-thread buffers (raw bytes and decoded frames) for :meth:`ChunkPlan.read`."""

    def __init__(self):
        self.raw = np.empty(0, np.uint8)
        self.frames = np.empty(0, np.uint8)

    @staticmethod
    def _grow(buf, nbytes):
        return buf if buf.size >= nbytes else np.empty(max(nbytes, buf.size * 3 // 2), np.uint8)

    def raw_bytes(self, nbytes):
        self.raw = self._grow(self.raw, nbytes)
        return self.raw[:nbytes]

    def frame_bytes(self, nbytes):
        self.frames = self._grow(self.frames, nbytes)
        return self.frames[:nbytes]


class ChunkPlan:
    """Where each chunk of one 3-D dataset lies in its file, and how to decode it.

    ``starts[k]``: first frame of chunk ``k``; ``offsets[k]``/``sizes[k]``: its bytes in
    ``file`` (offset -1: never written, reads as the fill value); ``masks[k]``: HDF5's
    per-chunk filter mask (bit i set = filter i was skipped for that chunk).
    """

    def __init__(self, *, file, name, dataset, n_frames, frame_shape, dtype, chunk_frames,
                 starts, offsets, sizes, masks, filters, fill, frame_offset=0):
        self.file, self.name, self.dataset = file, name, dataset
        self.n_frames, self.frame_shape = n_frames, tuple(frame_shape)
        self.dtype, self.chunk_frames = np.dtype(dtype), chunk_frames
        self.starts, self.offsets, self.sizes, self.masks = starts, offsets, sizes, masks
        self.filters, self.fill, self.frame_offset = filters, fill, frame_offset
        self.frame_pixels = int(np.prod(self.frame_shape))
        self.frame_nbytes = self.frame_pixels * self.dtype.itemsize

    @property
    def n_chunks(self):
        return len(self.starts)

    def chunk_ranges(self, start=0, stop=None, target_bytes=8 << 20):
        """Chunk index ranges ``[k0, k1)`` covering frames ``start:stop``, ~``target_bytes`` each.

        A range never spans a gap in the file (HDF5 index nodes between chunks,
        chunks out of order), so each is read with one call where possible.
        """
        stop = self.n_frames if stop is None else stop
        k_first = max(0, int(np.searchsorted(self.starts, start, side="right")) - 1)
        k_end = int(np.searchsorted(self.starts, stop, side="left"))
        per_range = max(1, target_bytes // (self.chunk_frames * self.frame_nbytes))
        gaps = np.flatnonzero((self.offsets[1:] != self.offsets[:-1] + self.sizes[:-1])
                              | (self.offsets[1:] < 0)) + 1
        bounds = [k_first, *gaps[(gaps > k_first) & (gaps < k_end)].tolist(), k_end]
        return [(k, min(b, k + per_range)) for a, b in zip(bounds[:-1], bounds[1:])
                for k in range(a, b, per_range)]

    def frames_in(self, k):
        return min(self.chunk_frames, self.n_frames - int(self.starts[k]))

    def read(self, k0, k1, buffers: ReadBuffers):
        """Decode chunks ``k0:k1``: ``(first frame, frames as (n, pixels) array)``.

        The array may live in ``buffers`` (valid until their next use). A file that is
        shorter than the plan says (truncated, or being rewritten by another process
        while this reads it) raises a ScanError naming the first frame it lacks.
        """
        first = int(self.starts[k0])
        n = int(self.starts[k1 - 1]) + self.frames_in(k1 - 1) - first
        with self._open(k0) as f:
            if self._one_span(k0, k1):  # chunks back to back in the file: one read
                self._check_in_file(f, k0, k1)
                if not self.filters:
                    out = buffers.frame_bytes(n * self.frame_nbytes)
                    self._read_into(f, int(self.offsets[k0]), out, k0)
                    return first, out.view(self.dtype).reshape(n, self.frame_pixels)
                span = int(self.offsets[k1 - 1] + self.sizes[k1 - 1] - self.offsets[k0])
                raw = self._read_into(f, int(self.offsets[k0]), buffers.raw_bytes(span), k0)
                if self._bitshuffle_only(k0, k1):
                    return first, self._bitshuffle_span(k0, k1, raw, buffers)[:n]
            else:
                raw = None
            out = buffers.frame_bytes(n * self.frame_nbytes)
            for k in range(k0, k1):
                dest = out[(int(self.starts[k]) - first) * self.frame_nbytes:]
                self._decode_chunk(f, k, raw, int(self.offsets[k0]), dest[:self.frames_in(k) * self.frame_nbytes])
        return first, out.view(self.dtype).reshape(n, self.frame_pixels)

    def read_pieces(self, k0, k1, buffers: ReadBuffers, piece_bytes=PIECE_BYTES):
        """The frames of chunks ``k0:k1`` as ``(first frame, frames)`` pieces, in order.

        Uncompressed chunks lying back to back in the file come in pieces of about
        ``piece_bytes`` (whole frames, at least one), each read into the same small
        buffer (valid until the next piece); anything else as the one piece
        :meth:`read` gives. Errors as in :meth:`read`.
        """
        if self.filters or not self._one_span(k0, k1):
            yield self.read(k0, k1, buffers)
            return
        first = int(self.starts[k0])
        n = int(self.starts[k1 - 1]) + self.frames_in(k1 - 1) - first
        per_piece = max(1, piece_bytes // self.frame_nbytes)
        with self._open(k0) as f:
            self._check_in_file(f, k0, k1)
            for a in range(0, n, per_piece):
                m = min(per_piece, n - a)
                out = buffers.frame_bytes(m * self.frame_nbytes)
                self._read_into(f, int(self.offsets[k0]) + a * self.frame_nbytes, out, k0)
                yield first + a, out.view(self.dtype).reshape(m, self.frame_pixels)

    # -- reading ------------------------------------------------------------------
    # Plain reads into reusable buffers, never mmap: a mapped file that another process
    # truncates kills this process with SIGBUS when the pages are touched, while a read
    # just comes back short (cost: see PIECE_BYTES).
    def _open(self, k):
        try:
            return open(self.file, "rb", buffering=0)
        except OSError as err:
            raise self._error(k, f"cannot open {self.file}: {err}") from None

    def _one_span(self, k0, k1):
        offsets = self.offsets[k0:k1]
        if (offsets < 0).any():
            return False
        ends = offsets + self.sizes[k0:k1]
        return bool((offsets[1:] == ends[:-1]).all())

    def _check_in_file(self, f, k0, k1):
        """Raise for the first frame of chunks ``k0:k1`` that lies past the end of the file.

        (Checked before reading so the error names the right frame without decoding
        anything; a file cut while it is read is caught by :meth:`_read_into`.)
        """
        size = os.fstat(f.fileno()).st_size
        ends = self.offsets[k0:k1] + self.sizes[k0:k1]
        if ends.size and ends[-1] <= size:
            return
        k = k0 + int(np.argmax(ends > size))
        raise self._short_file(k, size)

    def _short_file(self, k, size):
        """The error for a file of ``size`` bytes that ends inside chunk ``k``."""
        frame = int(self.starts[k])
        if not self.filters:  # uncompressed: whole frames before the end are fine
            inside = max(0, (size - int(self.offsets[k])) // self.frame_nbytes)
            frame += min(inside, self.frames_in(k) - 1)
        return self._error(k, f"{self.file} ends before the data of frame "
                              f"{self.frame_offset + frame} (truncated file)", frame=frame)

    def _read_into(self, f, offset, buf, k):
        """Fill ``buf`` with the file's bytes from ``offset`` (the data of chunks ``k``...).

        A read that overlaps a truncation can return the zeroed tail of a page with a full
        byte count, so a read during which the file changed (mtime or size) is done again.
        """
        for _ in range(CHANGED_RETRIES):
            before = os.fstat(f.fileno())
            got = self._pread(f, offset, buf, k)
            after = os.fstat(f.fileno())
            if got < buf.size or (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns,
                                                                          after.st_size):
                break
        else:
            raise self._error(k, f"{self.file} kept changing while it was read (another "
                                 "process is rewriting it)")
        if got < buf.size:  # the file ended early: name the chunk (frame) that is cut
            ends = self.offsets[k:] + self.sizes[k:]
            cut = k + int(np.argmax((ends > offset + got) | (self.offsets[k:] < 0)))
            raise self._short_file(cut, offset + got)
        return buf

    def _pread(self, f, offset, buf, k) -> int:
        """Bytes read into ``buf`` from ``offset`` (fewer where the file ends)."""
        view, got = memoryview(buf), 0
        try:
            while got < buf.size:
                n = os.preadv(f.fileno(), [view[got:]], offset + got)
                if n == 0:
                    break
                got += n
        except OSError as err:
            raise self._error(k, f"cannot read {self.file}: {err}") from None
        return got

    # -- decoding -----------------------------------------------------------------
    def _decode_chunk(self, f, k, span, span_offset, dest):
        """Decode chunk ``k`` into ``dest`` (uint8, this chunk's frames within the scan).

        ``span``: the raw bytes of the task's chunks read at ``span_offset``, or None
        (then the chunk is read from ``f`` by itself).
        """
        if self.offsets[k] < 0:
            dest.view(self.dtype)[:] = self.fill
            return
        size, offset = int(self.sizes[k]), int(self.offsets[k])
        if span is None:
            raw = self._read_into(f, offset, np.empty(size, np.uint8), k)
        else:
            raw = span[offset - span_offset:offset - span_offset + size]
        whole = self.chunk_frames * self.frame_nbytes
        mask = int(self.masks[k])
        steps = [self.filters[i] for i in reversed(range(len(self.filters)))
                 if not mask >> i & 1]  # a set bit: HDF5 skipped that filter for this chunk
        data = raw
        for i, spec in enumerate(steps):
            last = i == len(steps) - 1 and dest.size == whole
            data = self._undo(k, spec, data, whole, dest if last else None)
        if data is dest:
            return
        if data.size < dest.size:
            raise self._error(k, f"chunk holds {data.size} bytes, expected {whole}")
        dest[:] = data[:dest.size]

    def _undo(self, k, spec, data, whole, target):
        """Undo one filter; the bitshuffle decoder writes straight into ``target`` if given."""
        fid, cd = spec
        if fid == _DEFLATE:
            try:
                return np.frombuffer(_inflate(data, bufsize=whole), np.uint8)
            except (zlib.error, _InflateError) as err:
                raise self._error(k, f"corrupt gzip chunk: {err}") from None
        if fid == _SHUFFLE:
            itemsize = cd[0] if cd else self.dtype.itemsize
            body = data[:data.size - data.size % itemsize]
            out = np.empty(data.size, np.uint8)
            out[:body.size] = body.reshape(itemsize, -1).T.ravel()
            out[body.size:] = data[body.size:]
            return out
        return self._bitshuffle(k, cd, data, whole, target)

    def _bitshuffle(self, k, cd, data, whole, target):
        codec = _bshuf_codec(cd[4] if len(cd) > 4 else 0)
        out = np.empty(whole, np.uint8) if target is None else target
        status = _bshuf_decode(ctypes.cast(codec, ctypes.c_void_p).value, data, out,
                               self.dtype.itemsize)
        if status < 0:
            raise self._error(k, "corrupt bitshuffle chunk" + (
                " (bad block headers)" if status == -1 else " (decoder failed)"))
        return out

    def _bitshuffle_only(self, k0, k1):
        return (len(self.filters) == 1 and self.filters[0][0] == _BITSHUFFLE
                and not self.masks[k0:k1].any())

    def _bitshuffle_span(self, k0, k1, raw, buffers):
        """Decode back-to-back bitshuffle chunks in one compiled call (no GIL, no Python per chunk)."""
        whole = self.chunk_frames * self.frame_nbytes
        out = buffers.frame_bytes((k1 - k0) * whole)
        codec = _bshuf_codec(self.filters[0][1][4])
        offsets = self.offsets[k0:k1] - self.offsets[k0]
        bad, status = _bshuf_decode_span(ctypes.cast(codec, ctypes.c_void_p).value, raw, offsets,
                                         self.sizes[k0:k1], out, whole, self.dtype.itemsize)
        if status < 0:
            raise self._error(k0 + bad, "corrupt bitshuffle chunk" + (
                " (bad block headers)" if status == -1 else " (decoder failed)"))
        return out.view(self.dtype).reshape(-1, self.frame_pixels)

    def _error(self, k, message, frame=None):
        frame = self.frame_offset + int(self.starts[k] if frame is None else frame)
        if os.path.realpath(self.file) != os.path.realpath(self.name):
            message += f" (stored in {self.file})"
        return ScanError(f"frame {frame} is unreadable: {message}", path=self.name,
                         dataset=self.dataset, frame=frame)


def plan_dataset(ds: h5py.Dataset, *, name=None, dataset=None,
                 frame_offset=0) -> ChunkPlan | None:
    """A :class:`ChunkPlan` for a 3-D frame stack, or None if it needs h5py to read it.

    ``name``/``dataset``: the file and dataset path to name in errors (the scan's
    master file; the data may live in another file through an external link);
    ``frame_offset``: index of this dataset's first frame within the scan.
    """
    try:
        return _plan(ds, name, dataset, frame_offset)
    except (OSError, RuntimeError, ValueError, KeyError, AttributeError, TypeError):
        return None  # anything unusual: h5py reads it


def _plan(ds, name, dataset, frame_offset):
    if ds.ndim != 3 or ds.dtype.kind not in "uif" or not ds.dtype.isnative:
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() or ds.is_virtual:
        return None
    filters = [dcpl.get_filter(i)[:3] for i in range(dcpl.get_nfilters())]
    if not all(_supported(fid, cd) for fid, _, cd in filters):
        return None
    common = dict(file=ds.file.filename, name=str(name or ds.file.filename),
                  dataset=dataset or ds.name,
                  n_frames=int(ds.shape[0]), frame_shape=ds.shape[1:], dtype=ds.dtype,
                  filters=tuple((fid, tuple(cd)) for fid, _, cd in filters),
                  fill=ds.fillvalue, frame_offset=frame_offset)
    if ds.chunks is None:
        return None if filters else _contiguous_plan(ds, common)
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
        return None  # chunks tile frames: h5py assembles them
    return _chunked_plan(ds, common)


def _supported(fid, cd):
    if fid in (_DEFLATE, _SHUFFLE):
        return True
    return fid == _BITSHUFFLE and len(cd) > 4 and _bshuf_codec(cd[4]) is not None


def _contiguous_plan(ds, common):
    offset = ds.id.get_offset()
    if offset is None:
        return None
    frame_nbytes = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
    per_piece = max(1, _CONTIGUOUS_PIECE // max(1, frame_nbytes))
    starts = np.arange(0, ds.shape[0], per_piece, dtype=np.int64)
    counts = np.minimum(per_piece, ds.shape[0] - starts)
    return ChunkPlan(chunk_frames=per_piece, starts=starts,
                     offsets=offset + starts * frame_nbytes, sizes=counts * frame_nbytes,
                     masks=np.zeros(len(starts), np.int64), **common)


def _chunked_plan(ds, common):
    per_chunk = int(ds.chunks[0])
    n_chunks = -(-ds.shape[0] // per_chunk)
    offsets = np.full(n_chunks, -1, np.int64)
    sizes = np.zeros(n_chunks, np.int64)
    masks = np.zeros(n_chunks, np.int64)

    def record(info):
        k = info.chunk_offset[0] // per_chunk
        offsets[k], sizes[k], masks[k] = info.byte_offset, info.size, info.filter_mask

    if hasattr(ds.id, "chunk_iter"):
        ds.id.chunk_iter(record)
    else:  # HDF5 < 1.12.3
        for i in range(ds.id.get_num_chunks()):
            record(ds.id.get_chunk_info(i))
    starts = np.arange(n_chunks, dtype=np.int64) * per_chunk
    return ChunkPlan(chunk_frames=per_chunk, starts=starts, offsets=offsets, sizes=sizes,
                     masks=masks, **common)


# -- bitshuffle ------------------------------------------------------------------------

_CODECS: dict = {}


def _bshuf_codec(compression):
    """ctypes function ``bshuf_decompress_lz4``/``_zstd`` of hdf5plugin's library, or None."""
    symbol = {_BSHUF_LZ4: "bshuf_decompress_lz4", _BSHUF_ZSTD: "bshuf_decompress_zstd"}.get(
        compression)
    if symbol is None:
        return None
    if symbol not in _CODECS:
        _CODECS[symbol] = _load_codec(symbol)
    return _CODECS[symbol]


def _load_codec(symbol):
    try:
        import hdf5plugin

        names = glob.glob(os.path.join(hdf5plugin.PLUGIN_PATH, "*h5bshuf*"))
        func = getattr(ctypes.CDLL(names[0]), symbol)
    except (ImportError, OSError, IndexError, AttributeError):
        return None
    func.restype = ctypes.c_int64
    func.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                     ctypes.c_size_t]
    return func


@intrinsic
def _call_decoder(typingctx, address, source, dest, n, itemsize, block):
    """Call the C function at ``address`` (bshuf_decompress_*) with the GIL released."""
    sig = types.int64(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(i64, [i8p, i8p, i64, i64, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        src, dst = (builder.inttoptr(a, i8p) for a in args[1:3])
        return builder.call(fn, [src, dst, *args[3:]])

    return sig, codegen


@njit(nogil=True, cache=True)
def _bshuf_decode(address, data, out, itemsize):
    """Decode one bitshuffle chunk ``data`` into ``out``: 0, -1 bad headers, -2 decoder error."""
    block = _bshuf_blocks(data, out.size, itemsize)
    if block < 0:
        return -1
    used = _call_decoder(address, data.ctypes.data + 12, out.ctypes.data, out.size // itemsize,
                         itemsize, block)
    return 0 if used == data.size - 12 else -2


@njit(nogil=True, cache=True)
def _bshuf_decode_span(address, raw, offsets, sizes, out, whole, itemsize):
    """Decode chunk ``i`` (``raw[offsets[i]:][:sizes[i]]``) into ``out[i * whole:]``.

    Returns ``(i, status)``: the first failing chunk and its status, or ``(0, 0)``.
    """
    for i in range(offsets.size):
        status = _bshuf_decode(address, raw[offsets[i]:offsets[i] + sizes[i]],
                               out[i * whole:(i + 1) * whole], itemsize)
        if status < 0:
            return i, status
    return 0, 0


@njit(nogil=True, cache=True)
def _be(buf, pos, nbytes):
    value = 0
    for i in range(nbytes):
        value = (value << 8) | int(buf[pos + i])
    return value


@njit(nogil=True, cache=True)
def _bshuf_blocks(buf, nbytes, itemsize):
    """Block size in elements if the chunk's headers fit ``buf`` exactly, else -1.

    Layout: 8-byte size, 4-byte block size (both big-endian), then per block of
    ``block`` elements (the last one rounded down to a multiple of 8) a 4-byte
    compressed size and the data, then the ``n % 8`` leftover elements raw.
    """
    if buf.size < 12 or _be(buf, 0, 8) != nbytes:
        return -1
    block_bytes = _be(buf, 8, 4)
    if block_bytes <= 0 or block_bytes % (8 * itemsize):
        return -1
    block = block_bytes // itemsize
    n = nbytes // itemsize
    pos = 12
    done = 0
    while done < n:
        size = min(block, n - done)
        size -= size % 8
        if size == 0:
            break
        if pos + 4 > buf.size:
            return -1
        pos += 4 + _be(buf, pos, 4)
        done += size
    if pos + (n - done) * itemsize != buf.size:
        return -1
    return block
