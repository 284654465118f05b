# snapmig — a plain Makefile driven by pkg-config (see ../shared/STYLE.md).
#
#   make              build lib/libsnapmig.a, lib/libsnapmig.so.* and cli/snapmig
#   make check        install missing Debian packages, build, run every test
#   make check-valgrind   unit tests under valgrind with leak checking
#   make demo         live storage migration of a throwaway VM
#   make bench        benchmarks (ratios against a reference measured in the same run)
#   make install PREFIX=/usr/local

.DEFAULT_GOAL := all
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
# snapmig's data: the JSON Schema of --json (snapmig-json(7)).
DATADIR ?= $(PREFIX)/share/snapmig
# Where bash-completion looks for a command's completion, loaded on demand.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
# One source of the version: the public header's SM_VERSION.
VERSION := $(shell sed -n 's/^\#define SM_VERSION "\(.*\)"/\1/p' include/snapmig.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))

PKGS    := glib-2.0 json-c libxml-2.0 blkid
# libvirt (--connect, issue 14) is optional: with libvirt-dev installed the
# library gets its libvirt backend (-DSM_HAVE_LIBVIRT); without it
# everything builds, --connect says how to get it, and every QMP test runs.
# `make SM_LIBVIRT=no` builds without it where it is installed.
SM_LIBVIRT ?= $(shell pkg-config --exists libvirt && echo yes)
ifeq ($(SM_LIBVIRT),yes)
PKGS    += libvirt
LIBVIRT_DEFS := -DSM_HAVE_LIBVIRT
endif
CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wvla -Wformat=2 -Wmissing-prototypes \
           -Wstrict-prototypes -Wswitch-enum -Werror
CFLAGS  ?= -O2 -g
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE \
             $(LIBVIRT_DEFS) -Iinclude -Ilib $(PKG_CFLAGS) -MMD -MP

LIB_SRCS  := $(sort $(wildcard lib/*.c))
LIB_OBJS  := $(LIB_SRCS:.c=.o) lib/schemas.o
LIB       := lib/libsnapmig.a
# The shared library exports the public API only (lib/libsnapmig.map); the
# CLI and the tests link the static archive, private functions included.
SONAME    := libsnapmig.so.$(SOMAJOR)
SO        := lib/libsnapmig.so.$(VERSION)
$(LIB_OBJS): ALL_CFLAGS += -fPIC
# The snapmig binary the library execs for its copy worker (lib/helper.c):
# BINDIR/snapmig relative to LIBDIR, so that the same build installed under
# any PREFIX finds its binary; rewritten (helper.o rebuilt) only when the
# layout changes.
lib/helper.o: lib/helper-path.h
lib/helper-path.h: FORCE
	@echo '#define SM_HELPER_FROM_LIBDIR "$(shell realpath -m --relative-to=$(LIBDIR) $(BINDIR)/snapmig)"' > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
FORCE:

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

.PHONY: FORCE all deps check check-unit check-integration check-valgrind demo bench \
        install clean
all: $(CLI) $(SO) $(UNIT_BINS) $(FUZZ_BINS) $(TOOL_BINS) $(BENCH_BINS)

%.o: %.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The RelaxNG schemas are compiled into the library so that an installed
# snapmig never depends on where its data files went.
lib/schemas.o: lib/schemas.S $(wildcard schemas/*.rng)
	$(CC) -c -o $@ lib/schemas.S

$(LIB): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(SO): $(LIB_OBJS) lib/libsnapmig.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=lib/libsnapmig.map -Wl,--no-undefined \
	  -o $@ $(LIB_OBJS) $(PKG_LIBS)
	ln -sf libsnapmig.so.$(VERSION) lib/$(SONAME)
	ln -sf $(SONAME) lib/libsnapmig.so

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

install: $(CLI) $(SO) install-python
	install -D -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/snapmig
	install -D -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/libsnapmig.so.$(VERSION)
	ln -sf libsnapmig.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsnapmig.so
	install -D -m 0644 include/snapmig.h $(DESTDIR)$(INCLUDEDIR)/snapmig.h
	mkdir -p $(DESTDIR)$(LIBDIR)/pkgconfig
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|^Requires.private: .*|Requires.private: $(PKGS)|' \
	    snapmig.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/snapmig.pc
	install -D -m 0644 docs/snapmig.1 $(DESTDIR)$(MANDIR)/man1/snapmig.1
	install -D -m 0644 docs/snapmig-json.7 $(DESTDIR)$(MANDIR)/man7/snapmig-json.7
	install -D -m 0644 schemas/snapmig.schema.json \
	  $(DESTDIR)$(DATADIR)/snapmig.schema.json
	install -D -m 0644 completions/snapmig.bash \
	  $(DESTDIR)$(BASHCOMPDIR)/snapmig

# The Python module (python/snapmig) where Debian's python3 finds it for
# PREFIX: /usr/lib/python3/dist-packages for /usr, else
# PREFIX/lib/pythonX.Y/dist-packages (/usr/local's is on python3's path).
# _config.py records the library's installed path and the version.
# PYTHON= (empty) installs without the module.
PYTHON  ?= python3
PYTHON_VERSION = $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(PREFIX)/lib/python$(PYTHON_VERSION)/dist-packages)
PY_SRCS := $(sort $(wildcard python/snapmig/*.py))

.PHONY: install-python
install-python:
ifeq ($(PYTHON),)
	@echo "install-python: PYTHON is empty: the Python module is not installed"
else
	@test -n "$(PYTHON_VERSION)$(filter command line environment,$(origin PYTHONDIR))" || \
	  { echo "install-python: $(PYTHON) not found: set PYTHON to a python3," \
	    "PYTHONDIR to the module's directory, or PYTHON= to install without it" >&2; \
	  exit 1; }
	install -d $(DESTDIR)$(PYTHONDIR)/snapmig
	install -m 0644 $(filter-out python/snapmig/_config.py,$(PY_SRCS)) \
	  $(DESTDIR)$(PYTHONDIR)/snapmig/
	printf '%s\n' '"""Written by make install."""' \
	  'LIBRARY = "$(LIBDIR)/$(SONAME)"' 'VERSION = "$(VERSION)"' \
	  > $(DESTDIR)$(PYTHONDIR)/snapmig/_config.py
endif

clean:
	rm -f lib/*.o lib/*.d lib/*.a lib/libsnapmig.so* lib/helper-path.h cli/*.o cli/*.d $(CLI) tests/*/*.o tests/*/*.d \
	      $(UNIT_BINS) $(FUZZ_BINS) $(TOOL_BINS) $(BENCH_BINS) bench/*.o bench/*.d

-include $(wildcard lib/*.d cli/*.d tests/*/*.d bench/*.d)
