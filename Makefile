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

.PHONY: lab test install chromium bench samples clean

# The dev extra brings jupytext: saving a notebook in JupyterLab also updates its paired .py.
lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOTOK) --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
		--LabApp.default_url=/lab/tree/01_explore_raw_scans.ipynb

test: $(STAMP) chromium
	$(BIN)/python -m pytest --nbval-lax tests notebooks

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e ".[deep,dask,images,dev]"
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
