# sluice: build, run, test, benchmark.
#   make          build/sluiced, build/sluicectl, build/libsluice.a, BPF objects and skeletons
#   make run      install missing packages, build, run sluiced on examples/sluice.yaml
#   make test     install missing packages, build, run every suite
#   make asan     the whole suite against an ASan+UBSan build
#   make bench    sluice vs nginx vs HAProxy (tools/bench/)

CC      ?= gcc
CLANG   ?= clang
BPFTOOL ?= bpftool
PYTHON  ?= /usr/bin/python3
B       ?= build
VERSION := 0.1.0

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

PKGS    := libevent libevent_pthreads libssl libcrypto yaml-0.1 jansson libbpf
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O2
SANITIZE ?=
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wpointer-arith
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu11 -D_GNU_SOURCE -pthread $(WARN) $(SANITIZE) \
	    -DSL_VERSION=\"$(VERSION)\" -Icommon -Iuser -Iuser/include -I$(LLHTTP_INC) \
	    -I$(B)/bpf $(PKG_CFLAGS)
LDFLAGS  += -pthread $(SANITIZE)
LDLIBS   += $(PKG_LIBS) -lm

# Library: every user/ source but main.c; llhttp compiled from Debian's sources.
LIB_SRC  := $(filter-out user/main.c,$(wildcard user/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
LLHTTP_OBJ := $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o
BPF_SRC  := $(wildcard bpf/*.bpf.c)
BPF_OBJ  := $(BPF_SRC:bpf/%.bpf.c=$(B)/bpf/%.bpf.o)
BPF_SKEL := $(BPF_SRC:bpf/%.bpf.c=$(B)/bpf/%.skel.h)
UNIT_SRC := $(wildcard selftests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:selftests/unit/%.c=$(B)/selftests/unit/%)
BPFT_SRC := $(wildcard selftests/bpf/test_*.c)
BPFT_BIN := $(BPFT_SRC:selftests/bpf/%.c=$(B)/selftests/bpf/%)
EX_SRC   := $(wildcard examples/*.c)
EX_BIN   := $(EX_SRC:examples/%.c=$(B)/examples/%)
PROXY_SRC := $(wildcard selftests/proxies/*.c)
PROXY_BIN := $(PROXY_SRC:selftests/proxies/%.c=$(B)/selftests/proxies/%)

.PHONY: all deps run test asan bench format lint examples clean unit-tests bpf-tests fuzz \
	test-proxies
all: $(B)/sluiced $(B)/sluicectl $(B)/libsluice.a $(BPF_OBJ) $(BPF_SKEL)

deps:
	@./tools/install-deps.sh test

$(B)/libsluice.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/sluiced: $(B)/user/main.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/sluicectl: tools/sluicectl.c $(B)/libsluice.a $(BPF_SKEL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ tools/sluicectl.c $(B)/libsluice.a $(LDLIBS)

$(B)/%.o: %.c $(BPF_SKEL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) $(OPT) -g $(SANITIZE) -I$(LLHTTP_INC) -c -o $@ $<

# BPF: .bpf.c -> .bpf.o -> bpftool gen skeleton -> .skel.h (CO-RE against the running kernel).
$(B)/bpf/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(B)/bpf/%.bpf.o: bpf/%.bpf.c $(B)/bpf/vmlinux.h $(wildcard common/*.h)
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_x86 -Icommon -I$(B)/bpf -c $< -o $@

$(B)/bpf/%.skel.h: $(B)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< > $@

# Tests
$(B)/selftests/unit/%: selftests/unit/%.c $(B)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libsluice.a $(LDLIBS) -lcmocka

$(B)/selftests/bpf/%: selftests/bpf/%.c $(B)/libsluice.a $(BPF_SKEL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libsluice.a $(LDLIBS) -lcmocka

$(B)/examples/%: examples/%.c $(B)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libsluice.a $(LDLIBS)

examples: $(EX_BIN)

# Test programs on the public API (custom proxies the integration suite starts).
$(B)/selftests/proxies/%: selftests/proxies/%.c $(B)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libsluice.a $(LDLIBS)

test-proxies: $(PROXY_BIN)

unit-tests: $(UNIT_BIN)
bpf-tests: $(BPFT_BIN)

run: deps
	@$(MAKE) --no-print-directory all
	$(B)/sluiced -c examples/sluice.yaml

test: deps
	@$(MAKE) --no-print-directory all unit-tests bpf-tests examples test-proxies
	@SLUICE_BUILD=$(B) $(PYTHON) tools/run-tests.py

asan: deps
	@$(MAKE) --no-print-directory B=build/asan OPT=-O1 \
		SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		all unit-tests bpf-tests examples test-proxies
	@SLUICE_BUILD=build/asan SLUICE_ASAN=1 $(PYTHON) tools/run-tests.py

bench:
	@./tools/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tools/bench/bench.py

# libFuzzer targets (clang): each runs FUZZ_SECONDS on its seed corpus.
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(wildcard selftests/fuzz/fuzz_*.c)
fuzz: deps
	@mkdir -p $(B)/fuzz
	@for f in $(FUZZ_SRC); do \
		n=$$(basename $$f .c); t=$${n#fuzz_}; \
		$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iuser -Icommon \
			-I$(LLHTTP_INC) $$f user/http/http.c $(LLHTTP_SRC)/llhttp.c $(LLHTTP_SRC)/api.c \
			$(LLHTTP_SRC)/http.c -o $(B)/fuzz/$$n || exit 1; \
		mkdir -p $(B)/fuzz/corpus-$$t; \
		$(B)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) $(B)/fuzz/corpus-$$t \
			selftests/fuzz/corpus/$$t || exit 1; \
	done

FORMAT_SRC = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(FORMAT_SRC)

lint:
	clang-format --dry-run --Werror $(FORMAT_SRC)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr -D_GNU_SOURCE -Icommon -Iuser -Iuser/include user tools/*.c

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(B)/user/main.d
