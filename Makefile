# DermAI: `make run` starts the site, `make test` runs every check. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

# `make run` installs what the site needs; `make test` adds the development tools.
$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo
	@echo "  DermAI is starting on http://127.0.0.1:8000  (Ctrl-C stops it)"
	@echo "  Admin: create a user with  $(BIN)/python manage.py createsuperuser  then open /admin/"
	@echo
	$(BIN)/gunicorn --config gunicorn.conf.py

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

# Two cores run the suite in about two thirds of the time: servers and browsers wait much of theirs.
test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile

# Benchmarks are measurements, not tests: run them on a quiet machine and quote the tables.
bench: $(BIN)/.installed-dev
	$(BIN)/python -m benchmarks.latency
	$(BIN)/python -m benchmarks.http_load
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) staticfiles
