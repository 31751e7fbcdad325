"""End to end: FluxScatter in a real JupyterLab + Chromium, mouse lassos with hover on."""

from __future__ import annotations

import numpy as np
import pytest

import xlabel
from xlabel.labels import LabelStore

from .plotting import is_red, pixel_colors, rectangle_lasso

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

N_FRAMES = 400
RAMP = np.arange(20)            # the shutter opens over the first 20 frames
SAMPLE = "scan_a"
SAMPLE_TRUTH = xlabel.samples.truth(SAMPLE)
SAMPLE_RAMP = SAMPLE_TRUTH.frame[SAMPLE_TRUTH.reason == "shutter"].to_numpy()
SAMPLE_GOOD = SAMPLE_TRUTH.frame[SAMPLE_TRUTH.reason == ""].to_numpy()
GD = "document.querySelectorAll('.xlabel-plot')[0]"


def scene_cells(store_dir, n_frames=N_FRAMES):
    return [
        "import numpy as np, pandas as pd\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import FluxScatter\n"
        f"n = {n_frames}\n"
        "rng = np.random.default_rng(0)\n"
        "mean = 1000 + rng.normal(0, 8, n)\n"
        f"mean[:{len(RAMP)}] = np.linspace(0, 800, {len(RAMP)})  # shutter ramp\n"
        "features = pd.DataFrame({'scan': 'sample', 'frame': np.arange(n), 'mean': mean})\n"
        f"store = LabelStore(n, classes=('good', 'bad'), path={str(store_dir)!r})\n"
        "w = FluxScatter(store, features)",
        "w",
    ]


def sample_scene_cells(store_dir):
    """FluxScatter of the mean flux of a bundled sample scan."""
    return [
        "import xlabel\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import FluxScatter\n"
        f"features = xlabel.frame_stats(xlabel.samples.path({SAMPLE!r}), progress=False)\n"
        "mean = features['mean'].to_numpy()\n"
        f"store = LabelStore(len(features), classes=('good', 'bad'), path={str(store_dir)!r})\n"
        "w = FluxScatter(store, features)",
        "w",
    ]


def wait_rendered(page):
    page.wait_js(f"() => {{ const gd = {GD}; return gd && gd.__xlabel && "
                 f"gd.__xlabel.firstRender !== undefined; }}", timeout=120_000)


def wait_status(page, text):
    try:
        page.wait_js("(t) => { const s = document.querySelector('.xlabel-status');"
                     " return s && s.textContent.startsWith(t); }", arg=text, timeout=30_000)
    except Exception as err:  # report what the page and the kernel saw instead
        shown = page.page.evaluate("() => document.querySelector('.xlabel-status').textContent")
        selected = page.kernel_json("w.selected.tolist()")
        raise AssertionError(f"status never began with {text!r}: it shows {shown!r}; "
                             f"kernel selection {selected}") from err


def wait_recolors(page, count):
    page.wait_js(f"(c) => {GD}.__xlabel.recolors >= c", arg=count)


def test_lasso_assign_undo_in_browser(open_notebook, tmp_path):
    store_dir = tmp_path / "labels.xlabel"
    page = open_notebook("scatter.ipynb", sample_scene_cells(store_dir))
    wait_rendered(page)
    p = page.page
    n_frames = page.kernel_json("len(features)")
    ramp = page.kernel_json(f"mean[{SAMPLE_RAMP.tolist()}].tolist()")
    good_min = page.kernel_json(f"mean[{SAMPLE_GOOD.tolist()}].min().item()")
    # The lasso's top edge runs between the ramp's brightest frame and the dimmest good one.
    top = (max(ramp) + good_min) / 2
    assert max(ramp) < top < good_min

    rectangle_lasso(p, -0.5, SAMPLE_RAMP[-1] + 0.5, min(ramp) - 1, top)
    p.mouse.move(5, 5)
    wait_status(page, f"{len(SAMPLE_RAMP)} selected")
    assert page.kernel_json("w.selected.tolist()") == SAMPLE_RAMP.tolist()

    p.click(".xlabel-button[data-id='assign:1']")
    wait_recolors(page, 1)
    labels, sources = page.store_state()
    assert np.flatnonzero(labels == 1).tolist() == SAMPLE_RAMP.tolist()
    assert (labels[len(SAMPLE_RAMP):] == -1).all()
    assert {sources[i] for i in SAMPLE_RAMP} == {"manual"}
    on_disk = LabelStore.open(store_dir)
    assert np.flatnonzero(on_disk.labels == 1).tolist() == SAMPLE_RAMP.tolist()
    assert is_red(pixel_colors(p, SAMPLE_RAMP)).mean() >= 0.9
    assert not is_red(pixel_colors(p, [100, 200, 300])).any()

    p.focus(".xlabel-scatter")
    p.keyboard.press("Control+z")
    wait_recolors(page, 2)
    assert page.kernel_json("store.counts()") == {"good": 0, "bad": 0, "unlabeled": n_frames}
    assert not is_red(pixel_colors(p, SAMPLE_RAMP)).any()


def test_twenty_lassos_with_hover_all_arrive(open_notebook, tmp_path):
    # 130 frames: about 10 px per frame, so half a frame of margin survives plotly's
    # simplification of the lasso outline.
    page = open_notebook("lassos.ipynb", scene_cells(tmp_path / "labels.xlabel", 130))
    wait_rendered(page)
    p = page.page
    hover_at = p.evaluate(f"() => {{ const gd = {GD}; const xa = gd._fullLayout.xaxis,"
                          f" ya = gd._fullLayout.yaxis; const b = gd.getBoundingClientRect();"
                          f" return [b.left + xa._offset + xa.l2p(gd.data[0].x[50]),"
                          f" b.top + ya._offset + ya.l2p(gd.data[0].y[50])]; }}")
    for k in range(20):
        first = 21 + 5 * k
        last = first + 1 + k % 3      # consecutive lassos select different counts
        rectangle_lasso(p, first - 0.5, last + 0.5, 940, 1060)
        p.mouse.move(*hover_at)       # hover right after mouse-up (the event that used to win)
        wait_status(page, f"{last - first + 1} selected")
        assert page.kernel_json("w.selected.tolist()") == list(range(first, last + 1))
    hovered = p.evaluate("() => document.querySelector('.xlabel-tooltip').style.display")
    assert hovered == "block"
