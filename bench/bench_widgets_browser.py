"""FluxScatter in a real browser: time to first render and mouse-up to recolored.

Run: .venv/bin/python -m bench.bench_widgets_browser [--sizes 200000 1000000]
     [--modes auto markers raster jscatter] [--repeats 1] [--bare] [--warmup]

``auto`` is FluxScatter as users get it (kernel raster from 20,000 frames on),
``markers`` / ``raster`` force one mode (to place the threshold), ``jscatter`` is jupyter-scatter (WebGL,
regl-scatterplot; bench-only: ``pip install jupyter-scatter``) on the same data in the
same browser, interleaved per size.

Every run is a new kernel's first plot (a notebook of its own, its kernel shut down after
the run); ``--warmup`` runs each system once first, uncounted, for the browser's caches.

Reuses the browser-test fixtures (tests/browser/conftest.py: JupyterLab on 127.0.0.1 +
Debian Chromium via Playwright, software WebGL) and the test notebook (synthetic mean
flux with a 20-frame shutter ramp, LabelStore, FluxScatter). For each size it reports:

* ``widget built -> drawn``: from the kernel's clock just before ``FluxScatter(...)`` (or
  ``jscatter.Scatter(...)``) to the page's clock when the first points are drawn (same
  machine): building the widget, loading its front end, transfer, first draw;
* ``first cell started -> drawn``: from the kernel's clock before the first cell's imports
  (each system's own: xlabel's loads numba's compiler, ~0.4 s) through the data and the
  build to the first points drawn;
* ``cells done -> drawn``: from "run all cells" having finished (Playwright's
  ``notebook:run-all-cells`` resolves then) to the first points drawn;
* ``firstRender``: what the widget itself records (data message received -> draw done);
* ``lasso mouse-up -> selected``: mouse-up of a small 4-move lasso around the first 10% of
  frames until ``plotly_selected`` handled (``gd.__xlabel.selectedAt``);
* ``assign mouse-up -> recolored``: mouse-up of the click on the "assign bad" button until
  the recolor is drawn (``gd.__xlabel.recoloredAt``, after the kernel round trip).

Raster mode (kernel image) also reports ``lasso mouse-up -> indices in the kernel``
(the kernel's clock when the selection landed, minus the page's at mouse-up: same
machine) and ``zoom -> redrawn`` (``Plotly.relayout`` of the x range until the new
kernel image is drawn). In raster mode ``selectedAt``/``recoloredAt`` are the moments
the kernel's new image is drawn.

jupyter-scatter (``--modes jscatter``; bench only, the run says so when it is missing) is
driven through its regl-scatterplot instance (``container.api``, set by its widget) and
timed by the frames it draws (its synchronous ``drawing`` event, epoch ms), with a
screenshot of its canvas to tell which frame showed the change:

* first drawn: the last frame drawn before the screenshot that first shows points;
* lasso -> indices in the kernel: ``lassoSelect(vertices, {isGl: true})`` runs the same
  ``lassoEnd`` as its mouse-up, with the outline in the same GL (normalized data)
  coordinates (points in the polygon -> ``select`` -> its ``selection`` trait -> kernel),
  minus the mouse events (which Playwright could not make it accept reliably at 1M
  points); time until the kernel's ``selection`` observer ran;
* assign -> recolored: the kernel relabels the selection and calls ``Scatter.color``
  (which re-sends the points' color values; ``Scatter.data`` fails on a changed
  categorical column in jupyter-scatter 1.0.1): from the kernel's clock at the start of
  that cell to the frame that shows the new colors;
* zoom -> redrawn: ``zoomToArea`` of the middle fifth of x and the crowd's core in y
  (985-1015, as xlabel's ``Plotly.relayout``), no animation, to the frame.

``--bare`` adds a bare plotly ``scattergl`` of the same ``n`` points in the same page
(``Plotly.newPlot``, then one ``Plotly.restyle`` of its ``marker.color`` array).
At the end: medians per size and system, and jupyter-scatter / xlabel ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.browser import conftest
from tests.browser.plotting import DATA_TO_PAGE_JS, lasso
from tests.browser.test_scatter_browser import GD, scene_cells

RENDER_TIMEOUT_MS = 150_000
# Kernel clock (epoch ms) just before the widget is built: "widget built -> drawn".
BUILD_CLOCK = "import time as _time\n_t_build = _time.time() * 1000\n"
# Kernel clock at the start of the first cell (before the imports): "cell started -> drawn"
# counts each system's imports (xlabel loads numba's compiler there), data and build.
CELL_CLOCK = "import time as _time\n_t_cell = _time.time() * 1000\n"
EVENT_TIMEOUT_MS = 90_000
MOUSEUP_JS = ("() => { window.__mouseup = []; window.__mouseupEpoch = []; "
              "window.addEventListener('mouseup', () => { window.__mouseup.push(performance.now());"
              " window.__mouseupEpoch.push(Date.now()); }, true); }")
# Kernel: remember when each selection landed (epoch seconds).
KERNEL_CLOCK = ("import time as _time\n_landed = []\n"
                "w.plot.observe(lambda _c: _landed.append(_time.time()) if "
                "' selected' in _c['new'] and not _c['new'].startswith('0 ') else None, 'status')")

# Bare plotly in the same page: newPlot of n scattergl points, then one marker.color restyle.
BASELINE_JS = """async (n) => {
  const div = document.createElement('div');
  div.style.width = '1000px'; div.style.height = '450px';
  document.body.appendChild(div);
  const x = new Float32Array(n), y = new Float32Array(n), c = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = i; y[i] = Math.random(); }
  let t0 = performance.now();
  await Plotly.newPlot(div, [{type: 'scattergl', mode: 'markers', x, y,
                              marker: {color: c, colorscale: 'Viridis', cmin: 0, cmax: 1}}]);
  const draw = performance.now() - t0;
  for (let i = 0; i < n / 10; i++) c[i] = 1;
  t0 = performance.now();
  await Plotly.restyle(div, {'marker.color': [c]}, [0]);
  const restyle = performance.now() - t0;
  Plotly.purge(div); div.remove();
  return [draw, restyle];
}"""


# Each run opens a notebook of its own name, so that it gets a fresh kernel (JupyterLab
# reconnects a notebook path it has a session for to that session's kernel), and shuts that
# kernel down at the end: every "first render" is a new kernel's first.
_RUN = itertools.count()
SHUTDOWN_JS = "() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()"


def _close(page):
    with contextlib.suppress(Exception):       # the page's kernel may be gone already
        page.page.evaluate(SHUTDOWN_JS)
    page.page.close()


class _Factory:
    """The one method of pytest's tmp_path_factory the ``lab`` fixture uses."""

    def __init__(self, base: Path):
        self.base = base

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name, dir=self.base))


