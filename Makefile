# sluice: build, run, test, benchmark.
#   make          build/sluiced, build/sluicectl, build/libsluice.a, BPF objects and skeletons
#   make run      install missing packages, build, run sluiced on examples/sluice.yaml
#   make test     install missing packages, build, run every suite
#   make asan     the whole suite against an ASan+UBSan build
#   make bench    sluice vs nginx vs HAProxy (tools/bench/)
#   make install  PREFIX=/usr/local DESTDIR= (binaries, library, docs, config, systemd unit);
#                 make uninstall removes it all but the config
#   make image    OCI image archive build/sluice-$(VERSION).oci.tar (mmdebstrap + umoci)

CC      ?= gcc
CLANG   ?= clang
BPFTOOL ?= bpftool
PYTHON  ?= /usr/bin/python3
B       ?= build
VERSION := 0.1.0

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

PKGS    := libevent libevent_pthreads libssl libcrypto yaml-0.1 jansson libbpf libcap-ng libsystemd
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
	test-proxies fuzz-build fuzz-smoke install uninstall image
all: $(B)/sluiced $(B)/sluicectl $(B)/libsluice.a $(BPF_OBJ) $(BPF_SKEL)

deps:
	@./tools/install-deps.sh test

$(B)/libsluice.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/sluiced: $(B)/user/main.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

SLUICECTL_SRC := tools/sluicectl.c tools/sluicectl_upstream.c
$(B)/sluicectl: $(SLUICECTL_SRC) tools/sluicectl_upstream.h $(B)/libsluice.a $(BPF_SKEL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SLUICECTL_SRC) $(B)/libsluice.a $(LDLIBS)

$(B)/%.o: %.c $(BPF_SKEL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# llhttp's strict build: its default (lenient) one takes any two bytes after chunk data
# as the CRLF, and sluice forwards chunk framing as it came.
LLHTTP_DEFS ?= -DLLHTTP_STRICT_MODE=1
$(B)/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(@D)
	$(CC) $(OPT) -g $(SANITIZE) $(LLHTTP_DEFS) -I$(LLHTTP_INC) -c -o $@ $<

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
	@$(MAKE) --no-print-directory all unit-tests bpf-tests examples test-proxies fuzz-build
	@SLUICE_BUILD=$(B) $(PYTHON) tools/run-tests.py

asan: deps
	@$(MAKE) --no-print-directory B=build/asan OPT=-O1 \
		SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		all unit-tests bpf-tests examples test-proxies fuzz-build
	@SLUICE_BUILD=build/asan SLUICE_ASAN=1 $(PYTHON) tools/run-tests.py

bench:
	@./tools/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tools/bench/bench.py

# libFuzzer targets (clang, selftests/fuzz/fuzz_*.c). `make fuzz` builds them and runs each
# for FUZZ_SECONDS on its seed corpus (new inputs go to $(B)/fuzz/corpus-<target>, crashes
# to $(B)/fuzz/artifacts/); `make test` runs each for FUZZ_SMOKE_SECONDS (tools/run-tests.py).
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_MAX_LEN ?= 131072
# the fuzz targets use the daemon's LLHTTP_DEFS (strict llhttp);
# FUZZ_USER_COV=-fno-sanitize-coverage=trace-cmp doubles the speed of long runs
FUZZ_USER_COV ?=
FUZZ_SRC := $(wildcard selftests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:selftests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) -std=gnu11 -D_GNU_SOURCE \
	-DSL_VERSION=\"$(VERSION)\" -Icommon -Iuser -Iuser/include -I$(LLHTTP_INC) $(PKG_CFLAGS)
FUZZ_HTTP := $(B)/fuzz/obj/user/http/http.o $(B)/fuzz/obj/user/http/status.o \
	$(B)/fuzz/obj/llhttp/llhttp.o \
	$(B)/fuzz/obj/llhttp/api.o $(B)/fuzz/obj/llhttp/http.o
FUZZ_HDR := $(wildcard selftests/fuzz/*.h) user/http/http.h

$(B)/fuzz/obj/user/%.o: user/%.c
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) $(LLHTTP_DEFS) $(FUZZ_USER_COV) $(WARN) -MMD -MP -c -o $@ $<

$(B)/fuzz/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) $(LLHTTP_DEFS) -c -o $@ $<

$(B)/fuzz/obj/%.o: selftests/fuzz/%.c $(FUZZ_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

# what each target links: the HTTP codec, the config loader, the admin API (included by
# its harness) with the config loader, libevent and jansson
$(B)/fuzz/fuzz_http_head $(B)/fuzz/fuzz_request $(B)/fuzz/fuzz_response: $(FUZZ_HTTP)
$(B)/fuzz/fuzz_config: $(B)/fuzz/obj/user/config/config.o $(B)/fuzz/obj/user/cache/key.o \
	$(B)/fuzz/obj/user/core/logfmt.o
$(B)/fuzz/fuzz_config: FUZZ_LIBS = $(shell pkg-config --libs yaml-0.1 libssl libcrypto)
$(B)/fuzz/fuzz_admin: $(B)/fuzz/obj/user/config/config.o $(B)/fuzz/obj/user/admin/upstreams.o \
	$(B)/fuzz/obj/user/admin/resolver.o $(B)/fuzz/obj/user/server/service.o \
	$(B)/fuzz/obj/user/lb/set.o $(B)/fuzz/obj/user/lb/lb.o $(B)/fuzz/obj/user/cache/key.o \
	$(B)/fuzz/obj/user/core/logfmt.o
$(B)/fuzz/fuzz_admin: FUZZ_LIBS = $(shell pkg-config --libs yaml-0.1 libevent jansson libssl libcrypto) -lm
$(B)/fuzz/obj/fuzz_admin.o: user/admin/admin.c user/admin/admin_int.h user/admin/admin_cache.c

$(B)/fuzz/%: $(B)/fuzz/obj/%.o
	$(CLANG) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BIN)
.PRECIOUS: $(B)/fuzz/obj/%.o

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@mkdir -p $(B)/fuzz/artifacts
	@rc=0; for f in $(FUZZ_BIN); do \
		n=$$(basename $$f); t=$${n#fuzz_}; \
		mkdir -p $(B)/fuzz/corpus-$$t; \
		echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
			-print_final_stats=1 -artifact_prefix=$(B)/fuzz/artifacts/$$n- \
			$(B)/fuzz/corpus-$$t selftests/fuzz/corpus/$$t || rc=1; \
	done; exit $$rc

# the smoke run of `make test`, alone
fuzz-smoke: fuzz-build
	@SLUICE_BUILD=$(B) FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) $(PYTHON) tools/run-tests.py fuzz

-include $(wildcard $(B)/fuzz/obj/*.d $(B)/fuzz/obj/user/*/*.d)

# Install: binaries, the library and its headers, docs with each program's --help text,
# the node config (never over an existing one), the systemd unit with its paths rewritten
# for PREFIX and SYSCONFDIR, the sysusers.d user and the sysctl.d setting.
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(if $(filter /usr/local,$(PREFIX)),/etc,$(PREFIX)/etc))
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR     ?= $(PREFIX)/share/doc/sluice
UNITDIR    ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install
INSTALL_DOCS := README.md docs/operations.md docs/configuration.md docs/architecture.md \
	docs/benchmarks.md
