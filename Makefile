# make demo: JupyterLab with the quickstart notebook.   make test: the whole test suite.
# Both create .venv when it is missing and install only when pyproject.toml changed (stamp files).
# make demo serves a working copy of notebooks/ in $(WORK)/ (git-ignored), so the tracked notebooks stay as they are.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch and torchvision pinned for installs here (their wheels are on this machine); the package allows a range.
TORCH  := torch==2.14.1 torchvision==0.29.1
PIP    := $(PY) -m pip install -q --disable-pip-version-check
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
SUDO   := $(if $(filter 0,$(shell id -u)),,$(shell command -v sudo))
PORT   ?= 8888
WORK   := my-notebooks

.PHONY: demo test install install-demo install-dev chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing cnnwidgets into $(VENV) (first time: a few minutes)..."
	@$(PIP) $(TORCH) -e . > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	@echo "Installing cnnwidgets and JupyterLab into $(VENV) (first time: a few minutes)..."
	@$(PIP) $(TORCH) -e ".[demo]" > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@ $(VENV)/.installed

# the dev extra includes the demo extra
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo "Installing cnnwidgets, JupyterLab and the test tools into $(VENV) (first time: a few minutes)..."
	@$(PIP) $(TORCH) -e ".[dev]" > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@ $(VENV)/.installed $(VENV)/.installed-demo

install: $(VENV)/.installed
install-demo: $(VENV)/.installed-demo
install-dev: $(VENV)/.installed-dev

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "Installing Debian's chromium for the browser tests..."; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

# Notebooks are copied into $(WORK)/ only when missing there: a copy you edited is never overwritten.
# --ServerApp.answer_yes: one Ctrl-C stops the server (no "Shut down this Jupyter server (y/[n])?" question).
demo: install-demo
	@mkdir -p $(WORK)
	@echo "Your working copy of the notebooks is $(WORK)/ (git ignores it: the files in notebooks/ stay as they are)."
	@for nb in notebooks/*.ipynb; do \
	  if [ -e "$(WORK)/$${nb##*/}" ]; then echo "  $(WORK)/$${nb##*/}: kept as you left it"; \
	  else cp "$$nb" "$(WORK)/" && echo "  $(WORK)/$${nb##*/}: copied from $$nb"; fi; \
	done
	@echo "  For a fresh copy: rm $(WORK)/quickstart.ipynb, then make demo again."
	@echo "Starting JupyterLab. Open the URL it prints below: http://127.0.0.1:<port>/lab/tree/quickstart.ipynb?token=<token>"
	@echo "Ctrl-C stops the server."
	@cd $(WORK) && exec "$(abspath $(VENV))/bin/jupyter" lab --ip 127.0.0.1 --port $(PORT) --no-browser $(ROOT_FLAG) \
	  --ServerApp.answer_yes=True --LabApp.default_url=/lab/tree/quickstart.ipynb

# pytest exits 5 when it collected no test: that fails this target too.
test: install-dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf artifacts .pytest_cache