def _fixture(fixture, *args):
    return contextlib.contextmanager(fixture.__wrapped__)(*args)


def measure(opener, base: Path, n: int, raster=None, bare=False) -> dict:
    """Open the scatter notebook with ``n`` frames; time render, lasso, assign (and zoom)."""
    cells = scene_cells(base / f"labels_{n}_{raster}.xlabel", n, raster=raster)
    cells[0] = (CELL_CLOCK + cells[0].replace("w = FluxScatter(", BUILD_CLOCK + "w = FluxScatter(")
                + "\n_t_built = _time.time() * 1000")
    page = opener(f"bench_{n}_{raster}_{next(_RUN)}.ipynb", cells)
    start = time.perf_counter()
    page.wait_js(f"() => {{ const gd = {GD}; return gd && gd.__xlabel && "
                 f"gd.__xlabel.firstRender !== undefined; }}", timeout=RENDER_TIMEOUT_MS)
    result = {"n": n, "cell_to_render_s": time.perf_counter() - start,
              "first_render_ms": page.page.evaluate(f"() => {GD}.__xlabel.firstRender"),
              "raster": page.kernel_json("w.raster")}
    t_cell, t_build, t_built = page.kernel_json("[_t_cell, _t_build, _t_built]")
    drawn_epoch = page.page.evaluate(f"() => {GD}.__xlabel.firstRenderEpoch")
    result["built_to_drawn_s"] = (drawn_epoch - t_build) / 1000
    result["cell_started_to_drawn_s"] = (drawn_epoch - t_cell) / 1000
    stages = page.page.evaluate(f"() => {{ const t = {GD}.__xlabel; return ["
                                f"t.renderEpoch, t.plotlyEpoch, t.dataEpoch, t.plottedEpoch,"
                                f" t.firstImageEpoch, t.firstRenderEpoch]; }}")
    result["build_stages_ms"] = [round(t_built - t_build)] + [
        None if t is None else round(t - t_build) for t in stages]
    init = page.page.evaluate(f"() => {GD}.__xlabel.initialized") or []
    result["initialize_ms"] = [round(t - t_build) for t in init]
    trip = page.page.evaluate(f"() => {GD}.__xlabel.readyTrip") or {}
    result["ready_trip_ms"] = [round(trip[k]) for k in ("toKernel", "kernel", "back") if k in trip]
    first = page.page.evaluate(f"() => {{ const t = {GD}.__xlabel; "
                               f"return [t.viewSentEpoch, t.viewTrip || {{}}]; }}")
    result["first_image_trip_ms"] = (
        [None if first[0] is None else round(first[0] - t_build)]
        + [round(first[1][k]) for k in ("toKernel", "kernel", "back") if k in first[1]])
    p = page.page
    page.kernel(KERNEL_CLOCK)
    p.evaluate(MOUSEUP_JS)
    low, high = page.kernel_json("[float(mean.min()) - 50, float(mean.max()) + 50]")
    corners = [[-0.5, low], [n / 10, low], [n / 10, high], [-0.5, high]]
    lasso(p, p.evaluate(DATA_TO_PAGE_JS, [corners, 0]), steps=1)
    page.wait_js(f"() => {GD}.__xlabel.selections >= 1", timeout=EVENT_TIMEOUT_MS)
    page.wait_js("() => { const s = document.querySelector('.xlabel-status');"
                 " return s && /^[1-9][0-9,]* selected/.test(s.textContent); }",
                 timeout=EVENT_TIMEOUT_MS)
    page.wait_js(f"() => {GD}.__xlabel.selectedAt !== undefined", timeout=EVENT_TIMEOUT_MS)
    result["selected"] = page.kernel_json("len(w.selected)")
    landed = page.kernel_json("_landed[0]")
    result["lasso_to_kernel_ms"] = landed * 1000 - p.evaluate("() => window.__mouseupEpoch[0]")
    p.click(".xlabel-button[data-id='assign:1']")
    page.wait_js(f"() => {GD}.__xlabel.recolors >= 1", timeout=EVENT_TIMEOUT_MS)
    ups, selected_at, recolored_at, polygon_at = p.evaluate(
        f"() => [window.__mouseup, {GD}.__xlabel.selectedAt, {GD}.__xlabel.recoloredAt,"
        f" {GD}.__xlabel.polygonAt]")
    if polygon_at is not None:    # raster: mouse-up -> polygon sent (plotly's lasso end)
        result["mouseup_to_polygon_ms"] = polygon_at - ups[0]
    result["lasso_to_selected_ms"] = selected_at - ups[0]
    result["assign_to_recolored_ms"] = recolored_at - ups[-1]
    if result["raster"]:
        (result["zoom_to_redrawn_ms"], *parts) = p.evaluate(ZOOM_JS, [n * 0.4, n * 0.6, *ZOOM_Y])
        result["zoom_parts_ms"] = [None if v is None else round(v) for v in parts]
    result["render_times"] = page.kernel_json("w.plot.render_times")
    if bare:
        result["bare_draw_ms"], result["bare_restyle_ms"] = p.evaluate(BASELINE_JS,
                                                                       min(n, 1_000_000))
    _close(page)
    return result


