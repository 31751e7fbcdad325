"""End to end: FluxScatter in a real JupyterLab + Chromium, mouse lassos with hover on."""

from __future__ import annotations

import numpy as np
import pytest

import xlabel
from xlabel.labels import LabelStore

from .plotting import DATA_TO_PAGE_JS, is_red, lasso, pixel_colors_xy, rectangle_lasso

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

N_FRAMES = 400
RAMP = np.arange(20)            # the shutter opens over the first 20 frames
SAMPLE = "scan_a"
SAMPLE_TRUTH = xlabel.samples.truth(SAMPLE)
SAMPLE_RAMP = SAMPLE_TRUTH.frame[SAMPLE_TRUTH.reason == "shutter"].to_numpy()
SAMPLE_GOOD = SAMPLE_TRUTH.frame[SAMPLE_TRUTH.reason == ""].to_numpy()
GD = "document.querySelectorAll('.xlabel-plot')[0]"


def scene_cells(store_dir, n_frames=N_FRAMES, raster=None, log_y=False):
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
        f"w = FluxScatter(store, features, raster={raster!r}, log_y={log_y!r})",
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


def colors_of(page, indices):
    """Screen colors of frames ``indices`` (positions from the kernel: both modes)."""
    xy = page.kernel_json(f"features[[w.x, w.y]].to_numpy()[{list(map(int, indices))}].tolist()")
    return pixel_colors_xy(page.page, xy)


def page_xy(page, points):
    return page.page.evaluate(DATA_TO_PAGE_JS, [[list(map(float, xy)) for xy in points], 0])


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_lasso_assign_undo_in_browser(open_notebook, tmp_path, raster):
    store_dir = tmp_path / "labels.xlabel"
    cells = sample_scene_cells(store_dir)
    cells[0] = cells[0].replace("FluxScatter(store, features)",
                                f"FluxScatter(store, features, raster={raster})")
    page = open_notebook(f"scatter_{raster}.ipynb", cells)
    wait_rendered(page)
    assert page.kernel_json("w.raster") is raster
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
    assert is_red(colors_of(page, SAMPLE_RAMP)).mean() >= 0.9
    assert not is_red(colors_of(page, [100, 200, 300])).any()

    p.focus(".xlabel-scatter")
    p.keyboard.press("Control+z")
    wait_recolors(page, 2)
    assert page.kernel_json("store.counts()") == {"good": 0, "bad": 0, "unlabeled": n_frames}
    assert not is_red(colors_of(page, SAMPLE_RAMP)).any()


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
    # plotly throttles hover to one per 50 ms, and the release itself hovered: the
    # tooltip may come up to 50 ms after the kernel's answer, so wait for it.
    page.wait_js("() => document.querySelector('.xlabel-tooltip').style.display === 'block'",
                 timeout=5_000)
    tip = p.evaluate("() => document.querySelector('.xlabel-tooltip').textContent")
    assert tip.startswith("frame 50 ")


TICK_LABELS_JS = f"""() => {{
  const gd = {GD};
  const svg = gd.querySelector('.main-svg').getBoundingClientRect();
  return Array.from(gd.querySelectorAll('.xtick text, .ytick text')).map((t) => {{
    const r = t.getBoundingClientRect();
    return {{ text: t.textContent, x: t.closest('.xtick') !== null,
             shown: getComputedStyle(t).display !== 'none',
             inside: r.left >= svg.left && r.right <= svg.right && r.top >= svg.top &&
                     r.bottom <= svg.bottom }};
  }});
}}"""


def test_tick_labels_at_the_plot_edges_are_shown_whole(open_notebook, tmp_path):
    """Tick labels are not measured on zoom (plotly's measuring was 2/3 of a relayout in
    JupyterLab): the margins leave room for a label at either end of each axis, so no
    label is hidden or cut, even where a tick falls on the edge of the plot."""
    page = open_notebook("ticks.ipynb", scene_cells(tmp_path / "labels.xlabel"))
    wait_rendered(page)
    p = page.page
    for x_range, y_range, edge in (([0, 100], [950, 1050], "100"),
                                   ([-5, 400], [0, 1100], "400"),
                                   ([90_000, 100_000], [-1_000_000, 1_000_000], "100k")):
        p.evaluate(f"() => Plotly.relayout({GD}, {{'xaxis.range': {x_range},"
                   f" 'yaxis.range': {y_range}}})")
        labels = p.evaluate(TICK_LABELS_JS)
        assert labels and all(label["shown"] and label["inside"] for label in labels), labels
        assert any(label["x"] and label["text"] == edge for label in labels), labels


