# The two commands of the README quick start:
#   make demo   -> venv + pinned install + the whole DAG on both bundled scenarios -> results/<scenario>/results/report.html
#   make test   -> venv + pinned install + system test dependencies + the full test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
export NUMBA_CACHE_DIR ?= $(CURDIR)/.venv/numba-cache
export MPLBACKEND ?= Agg

.PHONY: demo test install system-test-deps lint demo-data clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,dev,bench]"
	touch $@

install: $(BIN)/.installed

# Two scenarios, each in its own working directory: engineered (mouse, config/demo.yaml) and organoid (human,
# config/demo_organoid.yaml, mapped onto the shipped HematoMap profiles).
DEMO_SCENARIOS := engineered:config/demo.yaml organoid:config/demo_organoid.yaml

demo: install
	@for s in $(DEMO_SCENARIOS); do name=$${s%%:*}; cfg=$${s#*:}; \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --snakefile "$(CURDIR)/Snakefile" \
	    --directory "results/$$name" --cores $(CORES) --configfile "$(CURDIR)/$$cfg" \
	    --workflow-profile "$(CURDIR)/workflow/profiles/local" || exit 1; \
	done
	@echo "Open results/engineered/results/report.html and results/organoid/results/report.html"

# Headless Chromium for the report test (Debian packages; needs root). The SLURM test installs its own.
system-test-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "WARNING: chromium/chromedriver missing and cannot apt-get install: the browser test will skip"; fi; \
	fi

# the venv's bin goes first on PATH, as when it is activated: SLURM jobs and shell rules find its python
test: install system-test-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check hscseq tests workflow/scripts
	$(BIN)/ruff format --check hscseq tests workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# Regenerate the bundled demo (bit-identical for the same seed).
demo-data: install
	$(BIN)/python -m hscseq.datasets demo resources/demo --sheet config/samples.tsv
	$(BIN)/python -m hscseq.datasets organoid resources/demo/organoid --sheet config/samples_organoid.tsv

clean:
	rm -rf results logs benchmarks .snakemake