# Zoom to the middle fifth of x and the crowd's core in y (both systems), wait for the
# kernel's image of the new range: ms.
ZOOM_Y = (985.0, 1015.0)
ZOOM_JS = f"""async ([a, b, c, d]) => {{
  const gd = {GD};
  const before = gd.__xlabel.images;
  const t0 = performance.now();
  await Plotly.relayout(gd, {{'xaxis.range': [a, b], 'yaxis.range': [c, d]}});
  while (gd.__xlabel.images === before || gd.__xlabel.viewAt < t0) {{
    await new Promise((r) => setTimeout(r, 2));
  }}
  const t = gd.__xlabel, trip = t.viewTrip || {{}};
  return [t.viewAt - t0, t.viewSentAt - t0, t.imageAt - t.viewSentAt, t.viewAt - t.imageAt,
          trip.toKernel, trip.kernel, trip.back, t.relayoutAt - t0];
}}"""


def jscatter_cells(n):
    """The same synthetic flux as the xlabel notebook, in jupyter-scatter."""
    return [
        f"{CELL_CLOCK}"
        "import time, numpy as np, pandas as pd, jscatter\n"
        f"n = {n}\n"
        "rng = np.random.default_rng(0)\n"
        "mean = 1000 + rng.normal(0, 8, n)\n"
        "mean[:20] = np.linspace(0, 800, 20)\n"
        "df = pd.DataFrame({'frame': np.arange(n, dtype=float), 'mean': mean,"
        " 'label': pd.Categorical(['unlabeled'] * n, categories=['unlabeled', 'good', 'bad'])})\n"
        "CMAP = {'unlabeled': '#bbbbbb', 'good': '#2ca02c', 'bad': '#d62728'}\n"
        f"{BUILD_CLOCK}"
        "sc = jscatter.Scatter(data=df, x='frame', y='mean', color_by='label', height=450,"
        " color_map=CMAP)\n"
        "_landed = []\n"
        "sc.widget.observe(lambda _c: _landed.append(time.time()), 'selection')",
        "sc.show()",
    ]


