# Two commands a new user needs: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# torch first, pinned to the releases this project is tested with (<2.15: litert-torch needs it)
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv install dev demo test lint bench-classify clean

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install $(TORCH_PKGS)
	$(VPY) -m pip install -e '.[dev]'
	touch $@

venv install dev: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VPY) -m visionkit.demo

test: $(VENV)/.installed
	$(VPY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VPY) -m ruff check visionkit tests tools

bench-classify: $(VENV)/.installed
	$(VPY) tools/bench_classify.py --data ../shared/data/mnist

clean:
	rm -rf $(VENV) runs build *.egg-info
