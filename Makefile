# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.splat4d-installed

.PHONY: setup demo test test-all bench clean

$(STAMP): pyproject.toml scripts/install_torch.sh
	test -x $(PY) || python3 -m venv $(VENV)
	bash scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/splat4d demo

test: $(STAMP)
	bash scripts/run_tests.sh $(PY)

test-all: $(STAMP)
	$(PY) -m pytest -m "" -q

bench: $(STAMP)
	$(PY) benchmarks/raster.py

clean:
	rm -rf $(VENV) .pytest_cache
