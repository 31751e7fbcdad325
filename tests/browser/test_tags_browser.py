"""End to end: tag frames by lasso in FluxScatter (real JupyterLab + Chromium), both modes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from xlabel.labels import LabelStore
from xlabel.widgets._raster import hex_rgb
from xlabel.widgets._scatter_tags import TAG_COLORS

from .plotting import pixel_colors_xy, rectangle_lasso
from .test_scatter_browser import GD, RAMP, scene_cells, wait_recolors, wait_rendered

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CROWD = [100, 200, 300]
RINGS = np.array(hex_rgb(TAG_COLORS[0]))


def is_tag_colored(rgb) -> np.ndarray:
    return (np.abs(np.asarray(rgb, dtype=int) - RINGS) < 45).all(axis=-1)


def wait_status_has(page, text):
    try:
        page.wait_js("(t) => document.querySelector('.xlabel-status').textContent.includes(t)",
                     arg=text, timeout=30_000)
    except Exception as err:
        shown = page.page.evaluate("() => document.querySelector('.xlabel-status').textContent")
        raise AssertionError(f"status never showed {text!r}: it shows {shown!r}") from err


def wait_colors(page, frames, tagged, timeout=30.0):
    """Poll screenshots until frames ``frames`` are (or are not) in the tag's colour."""
    xy = page.kernel_json(f"features[[w.x, w.y]].to_numpy()[{list(map(int, frames))}].tolist()")
    deadline = time.monotonic() + timeout
    while True:
        seen = is_tag_colored(pixel_colors_xy(page.page, xy))
        if (seen == tagged).all():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"frames {frames}: tag colour {seen.tolist()}, "
                                 f"expected {tagged}")
        time.sleep(0.3)


def tag_state(page):
    return page.kernel_json("{'tagged': np.flatnonzero(store.tagged('rings')).tolist(), "
                            "'sources': sorted({store.tag_provenance(int(i))['rings']['source'] "
                            "for i in np.flatnonzero(store.tagged('rings'))}), "
                            "'labeled': int((store.labels != -1).sum())}")


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_lasso_add_tag_button_recolors_and_undoes(open_notebook, tmp_path, raster):
    store_dir = tmp_path / "labels.xlabel"
    page = open_notebook(f"tags_{raster}.ipynb", scene_cells(store_dir, raster=raster))
    wait_rendered(page)
    assert page.kernel_json("w.raster") is raster
    p = page.page
    ramp, half = RAMP.tolist(), RAMP[:10].tolist()

    # Lasso the shutter ramp (far below the crowd at ~1000), name a new tag, add it.
    rectangle_lasso(p, -5, 40, -50, 900)
    p.mouse.move(5, 5)
    wait_status_has(page, f"{len(ramp)} selected")
    assert page.kernel_json("w.selected.tolist()") == ramp
    p.fill(".xlabel-tag-name", "rings")
    p.click(".xlabel-tag-button[data-id='add_tag']")
    wait_status_has(page, f"tag 'rings' added to {len(ramp)} frame(s)")
    assert tag_state(page) == {"tagged": ramp, "sources": ["manual"], "labeled": 0}
    assert np.flatnonzero(LabelStore.open(store_dir).tagged("rings")).tolist() == ramp
    wait_colors(page, ramp[::4], False)              # still coloured by label

    # The colour dropdown followed the new tag; choosing it recolours the plot.
    color_select = ".xlabel-controls label:has-text('color') select"
    page.wait_js("() => [...document.querySelectorAll('.xlabel-controls select')]"
                 ".some((s) => [...s.options].some((o) => o.value === 'tag:rings'))")
    assert p.evaluate("() => [...document.querySelectorAll('.xlabel-tags datalist option')]"
                      ".map(o => o.value)") == ["rings"]
    recolors = p.evaluate(f"() => {GD}.__xlabel.recolors")
    p.select_option(color_select, "tag:rings")
    wait_recolors(page, recolors + 1)
    assert page.kernel_json("w.color_by") == "tag:rings"
    wait_colors(page, ramp, True)

    # Lasso the ramp's lower half and remove the tag there.
    rectangle_lasso(p, -5, 40, -50, 400)
    p.mouse.move(5, 5)
    wait_status_has(page, f"{len(half)} selected")
    p.click(".xlabel-tag-button[data-id='remove_tag']")     # the field still says "rings"
    wait_status_has(page, f"tag 'rings' removed from {len(half)} frame(s)")
    assert tag_state(page)["tagged"] == ramp[10:]
    p.focus(".xlabel-scatter")
    p.keyboard.press("Escape")                       # full opacity for every frame again
    page.wait_js("() => document.querySelector('.xlabel-status').textContent === '0 selected'")
    wait_colors(page, half + ramp[10:] + CROWD, [False] * 10 + [True] * 10 + [False] * 3)

    # Undo from the keyboard brings the tag and its colour back.
    p.focus(".xlabel-scatter")
    p.keyboard.press("Control+z")
    wait_status_has(page, "undid step 1")
    assert tag_state(page)["tagged"] == ramp
    wait_colors(page, ramp + CROWD, [True] * 20 + [False] * 3)
    assert np.flatnonzero(LabelStore.open(store_dir).tagged("rings")).tolist() == ramp

    # Typing a name with digits in the field never reaches the class keys; Enter adds it.
    page.kernel("w.select([100])")
    wait_status_has(page, "1 selected")
    p.fill(".xlabel-tag-name", "")
    p.click(".xlabel-tag-name")
    p.keyboard.type("spots2")
    p.keyboard.press("Enter")
    wait_status_has(page, "tag 'spots2' added to 1 frame(s)")
    assert page.kernel_json("np.flatnonzero(store.tagged('spots2')).tolist()") == [100]
    assert page.kernel_json("int((store.labels != -1).sum())") == 0
