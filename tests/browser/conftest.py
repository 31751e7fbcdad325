"""A real JupyterLab server on 127.0.0.1 and Debian's Chromium driven by Playwright.

``lab`` starts one isolated server per test module (fresh root, runtime, config and
data folders, random token) and kills its process group afterwards. ``notebook``
writes a notebook into the server's root, opens it in a fresh Chromium profile,
runs all cells and returns a :class:`LabPage` to drive it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VENV_BIN = Path(sys.executable).parent

# Runs code in the notebook's kernel and returns what it printed (errors as "ERROR: ...").
KERNEL_EXEC_JS = """async (code) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false});
  let out = "";
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === "stream") out += msg.content.text;
    if (t === "error") out += "ERROR: " + msg.content.ename + ": " + msg.content.evalue;
  };
  await future.done;
  return out;
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running JupyterLab server."""

    def __init__(self, root: Path, port: int, token: str, process):
        self.root, self.port, self.token, self.process = root, port, token, process

    def url(self, path="") -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium "
                    f"(make test does this)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    env = dict(os.environ)
    for name in ("runtime", "config", "data", "ipython"):
        (base / name).mkdir()
    env.update(JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_DATA_DIR=str(base / "data"), IPYTHONDIR=str(base / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "config" / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "config" / "lab-workspaces"),
               JUPYTER_PLATFORM_DIRS="1")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    port, token = _free_port(), secrets.token_hex(16)
    command = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
               "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:       # CI containers run as root
        command.append("--allow-root")
    log = open(base / "server.log", "wb")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Lab(root, port, token, process)
    try:
        deadline = time.monotonic() + 60
        while not server.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" +
                                   (base / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


class LabPage:
    """A notebook open in Chromium, with helpers to reach its kernel and plots."""

    def __init__(self, page, lab):
        self.page, self.lab = page, lab

    def kernel(self, code: str, timeout=60) -> str:
        out = self.page.evaluate(KERNEL_EXEC_JS, code)
        if "ERROR:" in out:
            raise AssertionError(f"kernel code failed: {out}\n{code}")
        return out

    def kernel_json(self, expression: str):
        out = self.kernel(f"import json as _j; print(_j.dumps({expression}))")
        return json.loads(out.strip().splitlines()[-1])

    def store_state(self, store="store"):
        """(labels array, source names per frame) of the kernel's LabelStore ``store``."""
        state = self.kernel_json(f"{{'labels': {store}.labels.tolist(), 'sources': "
                                 f"[{store}.source_names[s] for s in {store}.sources]}}")
        return np.array(state["labels"]), state["sources"]

    def wait_js(self, expression: str, timeout=60_000, arg=None):
        self.page.wait_for_function(expression, arg=arg, timeout=timeout)


def write_notebook(path: Path, cells):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)


@pytest.fixture
def open_notebook(lab, tmp_path):
    """``open_notebook(name, cells) -> LabPage``: write, open, run all cells."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"), executable_path=CHROMIUM,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 1000})
        try:
            def opener(name, cells):
                write_notebook(lab.root / name, cells)
                page = context.new_page()
                # A fresh, reset workspace per notebook: otherwise JupyterLab restores the
                # tabs of earlier tests and "current widget" may be another notebook.
                page.goto(lab.url(f"lab/tree/{name}") + "&reset")
                page.wait_for_function(
                    "(name) => window.jupyterapp && window.jupyterapp.shell.currentWidget &&"
                    " window.jupyterapp.shell.currentWidget.context &&"
                    " window.jupyterapp.shell.currentWidget.context.path === name &&"
                    " window.jupyterapp.shell.currentWidget.sessionContext &&"
                    " window.jupyterapp.shell.currentWidget.sessionContext.session &&"
                    " window.jupyterapp.shell.currentWidget.sessionContext.session.kernel &&"
                    " window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                    ".connectionStatus === 'connected'", arg=name, timeout=90_000)
                page.evaluate("() => window.jupyterapp.commands.execute("
                              "'notebook:run-all-cells')")
                return LabPage(page, lab)
            yield opener
        finally:
            context.close()
