"""The README's screenshots, taken in a real JupyterLab + headless Chromium.

It reuses the browser-test machinery (``tests/browser/conftest.py``: an isolated JupyterLab
server, a fresh Chromium profile, run-all), so it runs under pytest::

    PYTHONPATH=. .venv/bin/python -m pytest docs/screenshots.py -p no:cacheprovider

and rewrites ``docs/screenshot_flux_scatter.png`` (FluxScatter with a lasso over the beam
loss of the bundled ``scan_a``, the FrameGallery of the selection below it) and
``docs/screenshot_cluster_comparison.png`` (K-means vs DBSCAN on ``scan_a``, with the label
store panel and the tables). Not part of ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import lab, open_notebook  # noqa: F401 (pytest fixtures)
from tests.browser.plotting import rectangle_lasso
from tests.browser.test_gallery_browser import wait_images, wait_page_label
from tests.browser.test_scatter_browser import wait_rendered, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

DOCS = Path(__file__).resolve().parent
SETUP = ("import xlabel\n"
         "from xlabel import cluster\n"
         "from xlabel.labels import LabelStore\n"
         "from xlabel.widgets import ClusterComparison, FluxScatter\n"
         "src = xlabel.open_scan(xlabel.samples.path('scan_a'))\n"
         "features = xlabel.frame_stats(src, progress=False)\n"
         "store = LabelStore(len(features), classes=('good', 'bad'))\n"
         "km = cluster.order_by(cluster.kmeans(features, k=2), features['mean'])\n"
         "store.seed_from(km, mapping={0: 'bad', 1: 'good'}, source='kmeans')\n")


def shoot(page, selector, name):
    """Screenshot of the notebook output that holds ``selector``, whole and unobstructed."""
    p = page.page
    p.add_style_tag(content=".jp-toast-container, .Toastify { display: none !important; }")
    output = p.locator(".jp-OutputArea-output", has=p.locator(selector)).first
    height = output.evaluate("(e) => e.getBoundingClientRect().height")
    p.set_viewport_size({"width": 1400, "height": int(height) + 400})
    output.scroll_into_view_if_needed()
    p.wait_for_timeout(1000)                  # plotly's responsive relayout after the resize
    output.screenshot(path=DOCS / name)


def test_flux_scatter_with_gallery(open_notebook):
    page = open_notebook("flux_scatter.ipynb", [SETUP + "w = FluxScatter(store, features, "
                                                        "source=src, height=380)", "w"])
    wait_rendered(page)
    mean = page.kernel_json("features['mean'].tolist()")
    span = max(mean) - min(mean)
    rectangle_lasso(page.page, 59.5, 84.5, min(mean) - 0.02 * span, max(mean) + 0.02 * span)
    page.page.mouse.move(5, 5)
    wait_status(page, "25 selected")
    wait_page_label(page, "frames 1-6 of 25 (page 1/5)")
    wait_images(page, 6)
    shoot(page, ".xlabel-plot", "screenshot_flux_scatter.png")


def test_cluster_comparison(open_notebook):
    page = open_notebook("comparison.ipynb", [
        SETUP + "db = cluster.dbscan(features)\n"
                "view = ClusterComparison(features, km, db, store=store,"
                " names=('kmeans', 'dbscan'), height=380)", "view"])
    wait_rendered(page)
    page.page.wait_for_selector("table.xlabel-contingency")
    shoot(page, ".xlabel-plot", "screenshot_cluster_comparison.png")
