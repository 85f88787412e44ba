# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU build of torch first, so the loose range below never pulls a CUDA build
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[test,bundle,train,data,plot]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu" tests

demo: $(STAMP)
	$(PY) -m ccdf_mri.cli demo

clean:
	rm -rf $(VENV) demo_data demo_output
