"""End to end: ClusterComparison in JupyterLab + Chromium: lasso, adopt, recolor, undo."""

from __future__ import annotations

import numpy as np
import pytest

from xlabel.labels import LabelStore

from .plotting import is_red, pixel_colors, rectangle_lasso
from .test_scatter_browser import wait_recolors, wait_rendered, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

N_FRAMES = 200
DARK = np.arange(10, 30)     # both clusterings call these frames dark (cluster 1 = "bad")


def cells(store_dir):
    return [
        "import numpy as np, pandas as pd\n"
        "from xlabel.labels import LabelStore\n"
        "from xlabel.widgets import ClusterComparison\n"
        f"n = {N_FRAMES}\n"
        "rng = np.random.default_rng(1)\n"
        "mean = 1000 + rng.normal(0, 8, n)\n"
        f"mean[{DARK[0]}:{DARK[-1] + 1}] = 100 + rng.normal(0, 8, {len(DARK)})\n"
        "features = pd.DataFrame({'scan': 'sample', 'frame': np.arange(n), 'mean': mean})\n"
        "kmeans = (mean < 500).astype(int)\n"
        "dbscan = kmeans.copy(); dbscan[150:155] = 1\n"
        f"store = LabelStore(n, classes=('good', 'bad'), path={str(store_dir)!r})\n"
        "view = ClusterComparison(features, kmeans, dbscan, store=store,"
        " names=('kmeans', 'dbscan'))",
        "view",
    ]


def test_lasso_and_adopt_selection_in_browser(open_notebook, tmp_path):
    store_dir = tmp_path / "labels.xlabel"
    page = open_notebook("compare.ipynb", cells(store_dir))
    wait_rendered(page)
    p = page.page

    # Lasso the dark frames in the right panel: the selection is shared with the left one.
    # Their neighbours are bright, so generous x margins survive plotly's simplification
    # of the lasso outline (about 2 px per frame in a third of the page).
    rectangle_lasso(p, DARK[0] - 4, DARK[-1] + 4, 40, 400, panel=1)
    p.mouse.move(5, 5)
    wait_status(page, f"{len(DARK)} selected")
    assert page.kernel_json("view.selected.tolist()") == DARK.tolist()
    linked = p.evaluate("() => document.querySelectorAll('.xlabel-plot')[0].data[0]"
                        ".selectedpoints.length")
    assert linked == len(DARK)

    p.click(".xlabel-button[data-id='adopt-sel:left']")
    wait_recolors(page, 1)
    labels, sources = page.store_state()
    assert np.flatnonzero(labels == 1).tolist() == DARK.tolist()
    assert (np.delete(labels, DARK) == -1).all()
    assert {sources[i] for i in DARK} == {"kmeans"}
    on_disk = LabelStore.open(store_dir)
    assert on_disk.labels.tolist() == labels.tolist()
    assert on_disk.provenance(int(DARK[0]))["source"] == "kmeans"
    assert is_red(pixel_colors(p, DARK, panel=2)).mean() >= 0.9

    p.click(".xlabel-button[data-id='undo']")
    wait_recolors(page, 2)
    assert page.kernel_json("store.counts()['unlabeled']") == N_FRAMES
    assert not is_red(pixel_colors(p, DARK, panel=2)).any()

    p.click(".xlabel-button[data-id='disagree']")
    wait_status(page, "5 disagreement(s) selected")
    assert page.kernel_json("view.selected.tolist()") == list(range(150, 155))
