# reqctx: request correlation for unmodified servers (LD_PRELOAD).
#
#   make            build/libreqctx.so, build/reqctx-demo, build/reqctx
#   make test       every Criterion suite (installs or names missing packages)
#   make demo       the demo server on :3000 under the library
#   make bench      benchmarks (ratios, never assertions)

CC       ?= cc
CFLAGS   ?= -O2 -g
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?=
B        ?= build

VERSION  := 0.1.0
SOVER    := 0

# Warnings are errors only where WERROR=-Werror is given (CI does), so that a
# newer compiler's new warning never breaks a user's build.
WERROR   ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes $(WERROR)
DEPS     := -MMD -MP
BASE     := -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -Iinclude -Isrc $(WARN) $(DEPS)

# SANITIZE=address,undefined (or thread) instruments src/ in the test binaries.
# LIBSAN=address,undefined instruments libreqctx.so itself; the interposition
# suites then preload the sanitizer's runtime ahead of the library
# (REQCTX_TEST_PRELOAD_FIRST), as `make test-libsan` does.
ifneq ($(SANITIZE),)
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
ifneq ($(findstring thread,$(SANITIZE)),)
SANFLAGS += -Wno-tsan
endif
endif
LIBSAN   ?=
ifneq ($(LIBSAN),)
LIBSANFLAGS := -fsanitize=$(LIBSAN) -fno-omit-frame-pointer
SANRT    := $(shell $(CC) -print-file-name=libasan.so)
endif

