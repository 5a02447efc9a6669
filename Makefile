# lmpress - GNU Makefile.
#
#   make                  build build/lmpress and build/liblmpress.a
#   make test             build and run every test; ends with "N passed, N failed"
#   make test SAN=1       the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make check-layers     check that includes point down the layers (docs/architecture.md)
#   make bench            run the benchmarks (not part of the tests)
#   make demo             the whole chain on the shipped default model (models/default.lmp): generate, prune,
#                         distill, quantize to 8 and 4 bits, the eval-ppl table and chart (scripts/demo.sh)
#   make install PREFIX=/usr/local
#
# Missing Debian packages are installed automatically when run as root, otherwise the exact command
# is printed (scripts/check-deps.sh).

SHELL := /bin/bash
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
PREFIX ?= /usr/local
SHARED ?= ../shared
NVCC ?= nvcc

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
endif

# Target architecture: the compiler's target triple (x86_64-linux-gnu, aarch64-linux-gnu, ...), or the
# machine's when the compiler cannot say.
TARGET_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
ifeq ($(TARGET_MACHINE),)
TARGET_MACHINE := $(shell uname -m)
endif
ifneq ($(filter x86_64 x86_64-% amd64 amd64-%,$(TARGET_MACHINE)),)
TARGET_X86_64 := 1
endif

# Dependencies: pkg-config when present, Debian's paths otherwise.
PKGS := hdf5 openblas zlib
HAVE_PKGCONFIG := $(shell command -v pkg-config >/dev/null 2>&1 && pkg-config --exists $(PKGS) 2>/dev/null && echo 1)
ifeq ($(HAVE_PKGCONFIG),1)
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS))
DEP_LIBS := $(shell pkg-config --libs $(PKGS))
else
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
ifeq ($(MULTIARCH),)
MULTIARCH := x86_64-linux-gnu
endif
DEP_CFLAGS := -I/usr/include/hdf5/serial -I/usr/include/$(MULTIARCH)/openblas-pthread
DEP_LIBS := -L/usr/lib/$(MULTIARCH)/hdf5/serial -lhdf5 -L/usr/lib/$(MULTIARCH)/openblas-pthread -lopenblas -lz
endif

INCLUDES := -I.
WARN := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -pthread $(INCLUDES) $(DEP_CFLAGS) $(SANFLAGS) -MMD -MP
CFLAGS ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS)
LDLIBS := $(DEP_LIBS) -lm -pthread $(SANFLAGS)

# Per-ISA files (*_avx2.c, *_avx512.c) are compiled with their instruction set and only called after a
# CPU check. They exist for x86-64 only: on other targets they are left out of the library (their
# callers are behind #if defined(__x86_64__)) and these flags, which other compilers refuse, are unused.
AVX2_FLAGS := -O3 -mavx2 -mfma -mf16c
AVX512_FLAGS := -O3 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

LIB_SRC := $(wildcard format/*.c quant/*.c runtime/*.c prune/*.c distill/*.c)
ifneq ($(TARGET_X86_64),1)
LIB_SRC := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/bench_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)

# CUDA backend: make CUDA=1 (the default when nvcc is found; never in SAN builds). Device code for Hopper
# (sm_90a) plus compute_90 PTX for later GPUs; host binaries link cudart statically and cuBLAS dynamically.
ifeq ($(SAN),1)
CUDA ?= 0
endif
NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
CUDA ?= $(if $(NVCC_PATH),1,0)
CUDA_HOME ?= $(if $(NVCC_PATH),$(patsubst %/bin/nvcc,%,$(realpath $(NVCC_PATH))),/usr/local/cuda)
NVCC_ARCH := -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90
NVCC_FLAGS := -std=c++17 -O3 $(INCLUDES) $(NVCC_ARCH) -Xcompiler -Wall,-Wno-unused-function -MMD -MP
CUDA_SRC := $(filter-out cuda/types_check.cu,$(wildcard cuda/*.cu))
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublas -lcudart_static -ldl -lrt -lstdc++
.DEFAULT_GOAL := all
# The stub's object depends on whether CUDA is built in: a stamp per setting rebuilds it when that changes.
CUDA_STAMP := $(BUILD)/.cuda-$(CUDA)
$(CUDA_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/.cuda-* && touch $@
$(BUILD)/obj/runtime/backend_cuda_stub.o: $(CUDA_STAMP)
ifeq ($(CUDA),1)
ALL_CFLAGS += -DLMP_WITH_CUDA
LIB_OBJ += $(CUDA_OBJ)
LDLIBS += $(CUDA_LIBS)
endif
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB := $(BUILD)/liblmpress.a
EXE := $(BUILD)/lmpress
DEPS_OK := $(BUILD)/.deps-ok

.PHONY: all test bench demo install clean deps cuda-check check-layers
all: $(EXE)

$(DEPS_OK):
	@scripts/check-deps.sh
	@mkdir -p $(BUILD) && touch $@

ifeq ($(TARGET_X86_64),1)
$(BUILD)/obj/%_avx2.o: %_avx2.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX512_FLAGS) -c $< -o $@
endif

$(BUILD)/obj/%.o: %.cu | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -DLMP_WITH_CUDA -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(EXE): $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -o $@ $< $(LIB) $(LDLIBS)

test: $(EXE) $(TEST_BIN)
	@BUILD=$(BUILD) SHARED=$(SHARED) tests/run-tests.sh

# The layers point one way (docs/architecture.md); also run by make test (tests/cli_layers.sh).
check-layers:
	@scripts/check-layers.sh

bench: $(EXE) $(BENCH_BIN)
	@BUILD=$(BUILD) SHARED=$(SHARED) scripts/bench.sh

# The demo needs nothing from $(SHARED). On a fresh clone the build is most of its time: it builds with every
# core unless make was given -j already.
NPROC := $(shell nproc 2>/dev/null || echo 2)
demo:
	@$(MAKE) --no-print-directory $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(NPROC)) $(EXE)
	@BUILD=$(BUILD) scripts/demo.sh

# The CUDA kernel lab (cuda/lab/lab.cu): every kernel against the CPU reference, then timed; run on a GPU.
$(BUILD)/cuda/lab: cuda/lab/lab.cu $(wildcard cuda/kernels/*.cuh cuda/lab/*.cuh) $(LIB) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(LIB) $(DEP_LIBS) -lm -lcublas

# CUDA sources are compiled (not run) when nvcc is present: the type header must stay valid CUDA, and the
# backend, its kernels and the lab must build (CI has no GPU).
cuda-check:
	@if command -v $(NVCC) >/dev/null 2>&1; then \
	  mkdir -p $(BUILD)/cuda && $(NVCC) -std=c++17 -I. -c cuda/types_check.cu -o $(BUILD)/cuda/types_check.o \
	  && for f in $(CUDA_SRC) cuda/lab/lab.cu; do \
	       $(NVCC) $(NVCC_FLAGS) -DLMP_WITH_CUDA -c $$f -o $(BUILD)/cuda/check_$$(basename $$f .cu).o || exit 1; done \
	  && echo "cuda-check: cuda/types_check.cu $(CUDA_SRC) cuda/lab/lab.cu compiled with $$($(NVCC) --version | tail -1)"; \
	else echo "cuda-check: nvcc not found, CUDA sources not compiled"; fi

install: $(EXE)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(EXE) $(DESTDIR)$(PREFIX)/bin/lmpress

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/cuda/lab.d