CANVAS_BOX_JS = ("() => { const c = Array.from(document.querySelectorAll('.jp-OutputArea canvas'))"
                 ".sort((a, b) => b.width * b.height - a.width * a.height)[0];"
                 " if (!c) return null; const r = c.getBoundingClientRect();"
                 " return r.width > 50 && r.height > 50 ? [r.left, r.top, r.width, r.height] : null; }")

# jupyter-scatter keeps its regl-scatterplot instance on the canvas' container
# (``this.container.api = this.scatterplot`` in its widget): find it as soon as it exists
# and log every frame it draws ("drawing" is published synchronously after each frame).
HOOK_JSCATTER_JS = """async (timeoutMs) => {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    for (const c of document.querySelectorAll('.jp-OutputArea canvas')) {
      let e = c;
      while (e && !e.api) e = e.parentElement;
      if (e && e.api && e.api.lassoSelect) {
        window.__js = e.api;
        window.__drawn = [];
        e.api.subscribe('drawing', () => window.__drawn.push(Date.now()));
        return true;
      }
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}"""
# Its lasso's mouse-up path: regl-scatterplot's ``lassoSelect(vertices, {isGl: true})``
# runs the same ``lassoEnd`` as a mouse lasso, with the outline in the same (GL = the
# widget's normalized data) coordinates (points in the polygon -> select -> the widget's
# ``selection`` trait -> kernel), without the mouse events. Returns the epoch ms of "mouse-up".
JS_LASSO_JS = """(vertices) => { const t = Date.now();
  window.__js.lassoSelect(vertices, {isGl: true}); return t; }"""
# data -> GL coordinates: the linear map jupyter-scatter normalized x and y with.
GL_MAP = ("[np.polyfit(df[c].to_numpy(), np.asarray(sc.widget.points)[:, k], 1).tolist()"
          " for k, c in enumerate(('frame', 'mean'))]")
