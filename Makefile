# make test  : create .venv if missing, install pinned deps, build the extension (CPU + CUDA sources), lint and
#              type-check srops/ (ruff, mypy: pyproject.toml), run tests
#              (the build is incremental: skipped when no source, flag or pinned dependency changed; ninja
#              recompiles only the changed files; SROPS_NO_CUDA=1 make test builds the C++ kernels only)
# make demo  : same set-up, then the main job (python -m srops.models.demo: train a small AMMS ×2 on data/T91, evaluate on data/Set5 against bicubic)
# make reproduce : the GPU recipe (python -m srops.models.reproduce): paper-size AMMS ×2, 30 minutes on one GPU
# make bench : all benchmarks on this machine (--bench-full rounds), JSON + report.md + charts in bench/results/<device>/
#              (allocator tuned for timing, see bench/conftest.py; make bench-default-allocator: untuned, into <device>-default-allocator/)
# make gpu-check : on a GPU machine that already has torch (no network): tools/gpu_check.py, under 8 minutes in
#                  stages (sm_90 build, Triton, CUDA C++, timing, full image, sanitizer), results to $SROPS_RESULTS_DIR
#                  or bench/results/<device>/
VENV ?= .venv
# the demo's 10-minute wall clock starts when make starts (set-up included)
DEMO_T0 := $(shell date +%s.%N)
# make demo on a machine without an NVIDIA GPU builds the C++ CPU kernels only (the demo runs on the CPU and the
# CUDA sources take half the build time); SROPS_NO_CUDA=0 make demo builds them too
ifneq ($(filter demo,$(MAKECMDGOALS)),)
ifeq ($(shell nvidia-smi -L >/dev/null 2>&1 && echo 1),)
SROPS_NO_CUDA ?= 1
export SROPS_NO_CUDA
endif
endif
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-stamp
GPU_PY ?= python3
SHELL := /bin/bash

.PHONY: test demo reproduce build gpu-check bench bench-default-allocator clean FORCE

# The extension build is redone only when one of these changed (or srops/_build_info.py is missing).
BUILD_STAMP := $(VENV)/.srops-build-stamp
BUILD_FLAGS_FILE := build/.srops-build-flags
BUILD_FLAGS := NO_EXT=$(SROPS_NO_EXT) NO_CUDA=$(SROPS_NO_CUDA) DEBUG=$(SROPS_DEBUG_BUILD) FORCE_CUDA=$(SROPS_FORCE_CUDA) ARCHS=$(TORCH_CUDA_ARCH_LIST)
BUILD_INPUTS := setup.py pyproject.toml buildsys/srops_build.py \
	$(shell find csrc -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \))

$(DEPS): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.txt  # no .pyc for all of torch: modules compile on import
	touch $(DEPS)

build: $(BUILD_STAMP)

$(BUILD_FLAGS_FILE): FORCE
	@mkdir -p build; if [ "$$(cat $@ 2>/dev/null)" != "$(BUILD_FLAGS)" ]; then echo "$(BUILD_FLAGS)" > $@; fi

$(BUILD_STAMP): $(DEPS) $(BUILD_INPUTS) $(BUILD_FLAGS_FILE) $(if $(wildcard srops/_build_info.py),,FORCE)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

test: build
	$(PY) -m srops.info
	$(PY) -m ruff check srops tests/structure
	$(PY) -m mypy
	$(PY) -m pytest tests -ra -q
	$(PY) -m pytest bench --benchmark-only -q --benchmark-min-rounds=1 --benchmark-max-time=0 \
		--benchmark-warmup=off --benchmark-columns=min,mean,rounds --smoke

bench: build
	out=$$($(PY) -m srops.info --results-dir); \
	$(PY) -m pytest bench --benchmark-only --bench-full --benchmark-json=$$out/bench.json && \
	$(PY) bench/report.py $$out/bench.json

# the same with the allocator left as an untuned program has it (every backend pays its page faults)
bench-default-allocator: build
	out=$$($(PY) -m srops.info --results-dir)-default-allocator; mkdir -p $$out; \
	SROPS_BENCH_TUNED_ALLOCATOR=0 $(PY) -m pytest bench --benchmark-only --bench-full --benchmark-json=$$out/bench.json && \
	$(PY) bench/report.py $$out/bench.json

demo: build
	SROPS_DEMO_T0=$(DEMO_T0) $(PY) -m srops.models.demo

# the GPU reproduction recipe: paper-size AMMS x2, 30 minutes of training, Set5/Set14/BSD100 table
# (on the GPU machines, which have torch and no network: REPRO_PY=python3 make reproduce after an in-place build)
REPRO_PY ?= $(PY)
reproduce: $(if $(filter $(PY),$(REPRO_PY)),build)
	$(REPRO_PY) -m srops.models.reproduce $(REPRODUCE_ARGS)

gpu-check:
	$(GPU_PY) tools/gpu_check.py

clean:
	rm -rf build dist srops/_C*.so srops/_build_info.py *.egg-info $(BUILD_STAMP)
