"""Kernel-side scatter raster: xlabel's numba kernels against datashader, same process.

Run: .venv/bin/python -m bench.bench_raster [--sizes 1000000 10000000]

For each size (a flat crowd of frames in two classes plus one lone outlier of a third
class, as a K-means labelling looks) and a 900 x 400 px view it times, median of 5
after one warm-up call:

* render: xlabel's ``render_indexed`` (aggregate per class, rarest class on top, dots,
  density shading) + palette PNG (what the widgets send), and the same as RGBA + RGBA PNG
  (``render_rgba``, the previous encoding), against datashader (``Canvas.points`` + ``count_cat`` +
  ``shade`` + ``dynspread`` + PNG) on a DataFrame of the same arrays (built once,
  outside the timing: datashader needs a categorical column);
* lasso: xlabel's compiled ``points_in_polygon`` against matplotlib's
  ``Path.contains_points`` (when matplotlib is installed);
* hover: ``nearest_point`` (a full scan);
* recolor: ``RasterLayer.render`` + PNG for the view it rendered last (what assign, undo,
  redo and a new selection cost: each frame's pixel is kept per view, only the codes are
  counted again), against the same render from scratch (``render`` above: the cost of a
  zoom or pan).

It also checks the lone outlier's pixel: xlabel must draw it in its class color, while
datashader's ``count_cat`` mixes the colors of a pixel's classes by count.

datashader and matplotlib are bench-only (``pip install datashader``); xlabel does
not import them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import numpy as np
import pandas as pd

from xlabel.widgets._raster import (RasterLayer, View, make_axis, nearest_point, png_bytes,
                                    png_indexed, points_in_polygon, render_indexed, render_rgba)

PALETTE = ["#bbbbbb", "#2ca02c", "#d62728", "#1f77b4"]  # none, good, bad, odd
WIDTH, HEIGHT = 900, 400
REPEATS = 5


def scene(n, seed=0):
    """x = frame, y = mean flux (crowd at 1000), labels good/bad; frame n//3 a lone odd one."""
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=np.float64)
    y = 1000 + rng.normal(0, 8, n)
    codes = np.where(rng.random(n) < 0.02, 1, 0).astype(np.int32)
    lone = n // 3
    y[lone] = 1000.0                      # inside the crowd: only its color tells it apart
    codes[lone] = 2
    return x, y, codes, lone


def timed(function, repeats=REPEATS):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def xlabel_render(x, y, codes, view, x_axis, y_axis):
    """What a widget sends: the palette image as a palette PNG."""
    return png_indexed(*render_indexed(x, y, x_axis, y_axis, codes, PALETTE, view))


def datashader_render(frame, view):
    import datashader as ds
    import datashader.transfer_functions as tf

    canvas = ds.Canvas(plot_width=view.width, plot_height=view.height,
                       x_range=(view.x0, view.x1), y_range=(view.y0, view.y1))
    agg = canvas.points(frame, "x", "y", agg=ds.count_cat("code"))
    image = tf.dynspread(tf.shade(agg, color_key=PALETTE[1:], min_alpha=120), max_px=2)
    buffer = io.BytesIO()
    image.to_pil().save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), image


def matplotlib_lasso(x, y, px, py):
    from matplotlib.path import Path

    return np.flatnonzero(Path(np.column_stack([px, py])).contains_points(np.column_stack([x, y])))


def lone_pixel(view, x, y):
    col = int((x - view.x0) / (view.x1 - view.x0) * view.width)
    row = int((view.y1 - y) / (view.y1 - view.y0) * view.height)
    return row, col


def run(n):
    x, y, codes, lone = scene(n)
    view = View(-0.05 * n, 1.05 * n, 950.0, 1050.0, WIDTH, HEIGHT)
    x_axis, y_axis = make_axis(x), make_axis(y)
    t_ours, _ = timed(lambda: xlabel_render(x, y, codes, view, x_axis, y_axis))
    t_rgba, _ = timed(lambda: png_bytes(render_rgba(x, y, x_axis, y_axis, codes, PALETTE, view)))
    rgba = render_rgba(x, y, x_axis, y_axis, codes, PALETTE, view)
    row, col = lone_pixel(view, x[lone], y[lone])
    ours_rgb = rgba[row, col, :3].tolist()
    result = {"n": n, "render_xlabel_s": t_ours, "render_rgba_s": t_rgba,
              "lone_xlabel_rgb": ours_rgb}
    try:
        frame = pd.DataFrame({"x": x, "y": y, "code": pd.Categorical(codes, categories=[0, 1, 2])})
        t_ds, (_, image) = timed(lambda: datashader_render(frame, view))
        rgba_ds = np.asarray(image.to_pil().convert("RGBA"))
        result.update(render_datashader_s=t_ds, lone_datashader_rgb=rgba_ds[row, col, :3].tolist())
    except ImportError:
        result["render_datashader_s"] = None
    half = 0.01 * n + 0.5                  # edges between frames: no point on the boundary
    px = np.array([lone - half, lone + half, lone + half, lone - half])
    py = np.array([990.0, 990.0, 1010.0, 1010.0])
    t_poly, inside = timed(lambda: points_in_polygon(x, y, x_axis, y_axis, px, py))
    result.update(lasso_xlabel_s=t_poly, lasso_count=len(inside))
    try:
        t_mpl, inside_mpl = timed(lambda: matplotlib_lasso(x, y, px, py), repeats=3)
        result.update(lasso_matplotlib_s=t_mpl, lasso_same=bool(np.array_equal(inside, inside_mpl)))
    except ImportError:
        result["lasso_matplotlib_s"] = None
    t_hover, _ = timed(lambda: nearest_point(x, y, x_axis, y_axis, view, float(lone), 1000.0))
    result["hover_xlabel_s"] = t_hover
    layer = RasterLayer(x, y)
    layer.render(codes, PALETTE, view)                 # this view's pixels, kept
    relabeled = codes.copy()
    relabeled[: n // 10] = 2                            # an assign of a tenth of the frames
    result["recolor_xlabel_s"], _ = timed(lambda: layer.render(relabeled, PALETTE, view))
    return result


def main(sizes):
    print(f"load average before: {os.getloadavg()}")
    for n in sizes:
        r = run(n)
        line = (f"n={n:>11,}: render xlabel {r['render_xlabel_s'] * 1e3:.0f} ms (as RGBA PNG "
                f"{r['render_rgba_s'] * 1e3:.0f} ms)")
        if r.get("render_datashader_s"):
            line += (f", datashader {r['render_datashader_s'] * 1e3:.0f} ms "
                     f"(ratio datashader/xlabel {r['render_datashader_s'] / r['render_xlabel_s']:.2f}); "
                     f"lone frame pixel xlabel {r['lone_xlabel_rgb']} vs datashader "
                     f"{r['lone_datashader_rgb']} (its class color: [31, 119, 180])")
        line += f"; lasso xlabel {r['lasso_xlabel_s'] * 1e3:.1f} ms ({r['lasso_count']} frames)"
        if r.get("lasso_matplotlib_s"):
            line += (f", matplotlib Path {r['lasso_matplotlib_s'] * 1e3:.0f} ms "
                     f"(same frames: {r['lasso_same']})")
        line += f"; hover {r['hover_xlabel_s'] * 1e3:.1f} ms"
        line += (f"; recolor (pixels kept for the view) {r['recolor_xlabel_s'] * 1e3:.0f} ms "
                 f"vs render from scratch {r['render_xlabel_s'] * 1e3:.0f} ms")
        print(line, flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    main(parser.parse_args().sizes)
