"""plotly.js evaluation in the page: as shipped vs with its factory compiled eagerly.

Run: .venv/bin/python -m bench.bench_plotly_eval [--repeats 7]

The scatter widget evaluates plotly.js (the vendored "basic" bundle for raster plots, the
``plotly`` package's full bundle for marker plots) with ``new Function`` in the notebook
page, on the page's main thread: it is on every new page's first render. plotly's UMD
wrapper passes the library's factory as an arrow-function argument, which V8 preparses with
the wrapper and parses again in full when it is called; ``eagerFactory`` (in
``xlabel/widgets/static/scatter.js``, taken from there verbatim) wraps it in parentheses so
that V8 compiles it at once ("PIFE" heuristic).

Each evaluation runs in a new page of one headless Chromium (the browser tests' flags and
binary), the two ways interleaved; medians and their ratio per bundle.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from xlabel.widgets._scatter_base import STATIC, plotly_js_bytes

EVALUATE_JS = """([source, eager]) => {
  %s
  const t = performance.now();
  const module = { exports: {} };
  new Function("module", "exports", "define", eager ? eagerFactory(source) : source)(
    module, module.exports, undefined);
  const ms = performance.now() - t;
  if (typeof module.exports.newPlot !== "function") throw new Error("no plotly");
  return ms;
}"""


def eager_factory_js() -> str:
    """The page's ``eagerFactory`` and its constants, as scatter.js defines them."""
    code = (STATIC / "scatter.js").read_text()
    return re.search(r"const UMD_FACTORY[\s\S]*?\nfunction eagerFactory[\s\S]*?\n}\n",
                     code).group(0)


def main(repeats=7):
    from playwright.sync_api import sync_playwright

    script = EVALUATE_JS % eager_factory_js()
    sources = {bundle: plotly_js_bytes(bundle).decode() for bundle in ("basic", "full")}
    times = {(bundle, eager): [] for bundle in sources for eager in (False, True)}
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(repeats + 1):                     # the first round: warm-up
                for (bundle, eager), runs in times.items():
                    page = context.new_page()
                    page.goto("about:blank")
                    runs.append(page.evaluate(script, [sources[bundle], eager]))
                    page.close()
        finally:
            context.close()
    for bundle in sources:
        plain, eager = (statistics.median(times[(bundle, e)][1:]) for e in (False, True))
        print(f"plotly.js {bundle} ({len(sources[bundle]) / 1e6:.1f} MB): as shipped "
              f"{plain:.0f} ms, factory compiled eagerly {eager:.0f} ms -> {plain / eager:.2f}x "
              f"(medians of {repeats}; runs {[round(v) for v in times[(bundle, False)][1:]]} / "
              f"{[round(v) for v in times[(bundle, True)][1:]]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    main(parser.parse_args().repeats)