SRC      := $(wildcard src/*.c)
PRE      := $(wildcard preload/*.c)
TESTS    := $(wildcard tests/test_*.c)
PROGS    := $(wildcard tests/progs/*.c)
CLI      := $(wildcard tools/cli/*.c)

SRC_O    := $(SRC:%.c=$(B)/obj/%.o)
SRC_T    := $(SRC:%.c=$(B)/tobj/%.o)
PRE_O    := $(PRE:%.c=$(B)/obj/%.o)
LIB      := $(B)/libreqctx.so
TEST_BIN := $(TESTS:tests/%.c=$(B)/tests/%)
PROG_O0  := $(PROGS:tests/progs/%.c=$(B)/progs/O0/%)
PROG_O2  := $(PROGS:tests/progs/%.c=$(B)/progs/O2/%)

LIBS     := -ldl -lpthread -lunwind-generic -lunwind

.SECONDARY:
.PHONY: all test test-libsan test-tsan demo bench fuzz clean install uninstall deps-test deps-demo check-exports
all: $(LIB) $(B)/libreqctx.so.$(SOVER) $(B)/reqctx-demo $(B)/reqctx

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(LIBSANFLAGS) -ftls-model=initial-exec -c $< -o $@

# src/ compiled again for direct linking into the test binaries.
$(B)/tobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(SANFLAGS) -c $< -o $@

$(LIB): $(SRC_O) $(PRE_O)
	$(CC) -shared -Wl,-soname,libreqctx.so.$(SOVER) -Wl,-z,now -Wl,-z,relro \
	    $(CFLAGS) $(LIBSANFLAGS) -o $@ $^ $(LIBS)

# The soname, so that programs linked with -Lbuild -lreqctx find the library at run time.
$(B)/libreqctx.so.$(SOVER): $(LIB)
	ln -sf libreqctx.so $@

$(B)/reqctx-demo: tools/demo.c
	@mkdir -p $(B)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $< -lpthread -lrt

# The command links the library's own rules for configuration values and IDs.
CLI_SRC  := src/runtime.c src/config.c src/id.c
$(B)/reqctx: $(CLI) $(wildcard tools/cli/*.h) $(CLI_SRC) $(CLI_SRC:.c=.h)
	@mkdir -p $(B)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -DREQCTX_VERSION='"$(VERSION)"' \
	    -Itools/cli -Isrc -Iinclude -o $@ $(CLI) $(CLI_SRC)

# Helpers link only libc, but loadcheck also speaks HTTPS (--tls).
PROG_LIBS = -lpthread -lrt
$(B)/progs/O0/loadcheck $(B)/progs/O2/loadcheck: PROG_LIBS += -lssl -lcrypto

$(B)/progs/O0/%: tests/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -Iinclude $(WARN) $(DEPS) -Wno-format-security -O0 -g -o $@ $< $(PROG_LIBS)

$(B)/progs/O2/%: tests/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -Iinclude $(WARN) $(DEPS) -Wno-format-security -O2 -D_FORTIFY_SOURCE=2 -g -o $@ $< $(PROG_LIBS)

# The corpus replay links the fuzz targets.
$(B)/tests/test_fuzz: tests/test_fuzz.c tests/fuzz/targets.c $(SRC_T)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(SANFLAGS) -Itests -Itests/fuzz -o $@ tests/test_fuzz.c tests/fuzz/targets.c $(SRC_T) -lcriterion $(LIBS)

# make fuzz: each libFuzzer target for FUZZ_SECONDS, new inputs kept under $(B)/fuzz.
FUZZ_SECONDS ?= 60
FUZZERS := http prefix fcgi h2
fuzz: $(FUZZERS:%=$(B)/fuzz/fuzz_%)
	@for t in $(FUZZERS); do \
		mkdir -p $(B)/fuzz/corpus_$$t; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
		$(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		    $(B)/fuzz/corpus_$$t tests/fuzz/corpus/$$t || exit 1; \
	done

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/targets.c $(SRC) $(wildcard src/*.h tests/*.h tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -Itests -Itests/fuzz -g -O1 \
	    -fsanitize=fuzzer,address,undefined -o $@ $< tests/fuzz/targets.c $(SRC) $(LIBS)

$(B)/tests/%: tests/%.c $(SRC_T)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(SANFLAGS) -Itests -o $@ $< $(SRC_T) -lcriterion $(LIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)

deps-test:
	@tools/deps.sh test

deps-demo:
	@tools/deps.sh demo

# pino for test_formats, pinned by tests/node/pino/package-lock.json.
$(B)/npm/.installed: tests/node/pino/package.json tests/node/pino/package-lock.json
	@mkdir -p $(B)/npm
	cp tests/node/pino/package.json tests/node/pino/package-lock.json $(B)/npm/
	cd $(B)/npm && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

test: deps-test all $(TEST_BIN) $(PROG_O0) $(PROG_O2) $(B)/npm/.installed
	@REQCTX_BUILD=$(abspath $(B)) REQCTX_TEST_PRELOAD_FIRST=$(SANRT) tools/run-tests.sh $(TEST_BIN)

# The suites that run programs under the library, against libreqctx.so built
# with ASan+UBSan (the programs themselves are not instrumented: the library
# runs in them as in any host, after ASan's runtime). ASan leaves fatal signals
# to the host. Left out, because they cannot hold beside ASan's runtime
# whatever the library does:
# - hardening's allocator tests: ASan's malloc replaces the test allocator;
# - roles' ordinary tools: psql hangs under ASan's runtime alone;
# - test_crash: it checks how the plain library and a host's ASan share fatal
#   signals (its beside-ASan tests run in make test), not the library sanitized;
# - preload's cancellation test: ASan does not unpoison the instrumented frames
#   a pthread_cancel unwinds, and then reports its own thread teardown.
LIBSAN_SUITES := write threads epoll timer_preload demo concurrency servers https child formats \
	preload='preload/!(blocking_calls_stay_cancellation*)' \
	hardening='hardening/!(allocator*)' role='@(role|roles)/!(ordinary_tools*)'
test-libsan:
	$(MAKE) B=build-libsan LIBSAN=address,undefined all build-libsan/npm/.installed \
	    $(foreach s,$(LIBSAN_SUITES),build-libsan/tests/test_$(firstword $(subst =, ,$(s)))) \
	    $(PROGS:tests/progs/%.c=build-libsan/progs/O0/%) $(PROGS:tests/progs/%.c=build-libsan/progs/O2/%)
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0:allow_user_segv_handler=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	REQCTX_BUILD=$(abspath build-libsan) REQCTX_TEST_PRELOAD_FIRST=$(shell $(CC) -print-file-name=libasan.so) \
	    tools/run-tests.sh $(foreach s,$(LIBSAN_SUITES),build-libsan/tests/test_$(s))

# The code src/ shares between threads, under ThreadSanitizer. Criterion cannot
# start under TSan, so this is a plain stress program (tests/tsan/stress.c).
test-tsan:
	$(MAKE) B=build-tsan SANITIZE=thread build-tsan/tsan/stress
	build-tsan/tsan/stress

$(B)/tsan/stress: tests/tsan/stress.c $(SRC_T)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(SANFLAGS) -Itests -o $@ $< $(SRC_T) $(LIBS)

demo: deps-demo all
	LD_PRELOAD=$(abspath $(LIB)) $(B)/reqctx-demo --port 3000

check-exports: $(LIB)
	@nm -D --defined-only $(LIB)

clean:
	rm -rf $(B)

# BEGIN node adapter
# The Node adapter (preload/node/): reqctx.js and its Node-API binding reqctx.node, next to
# the library in $(B)/reqctx-adapters/node/ (installed in $(LIBDIR)/reqctx-adapters/node/),
# where the library's constructor finds them. Built when the Node-API headers are there
# (Debian's libnode-dev, or the nodejs package of nodesource).
NODE_INC     ?= /usr/include/node
NODE_DIR     := $(B)/reqctx-adapters/node
NODE_ADAPTER := $(NODE_DIR)/reqctx.js $(NODE_DIR)/reqctx.node
ifneq ($(wildcard $(NODE_INC)/node_api.h),)
all: $(NODE_ADAPTER)
endif

# NAPI_MODULE_INIT defines the API-version function without a prototype (clang warns).
$(NODE_DIR)/reqctx.node: preload/node/binding.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) -Wno-missing-prototypes \
	    $(CFLAGS) -isystem $(NODE_INC) -shared -o $@ $< -ldl

$(NODE_DIR)/reqctx.js: preload/node/reqctx.js
	@mkdir -p $(dir $@)
	cp $< $@

.PHONY: install-node uninstall-node
install: install-node
uninstall: uninstall-node
install-node: $(LIB)
	@if [ -f $(NODE_DIR)/reqctx.node ]; then \
		echo "$(INSTALL) -d $(DESTDIR)$(LIBDIR)/reqctx-adapters/node"; \
		$(INSTALL) -d $(DESTDIR)$(LIBDIR)/reqctx-adapters/node && \
		$(INSTALL) -m 644 $(NODE_DIR)/reqctx.js $(DESTDIR)$(LIBDIR)/reqctx-adapters/node/reqctx.js && \
		$(INSTALL) -m 755 $(NODE_DIR)/reqctx.node $(DESTDIR)$(LIBDIR)/reqctx-adapters/node/reqctx.node; \
	else echo "reqctx: no Node adapter built (no $(NODE_INC)/node_api.h); not installing it"; fi

uninstall-node:
	rm -f $(DESTDIR)$(LIBDIR)/reqctx-adapters/node/reqctx.js $(DESTDIR)$(LIBDIR)/reqctx-adapters/node/reqctx.node
	-rmdir $(DESTDIR)$(LIBDIR)/reqctx-adapters/node $(DESTDIR)$(LIBDIR)/reqctx-adapters 2>/dev/null
# END node adapter

# BEGIN install (cli)
# make install [PREFIX=/usr/local] [DESTDIR=...]; make uninstall removes the same files.
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PCDIR      ?= $(LIBDIR)/pkgconfig
MANDIR     ?= $(PREFIX)/share/man
INSTALL    ?= install

INSTALLED := $(BINDIR)/reqctx $(LIBDIR)/libreqctx.so.$(VERSION) \
	$(LIBDIR)/libreqctx.so.$(SOVER) $(LIBDIR)/libreqctx.so $(INCLUDEDIR)/reqctx.h \
	$(PCDIR)/reqctx.pc $(MANDIR)/man1/reqctx.1 $(MANDIR)/man7/libreqctx.7

install: $(LIB) $(B)/reqctx
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	$(INSTALL) -m 755 $(B)/reqctx $(DESTDIR)$(BINDIR)/reqctx
	$(INSTALL) -m 755 $(LIB) $(DESTDIR)$(LIBDIR)/libreqctx.so.$(VERSION)
	ln -sf libreqctx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libreqctx.so.$(SOVER)
	ln -sf libreqctx.so.$(SOVER) $(DESTDIR)$(LIBDIR)/libreqctx.so
	$(INSTALL) -m 644 include/reqctx.h $(DESTDIR)$(INCLUDEDIR)/reqctx.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    reqctx.pc.in >$(DESTDIR)$(PCDIR)/reqctx.pc
	chmod 644 $(DESTDIR)$(PCDIR)/reqctx.pc
	$(INSTALL) -m 644 man/reqctx.1 $(DESTDIR)$(MANDIR)/man1/reqctx.1
	$(INSTALL) -m 644 man/libreqctx.7 $(DESTDIR)$(MANDIR)/man7/libreqctx.7

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
# END install (cli)

# BEGIN bench
# make bench: the library's cost beside the alternative, as ratios; never assertions.
# Rows and sizes: BENCH_ROWS, BENCH_N, BENCH_ROUNDS, BENCH_SECS, BENCH_CONNS, BENCH_LOG_MB
# (see tools/bench/run.sh).
BENCH_BIN := $(addprefix $(B)/bench/bench_,calls conns genlog idgen h2cost reqs corrwrite)

$(B)/bench/bench_%: tools/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $<

$(B)/bench/bench_idgen: tools/bench/idgen.c $(B)/tobj/src/id.o
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -Isrc -Iinclude $(WARN) $(CFLAGS) $(SANFLAGS) -o $@ $^ -lpthread

$(B)/bench/bench_h2cost: tools/bench/h2cost.c $(addprefix $(B)/tobj/src/,h2.o hpack.o config.o id.o)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -Isrc -Iinclude $(WARN) $(CFLAGS) $(SANFLAGS) -o $@ $^ -lpthread

bench: all $(BENCH_BIN)
	@tools/deps.sh bench || echo "reqctx: rows that need the missing packages are skipped"
	@B=$(abspath $(B)) tools/bench/run.sh
# END bench

# BEGIN python adapter
# The Python asyncio adapter, next to the library that finds it:
# $(B)/reqctx-adapters/python/ (sitecustomize.py, _reqctx_asyncio.py, _reqctx.abi3.so),
# installed as $(LIBDIR)/reqctx-adapters/python/. The extension is built against the
# stable ABI (Py_LIMITED_API 3.11) with python3-dev's headers; without them the
# adapter is not built, and the library finds no directory to bootstrap.
PY_CONFIG ?= $(firstword $(wildcard /usr/bin/python3-config) python3-config)
PY_INC    ?= $(shell $(PY_CONFIG) --includes 2>/dev/null)
PYDIR     := $(B)/reqctx-adapters/python
PY_OUT    := $(PYDIR)/sitecustomize.py $(PYDIR)/_reqctx_asyncio.py $(PYDIR)/_reqctx.abi3.so

ifneq ($(wildcard $(patsubst -I%,%/Python.h,$(firstword $(PY_INC)))),)
all: $(PY_OUT)
endif

# make test may install python3-dev itself (tools/deps.sh) after this file was
# read: then a make of its own, which reads it again, builds the adapter.
.PHONY: install-python uninstall-python python-adapter
test: python-adapter
python-adapter: deps-test all
	@[ -f $(PYDIR)/_reqctx.abi3.so ] || $(MAKE) --no-print-directory $(PY_OUT)

$(PYDIR)/%.py: preload/python/%.py
	@mkdir -p $(dir $@)
	cp $< $@

$(PYDIR)/_reqctx.abi3.so: preload/python/_reqctx.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) \
	    $(patsubst -I%,-isystem %,$(PY_INC)) -shared -o $@ $< -ldl

install: install-python
install-python: $(LIB)
	@if [ -f $(PYDIR)/_reqctx.abi3.so ]; then \
		$(INSTALL) -d $(DESTDIR)$(LIBDIR)/reqctx-adapters/python && \
		$(INSTALL) -m 644 $(PYDIR)/sitecustomize.py $(PYDIR)/_reqctx_asyncio.py \
		    $(DESTDIR)$(LIBDIR)/reqctx-adapters/python/ && \
		$(INSTALL) -m 755 $(PYDIR)/_reqctx.abi3.so $(DESTDIR)$(LIBDIR)/reqctx-adapters/python/; \
	else echo "reqctx: no Python adapter built (no Python.h: apt-get install python3-dev); not installing it"; fi

uninstall: uninstall-python
uninstall-python:
	rm -f $(addprefix $(DESTDIR)$(LIBDIR)/reqctx-adapters/python/,sitecustomize.py _reqctx_asyncio.py _reqctx.abi3.so)
	rm -rf $(DESTDIR)$(LIBDIR)/reqctx-adapters/python/__pycache__
	-rmdir --ignore-fail-on-non-empty $(DESTDIR)$(LIBDIR)/reqctx-adapters/python $(DESTDIR)$(LIBDIR)/reqctx-adapters 2>/dev/null
# END python adapter
