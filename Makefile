# The two commands of the README:
#   make demo   set up, then run `stormwatch demo` (no broker)
#   make test   set up (Python packages, Debian tools, Kafka jars), then run every test,
#               including those against a real Kafka broker the test harness starts.
VENV ?= .venv
PYTHON ?= python3

.PHONY: install demo test bench tools abuse-model

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/stormwatch demo

tools:
	scripts/ensure-tools

test: install tools
	$(VENV)/bin/python -c "from tests.support.kafka_broker import ensure_jars; print('Kafka jars:', ensure_jars())"
	$(VENV)/bin/pytest

bench: install
	$(VENV)/bin/stormwatch bench

# Retrain the abuse classifier on COLD (../shared/data/cold) and print its test figures.
abuse-model: install
	$(VENV)/bin/pip install -q -e ".[train]"
	$(VENV)/bin/python scripts/train_abuse_model.py
