# Two commands do all the set-up on a fresh machine:
#   make demo   venv + install + render and invert on two shipped models, smooth surrogate and plain ReLU (out/demo/)
#   make test   venv + install with test extras + Lucid 0.3.10 (no deps) + pytest
#   make bench  a separate venv ($(BENCH_VENV)) with the package and the peers Xplique and
#               tf-keras-vis (bench only, never dependencies of the package), then
#               benchmarks/bench_peers.py writes docs/benchmarks.md (BENCH_ARGS=--smoke: tiny sizes)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
PYTEST_ARGS ?= --durations=20   # the slowest tests, printed last (the suite's budget is ~20 min)

.PHONY: venv install test demo clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e ".[test,train,dask]"
	$(BIN)/pip install -q --no-deps lucid==0.3.10 decorator

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/lucid-ifv demo --param pixel --out $(OUT)/inception_small
	$(BIN)/lucid-ifv demo --model mnist_small --param pixel --out $(OUT)/mnist_small

# -- make bench --------------------------------------------------------------------------------
# Made once (delete $(BENCH_VENV) to redo it); the peers are installed with the package's
# resolved versions as constraints (they cannot change TensorFlow, NumPy or SciPy). Xplique 2.0.2 declares tensorflow[and-cuda]<=2.20: it is
# installed --no-deps, with the runtime imports it needs beside it (docs/benchmarks.md).
BENCH_VENV ?= out/venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_ARGS ?=
BENCH_START := $(shell date +%s)
BENCH_PEERS := tf-keras-vis==0.8.7 deprecated einops opencv-python-headless "scikit-learn<=1.7.2" \
	"tensorflow-probability<=0.25.0" tf-keras
BENCH_PINNED := '^(tensorflow|numpy|scipy|keras)=='

$(BENCH_VENV)/.installed:
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/pip install -q --upgrade pip
	$(BENCH_BIN)/pip install -q -e .
	$(BENCH_BIN)/pip freeze --exclude-editable > $(BENCH_VENV)/constraints.txt
	$(BENCH_BIN)/pip install -q -c $(BENCH_VENV)/constraints.txt $(BENCH_PEERS)
	$(BENCH_BIN)/pip install -q --no-deps xplique==2.0.2
	$(BENCH_BIN)/pip freeze --exclude-editable | grep -iE $(BENCH_PINNED) > $(BENCH_VENV)/pinned-after.txt
	grep -iE $(BENCH_PINNED) $(BENCH_VENV)/constraints.txt | diff - $(BENCH_VENV)/pinned-after.txt
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_BIN)/pip install -q -e .
	OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 \
		$(BENCH_BIN)/python benchmarks/bench_peers.py --make-start $(BENCH_START) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out
