# uebench: two commands for a new user.
#   make demo   set up .venv (first time only) and run the offline end-to-end demo
#   make test   set up .venv (first time only) and run the test suite + linter
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export NLTK_DATA := $(CURDIR)/.nltk_data

.PHONY: demo test lint bench bench-scale wordnet browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/uebench demo

# WordNet 3.0 is only needed to re-verify the packaged taxonomy snapshot; best effort (the test says why it skips).
wordnet: $(STAMP)
	-@bash scripts/install_wordnet.sh

# Headless Chromium is only needed by the report test (driven by playwright); best effort (the test says why it skips).
browser:
	-@bash scripts/install_chromium.sh

test: $(STAMP) wordnet browser
	$(BIN)/python -m pytest
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

# Every component benchmark at its quick default size; the scale benchmark (≈ 20 min) is its own target.
bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do \
		[ "$$script" = benchmarks/bench_scale.py ] && continue; \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done

bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --json /tmp/uebench-scale/scale-1.json
	$(BIN)/python benchmarks/bench_scale.py --models 1 --budget-mib 64 --decode-cpus 0.5 --batch-size 64 \
		--json /tmp/uebench-scale/scale-1-bound.json
	$(BIN)/python benchmarks/bench_scale.py --models 1 --budget-mib 64 --decode-cpus 0.5 --batch-size 64 --scale 2 \
		--json /tmp/uebench-scale/scale-2-bound.json --compare /tmp/uebench-scale/scale-1-bound.json

clean:
	rm -rf $(VENV) uebench-workspace .pytest_cache .ruff_cache
