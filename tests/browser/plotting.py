"""Helpers to find plotly points on screen and draw mouse lassos over them."""

from __future__ import annotations

import numpy as np

# Page coordinates of points (by index) of the first plot in the page, panel ``panel``.
POINTS_JS = """([indices, panel]) => {
  const gd = document.querySelectorAll('.xlabel-plot')[0];
  const layout = gd._fullLayout;
  const suffix = panel ? String(panel + 1) : "";
  const xa = layout['xaxis' + suffix], ya = layout['yaxis' + suffix];
  const trace = gd.data[panel];
  const box = gd.getBoundingClientRect();
  return indices.map((i) => [box.left + xa._offset + xa.l2p(trace.x[i]),
                             box.top + ya._offset + ya.l2p(trace.y[i])]);
}"""

# Page coordinates of data-space points (x, y) in panel ``panel``.
DATA_TO_PAGE_JS = """([points, panel]) => {
  const gd = document.querySelectorAll('.xlabel-plot')[0];
  const layout = gd._fullLayout;
  const suffix = panel ? String(panel + 1) : "";
  const xa = layout['xaxis' + suffix], ya = layout['yaxis' + suffix];
  const box = gd.getBoundingClientRect();
  return points.map(([x, y]) => [box.left + xa._offset + xa.l2p(x),
                                 box.top + ya._offset + ya.l2p(y)]);
}"""


def lasso(page, corners, steps=6):
    """Drag a closed lasso through ``corners`` (page pixels) with many small moves."""
    corners = list(corners) + [corners[0]]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    page.mouse.up()


def rectangle_lasso(page, x0, x1, y0, y1, panel=0):
    """Lasso the data-space rectangle [x0, x1] x [y0, y1] of ``panel``."""
    x0, x1, y0, y1 = map(float, (x0, x1, y0, y1))
    corners = page.evaluate(DATA_TO_PAGE_JS, [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]], panel])
    lasso(page, corners)


def pixel_colors(page, indices, panel=0):
    """RGB of the screenshot at the screen positions of points ``indices``: (n, 3) array."""
    from io import BytesIO

    from PIL import Image

    positions = page.evaluate(POINTS_JS, [list(map(int, indices)), panel])
    image = Image.open(BytesIO(page.screenshot())).convert("RGB")
    scale = image.width / page.viewport_size["width"]
    array = np.asarray(image)
    return np.array([array[int(round(y * scale)), int(round(x * scale))] for x, y in positions])


def pixel_colors_xy(page, points, panel=0):
    """RGB of the screenshot at data-space points ``[(x, y), ...]``: (n, 3) array."""
    from io import BytesIO

    from PIL import Image

    positions = page.evaluate(DATA_TO_PAGE_JS, [[list(map(float, xy)) for xy in points], panel])
    image = Image.open(BytesIO(page.screenshot())).convert("RGB")
    scale = image.width / page.viewport_size["width"]
    array = np.asarray(image)
    return np.array([array[int(round(y * scale)), int(round(x * scale))] for x, y in positions])


def is_red(rgb) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=int)
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)
