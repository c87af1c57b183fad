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

.PHONY: demo test wheel install install-demo install-dev install-colab test-colab chromium clean FORCE

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

# --- The Colab-like environment: $(COLAB_VENV) -------------------------------------------------------------------
# Colab's widget stack in its own venv, for the tests marked `colab` (they create it on demand: `make install-colab`,
# stamped, so it installs once; about 1.5 minutes with pip's cache warm, torch from this machine's disk).
# Colab ships ipywidgets 7.7.1 and bqplot 0.12.47 with IPython 7.34, ipykernel 6.x (it has do_one_iteration, which
# jupyter-ui-poll needs), jupyter_client 6.1.12, traitlets 5.7.1, tornado 6.4, pandas 2.2, numpy 2.0. Its front end is
# its own; here the classic Notebook 6.5 serves ipywidgets 7's and bqplot 0.12's nbextensions. Colab's own pins
# (googlecolab/backend-info, 2026-08): ipywidgets 7.7.1, widgetsnbextension 3.6.10, notebook 6.5.7, ipykernel 6.17.1,
# traitlets 5.7.1, bqplot 0.12.47. nbclient (tests/test_colab_notebooks.py) comes with notebook 6.5's nbconvert;
# hatchling builds the install cell's git checkout there without build isolation (tests/test_colab_install.py).
# This set resolves with pip and passes `pip check`.
# bqplot 0.12.47 imports six without declaring it (Colab has it); pandas 3 is newer than bqplot 0.12.
# cnnwidgets goes in editable (-e .) with the project's own dependencies; this list adds to them, never changes them.
COLAB_VENV ?= .venv-colab
COLAB_PY   := $(COLAB_VENV)/bin/python
COLAB_PKGS := ipywidgets==7.7.1 widgetsnbextension==3.6.10 bqplot==0.12.47 notebook==6.5.7 ipykernel==6.17.1 \
              ipython==7.34.0 jupyter-client==6.1.12 traitlets==5.7.1 tornado==6.4.2 pandas==2.2.2 numpy==2.0.2 six \
              jupyter-ui-poll pytest hatchling

$(COLAB_PY):
	$(PYTHON) -m venv $(COLAB_VENV)

# the list above, kept in a file that changes only when the list does: a change of the pins reinstalls, other edits of
# this Makefile do not
$(COLAB_VENV)/.pkgs: FORCE | $(COLAB_PY)
	@echo '$(TORCH) $(COLAB_PKGS)' | cmp -s - $@ || echo '$(TORCH) $(COLAB_PKGS)' > $@

$(COLAB_VENV)/.installed: pyproject.toml $(COLAB_VENV)/.pkgs | $(COLAB_PY)
	@echo "Installing the Colab-like environment into $(COLAB_VENV) (ipywidgets 7.7.1, bqplot 0.12.47, Notebook 6; first time: a minute or two)..."
	@$(COLAB_PY) -m pip install -q --disable-pip-version-check $(TORCH) $(COLAB_PKGS) -e . > $(COLAB_VENV)/pip.log 2>&1 \
	  || { cat $(COLAB_VENV)/pip.log; exit 1; }
	@$(COLAB_PY) -m pip check >> $(COLAB_VENV)/pip.log 2>&1 || { cat $(COLAB_VENV)/pip.log; exit 1; }
	@touch $@

install-colab: $(COLAB_VENV)/.installed

FORCE:

# The unit tests that build and drive panels, run under ipywidgets 7.7.1 / bqplot 0.12.47 (tests/test_colab_env.py runs
# this target; about 2 minutes on 2 shared cores). ipywidgets 7 only warns about an argument it does not know and then
# ignores it: here that warning is an error. Left out:
# - test_featuremaps' upload test: it sets FileUpload.value in ipywidgets 8's format, read-only in 7 (uploads are tested
#   under both majors in tests/test_colab_widgets.py);
# - slow tests of the loops and analyses rather than of the widgets (they run in the main suite);
# - the rest of tests/: no panel (analyses, probe, images), or the dev tools .venv-colab does not have (torch-lucent,
#   nbclient, playwright: benchmarks, notebooks, browsers), or a fresh clone.
# test_close first: it counts ipywidgets' live widgets, which jobs left running by earlier tests can add to.
COLAB_UNIT_TESTS ?= $(wildcard tests/test_close.py tests/test_colab_widgets.py tests/test_widget_state.py \
  tests/test_layer_slider.py tests/test_featuremaps.py tests/test_histogram.py tests/test_cka_heatmap.py \
  tests/test_dream_panel.py tests/test_saliency_panel.py tests/test_embedding.py tests/test_imagegrid.py \
  tests/test_explorer.py tests/test_monitor.py tests/test_topimages.py)
COLAB_DESELECT := tests/test_featuremaps.py::test_upload_of_an_image_and_of_a_non_image \
  tests/test_monitor.py::test_memory_stays_flat_over_a_long_run \
  tests/test_featuremaps.py::test_paging_shows_every_one_of_2048_channels tests/test_featuremaps.py::test_other_models \
  tests/test_histogram.py::test_other_models_and_layers_without_bias \
  tests/test_dream_panel.py::test_no_widget_piles_up_over_20_runs_and_close_frees_them_all \
  tests/test_dream_panel.py::test_live_weights tests/test_dream_panel.py::test_compare_networks_side_by_side \
  tests/test_saliency_panel.py::test_compare_models_and_all_methods \
  tests/test_saliency_panel.py::test_method_class_and_search_change_the_map \
  tests/test_embedding.py::test_tsne_separates_photographs tests/test_embedding.py::test_features_are_pooled_activations \
  tests/test_embedding.py::test_top_images_are_the_argmax_of_the_channel
test-colab: install-colab
	$(COLAB_PY) -m pytest -p no:cacheprovider -W "error:Passing unrecognized arguments:DeprecationWarning" \
	  $(addprefix --deselect ,$(COLAB_DESELECT)) $(COLAB_UNIT_TESTS) $(PYTEST_ARGS)

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

# A wheel to install elsewhere, e.g. on Colab: upload dist/cnnwidgets-*.whl, then !pip install cnnwidgets-*.whl
wheel: | $(PY)
	@$(PY) -m pip wheel -q --disable-pip-version-check --no-deps -w dist . && ls dist/cnnwidgets-*.whl

clean:
	rm -rf artifacts .pytest_cache dist
