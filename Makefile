# snapmig — a plain Makefile driven by pkg-config (see ../shared/STYLE.md).
#
#   make              build lib/libsnapmig.a and cli/snapmig
#   make check        install missing Debian packages, build, run every test
#   make check-valgrind   unit tests under valgrind with leak checking
#   make demo         live storage migration of a throwaway VM
#   make bench        benchmarks (ratios against a reference measured in the same run)
#   make install PREFIX=/usr/local

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
# snapmig's data: the JSON Schema of --json (snapmig-json(7)).
DATADIR ?= $(PREFIX)/share/snapmig
# Where bash-completion looks for a command's completion, loaded on demand.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
VERSION := 0.1.0

PKGS    := glib-2.0 json-c libxml-2.0 blkid
CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wvla -Wformat=2 -Wmissing-prototypes \
           -Wstrict-prototypes -Wswitch-enum -Werror
CFLAGS  ?= -O2 -g
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -DSM_VERSION='"$(VERSION)"' \
             -Ilib $(PKG_CFLAGS) -MMD -MP

LIB_SRCS  := $(sort $(wildcard lib/*.c))
LIB_OBJS  := $(LIB_SRCS:.c=.o) lib/schemas.o
LIB       := lib/libsnapmig.a

CLI_SRCS  := $(sort $(wildcard cli/*.c))
CLI_OBJS  := $(CLI_SRCS:.c=.o)
CLI       := cli/snapmig

# Helpers shared by the C tests (real-QEMU harness), linked into every test.
TH_SRCS   := $(sort $(wildcard tests/harness/*.c))
TH_OBJS   := $(TH_SRCS:.c=.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
UNIT_BINS := $(UNIT_SRCS:.c=)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz-*.c))
FUZZ_BINS := $(FUZZ_SRCS:.c=)
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:.c=)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:.c=)

.PHONY: all deps check check-unit check-integration check-valgrind demo bench \
        install clean
all: $(CLI) $(UNIT_BINS) $(FUZZ_BINS) $(TOOL_BINS) $(BENCH_BINS)

%.o: %.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The RelaxNG schemas are compiled into the library so that an installed
# snapmig never depends on where its data files went.
lib/schemas.o: lib/schemas.S $(wildcard schemas/*.rng)
	$(CC) -c -o $@ lib/schemas.S

$(LIB): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(CLI): $(CLI_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(LIB) $(PKG_LIBS)

# Cancel make's built-in one-step rule so that binaries link through the .o.
%: %.c
tests/unit/test-%: tests/unit/test-%.o $(TH_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(TH_OBJS) $(LIB) $(PKG_LIBS)
tests/fuzz/fuzz-%: tests/fuzz/fuzz-%.o $(TH_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(TH_OBJS) $(LIB) $(PKG_LIBS)
tests/tools/%: tests/tools/%.o $(TH_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(TH_OBJS) $(LIB) $(PKG_LIBS)
bench/%: bench/%.o $(TH_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(TH_OBJS) $(LIB) $(PKG_LIBS)
tests/unit/%.o tests/fuzz/%.o tests/harness/%.o tests/tools/%.o bench/%.o: ALL_CFLAGS += -Itests/harness

# Installs the Debian packages the build, tests and demo need, when missing.
deps:
	@scripts/install-deps

# Every test once, then the unit and fuzz programs again under valgrind: a
# leak or invalid access fails the run.  One closing line for all of it.
check: deps
	$(MAKE) all
	@tests/run-tests $(UNIT_BINS) $(FUZZ_BINS) \
	  $(sort $(wildcard tests/integration/test-*.sh)) \
	  $(addprefix valgrind:,$(UNIT_BINS) $(FUZZ_BINS))

check-unit: all
	@tests/run-tests $(UNIT_BINS)

check-integration: all
	@tests/run-tests $(sort $(wildcard tests/integration/test-*.sh))

check-valgrind: deps
	$(MAKE) all
	@SM_VALGRIND=1 tests/run-tests $(UNIT_BINS) $(FUZZ_BINS)

demo: deps
	$(MAKE) $(CLI)
	@scripts/demo

bench: deps
	$(MAKE) all
	@for b in $(sort $(wildcard bench/*.sh)); do echo "== $$b"; $$b || exit 1; done

install: $(CLI)
	install -D -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/snapmig
	install -D -m 0644 docs/snapmig.1 $(DESTDIR)$(MANDIR)/man1/snapmig.1
	install -D -m 0644 docs/snapmig-json.7 $(DESTDIR)$(MANDIR)/man7/snapmig-json.7
	install -D -m 0644 schemas/snapmig.schema.json \
	  $(DESTDIR)$(DATADIR)/snapmig.schema.json
	install -D -m 0644 completions/snapmig.bash \
	  $(DESTDIR)$(BASHCOMPDIR)/snapmig

clean:
	rm -f lib/*.o lib/*.d lib/*.a cli/*.o cli/*.d $(CLI) tests/*/*.o tests/*/*.d \
	      $(UNIT_BINS) $(FUZZ_BINS) $(TOOL_BINS) $(BENCH_BINS) bench/*.o bench/*.d

-include $(wildcard lib/*.d cli/*.d tests/*/*.d bench/*.d)
