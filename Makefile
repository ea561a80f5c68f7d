# The two commands a newcomer needs: `make run` and `make test`.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup setup-test run test bench

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

run: setup
	$(PY) hub.py --host $(HOST) --port $(PORT) $(ARGS)

test: setup-test
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) bench/bench_registry.py
