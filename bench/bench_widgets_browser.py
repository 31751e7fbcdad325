"""FluxScatter in a real browser: time to first render and mouse-up to recolored.

Run: .venv/bin/python -m bench.bench_widgets_browser [--sizes 200000 1000000]
     [--modes auto markers raster jscatter] [--repeats 1]

``auto`` is FluxScatter as users get it (kernel raster from 50,000 frames on),
``markers`` / ``raster`` force one mode (to place the threshold), ``jscatter`` is jupyter-scatter (WebGL,
regl-scatterplot; bench-only: ``pip install jupyter-scatter``) on the same data in the
same browser, interleaved per size.

Reuses the browser-test fixtures (tests/browser/conftest.py: JupyterLab on 127.0.0.1 +
Debian Chromium via Playwright, software WebGL) and the test notebook (synthetic mean
flux with a 20-frame shutter ramp, LabelStore, FluxScatter). For each size it reports:

* ``cell->render``: wall time from "run all cells" to ``gd.__xlabel.firstRender`` being
  set (features + store + widget build in the kernel, transfer, plotly draw);
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

jupyter-scatter reports no drawing events, so its times are polled from screenshots of
its canvas (resolution ~0.1-0.3 s): first render = run-all until the canvas shows
points; lasso (its lasso tool) mouse-up -> indices in the kernel (kernel
observer of its ``selection`` trait); assign -> recolored = the kernel relabels the
selection and calls ``Scatter.color`` (which re-sends the points' color values;
``Scatter.data`` fails on a changed categorical column in jupyter-scatter 1.0.1) until
the canvas changes.

Baseline in the same page: a bare plotly ``scattergl`` of the same ``n`` points
(``Plotly.newPlot``) and one ``Plotly.restyle`` of its ``marker.color`` array.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.browser import conftest
from tests.browser.plotting import DATA_TO_PAGE_JS, lasso
from tests.browser.test_scatter_browser import GD, scene_cells

RENDER_TIMEOUT_MS = 150_000
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


class _Factory:
    """The one method of pytest's tmp_path_factory the ``lab`` fixture uses."""

    def __init__(self, base: Path):
        self.base = base

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name, dir=self.base))


def _fixture(fixture, *args):
    return contextlib.contextmanager(fixture.__wrapped__)(*args)


def measure(opener, base: Path, n: int, raster=None) -> dict:
    """Open the scatter notebook with ``n`` frames; time render, lasso, assign (and zoom)."""
    cells = scene_cells(base / f"labels_{n}_{raster}.xlabel", n, raster=raster)
    page = opener(f"bench_{n}_{raster}.ipynb", cells)
    start = time.perf_counter()
    page.wait_js(f"() => {{ const gd = {GD}; return gd && gd.__xlabel && "
                 f"gd.__xlabel.firstRender !== undefined; }}", timeout=RENDER_TIMEOUT_MS)
    result = {"n": n, "cell_to_render_s": time.perf_counter() - start,
              "first_render_ms": page.page.evaluate(f"() => {GD}.__xlabel.firstRender"),
              "raster": page.kernel_json("w.raster")}
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
    ups, selected_at, recolored_at = p.evaluate(
        f"() => [window.__mouseup, {GD}.__xlabel.selectedAt, {GD}.__xlabel.recoloredAt]")
    result["lasso_to_selected_ms"] = selected_at - ups[0]
    result["assign_to_recolored_ms"] = recolored_at - ups[-1]
    if result["raster"]:
        result["zoom_to_redrawn_ms"] = p.evaluate(ZOOM_JS, [n * 0.4, n * 0.6])
    result["render_times"] = page.kernel_json("w.plot.render_times")
    result["bare_draw_ms"], result["bare_restyle_ms"] = p.evaluate(BASELINE_JS, min(n, 1_000_000))
    p.close()
    return result


