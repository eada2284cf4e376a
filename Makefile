# Two commands do all the set-up on a fresh machine with only Python >= 3.11:
#   make demo   runs the main job (the quick reproduction run)
#   make test   runs the whole test suite
# Both create (or reuse) the local virtual environment .venv and install the
# package into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-backends test-generic-backends docs lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs,dev,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m dln_manifolds reproduce --quick --out results

# One BLAS thread per pytest worker: the tests use small matrices, where
# multi-threaded BLAS only adds contention on a 2-core machine.
test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q

# The geomstats backends end to end (numpy, autograd, pytorch), in a separate
# virtual environment with the optional extra "backends" (PyTorch is large).
BACKENDS_VENV ?= .venv-backends
BACKENDS_STAMP := $(BACKENDS_VENV)/.installed

$(BACKENDS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BACKENDS_VENV)
	$(BACKENDS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BACKENDS_VENV)/bin/python -m pip install --quiet -e ".[test,backends]"
	touch $(BACKENDS_STAMP)

test-backends: $(BACKENDS_STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BACKENDS_VENV)/bin/python -m pytest -n 0 -q -m backends tests/test_geomstats_backends.py

# geomstats' own generic test cases (tests/test_geomstats_generic.py, run under numpy
# by `make test`) under the autograd backend (main venv) and the pytorch backend
# (backends venv).
test-generic-backends: $(STAMP) $(BACKENDS_STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 GEOMSTATS_BACKEND=autograd $(BIN)/python -m pytest -n 0 -q tests/test_geomstats_generic.py tests/test_geomstats_generic_rectangular.py
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 GEOMSTATS_BACKEND=pytorch $(BACKENDS_VENV)/bin/python -m pytest -n 0 -q tests/test_geomstats_generic.py tests/test_geomstats_generic_rectangular.py

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(BACKENDS_VENV) docs/_build results .pytest_cache