# Zoom without animation; returns the epoch ms it started.
JS_ZOOM_JS = """(rect) => { const t = Date.now();
  window.__js.zoomToArea(rect, {transition: false}); return t; }"""


def _canvas_pixels(p, box):
    from PIL import Image

    shot = p.screenshot(clip={"x": box[0], "y": box[1], "width": box[2], "height": box[3]})
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)


def _poll(condition, timeout_s):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        value = condition()
        if value:
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError("condition never held")


def _frame_before(p, after_ms, seen_ms):
    """Epoch ms of the last frame jupyter-scatter drew after ``after_ms`` and before the
    screenshot that first showed the change (taken at ``seen_ms``): the frame that drew it."""
    frames = [t for t in p.evaluate("() => window.__drawn") if after_ms <= t <= seen_ms]
    if not frames:
        raise RuntimeError("jupyter-scatter drew no frame between the action and its screenshot")
    return frames[-1]


def jscatter_available() -> bool:
    try:
        import jscatter  # noqa: F401
    except ImportError:
        return False
    return True


def measure_jscatter(opener, base: Path, n: int, result=None) -> dict:
    """jupyter-scatter's times (see module doc); ``result`` keeps what was measured."""
    result = {} if result is None else result
    if not jscatter_available():
        raise RuntimeError("jupyter-scatter is not installed (bench only: "
                           "pip install -c constraints.txt jupyter-scatter)")
    page = opener(f"jscatter_{n}_{next(_RUN)}.ipynb", jscatter_cells(n))
    try:
        return _measure_jscatter(page, n, result)
    finally:
        _close(page)              # a stuck WebGL page must not slow the next system


def _changed(p, box, before, pixels=50):
    return (np.abs(_canvas_pixels(p, box) - before).sum(axis=2) > 60).sum() > pixels


def _measure_jscatter(page, n, result):
    p = page.page
    start, start_epoch = time.perf_counter(), time.time() * 1000
    if not p.evaluate(HOOK_JSCATTER_JS, RENDER_TIMEOUT_MS):
        raise RuntimeError("jupyter-scatter's regl-scatterplot instance never appeared")
    boxes = {}

    def drawn():
        box = p.evaluate(CANVAS_BOX_JS)
        if box is None:
            return False
        boxes["canvas"] = box
        pixels = _canvas_pixels(p, box)
        return (np.abs(pixels - pixels[0, 0]).sum(axis=2) > 60).sum() > 500

    seen = _poll(drawn, RENDER_TIMEOUT_MS / 1000)
    seen_epoch = start_epoch + (seen - start) * 1000
    first_frame = _frame_before(p, start_epoch, seen_epoch)
    result.update(n=n, cell_to_render_s=(first_frame - start_epoch) / 1000,
                  built_to_drawn_s=(first_frame - page.kernel_json("_t_build")) / 1000,
                  cell_started_to_drawn_s=(first_frame - page.kernel_json("_t_cell")) / 1000)
    box = boxes["canvas"]
    time.sleep(0.5)
    # Lasso the first tenth of the frames (data coordinates), as its mouse-up does.
    (ax, bx), (ay, by) = page.kernel_json(GL_MAP)
    vertices = [[ax * x + bx, ay * y + by] for x, y in
                [[-0.5, -100.0], [0.1 * n, -100.0], [0.1 * n, 1100.0], [-0.5, 1100.0]]]
    lasso_at = p.evaluate(JS_LASSO_JS, vertices)
    deadline = time.perf_counter() + EVENT_TIMEOUT_MS / 1000
    while not page.kernel_json("len(_landed)") and time.perf_counter() < deadline:
        time.sleep(0.02)
    if not page.kernel_json("len(_landed)"):
        raise RuntimeError("jupyter-scatter's lasso selected nothing")
    result["lasso_to_kernel_ms"] = page.kernel_json("_landed[0]") * 1000 - lasso_at
    time.sleep(0.5)
    result["selected"] = page.kernel_json("len(sc.selection())")
    # Assign: the kernel relabels the selection and recolors (its API for a changed column).
    before = _canvas_pixels(p, box)
    t_assign = float(page.kernel(
        "_t = time.time()\ndf.loc[sc.selection(), 'label'] = 'bad'\n"
        "sc.color(by='label', map=CMAP)\nprint(_t * 1000)").strip().splitlines()[-1])
    seen = _poll(lambda: _changed(p, box, before), EVENT_TIMEOUT_MS / 1000)
    seen_epoch = time.time() * 1000 - (time.perf_counter() - seen) * 1000
    result["assign_to_recolored_ms"] = _frame_before(p, t_assign, seen_epoch) - t_assign
    time.sleep(0.5)
    before = _canvas_pixels(p, box)
    y0, y1 = (ay * v + by for v in ZOOM_Y)
    zoom_at = p.evaluate(JS_ZOOM_JS, {"x": -0.2, "y": y0, "width": 0.4, "height": y1 - y0})
    seen = _poll(lambda: _changed(p, box, before, 500), EVENT_TIMEOUT_MS / 1000)
    seen_epoch = time.time() * 1000 - (time.perf_counter() - seen) * 1000
    result["zoom_to_redrawn_ms"] = _frame_before(p, zoom_at, seen_epoch) - zoom_at
    return result


