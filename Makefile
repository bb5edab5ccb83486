# Two commands do all set-up on a fresh machine (a local .venv is created on first use):
#   make run    run the default experiment (sign) end to end -> runs/sign/
#   make test   run the test suite
#   make gallery  every experiment with --quick, then runs/gallery/index.html
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# test processes (pytest-xdist); each compiles its own programs, so more than the cores
# does not help
WORKERS ?= 2
STAMP  := $(VENV)/.installed-stamp

.PHONY: run quick test test-slow lint format bench bench-tables bench-pde gallery clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mfnn run sign --out runs/sign --overwrite

quick: $(STAMP)
	$(BIN)/mfnn run sign --quick --out runs/sign-quick --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n $(WORKERS) --dist load

# every named experiment in its quick version (a claim that does not hold is still shown:
# its card says so), each with its report, then one index page over them
GALLERY ?= runs/gallery
gallery: $(STAMP)
	@for e in $$($(BIN)/mfnn experiments | cut -d' ' -f1); do \
	  $(BIN)/mfnn run $$e --quick --out $(GALLERY)/$$e --overwrite --no-progress \
	    || echo "--- $$e: exit $$? (see its report) ---"; \
	done
	$(BIN)/mfnn gallery $(GALLERY)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# every benchmark, one after the other, then the README tables (benchmarks/README.md);
# e.g. make bench BENCH_ARGS="--only pde,kernels" or BENCH_ARGS="--quick"
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# only re-render the README tables from benchmarks/results/*.json
bench-tables: $(STAMP)
	$(BIN)/python benchmarks/tables.py

bench-pde: $(STAMP)
	$(BIN)/python benchmarks/bench_pde.py --out benchmarks/results/bench_pde_cpu2.json

clean:
	rm -rf $(VENV) runs .pytest_cache
