# Two commands do all the set-up on a fresh machine:
#   make demo   venv + install + render and invert on two shipped models, smooth surrogate and plain ReLU (out/demo/)
#   make test   venv + install with test extras + Lucid 0.3.10 (no deps) + pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo

.PHONY: venv install test demo clean

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

clean:
	rm -rf $(VENV) out
