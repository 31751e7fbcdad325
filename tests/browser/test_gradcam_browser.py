"""End to end: GradCAMOverlay in JupyterLab + Chromium.

Choosing a layer (LayerCAM starts on "all": every conv layer combined) and a method in the page's dropdowns and
stepping with "next ▶" recomputes the map in the kernel and redraws the image; the status
line says what is explained.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "import numpy as np, torch\n"
    "from xlabel.widgets import GradCAMOverlay\n"
    "torch.manual_seed(0)\n"
    "net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),\n"
    "                          torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),\n"
    "                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),\n"
    "                          torch.nn.Linear(6, 2))\n"
    "frames = np.random.default_rng(0).poisson(20, (4, 20, 24)).astype(np.float32)\n"
    "frames[1, 5:10, 5:10] += 400\n"
    "overlay = GradCAMOverlay(net, frames, classes=('good', 'bad'))",
    "overlay",
]


def wait_status(page, text):
    page.wait_js("(t) => [...document.querySelectorAll('.widget-html')]"
                 ".some((e) => e.textContent.includes(t))", arg=text, timeout=60_000)


def image_src(p):
    return p.locator(".widget-image").first.get_attribute("src")


def dropdown(p, label):
    return p.locator(".widget-dropdown", has=p.locator(".widget-label", has_text=label)).locator("select")


def test_layer_method_and_browsing_from_the_page(open_notebook):
    page = open_notebook("gradcam.ipynb", CELLS)
    p = page.page
    wait_status(page, "frame 0 · explaining predicted class at all (layercam)")
    assert [o.strip() for o in dropdown(p, "layer").locator("option").all_inner_texts()] == ["0", "2", "all"]
    first = image_src(p)

    dropdown(p, "layer").select_option("2")
    wait_status(page, "explaining predicted class at 2 (layercam)")
    assert page.kernel_json("overlay.layer") == "2"
    combined = page.kernel_json("overlay.cam_map.round(6).tolist()")
    expected = page.kernel_json("__import__('xlabel').models.cam(net, frames[0], layer='2')[0]"
                                ".round(6).tolist()")
    assert combined == expected
    p.wait_for_function("(old) => document.querySelector('.widget-image').getAttribute('src') !== old",
                        arg=first, timeout=60_000)

    dropdown(p, "method").select_option("gradcam")
    wait_status(page, "at 2 (gradcam)")
    dropdown(p, "layer").select_option("all")
    wait_status(page, "at all (gradcam)")
    p.get_by_role("button", name="next ▶").click()
    wait_status(page, "frame 1 · explaining predicted class at all (gradcam)")
    assert page.kernel_json("overlay.index") == 1
