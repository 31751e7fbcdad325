"""End to end: the FrameGallery under FluxScatter in JupyterLab + Chromium.

A mouse lasso over the beam loss of the bundled scan_a selects 25 frames; the gallery
pages through all of them (frames whose label disagrees with their neighbours first),
draws them with one shared contrast (the beam-loss frames look dark), and empties when
the selection is cleared.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import xlabel

from .plotting import rectangle_lasso
from .test_scatter_browser import wait_rendered, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SAMPLE = "scan_a"
TRUTH = xlabel.samples.truth(SAMPLE)
BEAM_LOSS = TRUTH.frame[TRUTH.reason == "beam_loss"].to_numpy()      # 68..74
FIRST, LAST = 60, 84                                                  # the lasso: 25 frames

# The gallery's visible cells, in page order: caption text and mean brightness of its image.
CELLS_JS = """() => {
  const out = [];
  for (const box of document.querySelectorAll('.xlabel-gallery-cell')) {
    if (box.offsetParent === null) continue;                   // hidden (display: none)
    const img = box.querySelector('img');
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += data[i];
    out.push([box.querySelector('.widget-html').textContent, sum / (data.length / 4)]);
  }
  return out;
}"""


def gallery_cells(store_dir):
    return [
        "import xlabel\n"
        "from xlabel import cluster\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import FluxScatter\n"
        f"src = xlabel.open_scan(xlabel.samples.path({SAMPLE!r}))\n"
        "features = xlabel.frame_stats(src, progress=False)\n"
        f"store = LabelStore(len(features), classes=('good', 'bad'), path={str(store_dir)!r})\n"
        "ids = cluster.order_by(cluster.kmeans(features, k=2), features['mean'])\n"
        "store.seed_from(ids, mapping={0: 'bad', 1: 'good'}, source='kmeans')\n"
        "w = FluxScatter(store, features, source=src)",
        "w",
    ]


def page_label(p):
    return p.evaluate("() => [...document.querySelectorAll('.widget-label')]"
                      ".map((e) => e.textContent).find((t) => t.startsWith('frames ')"
                      " || t === 'no frames') || ''")


def wait_page_label(page, text):
    page.wait_js("(t) => [...document.querySelectorAll('.widget-label')]"
                 ".some((e) => e.textContent === t)", arg=text, timeout=60_000)


def wait_images(page, count):
    page.wait_js("(n) => { const imgs = [...document.querySelectorAll('.xlabel-gallery-cell')]"
                 ".filter((b) => b.offsetParent !== null).map((b) => b.querySelector('img'));"
                 " return imgs.length === n && imgs.every((i) => i.complete &&"
                 " i.naturalWidth > 0); }", arg=count, timeout=60_000)


def frame_of(caption):
    return int(re.match(r"#(\d+) ", caption).group(1))


def test_gallery_pages_through_the_lasso_in_review_order(open_notebook, tmp_path):
    page = open_notebook("gallery.ipynb", gallery_cells(tmp_path / "labels.xlabel"))
    wait_rendered(page)
    p = page.page
    mean = np.array(page.kernel_json("features['mean'].tolist()"))
    span = mean.max() - mean.min()      # inside plotly's 5 % autorange padding
    rectangle_lasso(p, FIRST - 0.5, LAST + 0.5, mean.min() - 0.02 * span,
                    mean.max() + 0.02 * span)
    p.mouse.move(5, 5)
    n_selected = LAST - FIRST + 1
    wait_status(page, f"{n_selected} selected")
    assert page.kernel_json("w.selected.tolist()") == list(range(FIRST, LAST + 1))

    # every selected frame, 6 per page, said as "of 25"
    wait_page_label(page, f"frames 1-6 of {n_selected} (page 1/5)")
    order = page.kernel_json("w.gallery.indices.tolist()")
    assert sorted(order) == list(range(FIRST, LAST + 1))
    # review order: frames whose K-means label differs from a neighbour's come first
    labels = np.array(page.kernel_json("store.labels.tolist()"))
    differs = [bool(np.any(labels[i - 2:i + 3] != labels[i])) for i in order]
    assert any(differs) and not all(differs)
    assert differs == sorted(differs, reverse=True)

    seen = {}
    for number in range(5):
        first = 6 * number
        shown = min(6, n_selected - first)
        wait_page_label(page, f"frames {first + 1}-{first + shown} of {n_selected} "
                              f"(page {number + 1}/5)")
        wait_images(page, shown)
        cells = p.evaluate(CELLS_JS)
        assert [frame_of(caption) for caption, _ in cells] == order[first:first + shown]
        seen.update({frame_of(caption): brightness for caption, brightness in cells})
        if number < 4:
            p.click("button:has-text('next ▶')")
    assert sorted(seen) == list(range(FIRST, LAST + 1))
    # one contrast for all: the deepest beam-loss frames look darker than the good ones
    deep = BEAM_LOSS[2:-2]
    good = [i for i in range(FIRST, LAST + 1) if i not in BEAM_LOSS]
    assert max(seen[i] for i in deep) < 0.7 * np.median([seen[i] for i in good])

    # clearing the selection empties the gallery
    p.click(".xlabel-button[data-id='clear']")
    wait_page_label(page, "no frames")
    assert p.evaluate("() => [...document.querySelectorAll('.xlabel-gallery-cell')]"
                      ".filter((b) => b.offsetParent !== null).length") == 0
    assert page.kernel_json("w.gallery.indices.tolist()") == []
