# Two commands on a fresh machine:
#   make demo   set everything up, sample from the bundled char-rnn, train one on the offline corpus, sample it
#   make test   set everything up (Chromium from the OS packages too), lint, run the tests and the benchmarks' smoke modes
#   make dist   build the sdist and the wheel of the distribution lesson6-zoo into dist/, and twine-check them
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup browser demo test dist bench-smoke clean

setup: $(VENV)/.installed

# torch==2.13.0 first: the CPU wheel on disk; a bare `torch` would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	@# A venv made before the distribution was renamed holds it as `zoo` too: its entry points would register every model twice.
	$(PY) -m pip uninstall -q -y zoo 2>/dev/null || true
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

# zoo explain's page is tested in a real browser: Debian's Chromium and its chromedriver, never a downloaded browser.
# Installed where missing, as root, without questions; elsewhere, say what to install.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else echo "make: the browser tests need Chromium and chromedriver: install the chromium and chromium-driver packages as root" >&2; exit 1; fi

demo: setup
	$(BIN)/zoo list
	$(BIN)/zoo sample char-rnn --prompt "for thos" --length 300 --seed 0
	rm -rf runs/demo
	$(BIN)/zoo train char-rnn --data pydoc-topics --epochs 1 --out runs/demo
	$(BIN)/zoo sample runs/demo --prompt "The " --length 300 --seed 0
	@# what the bundled char-rnn predicts at each character of a paragraph of the offline corpus, as one HTML page
	$(PY) -c "from zoo.data.sources import PydocTopics; t = PydocTopics().read_text(); i = t.index('These equivalences assume'); print(t[i : t.index(chr(10) * 2, i)], end='')" > runs/demo/paragraph.txt
	$(BIN)/zoo explain char-rnn --text runs/demo/paragraph.txt --out runs/demo/explain.html
	@echo "open $(CURDIR)/runs/demo/explain.html in a browser"

test: setup browser
	$(BIN)/ruff check zoo plugins tests bench examples scripts
	ZOO_REQUIRE_BROWSER=1 $(BIN)/pytest -q; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] && exit 0 || exit $$rc
	$(PY) bench/lesson6.py --smoke
	$(PY) bench/perf.py --smoke
	$(PY) bench/entity_embeddings.py --smoke
	$(PY) bench/beyond.py --smoke
	$(PY) bench/transformer.py --smoke
	$(PY) bench/third_party.py --smoke
	$(PY) bench/best.py --smoke
	$(PY) bench/best.py --smoke --ablation

# The sdist, and the wheel built from it, by the standard front end; checked as PyPI would.
dist: setup
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) runs build dist *.egg-info