UNIT_SED = -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	-e 's|/usr/local/share/doc/sluice/|$(DOCDIR)/|g' -e 's|/etc/sluice/|$(SYSCONFDIR)/sluice/|g'

install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCLUDEDIR)/sluice $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(SYSCONFDIR)/sluice $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/sysctl.d
	$(INSTALL) -m 0755 $(B)/sluiced $(DESTDIR)$(SBINDIR)/sluiced
	$(INSTALL) -m 0755 $(B)/sluicectl $(DESTDIR)$(BINDIR)/sluicectl
	$(INSTALL) -m 0644 $(B)/libsluice.a $(DESTDIR)$(LIBDIR)/libsluice.a
	$(INSTALL) -m 0644 user/include/sluice/*.h $(DESTDIR)$(INCLUDEDIR)/sluice/
	$(INSTALL) -m 0644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	$(B)/sluiced --help > $(DESTDIR)$(DOCDIR)/sluiced.txt
	$(B)/sluicectl --help > $(DESTDIR)$(DOCDIR)/sluicectl.txt
	$(INSTALL) -m 0644 examples/sluice.yaml $(DESTDIR)$(DOCDIR)/examples/demo.yaml
	$(INSTALL) -m 0644 deploy/sluice.yaml $(DESTDIR)$(DOCDIR)/examples/sluice.yaml
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml"; \
	else $(INSTALL) -m 0644 deploy/sluice.yaml $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml; fi
	sed $(UNIT_SED) deploy/systemd/sluiced.service > $(DESTDIR)$(UNITDIR)/sluiced.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/sluiced.service
	$(INSTALL) -m 0644 deploy/systemd/sluice.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/sluice.conf
	$(INSTALL) -m 0644 deploy/systemd/60-sluice.sysctl $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-sluice.conf

# everything install put there but the config, which may hold the operator's edits
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/sluiced $(DESTDIR)$(BINDIR)/sluicectl \
		$(DESTDIR)$(LIBDIR)/libsluice.a $(DESTDIR)$(UNITDIR)/sluiced.service \
		$(DESTDIR)$(PREFIX)/lib/sysusers.d/sluice.conf \
		$(DESTDIR)$(PREFIX)/lib/sysctl.d/60-sluice.conf
	rm -rf $(DESTDIR)$(INCLUDEDIR)/sluice $(DESTDIR)$(DOCDIR)
	@echo "uninstall: $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml is left in place"

# OCI image from Debian packages (tools/image/build-image.sh; needs a Debian mirror)
image: all
	@./tools/install-deps.sh image
	@B=$(B) VERSION=$(VERSION) ./tools/image/build-image.sh

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
