"""FluxScatter in a real browser: time to first render and mouse-up to recolored.

Run: .venv/bin/python -m bench.bench_widgets_browser [--sizes 200000 1000000]

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

Baseline in the same page: a bare plotly ``scattergl`` of the same ``n`` points
(``Plotly.newPlot``) and one ``Plotly.restyle`` of its ``marker.color`` array.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

from tests.browser import conftest
from tests.browser.plotting import DATA_TO_PAGE_JS, lasso
from tests.browser.test_scatter_browser import GD, scene_cells

RENDER_TIMEOUT_MS = 150_000
EVENT_TIMEOUT_MS = 90_000
MOUSEUP_JS = ("() => { window.__mouseup = []; window.addEventListener('mouseup', "
              "() => window.__mouseup.push(performance.now()), true); }")

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


def measure(opener, base: Path, n: int) -> dict:
    """Open the scatter notebook with ``n`` frames; time render, lasso and assign."""
    page = opener(f"bench_{n}.ipynb", scene_cells(base / f"labels_{n}.xlabel", n))
    start = time.perf_counter()
    page.wait_js(f"() => {{ const gd = {GD}; return gd && gd.__xlabel && "
                 f"gd.__xlabel.firstRender !== undefined; }}", timeout=RENDER_TIMEOUT_MS)
    result = {"n": n, "cell_to_render_s": time.perf_counter() - start,
              "first_render_ms": page.page.evaluate(f"() => {GD}.__xlabel.firstRender")}
    p = page.page
    p.evaluate(MOUSEUP_JS)
    low, high = page.kernel_json("[float(mean.min()) - 50, float(mean.max()) + 50]")
    corners = [[-0.5, low], [n / 10, low], [n / 10, high], [-0.5, high]]
    lasso(p, p.evaluate(DATA_TO_PAGE_JS, [corners, 0]), steps=1)
    page.wait_js(f"() => {GD}.__xlabel.selections >= 1", timeout=EVENT_TIMEOUT_MS)
    page.wait_js("() => { const s = document.querySelector('.xlabel-status');"
                 " return s && /^[1-9][0-9,]* selected/.test(s.textContent); }",
                 timeout=EVENT_TIMEOUT_MS)
    result["selected"] = len(page.kernel_json("w.selected.tolist()"))
    p.click(".xlabel-button[data-id='assign:1']")
    page.wait_js(f"() => {GD}.__xlabel.recolors >= 1", timeout=EVENT_TIMEOUT_MS)
    ups, selected_at, recolored_at = p.evaluate(
        f"() => [window.__mouseup, {GD}.__xlabel.selectedAt, {GD}.__xlabel.recoloredAt]")
    result["lasso_to_selected_ms"] = selected_at - ups[0]
    result["assign_to_recolored_ms"] = recolored_at - ups[-1]
    result["render_times"] = page.kernel_json("w.plot.render_times")
    result["bare_draw_ms"], result["bare_restyle_ms"] = p.evaluate(BASELINE_JS, n)
    p.close()
    return result


def main(sizes=(200_000, 1_000_000)):
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with _fixture(conftest.lab, _Factory(base)) as server, \
                _fixture(conftest.open_notebook, server, base) as opener:
            for n in sizes:
                try:
                    r = measure(opener, base, n)
                except Exception as err:  # noqa: BLE001 - report the size that failed
                    print(f"n={n:>9,}: FAILED {type(err).__name__}: {str(err)[:300]}")
                    continue
                print(f"n={n:>9,}: cell->render {r['cell_to_render_s']:.1f} s, "
                      f"firstRender {r['first_render_ms']:.0f} ms, "
                      f"lasso mouse-up->selected {r['lasso_to_selected_ms']:.0f} ms "
                      f"({r['selected']:,} points), assign mouse-up->recolored "
                      f"{r['assign_to_recolored_ms']:.0f} ms; render_times {r['render_times']}; "
                      f"baseline bare scattergl newPlot {r['bare_draw_ms']:.0f} ms, "
                      f"marker.color restyle {r['bare_restyle_ms']:.0f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    main(tuple(parser.parse_args().sizes))
