"""End to end: the ReviewQueue in JupyterLab + Chromium.

Clicking "→ suggested", "keep" and "undo", and pressing keys on the key pad, changes
the kernel's LabelStore (source "review") and the progress line in the page.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "import numpy as np, pandas as pd\n"
    "import xlabel\n"
    "from xlabel.labels import LabelStore\n"
    "from xlabel.synth import make_scan\n"
    "from xlabel.widgets import ReviewQueue\n"
    "scan = make_scan(80, (16, 16), seed=4, name='s4')\n"
    "features = xlabel.frame_stats(scan.source(), progress=False)\n"
    "store = LabelStore(80)\n"
    "store.assign(np.arange(80), 'good')\n"
    "suspects = pd.DataFrame({'row': [11, 5, 60], 'suggested': ['bad'] * 3,"
    " 'score': [1.9, 1.4, 0.8]})\n"
    "q = ReviewQueue(store, suspects, source=scan.source(), features=features, n_next=2)",
    "q",
]


def wait_progress(page, text):
    page.wait_js("(t) => [...document.querySelectorAll('.xlabel-review .widget-html')]"
                 ".some((e) => e.textContent === t)", arg=text, timeout=60_000)


def button(p, name):
    return p.get_by_role("button", name=name, exact=True)


def test_review_buttons_and_keys_change_the_store(open_notebook):
    page = open_notebook("review.ipynb", CELLS)
    p = page.page
    wait_progress(page, "0 of 3 reviewed")
    button(p, "→ suggested (r)").click()
    wait_progress(page, "1 of 3 reviewed")
    button(p, "keep (k)").click()
    wait_progress(page, "2 of 3 reviewed")
    labels, sources = page.store_state()
    assert labels[[11, 5, 60]].tolist() == [1, 0, 0]
    assert sources[11] == sources[5] == "review" and sources[60] == "manual"

    button(p, "undo (u)").click()
    wait_progress(page, "1 of 3 reviewed")
    labels, sources = page.store_state()
    assert sources[5] == "manual"

    p.click(".xlabel-review-keys")
    p.keyboard.press("2")            # class 2: bad
    wait_progress(page, "2 of 3 reviewed")
    p.keyboard.press("k")
    wait_progress(page, "3 of 3 reviewed")
    labels, sources = page.store_state()
    assert labels[[11, 5, 60]].tolist() == [1, 1, 0]
    assert [sources[i] for i in (11, 5, 60)] == ["review"] * 3
    assert button(p, "keep (k)").is_disabled()


LABEL_CELLS = [
    "import numpy as np\n"
    "import xlabel\n"
    "from xlabel.labels import LabelStore\n"
    "from xlabel.synth import FAULT_CLASSES, make_fault_scan\n"
    "from xlabel.widgets import ReviewQueue\n"
    "scan = make_fault_scan(150, (16, 16), seed=2)\n"
    "features = xlabel.frame_stats(scan.source(), progress=False)\n"
    "store = LabelStore(150, classes=FAULT_CLASSES)\n"
    "q = ReviewQueue.to_label(store, features, n=3, source=scan.source(), n_next=2)",
    "q",
]


def test_labeling_queue_buttons_label_and_next_batch_refills(open_notebook):
    page = open_notebook("to_label.ipynb", LABEL_CELLS)
    p = page.page
    wait_progress(page, "0 of 3 labeled")
    assert not button(p, "keep (k)").is_visible()         # nothing to keep on unlabeled frames
    assert button(p, "next batch").is_disabled()
    first = page.kernel_json("q.rows.tolist()")
    button(p, "→ good (1)").click()
    wait_progress(page, "1 of 3 labeled")
    p.click(".xlabel-review-keys")
    p.keyboard.press("4")                                  # class 4: dead_chip
    wait_progress(page, "2 of 3 labeled")
    button(p, "→ suggested (r)").click()
    wait_progress(page, "3 of 3 labeled")
    labels, sources = page.store_state()
    assert labels[first[:2]].tolist() == [0, 3] and labels[first[2]] >= 0
    assert [sources[i] for i in first] == ["review"] * 3

    button(p, "next batch").click()                        # refit on the store, 3 more frames
    wait_progress(page, "3 of 6 labeled")
    rows = page.kernel_json("q.rows.tolist()")
    assert rows[:3] == first and len(set(rows)) == 6
    labels, _ = page.store_state()
    assert (labels[rows[3:]] == -1).all()
    assert button(p, "next batch").is_disabled()
