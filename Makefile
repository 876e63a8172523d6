# Stoa — setup, build and test entry points. `make run` and `make test` do all
# setup on a fresh Debian 12 machine (missing packages are installed when we can).

# At most 2 parallel jobs: the reference machines have 2 cores.
JOBS := $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 2 ] && n=2; echo $$n)
TEST_JOBS ?= 2
FUZZ_SECONDS ?= 60
CMAKE := cmake -G Ninja
CTEST = ctest --output-on-failure -j$(TEST_JOBS) --timeout 600

# Sanitizers from LLVM 14 / GCC 12 break under kernels with more than 28 bits of
# mmap randomisation; run their tests without ASLR there (when setarch is allowed).
NOASLR := $(shell [ "$$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)" -gt 28 ] \
            && setarch $$(uname -m) -R true 2>/dev/null && echo "setarch $$(uname -m) -R")

.PHONY: all deps build run test test-asan test-tsan bench bench-sweep fuzz format format-check install-test clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release
	cmake --build build -j$(JOBS)

run: build
	@dir=$$(mktemp -d /tmp/stoa-demo.XXXXXX); \
	echo "build/stoa demo --dir $$dir"; \
	if build/stoa demo --dir "$$dir"; then rm -rf "$$dir"; \
	else rc=$$?; echo "demo failed (rc $$rc); store kept in $$dir" >&2; exit $$rc; fi

test: build
	$(CTEST) --test-dir build

test-asan: deps
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSTOA_SANITIZE=address -DSTOA_BUILD_BENCH=OFF
	cmake --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(NOASLR) $(CTEST) --test-dir build-asan

test-tsan: deps
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DSTOA_SANITIZE=thread -DSTOA_BUILD_BENCH=OFF
	cmake --build build-tsan -j$(JOBS)
	STOA_POWER_CUTS=200 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(NOASLR) $(CTEST) --test-dir build-tsan -LE no-tsan

bench: build
	build/bench/stoa-bench --quick

# Both sweeps at 1..SWEEP_MAX processes (default: the CPUs online), JSON and,
# where gnuplot is installed (optional: gnuplot-nox), an SVG each, in
# SWEEP_OUT. SWEEP_ARGS adds stoa-bench options (e.g. --seconds 1 --trials 9).
SWEEP_MAX ?= $(shell nproc 2>/dev/null || echo 1)
SWEEP_OUT ?= build/bench-sweep
SWEEP_ARGS ?=
bench-sweep: build
	@mkdir -p $(SWEEP_OUT)
	@for kind in readers writers; do \
	  build/bench/stoa-bench --sweep $$kind --max $(SWEEP_MAX) $(SWEEP_ARGS) \
	    --json $(SWEEP_OUT)/sweep-$$kind.json || exit $$?; \
	  if command -v gnuplot >/dev/null 2>&1; then \
	    bench/plot_sweep.py $(SWEEP_OUT)/sweep-$$kind.json || exit $$?; \
	  else echo "bench-sweep: no gnuplot (apt-get install gnuplot-nox): no SVG"; fi; \
	done

fuzz: deps
	$(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DSTOA_BUILD_FUZZ=ON -DSTOA_SANITIZE=address \
	  -DSTOA_BUILD_TESTS=OFF -DSTOA_BUILD_BENCH=OFF
	cmake --build build-fuzz -j$(JOBS) --target fuzz_targets
	$(NOASLR) scripts/run-fuzz.sh build-fuzz/fuzz $(FUZZ_SECONDS)

FORMAT_FILES = $(shell find $(wildcard include src tools bench fuzz tests) -type f \( -name '*.h' -o -name '*.cc' \))

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

install-test: build
	tests/consumer/run.sh build

clean:
	rm -rf build build-asan build-tsan build-fuzz
