# Two commands a new user needs: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# torch first, pinned to the releases this project is tested with (<2.15: litert-torch needs it)
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
# a real Label Studio server for the importer's integration test, in its own virtualenv (about 1 GB, Django)
LS_VENV ?= .venv-labelstudio
LS_PKG ?= label-studio==1.23.*

.PHONY: venv install dev demo test lint bench-classify labelstudio clean

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install $(TORCH_PKGS)
	$(VPY) -m pip install -e '.[dev]'
	touch $@

venv install dev: $(VENV)/.installed

# A failed install is not fatal: the integration test then skips and says why.
$(LS_VENV)/.installed:
	-(test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)) && \
		$(LS_VENV)/bin/python -m pip install -q '$(LS_PKG)' && touch $@

labelstudio: $(LS_VENV)/.installed

demo: $(VENV)/.installed
	$(VPY) -m visionkit.demo

test: $(VENV)/.installed $(LS_VENV)/.installed
	VISIONKIT_LABEL_STUDIO=$(abspath $(LS_VENV))/bin/label-studio $(VPY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VPY) -m ruff check visionkit tests tools

bench-classify: $(VENV)/.installed
	$(VPY) tools/bench_classify.py --data ../shared/data/mnist

clean:
	rm -rf $(VENV) $(LS_VENV) runs build *.egg-info
