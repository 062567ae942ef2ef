# Two commands on a fresh machine:
#   make demo   set everything up, sample from the bundled char-rnn, train one on the offline corpus, sample it
#   make test   set everything up, lint, run the tests and the benchmarks' smoke modes
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup demo test bench-smoke clean

setup: $(VENV)/.installed

# torch==2.13.0 first: the CPU wheel on disk; a bare `torch` would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

demo: setup
	$(BIN)/zoo list
	$(BIN)/zoo sample char-rnn --prompt "for thos" --length 300 --seed 0
	rm -rf runs/demo
	$(BIN)/zoo train char-rnn --data pydoc-topics --epochs 1 --out runs/demo
	$(BIN)/zoo sample runs/demo --prompt "The " --length 300 --seed 0

test: setup
	$(BIN)/ruff check zoo plugins tests bench examples scripts
	$(BIN)/pytest -q; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] && exit 0 || exit $$rc
	$(PY) bench/lesson6.py --smoke
	$(PY) bench/perf.py --smoke
	$(PY) bench/entity_embeddings.py --smoke
	$(PY) bench/beyond.py --smoke

clean:
	rm -rf $(VENV) runs build *.egg-info
