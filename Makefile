# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install the package into it.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# TensorFlow comes from the `cpu` extra here; on Kaggle/Colab/GPU images use
# their own TensorFlow (pip install -e . without the extra). bench: optuna-integration,
# so that the test of bench/peers.py's Optuna arm runs instead of being skipped.
EXTRAS ?= cpu,jax,test,bench

.PHONY: demo test faults bench setup clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

# The demo search gets a 7-minute budget: with data generation, setup and the
# export, `make demo` ends within 10 minutes on 2 CPU cores.
demo: setup
	$(PY) -m tuner search --space demo --max-time 7m
	$(PY) -m tuner best --space demo --export export/demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=20

faults: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) bench/pipeline.py
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) runs *.egg-info
