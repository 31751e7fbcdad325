"""Benchmark FrameGallery paging, thumbnail rendering and the store-observer redraw.

Run from the repository root: ``python -m bench.bench_gallery`` (``--frames`` in the scan,
``--shape`` of a frame, ``--per-page``, ``--repeat``). Baselines, same process:
reading the page's frames alone (``source[indices]``), Pillow's PNG encoder (when Pillow is
installed) for the encoder, and ``store.assign`` without any widget for the redraw.
"""

from __future__ import annotations

import argparse
import io
import statistics

import numpy as np

from bench.bench_labels import timings
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import FrameGallery
from xlabel.widgets.imaging import _frame_rgb, encode_png


def median_time(func, repeat):
    return statistics.median(timings(func, repeat))


def report(name, seconds, baseline=None, what="baseline"):
    ratio = f"  ({seconds / baseline:6.2f}x {what})" if baseline else ""
    print(f"{name:<52s} {seconds * 1e3:8.2f} ms{ratio}")


def bench_paging(source, store, per_page, repeat):
    n_pages = len(source) // per_page
    read = median_time(lambda i: source[np.arange(per_page) + (i % n_pages) * per_page], repeat)
    report(f"baseline: read {per_page} frames source[idx]", read)
    pages = iter(range(1, 10 ** 6))

    def cold(_):
        gallery._thumbs.clear()
        gallery.go_to(next(pages) % n_pages)

    gallery = FrameGallery(source, np.arange(len(source)), store=store, per_page=per_page)
    report(f"page of {per_page}, cold (read + scale + PNG)", median_time(cold, repeat), read, "read")
    report(f"page of {per_page}, cached (paging back)",
           median_time(lambda i: gallery.go_to(i % n_pages), repeat), read, "read")
    return gallery


def bench_first_page(source, per_page, repeat):
    """A new gallery's first page: contrast per frame vs the default shared range.

    The shared range reads and block-averages 8 reference frames once per gallery.
    """
    shown = np.arange(per_page)
    per_frame = median_time(lambda i: FrameGallery(source, shown, per_page=per_page,
                                                   vrange="frame"), repeat)
    report(f"new gallery, page of {per_page}, contrast per frame", per_frame)
    shared = median_time(lambda i: FrameGallery(source, shown, per_page=per_page), repeat)
    report(f"new gallery, page of {per_page}, shared range (default)", shared, per_frame,
           "per frame")


def bench_encoder(source, repeat):
    rgb = _frame_rgb(source[0], source, max_size=128)
    ours = median_time(lambda i: encode_png(rgb), repeat)
    try:
        from PIL import Image
    except ImportError:
        report("encode 128px thumbnail PNG (xlabel, Pillow absent)", ours)
        return

    def pillow(_):
        Image.fromarray(rgb).save(io.BytesIO(), format="PNG", compress_level=3)  # same zlib level

    base = median_time(pillow, repeat)
    report("baseline: Pillow PNG encode (compress_level=3)", base)
    report("xlabel encode_png (numpy + zlib)", ours, base, "Pillow")


def bench_redraw(store, gallery, repeat):
    bare = LabelStore(store.n_frames, classes=store.classes)
    base = median_time(lambda i: bare.assign([i % 5], i % 2), repeat)
    report("baseline: store.assign(1 frame), no widget", base)
    observed = median_time(lambda i: store.assign([gallery.page_indices[i % 5]], i % 2), repeat)
    report("store.assign(1 visible frame) + gallery redraw", observed, base, "bare assign")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    parser.add_argument("--per-page", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    frames = rng.poisson(50, size=(args.frames, *args.shape)).astype(np.uint16)
    frames[:, ::64] = 65535                                  # Eiger-like gap rows (invalid)
    source = ArraySource(frames, name="bench")
    store = LabelStore(len(source))
    print(f"{args.frames} frames {args.shape[0]}x{args.shape[1]} uint16, "
          f"{args.per_page} per page, median of {args.repeat}")
    gallery = bench_paging(source, store, args.per_page, args.repeat)
    bench_first_page(source, args.per_page, args.repeat)
    bench_encoder(source, args.repeat * 10)
    bench_redraw(store, gallery, args.repeat * 10)


if __name__ == "__main__":
    main()
