# The two commands of the README:
#   make run   install into .venv, migrate, load sample data when empty, serve on :8000
#   make test  install test tools into .venv and run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt

install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt

run: install
	$(BIN)/python main_consolidated.py

test: install-dev
	scripts/ensure-services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python benchmarks/matching.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