# ---------------------------------------------------------------- kernel raster (issue 15)

OUTLIER = 123_456


def million_cells(n=1_000_000):
    """1,000,000 frames made in the kernel: a flat crowd and one dim outlier frame."""
    return [
        "import numpy as np, pandas as pd\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import FluxScatter\n"
        f"n = {n}\n"
        "rng = np.random.default_rng(1)\n"
        "mean = 1000 + rng.normal(0, 8, n)\n"
        f"mean[{OUTLIER}] = 600.0\n"
        "features = pd.DataFrame({'frame': np.arange(n), 'mean': mean})\n"
        "store = LabelStore(n, classes=('good', 'bad'))\n"
        "w = FluxScatter(store, features)",
        "w",
    ]


def test_lasso_one_outlier_among_a_million_frames(open_notebook):
    page = open_notebook("million.ipynb", million_cells())
    wait_rendered(page)
    p = page.page
    assert page.kernel_json("w.raster") is True
    # The browser got an image, not a million points.
    assert p.evaluate(f"() => {GD}.data.every((t) => t.x.length <= 2)")
    # The lone frame is drawn as a visible (grey, unlabeled) dot in the empty space.
    dot = pixel_colors_xy(p, [(OUTLIER, 600.0)])[0]
    assert dot.max() < 200, dot

    # Hover: the kernel finds the nearest frame.
    x, y = page_xy(page, [(OUTLIER, 600.0)])[0]
    p.mouse.move(x + 1, y + 1)
    page.wait_js("() => document.querySelector('.xlabel-tooltip').style.display === 'block'")
    tip = p.evaluate("() => document.querySelector('.xlabel-tooltip').textContent")
    assert f"frame {OUTLIER}" in tip and "mean: 600" in tip and "labels: unlabeled" in tip

    rectangle_lasso(p, OUTLIER - 30_000, OUTLIER + 30_000, 560, 640)
    wait_status(page, "1 selected")
    assert page.kernel_json("w.selected.tolist()") == [OUTLIER]
    p.click(".xlabel-button[data-id='assign:1']")
    wait_recolors(page, 1)
    assert page.kernel_json("np.flatnonzero(store.labels != -1).tolist()") == [OUTLIER]
    assert page.kernel_json("int(store.labels[w.selected[0]])") == 1
    assert is_red(pixel_colors_xy(p, [(OUTLIER, 600.0)])).all()

    # Zoom re-renders the visible range in the kernel.
    images = p.evaluate(f"() => {GD}.__xlabel.images")
    p.evaluate(f"() => Plotly.relayout({GD}, {{'xaxis.range': [{OUTLIER - 50}, {OUTLIER + 50}],"
               f" 'yaxis.range': [550, 1100]}})")
    page.wait_js(f"(n) => {GD}.__xlabel.images > n", arg=images)
    page.wait_js(f"() => Math.abs({GD}.layout.images[0].x - {OUTLIER - 50}) < 1e-6")
    assert is_red(pixel_colors_xy(p, [(OUTLIER, 600.0)])).all()
    assert not is_red(pixel_colors_xy(p, [(OUTLIER + 20, 1000.0)])).any()


# ---------------------------------------------------------------- issue 11: lasso traps

def open_scene(open_notebook, tmp_path, name, raster=None):
    """The 130-frame scene (about 10 px per frame) rendered; returns (LabPage, page)."""
    page = open_notebook(f"{name}_{raster}.ipynb",
                         scene_cells(tmp_path / "labels.xlabel", 130, raster=raster))
    wait_rendered(page)
    return page, page.page


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_new_lasso_inside_old_outline_makes_new_selection(open_notebook, tmp_path, raster):
    page, p = open_scene(open_notebook, tmp_path, "inside", raster)
    rectangle_lasso(p, 29.5, 50.5, 940, 1060)
    wait_status(page, "21 selected")
    # No pause: the second drag starts inside the first outline as soon as the count shows
    # (raster: within plotly's own end of the first drag, up to 100 ms after its release).
    rectangle_lasso(p, 39.5, 41.5, 960, 1040)
    wait_status(page, "2 selected")
    assert page.kernel_json("w.selected.tolist()") == [40, 41]
    assert outline_x_range(page) == pytest.approx((39.5, 41.5), abs=0.3)


