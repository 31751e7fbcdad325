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


# Page rectangles of the modebar buttons and of the panel titles.
BOXES_JS = """() => {
  const gd = document.querySelectorAll('.xlabel-plot')[0];
  const rect = (e) => { const r = e.getBoundingClientRect();
                        return [r.left, r.top, r.right, r.bottom]; };
  return {buttons: [...gd.querySelectorAll('.modebar-btn')].map(rect),
          titles: [...gd.querySelectorAll('.annotation-text')].map(
                      (e) => [e.textContent, rect(e)])};
}"""


def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_tables_are_styled_and_the_modebar_leaves_the_titles_free(open_notebook, tmp_path):
    page = open_notebook("compare_tables.ipynb", cells(tmp_path / "labels.xlabel"))
    wait_rendered(page)
    p = page.page
    p.mouse.move(*p.evaluate("() => { const r = document.querySelector('.xlabel-plot')"
                             ".getBoundingClientRect(); return [r.right - 50, r.top + 80]; }"))
    p.wait_for_selector(".modebar-btn", state="attached")
    boxes = p.evaluate(BOXES_JS)
    assert [name for name, _ in boxes["titles"]] == ["kmeans", "dbscan", "labels"]
    assert boxes["buttons"], "the modebar is drawn"
    for name, title in boxes["titles"]:
        covered = [b for b in boxes["buttons"] if overlap(b, title)]
        assert not covered, f"the modebar covers the title {name!r}"

    # the contingency table: named rows and columns, every row as wide as the header,
    # numbers right-aligned in their columns
    table = p.evaluate("""() => [...document.querySelectorAll('table.xlabel-contingency tr')]
        .map((tr) => [...tr.children].map((c) => [c.textContent,
                                                  getComputedStyle(c).textAlign]))""")
    header = [text for text, _ in table[0]]
    assert header == ["kmeans ↓ · dbscan →", "cluster 0", "cluster 1", "total"]
    assert [row[0][0] for row in table[1:]] == ["kmeans cluster 0", "kmeans cluster 1", "total"]
    assert {len(row) for row in table} == {len(header)}
    assert {align for row in table[1:] for _, align in row[1:]} == {"right"}
    assert table[-1][-1][0] == str(N_FRAMES)
    metrics = p.evaluate("() => [...document.querySelectorAll('table.xlabel-metrics th')]"
                         ".map((c) => c.textContent)")
    assert metrics[0].startswith("adjusted Rand index")
    legend = p.evaluate("() => [...document.querySelectorAll('.xlabel-legend-item')]"
                        ".map((e) => e.textContent)")
    assert "noise (0)" not in legend and not any(t.endswith(" (0)") for t in legend[:4])
