# make test  : create .venv if missing, install pinned deps, build the extension (CPU + CUDA sources), run tests
# make demo  : same set-up, then the main job (python -m srops.models.demo: train a small AMMS ×2 on data/T91, evaluate on data/Set5 against bicubic)
# make bench : all benchmarks on this machine, JSON + report.md + charts in bench/results/<device>/
#              (allocator tuned for timing, see bench/conftest.py; make bench-default-allocator: untuned, into <device>-default-allocator/)
# make gpu-check : on a GPU machine that already has torch (no network): bench/gpu_check.py, under 8 minutes in
#                  stages (sm_90 build, Triton, CUDA C++, timing, full image, sanitizer), results to $SROPS_RESULTS_DIR
#                  or bench/results/<device>/
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-stamp
GPU_PY ?= python3
SHELL := /bin/bash

.PHONY: test demo build gpu-check bench bench-default-allocator clean

$(DEPS): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(DEPS)

build: $(DEPS)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .

test: build
	$(PY) -m srops.info
	$(PY) -m pytest tests -ra -q
	$(PY) -m pytest bench --benchmark-only -q --benchmark-min-rounds=1 --benchmark-max-time=0 \
		--benchmark-warmup=off --benchmark-columns=min,mean,rounds --smoke

bench: build
	out=$$($(PY) -m srops.info --results-dir); \
	$(PY) -m pytest bench --benchmark-only --benchmark-json=$$out/bench.json && $(PY) bench/report.py $$out/bench.json

# the same with the allocator left as an untuned program has it (every backend pays its page faults)
bench-default-allocator: build
	out=$$($(PY) -m srops.info --results-dir)-default-allocator; mkdir -p $$out; \
	SROPS_BENCH_TUNED_ALLOCATOR=0 $(PY) -m pytest bench --benchmark-only --benchmark-json=$$out/bench.json && \
	$(PY) bench/report.py $$out/bench.json

demo: build
	$(PY) -m srops.models.demo

gpu-check:
	$(GPU_PY) bench/gpu_check.py

clean:
	rm -rf build srops/_C*.so srops/_build_info.py *.egg-info
