# Two commands a new user needs: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# torch first, pinned to the releases this project is tested with (<2.15: litert-torch needs it)
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
# a real Label Studio server for the importer's integration test, in its own virtualenv (about 1 GB, Django)
LS_VENV ?= .venv-labelstudio
LS_PKG ?= label-studio==1.23.*

# MediaPipe export (litert-torch, mediapipe) in a virtualenv of its own: litert-torch's xdsl pins
# typing-extensions<4.13, which label-studio-sdk's dependencies (in .venv) refuse; and mediapipe's
# opencv-contrib-python replaces opencv-python-headless's cv2, so the headless build is put back (MediaPipe Tasks
# do not use cv2). A failed install is not fatal: the MediaPipe tests then skip and say why.
EDGE_VENV ?= .venv-edge
EDGE_PY := $(EDGE_VENV)/bin/python

.PHONY: venv install dev demo test test-quick lint format fuzz bench-classify bench-edge labelstudio edge chromium clean

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install $(TORCH_PKGS)
	$(VPY) -m pip install -e '.[dev]'
	@# trackeval (the track extra) pulls opencv-python, whose cv2 (it needs libGL) shadows the headless build
	-$(VPY) -m pip uninstall -y -q opencv-python
	$(VPY) -m pip install -q --force-reinstall --no-deps 'opencv-python-headless>=4.8'
	touch $@

venv install dev: $(VENV)/.installed

# A failed install is not fatal: the integration test then skips and says why.
$(LS_VENV)/.installed:
	-(test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)) && \
		$(LS_VENV)/bin/python -m pip install -q '$(LS_PKG)' && touch $@

labelstudio: $(LS_VENV)/.installed

$(EDGE_VENV)/.installed: pyproject.toml
	-(test -x $(EDGE_PY) || $(PYTHON) -m venv $(EDGE_VENV)) && \
		$(EDGE_PY) -m pip install -q $(TORCH_PKGS) && \
		$(EDGE_PY) -m pip install -q -e '.[mediapipe,serve,test,timm]' httpx2 && \
		$(EDGE_PY) -m pip uninstall -y -q opencv-contrib-python && \
		$(EDGE_PY) -m pip install -q --force-reinstall --no-deps 'opencv-python-headless>=4.8,<5' && touch $@

edge: $(EDGE_VENV)/.installed

# A headless Chromium for the report page's browser test (Playwright drives it; `playwright install` needs a download
# host that is often unreachable): Debian's package when run as root. Not fatal: the test then skips and says how
# to get one. CHROMIUM=/path/to/chromium uses another binary.
CHROMIUM ?= /usr/bin/chromium
chromium:
	-@test -x $(CHROMIUM) || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
		apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
		echo "no Chromium at $(CHROMIUM): the report browser test will skip (apt-get install chromium as root)"

demo: $(VENV)/.installed
	$(VPY) -m visionkit.demo

# Both suites always run (a failure in the first must not hide the MediaPipe results); make fails if either did.
test: $(VENV)/.installed $(LS_VENV)/.installed $(EDGE_VENV)/.installed chromium
	@main=0; edge=0; \
	VISIONKIT_LABEL_STUDIO=$(abspath $(LS_VENV))/bin/label-studio VISIONKIT_CHROMIUM=$(CHROMIUM) \
		$(VPY) -m pytest -n 2 -q || main=$$?; \
	if test -f $(EDGE_VENV)/.installed; then $(EDGE_PY) -m pytest -n 2 -q tests/edge || edge=$$?; \
	else echo "MediaPipe tests skipped: $(EDGE_VENV) did not install (run make edge to see why)"; fi; \
	if test $$main -ne 0 || test $$edge -ne 0; then \
		echo "make test failed: main suite exit $$main, MediaPipe suite exit $$edge"; exit 1; fi

# the quick loop: everything but the slow end-to-end tests (subprocesses, servers, whole-task runs)
test-quick: $(VENV)/.installed
	$(VPY) -m pytest -n 2 -q -m "not slow"

# property-based tests of every parser of outside input, 10,000 examples each (make test runs 40 each)
fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fuzz $(VPY) -m pytest -n 2 -q -p no:cacheprovider --timeout 0 tests/fuzz

# the same checks CI runs first: lint rules, then formatting (`make format` rewrites the files)
lint: $(VENV)/.installed
	$(VPY) -m ruff check visionkit tests tools examples
	$(VPY) -m ruff format --check visionkit tests tools examples

format: $(VENV)/.installed
	$(VPY) -m ruff format visionkit tests tools examples
	$(VPY) -m ruff check --fix visionkit tests tools examples

bench-classify: $(VENV)/.installed
	$(VPY) tools/bench_classify.py --data ../shared/data/mnist

bench-edge: $(EDGE_VENV)/.installed
	$(EDGE_PY) tools/bench_edge.py

clean:
	rm -rf $(VENV) $(LS_VENV) $(EDGE_VENV) runs build *.egg-info