# Zoom the x axis, wait for the kernel's image of the new range: ms.
ZOOM_JS = f"""async ([a, b]) => {{
  const gd = {GD};
  const before = gd.__xlabel.images;
  const t0 = performance.now();
  await Plotly.relayout(gd, {{'xaxis.range': [a, b]}});
  while (gd.__xlabel.images === before || gd.__xlabel.viewAt < t0) {{
    await new Promise((r) => setTimeout(r, 2));
  }}
  return gd.__xlabel.viewAt - t0;
}}"""


def jscatter_cells(n):
    """The same synthetic flux as the xlabel notebook, in jupyter-scatter."""
    return [
        "import time, numpy as np, pandas as pd, jscatter\n"
        f"n = {n}\n"
        "rng = np.random.default_rng(0)\n"
        "mean = 1000 + rng.normal(0, 8, n)\n"
        "mean[:20] = np.linspace(0, 800, 20)\n"
        "df = pd.DataFrame({'frame': np.arange(n, dtype=float), 'mean': mean,"
        " 'label': pd.Categorical(['unlabeled'] * n, categories=['unlabeled', 'good', 'bad'])})\n"
        "CMAP = {'unlabeled': '#bbbbbb', 'good': '#2ca02c', 'bad': '#d62728'}\n"
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


def _slow_lasso(p, corners, steps=20):
    """A lasso with 20 ms between moves (regl-scatterplot drops points closer in time)."""
    corners = list(corners) + [corners[0]]
    p.mouse.move(*corners[0])
    p.mouse.down()
    p.wait_for_timeout(300)
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            p.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            p.wait_for_timeout(20)
    p.mouse.up()


TICKS_JS = ("() => Array.from(document.querySelectorAll('.jp-OutputArea svg text')).map((t) => {"
            " const r = t.getBoundingClientRect(); return [t.textContent, r.left + r.width / 2,"
            " r.top + r.height / 2]; })")


def _tick_mapping(p):
    """data -> page pixel functions for x and y, fitted to jupyter-scatter's tick labels."""
    ticks = []
    for text, x, y in p.evaluate(TICKS_JS):
        try:
            ticks.append((float(text.replace(",", "").replace("\u2212", "-")), x, y))
        except ValueError:
            continue
    ticks = np.array(ticks)
    rows = np.round(ticks[:, 2])
    x_row = max(set(rows), key=lambda r: (rows == r).sum())
    x_ticks = ticks[rows == x_row]
    y_ticks = ticks[rows != x_row]
    fx = np.polyfit(x_ticks[:, 0], x_ticks[:, 1], 1)
    fy = np.polyfit(y_ticks[:, 0], y_ticks[:, 2], 1)
    return (lambda v: float(np.polyval(fx, v))), (lambda v: float(np.polyval(fy, v)))


def measure_jscatter(opener, base: Path, n: int, result=None) -> dict:
    """jupyter-scatter's times (see module doc); ``result`` keeps what was measured."""
    result = {} if result is None else result
    page = opener(f"jscatter_{n}.ipynb", jscatter_cells(n))
    try:
        return _measure_jscatter(page, n, result)
    finally:
        page.page.close()         # a stuck WebGL page must not slow the next system


def _measure_jscatter(page, n, result):
    p = page.page
    start = time.perf_counter()
    boxes = {}

    def drawn():
        box = p.evaluate(CANVAS_BOX_JS)
        if box is None:
            return False
        boxes["canvas"] = box
        pixels = _canvas_pixels(p, box)
        return (np.abs(pixels - pixels[0, 0]).sum(axis=2) > 60).sum() > 500

    result.update(n=n, cell_to_render_s=_poll(drawn, RENDER_TIMEOUT_MS / 1000) - start)
    box = boxes["canvas"]
    p.evaluate(MOUSEUP_JS)
    # A lasso (its lasso tool) around the first tenth of the frames, placed with the
    # positions of its own axis tick labels (page pixels per data unit).
    to_x, to_y = _tick_mapping(p)
    top = max(to_y(1050), box[1] + 3)               # inside its canvas
    bottom = min(to_y(-50), box[1] + box[3] - 3)
    left, right = max(to_x(-0.01 * n), box[0] + 3), to_x(0.1 * n)
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    page.kernel("sc.widget.mouse_mode = 'lasso'")     # as its lasso tool button does
    time.sleep(0.5)
    _slow_lasso(p, corners)
    page.wait_js("() => window.__mouseupEpoch.length > 0")
    deadline = time.perf_counter() + EVENT_TIMEOUT_MS / 1000
    while not page.kernel_json("len(_landed)") and time.perf_counter() < deadline:
        time.sleep(0.05)
    if not page.kernel_json("len(_landed)"):
        p.screenshot(path="/tmp/jscatter_failed.png")
        raise RuntimeError("jupyter-scatter's lasso selected nothing (screenshot "
                           "/tmp/jscatter_failed.png)")
    time.sleep(1.0)
    result["selected"] = page.kernel_json("len(sc.selection())")
    result["selection_events"] = page.kernel_json("len(_landed)")
    result["lasso_to_kernel_ms"] = (page.kernel_json("_landed[0]") * 1000 -
                                    p.evaluate("() => window.__mouseupEpoch[0]"))
    before = _canvas_pixels(p, box)
    start = time.perf_counter()
    page.kernel("df.loc[sc.selection(), 'label'] = 'bad'\nsc.color(by='label', map=CMAP)")

    def recolored():
        return (np.abs(_canvas_pixels(p, box) - before).sum(axis=2) > 60).sum() > 50

    result["assign_to_recolored_ms"] = (_poll(recolored, EVENT_TIMEOUT_MS / 1000) - start) * 1000
    return result


def _describe(mode, r):
    if mode == "jscatter":
        return (f"jupyter-scatter: run-all->drawn {r['cell_to_render_s']:.2f} s, lasso mouse-up->"
                f"indices in kernel {r['lasso_to_kernel_ms']:.0f} ms ({r['selected']:,} points, "
                f"{r['selection_events']} selection events), "
                f"assign->recolored {r['assign_to_recolored_ms']:.0f} ms")
    line = (f"xlabel {'raster' if r['raster'] else 'markers'}: run-all->render "
            f"{r['cell_to_render_s']:.2f} s, firstRender {r['first_render_ms']:.0f} ms, lasso "
            f"mouse-up->indices in kernel {r['lasso_to_kernel_ms']:.0f} ms, ->drawn "
            f"{r['lasso_to_selected_ms']:.0f} ms ({r['selected']:,} points), assign mouse-up->"
            f"recolored {r['assign_to_recolored_ms']:.0f} ms")
    if r.get("zoom_to_redrawn_ms") is not None:
        line += f", zoom->redrawn {r['zoom_to_redrawn_ms']:.0f} ms"
    return line + (f"; baseline bare scattergl newPlot {r['bare_draw_ms']:.0f} ms, "
                   f"marker.color restyle {r['bare_restyle_ms']:.0f} ms")


def main(sizes=(200_000, 1_000_000), modes=("auto", "markers", "jscatter"), repeats=1):
    print(f"load average before: {os.getloadavg()}")
    runners = {"auto": lambda o, b, n: measure(o, b, n),
               "markers": lambda o, b, n: measure(o, b, n, raster=False),
               "raster": lambda o, b, n: measure(o, b, n, raster=True),
               "jscatter": measure_jscatter}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with _fixture(conftest.lab, _Factory(base)) as server, \
                _fixture(conftest.open_notebook, server, base) as opener:
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
                        print(f"n={n:>10,} run {k + 1}: {_describe(mode, r)}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["auto", "markers", "jscatter"],
                        choices=["auto", "markers", "raster", "jscatter"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    main(tuple(args.sizes), tuple(args.modes), args.repeats)