def outline_x_range(page):
    """(min, max) x of the lasso outline plotly keeps in layout.selections (one only)."""
    # plotly stores it up to 100 ms after the release: raster's answer may come first.
    page.wait_js(f"() => ({GD}.layout.selections || []).length > 0")
    paths = page.page.evaluate(f"() => {GD}.layout.selections.map((s) => s.path)")
    assert len(paths) == 1, paths
    xs = [float(pair.split(",")[0]) for pair in paths[0].strip("MZ").split("L")]
    return min(xs), max(xs)


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_lasso_pressed_right_after_the_last_one_is_kept(open_notebook, tmp_path, raster):
    # The second press comes a few ms after the first release, before any answer and while
    # plotly still ends the first drag: the second lasso must still win, outline included.
    page, p = open_scene(open_notebook, tmp_path, "quick", raster)
    for k in range(3):
        rectangle_lasso(p, 29.5, 50.5, 940, 1060)
        rectangle_lasso(p, 39.5, 41.5 + k, 960, 1040)
        wait_status(page, f"{k + 2} selected")
        assert page.kernel_json("w.selected.tolist()") == list(range(40, 42 + k))
        assert outline_x_range(page) == pytest.approx((39.5, 41.5 + k), abs=0.3)


def test_drag_below_lowest_points_and_axis_change(open_notebook, tmp_path):
    page, p = open_scene(open_notebook, tmp_path, "axes")
    # A lasso that starts 10 px below the lowest frame (the ramp's first, mean 0).
    (x0, y0), (x1, y1) = page_xy(page, [(-0.5, 0.0), (4.5, 300.0)])
    lasso(p, [(x0, y0 + 10), (x1, y0 + 10), (x1, y1), (x0, y1)])
    wait_status(page, "5 selected")
    assert page.kernel_json("w.selected.tolist()") == [0, 1, 2, 3, 4]
    assert p.evaluate(f"() => {GD}._fullLayout.xaxis.autorange") is True

    # Pan the x axis on its drag handle, then change the x column: ranges and the
    # lasso outline reset.
    box = p.evaluate(f"() => {{ const gd = {GD}; const xa = gd._fullLayout.xaxis;"
                     f" const ya = gd._fullLayout.yaxis; const b = gd.getBoundingClientRect();"
                     f" return [b.left + xa._offset + xa._length / 2,"
                     f" b.top + ya._offset + ya._length + 10]; }}")
    p.mouse.move(*box)
    p.mouse.down()
    p.mouse.move(box[0] + 60, box[1], steps=5)
    p.mouse.up()
    page.wait_js(f"() => {GD}._fullLayout.xaxis.autorange === false")
    assert p.evaluate(f"() => ({GD}.layout.selections || []).length") == 1
    p.select_option(".xlabel-controls select >> nth=0", "mean")
    page.wait_js(f"() => {GD}._fullLayout.xaxis.autorange === true")
    x_range = p.evaluate(f"() => {GD}._fullLayout.xaxis.range")
    assert x_range[0] < 0 < 1000 < x_range[1]        # the whole mean column, not squashed
    assert p.evaluate(f"() => ({GD}.layout.selections || []).length") == 0


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_keys_after_lasso_and_no_tooltip_after_mouse_up(open_notebook, tmp_path, raster):
    page, p = open_scene(open_notebook, tmp_path, "keys", raster)
    (hx, hy), = page_xy(page, [(30, page.kernel_json("float(mean[30])"))])
    p.mouse.move(hx, hy)
    page.wait_js("() => document.querySelector('.xlabel-tooltip').style.display === 'block'")
    start = page_xy(page, [(29.5, 1060.0)])[0]
    corners = [start] + page_xy(page, [(32.5, 1060.0), (32.5, 940.0), (29.5, 940.0)])
    lasso(p, corners)
    wait_status(page, "3 selected")
    assert p.evaluate("() => document.querySelector('.xlabel-tooltip').style.display") == "none"
    p.keyboard.press("2")                     # no click on the widget first
    wait_recolors(page, 1)
    labels, _ = page.store_state()
    assert np.flatnonzero(labels == 1).tolist() == [30, 31, 32]
    p.keyboard.press("Control+z")
    wait_recolors(page, 2)
    assert page.kernel_json("int((store.labels != -1).sum())") == 0


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_log_y_ticks_and_no_share_button(open_notebook, tmp_path, raster):
    cells = scene_cells(tmp_path / "labels.xlabel", 200, raster=raster, log_y=True)
    cells[0] = cells[0].replace("features = pd.DataFrame", "mean = np.linspace(12, 150, n)\n"
                                "features = pd.DataFrame")
    page = open_notebook(f"logy_{raster}.ipynb", cells)
    wait_rendered(page)
    p = page.page
    # Frames sit where the log axis puts them (the kernel maps log10 in raster mode).
    frames = [5, 60, 150]
    xy = [(f, float(np.log10(v))) for f, v in
          zip(frames, page.kernel_json(f"mean[{frames}].tolist()"))]
    assert (pixel_colors_xy(p, xy).max(axis=1) < 230).all()
    ticks = p.evaluate("() => Array.from(document.querySelectorAll('.xlabel-plot .ytick text'))"
                       ".map((t) => t.textContent)")
    assert "20" in ticks and "30" in ticks, ticks
    assert "2" not in ticks and "3" not in ticks, ticks
    titles = p.evaluate("() => Array.from(document.querySelectorAll('.xlabel-plot .modebar-btn'))"
                        ".map((b) => b.getAttribute('data-title') || '')")
    assert titles and not any("share" in t.lower() or "cloud" in t.lower() for t in titles)
    # A lasso on the log axis selects the frames drawn inside it (axis units are log10;
    # read as values, the box 1.48..1.78 would hold no frame at all).
    rectangle_lasso(p, -0.5, 199.5, np.log10(30.0), np.log10(60.0))
    page.wait_js("() => /^[1-9][0-9]* selected/.test("
                 "document.querySelector('.xlabel-status').textContent)", timeout=30_000)
    selected = page.kernel_json("w.selected.tolist()")
    inside = page.kernel_json("np.flatnonzero((mean >= 30) & (mean <= 60)).tolist()")
    assert selected == list(range(selected[0], selected[-1] + 1))        # one run of frames
    assert abs(selected[0] - inside[0]) <= 1 and abs(selected[-1] - inside[-1]) <= 1