def _describe(mode, r):
    if mode == "jscatter":
        return (f"jupyter-scatter: cells done->drawn {r['cell_to_render_s']:.2f} s, built->drawn "
                f"{r['built_to_drawn_s']:.2f} s, first cell started->drawn "
                f"{r['cell_started_to_drawn_s']:.2f} s, lasso mouse-up->"
                f"indices in kernel {r['lasso_to_kernel_ms']:.0f} ms ({r['selected']:,} points), "
                f"assign->recolored {r['assign_to_recolored_ms']:.0f} ms, "
                f"zoom->redrawn {r['zoom_to_redrawn_ms']:.0f} ms")
    line = (f"xlabel {'raster' if r['raster'] else 'markers'}: cells done->render "
            f"{r['cell_to_render_s']:.2f} s, built->drawn {r['built_to_drawn_s']:.2f} s, "
            f"first cell started->drawn {r['cell_started_to_drawn_s']:.2f} s, "
            f"firstRender {r['first_render_ms']:.0f} ms, lasso "
            f"mouse-up->indices in kernel {r['lasso_to_kernel_ms']:.0f} ms, ->drawn "
            f"{r['lasso_to_selected_ms']:.0f} ms ({r['selected']:,} points), assign mouse-up->"
            f"recolored {r['assign_to_recolored_ms']:.0f} ms")
    if r.get("build_stages_ms"):
        line += (" (ms after the constructor started: built, view rendering, plotly.js ready,"
                 f" data, axes drawn, first image received, drawn: {r['build_stages_ms']};"
                 f" ready -> data: to the kernel, there, back: {r['ready_trip_ms']};"
                 f" initialize() started, ended: {r['initialize_ms']};"
                 f" first image asked at, to the kernel, there, back:"
                 f" {r['first_image_trip_ms']})")
    if r.get("zoom_to_redrawn_ms") is not None:
        line += (f", zoom->redrawn {r['zoom_to_redrawn_ms']:.0f} ms (relayout->view sent, "
                 f"->image received, ->drawn; of the round trip: to the kernel, rendering, "
                 f"back; relayout event: {r['zoom_parts_ms']})")
    if r.get("mouseup_to_polygon_ms") is not None:
        line += f" (mouse-up->polygon sent {r['mouseup_to_polygon_ms']:.0f} ms)"
    if r.get("bare_draw_ms") is None:
        return line
    return line + (f"; baseline bare scattergl newPlot {r['bare_draw_ms']:.0f} ms, "
                   f"marker.color restyle {r['bare_restyle_ms']:.0f} ms")


