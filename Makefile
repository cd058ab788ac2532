# Thin wrapper over CMake and scripts/: the commands a developer and CI type.
#
#   make run     the hub with demo data on http://127.0.0.1:8080 (scripts/run.sh)
#   make test    every suite under ASan+UBSan (clang), after a plain -Werror build
#   make build   the plain build into build/
#   make bench   every benchmark, one after another (tests/bench/run.sh; BENCH="fanout idle" for some)
#   make clean   removes build/ and build-test/ (var/, the data of `make run`, stays)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
JOBS ?= $(shell nproc)
CMAKE_BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build build-test test run bench clean distclean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE)
	cmake --build build -j $(JOBS)

build-test: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) \
	      -DCMAKE_C_COMPILER=clang -DRN_SANITIZE=ON -DRN_DEBUG_ROUTES=ON
	cmake --build build-test -j $(JOBS)

# The plain build comes first, so that a warning (-Werror) under the default
# compiler fails `make test` too; the suites then run against the sanitized
# build. ctest's TIMEOUT per test bounds every suite.
test: build build-test
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-test --output-on-failure --no-tests=error -j 2

run:
	@bash scripts/run.sh

bench: build
	bash tests/bench/run.sh $(BENCH)

clean:
	rm -rf build build-test

distclean: clean
	rm -rf var tests/node_modules