@pytest.mark.parametrize("raster", [False, True], ids=["markers", "raster"])
def test_hover_shows_the_frames_thumbnail(open_notebook, tmp_path, raster):
    cells = sample_scene_cells(tmp_path / "labels.xlabel")
    cells[0] = ("import xlabel\n"
                f"src = xlabel.open_scan(xlabel.samples.path({SAMPLE!r}))\n" +
                cells[0].replace("FluxScatter(store, features)",
                                 f"FluxScatter(store, features, source=src, raster={raster})"))
    page = open_notebook(f"thumb_{raster}.ipynb", cells)
    wait_rendered(page)
    p = page.page
    frame = int(SAMPLE_GOOD[len(SAMPLE_GOOD) // 2])
    (x, y), = page_xy(page, [(frame, page.kernel_json(f"float(mean[{frame}])"))])
    p.mouse.move(x - 1, y)
    p.mouse.move(x, y)
    page.wait_js("() => { const img = document.querySelector('.xlabel-tooltip img.xlabel-thumb');"
                 " return img && img.complete && img.naturalWidth > 0; }")
    tip = p.evaluate("() => document.querySelector('.xlabel-tooltip').textContent")
    assert tip.startswith(f"frame {frame}")
    shown = p.evaluate("() => document.querySelector('.xlabel-tooltip img.xlabel-thumb').src")
    expected = page.kernel_json(
        "'data:image/png;base64,' + __import__('base64').b64encode("
        f"__import__('xlabel.widgets._scatter_base', fromlist=['x']).thumbnail_png(src, {frame}))"
        ".decode()")
    assert shown == expected                                  # this frame's thumbnail
    p.mouse.move(5, 5)
    page.wait_js("() => document.querySelector('.xlabel-tooltip').style.display === 'none'")


def test_prediction_scatter_raster_rings_follow_the_store(open_notebook):
    """PredictionScatter above the threshold: kernel image, red rings, live relabel."""
    cells = [
        "import numpy as np, pandas as pd\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import PredictionScatter\n"
        "n = 30_000\n"
        "rng = np.random.default_rng(2)\n"
        "table = pd.DataFrame({'frame': np.arange(n), 'mean': 1000 + rng.normal(0, 8, n)})\n"
        "table.loc[12_000, 'mean'] = 700.0\n"
        "store = LabelStore(n, classes=('good', 'bad'))\n"
        "store.assign(np.arange(n), 'good')\n"
        "preds = np.zeros(n, int); preds[12_000] = 1\n"
        "w = PredictionScatter(table, preds, store)",
        "w",
    ]
    page = open_notebook("predictions.ipynb", cells)
    wait_rendered(page)
    p = page.page
    assert page.kernel_json("w.raster") is True
    assert p.evaluate(f"() => {GD}.data.every((t) => t.x.length <= 2)")
    (x, y), = page_xy(page, [(12_000, 700.0)])

    def ring_pixel():
        from io import BytesIO

        from PIL import Image

        shot = np.asarray(Image.open(BytesIO(p.screenshot())).convert("RGB"))
        scale = shot.shape[1] / p.viewport_size["width"]
        return shot[int(round((y - 4) * scale)), int(round(x * scale))]

    assert is_red(ring_pixel()), ring_pixel()
    images = p.evaluate(f"() => {GD}.__xlabel.images")
    page.kernel("store.assign([12_000], 'bad')")
    page.wait_js(f"(n) => {GD}.__xlabel.images > n", arg=images)
    assert not is_red(ring_pixel())
    assert page.kernel_json("w.disagreements.tolist()") == []


PLOT_XY_JS = """([k, points]) => {
  const gd = document.querySelectorAll('.xlabel-plot')[k];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return points.map(([x, y]) => [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]);
}"""


@pytest.mark.parametrize("order", ["raster_first", "markers_first"])
def test_raster_and_marker_plots_in_one_page(open_notebook, tmp_path, order):
    """Two plotly.js bundles in one page (raster plots: basic; marker plots: full), in either
    order: both plots draw, and a lasso in each selects exactly its frames."""
    modes = [True, False] if order == "raster_first" else [False, True]
    cells = scene_cells(tmp_path / "a.xlabel", 130, raster=modes[0])
    cells[0] += (f"\nstore2 = LabelStore(n, classes=('good', 'bad'), path={str(tmp_path / 'b.xlabel')!r})"
                 f"\nw2 = FluxScatter(store2, features, raster={modes[1]!r})")
    page = open_notebook(f"both_{order}.ipynb", cells + ["w2"])
    page.wait_js("() => { const p = document.querySelectorAll('.xlabel-plot');"
                 " return p.length === 2 && [...p].every((gd) => gd.__xlabel &&"
                 " gd.__xlabel.firstRender !== undefined); }", timeout=120_000)
    assert page.kernel_json("[w.raster, w2.raster]") == modes
    loaded = page.page.evaluate("() => Object.keys(window.__xlabelPlotly).sort()")
    assert loaded == (["basic", "full"] if order == "raster_first" else ["full"])
    for k, (widget, first, last) in enumerate([("w", 30, 33), ("w2", 60, 61)]):
        y = page.kernel_json(f"[float(mean[{first}:{last + 1}].min()) - 30,"
                             f" float(mean[{first}:{last + 1}].max()) + 30]")
        page.page.evaluate(f"() => document.querySelectorAll('.xlabel-plot')[{k}]"
                           f".scrollIntoView({{block: 'center', behavior: 'instant'}})")
        corners = page.page.evaluate(PLOT_XY_JS, [k, [[first - 0.5, y[0]], [last + 0.5, y[0]],
                                                      [last + 0.5, y[1]], [first - 0.5, y[1]]]])
        lasso(page.page, corners)
        page.wait_js(f"() => document.querySelectorAll('.xlabel-status')[{k}].textContent"
                     f".startsWith('{last - first + 1} selected')")
        assert page.kernel_json(f"{widget}.selected.tolist()") == list(range(first, last + 1))


@pytest.mark.parametrize("log_y", [False, True], ids=["linear", "log"])
def test_first_image_is_made_for_the_view_plotly_draws(open_notebook, tmp_path, log_y):
    """The kernel renders the first image before plotly has drawn the axes, for the view it
    expects; when that view is right, no second image follows."""
    page = open_notebook(f"first_{log_y}.ipynb", scene_cells(tmp_path / "labels.xlabel", 130,
                                                              raster=True, log_y=log_y))
    wait_rendered(page)
    page.page.wait_for_timeout(1000)        # a second image would come within ~0.1 s
    assert page.page.evaluate(f"() => {GD}.__xlabel.images") == 1
    assert page.kernel_json("len(w.plot.render_times)") == 1