METRICS = [("cells done -> drawn (s)", "cell_to_render_s", 1.0),
           ("widget built -> drawn (s)", "built_to_drawn_s", 1.0),
           ("first cell started (imports, data, build) -> drawn (s)",
            "cell_started_to_drawn_s", 1.0),
           ("lasso mouse-up -> indices in the kernel (ms)", "lasso_to_kernel_ms", 1.0),
           ("assign -> recolored (ms)", "assign_to_recolored_ms", 1.0),
           ("zoom -> redrawn (ms)", "zoom_to_redrawn_ms", 1.0)]


def summary(results):
    """Medians per size and mode, and jupyter-scatter / xlabel ratios (same browser run)."""
    lines = []
    for n in sorted({n for n, _ in results}):
        xl = results.get((n, "auto")) or results.get((n, "raster"))
        js = results.get((n, "jscatter"))
        for label, key, _ in METRICS:
            med = {m: float(np.median([r[key] for r in rs if r.get(key) is not None]))
                   for m, rs in results.items() if m[0] == n and
                   any(r.get(key) is not None for r in rs)}
            row = "  ".join(f"{mode}: {value:.3g} (of {len(results[(n, mode)])})"
                            for (_, mode), value in med.items())
            if xl and js and (n, "jscatter") in med and (n, "auto") in med:
                row += f"  -> jupyter-scatter / xlabel = {med[(n, 'jscatter')] / med[(n, 'auto')]:.1f}x"
            lines.append(f"n={n:>10,} {label}: {row}")
        if xl:
            fr = [r["first_render_ms"] for r in xl]
            lines.append(f"n={n:>10,} xlabel's own firstRender (data message -> first image): "
                         f"median {np.median(fr):.0f} ms of {fr}")
    return "\n".join(lines)


def main(sizes=(200_000, 1_000_000), modes=("auto", "markers", "jscatter"), repeats=1,
         bare=False, warmup=False):
    print(f"load average before: {os.getloadavg()}")
    if "jscatter" in modes and not jscatter_available():
        print("jupyter-scatter is NOT installed: its runs are skipped (bench only: "
              "pip install -c constraints.txt jupyter-scatter)", flush=True)
        modes = tuple(m for m in modes if m != "jscatter")
    runners = {"auto": lambda o, b, n: measure(o, b, n, bare=bare),
               "markers": lambda o, b, n: measure(o, b, n, raster=False, bare=bare),
               "raster": lambda o, b, n: measure(o, b, n, raster=True, bare=bare),
               "jscatter": measure_jscatter}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with _fixture(conftest.lab, _Factory(base)) as server, \
                _fixture(conftest.open_notebook, server, base) as opener:
            if warmup:        # one run of each system, not counted: the browser's caches
                for mode in modes:
                    try:
                        (measure_jscatter(opener, base, sizes[0]) if mode == "jscatter"
                         else runners[mode](opener, base, sizes[0]))
                    except Exception as err:  # noqa: BLE001 - the counted runs will say
                        print(f"warm-up {mode} failed: {err}", flush=True)
            for n in sizes:
                for k in range(repeats):
                    for mode in modes:          # systems interleaved
                        partial = {}
                        try:
                            r = (measure_jscatter(opener, base, n, partial) if mode == "jscatter"
                                 else runners[mode](opener, base, n))
                        except Exception as err:  # noqa: BLE001 - report what failed
                            print(f"n={n:>10,} {mode}: FAILED {type(err).__name__}: "
                                  f"{str(err)[:300]}; measured before: {partial}", flush=True)
                            continue
                        results.setdefault((n, mode), []).append(r)
                        print(f"n={n:>10,} run {k + 1}: {_describe(mode, r)}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("medians (same browser, systems interleaved):")
    print(summary(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["auto", "markers", "jscatter"],
                        choices=["auto", "markers", "raster", "jscatter"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bare", action="store_true",
                        help="also time a bare plotly scattergl of the same size (slow)")
    parser.add_argument("--warmup", action="store_true",
                        help="first one uncounted run of each system (browser caches, numba's "
                             "cache after a code change)")
    args = parser.parse_args()
    main(tuple(args.sizes), tuple(args.modes), args.repeats, args.bare, args.warmup)
