# `make run` and `make test` work from a fresh clone: the virtualenv is created and the
# project installed into it whenever pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PACKAGES := $(wildcard service checkpoints ratelimit)

.PHONY: install run test lint bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m service migrate
	$(BIN)/python -m service serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/mypy --strict $(PACKAGES)

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/checkpoints.py
	$(BIN)/python bench/ratelimit.py
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/load.py --users 200 --seconds 45

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
