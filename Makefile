# Two entry points, both self-installing into a fresh virtual environment (.venv):
#   make lab    install everything, open JupyterLab on the guided notebooks (bundled sample data)
#   make test   install everything (+ Debian's Chromium for the browser tests), run the full suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.xlabel-installed
PIP     = $(BIN)/python -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ROOTOK := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab lab-notebooks test install chromium bench samples clean

# JupyterLab runs on lab/, a git-ignored working copy of notebooks/ (tools/lab_copy.py: newer
# sources win; a copy the learner edited is moved to lab/edited/ first, never overwritten),
# so autosave, outputs and File > New never touch the tracked notebooks.
# Teachers edit the tracked notebooks with `.venv/bin/jupyter lab notebooks/` (README).
LAB ?= lab

lab: $(STAMP) lab-notebooks
	$(BIN)/jupyter lab $(ROOTOK) --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=$(LAB) \
		--LabApp.default_url=/lab/tree/01_explore_raw_scans.ipynb

lab-notebooks:
	$(PYTHON) tools/lab_copy.py notebooks $(LAB)

# --doctest-modules runs the docstring examples of xlabel/ too (conftest.py: which, and why
# notebooks/*.py are never imported).
test: $(STAMP) chromium
	$(BIN)/python -m pytest --nbval-lax --doctest-modules tests notebooks xlabel

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e ".[deep,dask,images,dev]"
	# Compile numba's cached scatter kernels now (~10 s once), not at a learner's first import.
	$(BIN)/python -c "import xlabel.widgets._raster"
	touch $(STAMP)

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

bench: $(STAMP)
	$(BIN)/python -m bench

samples: $(STAMP)
	$(BIN)/python -m xlabel.synth --samples data_samples

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
