# make demo: JupyterLab with the quickstart notebook.   make test: the whole test suite.
# Both create .venv when it is missing and install only when pyproject.toml changed (stamp files).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch and torchvision pinned for installs here (their wheels are on this machine); the package allows a range.
TORCH  := torch==2.14.1 torchvision==0.29.1
PIP    := $(PY) -m pip install -q --disable-pip-version-check
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
SUDO   := $(if $(filter 0,$(shell id -u)),,$(shell command -v sudo))
PORT   ?= 8888

.PHONY: demo test install install-dev chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing cnnwidgets into $(VENV) (first time: a few minutes)..."
	@$(PIP) $(TORCH) -e . > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo "Installing cnnwidgets and its test tools into $(VENV)..."
	@$(PIP) $(TORCH) -e ".[dev]" > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "Installing Debian's chromium for the browser tests..."; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

demo: install
	@echo "Starting JupyterLab: open the http://127.0.0.1:...?token=... URL printed below (Ctrl-C to stop)."
	cd notebooks && ../$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(PORT) --no-browser $(ROOT_FLAG) \
	  --LabApp.default_url=/lab/tree/quickstart.ipynb quickstart.ipynb

# pytest exits 5 when it collected no test: that fails this target too.
test: install-dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf artifacts .pytest_cache
