# The course's commands. Each target creates .venv/ on first use (only Python 3.10+ and pip
# needed), so a fresh clone runs with one command:
#   make course   execute every notebook on the embedded data -> build/ (+ summary table)
#   make test     unit tests + every notebook under nbval (fast profile, offline)
#   make bench    measure wall time and peak memory per notebook -> docs/benchmarks.md, README;
#                 the numbers the notebooks report -> docs/healthy_runs.md
#   make slides   build the workshop deck -> build/slides/index.html (one self-contained file)
#   make slides-check   ... and check it in headless Chromium (needs the `chromium` package)
#   make site     the course website -> build/site/index.html (opens offline): make course's
#                 executed notebooks (run first when missing or out of date), the deck if built,
#                 docs pages; Sphinx + MyST-NB + sphinx-book-theme
#   make site-check     ... and open every page in headless Chromium (no network, no broken link)
#   make lab      open the notebooks in JupyterLab
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= workshop

.PHONY: setup course test bench slides slides-check site site-check lab clean

$(STAMP): requirements.txt requirements-dev.txt requirements-lab.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,lab]"
	touch $(STAMP)

setup: $(STAMP)

course: $(STAMP)
	COURSE_PROFILE=$(PROFILE) COURSE_DATA=offline $(BIN)/python -m course_lib.runner --out build

test: $(STAMP)
	COURSE_PROFILE=fast COURSE_DATA=offline $(BIN)/python -m pytest

bench: $(STAMP)
	COURSE_DATA=offline $(BIN)/python -m course_lib.bench notebooks --profiles fast workshop \
		--output docs/benchmarks.md --readme README.md --healthy docs/healthy_runs.md

slides: $(STAMP)
	COURSE_PROFILE=$(PROFILE) COURSE_DATA=offline $(BIN)/python -m slides.build

slides-check: $(STAMP)
	COURSE_PROFILE=$(PROFILE) COURSE_DATA=offline $(BIN)/python -m slides.build --check

site: $(STAMP)
	COURSE_PROFILE=$(PROFILE) COURSE_DATA=offline $(BIN)/python -m course_lib.site --build build

site-check: $(STAMP)
	COURSE_PROFILE=$(PROFILE) COURSE_DATA=offline $(BIN)/python -m course_lib.site --build build \
		--check

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf build
