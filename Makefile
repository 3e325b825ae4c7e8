# SPDX-License-Identifier: Apache-2.0
#
# sockmesh: one entry point. `make help` lists the targets.
#
# Everything generated goes to $(OUTPUT) (default .output/), never next to the
# sources. vmlinux.h is dumped from the running kernel's BTF
# (/sys/kernel/btf/vmlinux) into $(OUTPUT), or copied from VMLINUX_H; the
# objects are CO-RE, so they run on other kernels with BTF (docs/building.md).
# A plain `make` installs nothing: it checks for the packages it needs and
# names what is missing; `make deps`, `make demo` and `make test` install them.

OUTPUT ?= .output
override OUTPUT := $(abspath $(OUTPUT))
CLANG ?= clang
CC ?= gcc
BPFTOOL ?= bpftool
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/;s/ppc64le/powerpc/;s/s390x/s390/')
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux

ifeq ($(V),1)
	Q =
	msg =
else
	Q = @
	msg = @printf '  %-9s %s\n' "$(1)" "$(patsubst $(OUTPUT)/%,%,$(2))";
endif

# The version, spelled only in the file VERSION; the code gets it as SOCKMESH_VERSION.
VERSION := $(strip $(file < VERSION))
$(if $(VERSION),,$(error VERSION is missing or empty: one line, the version (x.y.z)))

# pkg-config runs once, when a recipe first needs it (after `make deps` may have
# installed it), not when the Makefile is read.
PKGS := libbpf libelf zlib json-c yaml-0.1 libssl libcrypto libnghttp2 libmicrohttpd libcap libcurl
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)

# The user's CFLAGS, CPPFLAGS, LDFLAGS and LDLIBS add to what the build needs
# (SM_*), after it, so that `make CFLAGS=-O0` changes the optimisation and keeps
# the warnings, the language mode and the include paths.
WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-format-truncation
CFLAGS ?= -O2 -g
SM_CPPFLAGS = -I$(OUTPUT) -Iinclude -Iuserspace/lib -D_GNU_SOURCE \
	-DSOCKMESH_VERSION=\"$(VERSION)\" $(PKG_CFLAGS)
SM_CFLAGS := -std=gnu11 $(WARN) -fno-strict-aliasing -fstack-protector-strong
SM_LDFLAGS :=
SM_LDLIBS = $(PKG_LIBS) -lpthread
# -MMD -MP: each compile writes the headers it read to a .d file next to its
# output, included below, so an edited header rebuilds only what includes it.
DEPFLAGS = -MMD -MP -MT $@ -MF $(basename $@).d

# Unit tests always run under AddressSanitizer and UndefinedBehaviorSanitizer.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ifeq ($(SANITIZE),1)
	SM_CFLAGS += $(SAN_FLAGS)
	SM_LDFLAGS += $(SAN_FLAGS)
endif

COMPILE = $(CC) $(SM_CPPFLAGS) $(CPPFLAGS) $(SM_CFLAGS) $(CFLAGS) $(DEPFLAGS)

BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror -I$(OUTPUT) -Iinclude -Ibpf

BPF_FEATURES := $(filter-out abi_check,$(patsubst bpf/%.bpf.c,%,$(wildcard bpf/*.bpf.c)))
BPF_OBJS := $(patsubst %,$(OUTPUT)/bpf/%.bpf.o,$(BPF_FEATURES))
SKEL := $(OUTPUT)/sockmesh.skel.h

LIB_SRCS := $(wildcard userspace/lib/*.c)
LIB_OBJS := $(patsubst userspace/lib/%.c,$(OUTPUT)/lib/%.o,$(LIB_SRCS))
LIBSM := $(OUTPUT)/libsockmesh.a
DAEMON_SRCS := $(wildcard userspace/daemon/*.c)
DAEMON_OBJS := $(patsubst userspace/daemon/%.c,$(OUTPUT)/daemon/%.o,$(DAEMON_SRCS))
CLI_SRCS := $(wildcard userspace/cli/*.c)
CLI_OBJS := $(patsubst userspace/cli/%.c,$(OUTPUT)/cli/%.o,$(CLI_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
UNIT_LIB_OBJS := $(patsubst userspace/lib/%.c,$(OUTPUT)/tests/lib/%.o,$(LIB_SRCS))

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all help deps test check test-unit test-integration lint format demo clean install bench fuzz \
	fuzz-coverage bench-tools uninstall deb

all: $(OUTPUT)/sockmeshd $(OUTPUT)/sockmesh ## build the daemon, the CLI and the BPF objects

help: ## list the targets
	@echo "sockmesh make targets (run as root for deps, test, demo, install):"
	@grep -hE '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-17s %s\n", $$1, $$2}'
	@echo "variables: V=1 (show commands)  OUTPUT=dir (default .output)  SANITIZE=1 (ASan+UBSan build)"
	@echo "           CFLAGS, CPPFLAGS, LDFLAGS, LDLIBS (added to the build's own; CFLAGS default -O2 -g)"
	@echo "           VMLINUX_BTF=file (BTF for vmlinux.h)  VMLINUX_H=file (use this vmlinux.h)"
	@echo "           TESTS='file.bats ...' (subset for test-integration)"
	@echo "           PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc (make install, make uninstall)"
	@echo "           FUZZ_TIME=s FUZZ_JOBS=n FUZZ_TARGETS='fuzz_ctl ...' (make fuzz)"

deps: ## install build and test dependencies (apt-get, scripts/install-deps.sh)
	$(Q)scripts/install-deps.sh

# Packages: every rule that compiles or runs a tool waits for the check of the
# groups it needs (scripts/install-deps.sh lists them), which fails early and
# names what is missing. Only `make deps`, `make demo`, `make test` and `make check` install:
# for those goals the checks wait for `deps`.
DEPS_GROUPS := build unit lint integration fuzz bench deb
ifneq ($(filter deps demo test check,$(MAKECMDGOALS)),)
DEPS_INSTALL := deps
endif
.PHONY: $(addprefix deps-check-,$(DEPS_GROUPS))
$(addprefix deps-check-,$(DEPS_GROUPS)): deps-check-%: | $(DEPS_INSTALL)
	$(Q)scripts/install-deps.sh --check $*

# The kernel's types for the BPF programs: VMLINUX_H as given, else dumped from
# VMLINUX_BTF. No copy is checked in (docs/building.md says why).
VMLINUX_H ?=
$(OUTPUT)/vmlinux.h: $(VMLINUX_H) | deps-check-build
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
ifneq ($(VMLINUX_H),)
	$(Q)cp $(VMLINUX_H) $@.tmp && mv $@.tmp $@
else
	$(Q)if [ ! -r $(VMLINUX_BTF) ]; then \
		echo "error: $(VMLINUX_BTF) not found: vmlinux.h is dumped from the kernel's BTF;" \
		     "run on a kernel with CONFIG_DEBUG_INFO_BTF=y, or pass VMLINUX_BTF=file" \
		     "(BTF or a vmlinux with .BTF) or VMLINUX_H=file (a vmlinux.h) (docs/building.md)" >&2; \
		exit 1; fi
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp && mv $@.tmp $@
endif

$(OUTPUT)/bpf/%.bpf.o: bpf/%.bpf.c | $(OUTPUT)/vmlinux.h deps-check-build
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -c $< -o $@

# All features are linked into one object so they share maps (declared __weak
# in bpf/lib/maps.h) and one skeleton.
$(OUTPUT)/sockmesh.bpf.o: $(BPF_OBJS) $(OUTPUT)/bpf/abi_check.bpf.o
	$(call msg,LINK-BPF,$@)
	$(Q)$(BPFTOOL) gen object $@ $(BPF_OBJS)

$(SKEL): $(OUTPUT)/sockmesh.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sockmesh_bpf > $@.tmp && mv $@.tmp $@

$(OUTPUT)/lib/%.o: userspace/lib/%.c VERSION | deps-check-build
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) -c $< -o $@

$(LIBSM): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# Only the daemon's files that include the skeleton depend on it (their .d
# files say which); it must exist before any of them is compiled.
$(OUTPUT)/daemon/%.o: userspace/daemon/%.c VERSION | $(SKEL) deps-check-build
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) -Iuserspace/daemon -c $< -o $@

$(OUTPUT)/cli/%.o: userspace/cli/%.c VERSION | deps-check-build
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) -Iuserspace/cli -c $< -o $@

$(OUTPUT)/sockmeshd: $(DAEMON_OBJS) $(LIBSM)
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(SM_LDFLAGS) $(LDFLAGS) $^ $(SM_LDLIBS) $(LDLIBS) -o $@

$(OUTPUT)/sockmesh: $(CLI_OBJS) $(LIBSM)
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(SM_LDFLAGS) $(LDFLAGS) $^ $(SM_LDLIBS) $(LDLIBS) -o $@

# ---- tests ----
$(OUTPUT)/tests/lib/%.o: userspace/lib/%.c VERSION | deps-check-build
	$(call msg,CC-SAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) $(SAN_FLAGS) -c $< -o $@

$(OUTPUT)/tests/%: tests/unit/%.c $(UNIT_LIB_OBJS) VERSION | deps-check-build deps-check-unit
	$(call msg,TEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) -Itests/unit -DSM_SOURCE_DIR='"$(CURDIR)"' $(SAN_FLAGS) \
		$< $(UNIT_DAEMON) $(UNIT_LIB_OBJS) \
		$(SM_LDFLAGS) $(LDFLAGS) $(SM_LDLIBS) $(LDLIBS) -lcmocka -o $@

# A unit test of one of the daemon's leaf modules compiles that file with it.
$(OUTPUT)/tests/test_workloads: userspace/daemon/workloads.c userspace/daemon/workloads.h
$(OUTPUT)/tests/test_workloads: UNIT_DAEMON := -Iuserspace/daemon userspace/daemon/workloads.c
$(OUTPUT)/tests/test_flowjoin: userspace/daemon/flowjoin.c userspace/daemon/flowjoin.h
$(OUTPUT)/tests/test_flowjoin: UNIT_DAEMON := -Iuserspace/daemon userspace/daemon/flowjoin.c

test-unit: $(UNIT_BINS) ## unit tests (C, cmocka, ASan+UBSan; the kernel-side ones need root)
	$(Q)SM_OUTPUT=$(OUTPUT) tests/run-tests.sh --unit $(UNIT_BINS)

test-integration: all | deps-check-integration ## integration tests (bats, root, netns sandboxes)
	$(Q)SM_OUTPUT=$(OUTPUT) tests/run-tests.sh --integration $(TESTS)

# The integration tests run the daemon, the CLI and the tools built with
# AddressSanitizer and UndefinedBehaviorSanitizer (into $(OUTPUT)/asan); a
# sanitizer report in a daemon's log fails the test that ran it.
ASAN_OUTPUT := $(OUTPUT)/asan

# The builds a test run needs, one per CPU unless make was given -j already
# (a plain `make test` would otherwise compile both trees one file at a time).
TEST_BUILD_JOBS := $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(shell nproc 2>/dev/null || echo 1))
define test_builds
	$(Q)$(MAKE) --no-print-directory $(TEST_BUILD_JOBS) all $(UNIT_BINS) $(OUTPUT)/bpf/abi_check.bpf.o
	$(Q)$(MAKE) --no-print-directory $(TEST_BUILD_JOBS) SANITIZE=1 OUTPUT=$(ASAN_OUTPUT) all
endef

test: | deps-check-build deps-check-unit deps-check-integration deps-check-deb ## installs what is missing; unit and integration tests (ASan+UBSan), one summary line
	$(test_builds)
	$(Q)SM_OUTPUT=$(ASAN_OUTPUT) tests/run-tests.sh --tests $(UNIT_BINS)

# What CI checks, in one run and one summary line: make lint and make test.
check: | deps-check-build deps-check-unit deps-check-lint deps-check-integration deps-check-deb ## installs what is missing; lint, unit and integration tests in one run, one summary line
	$(test_builds)
	$(Q)SM_OUTPUT=$(ASAN_OUTPUT) tests/run-tests.sh --all $(UNIT_BINS)

lint: $(SKEL) | deps-check-build deps-check-lint ## cppcheck, clang-tidy and clang-format checks (needs the skeleton: builds it)
	$(Q)SM_OUTPUT=$(OUTPUT) tests/run-tests.sh --lint

format: ## reformat the C sources with .clang-format
	$(Q)clang-format -i $(LIB_SRCS) $(DAEMON_SRCS) $(CLI_SRCS) $(wildcard userspace/*/*.h) \
		$(wildcard bpf/*.c bpf/lib/*.h include/sockmesh/*.h tests/unit/*.c tests/unit/*.h \
		tests/tools/*.c tests/bpf/*.c tests/fuzz/*.c)

demo: all | deps-check-integration ## installs what is missing; two sandbox nodes, a client and services, traffic, flow log, status; cleans up
	$(Q)SM_OUTPUT=$(OUTPUT) scripts/demo.sh

bench: all | deps-check-bench ## benchmarks (not tests): plain TCP vs sockmesh, see bench/README.md
	$(Q)OUTPUT=$(OUTPUT) bench/run.sh

clean: ## remove $(OUTPUT)
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

# ---- install, uninstall, the Debian package (docs/building.md, "Install") ----
# FHS places under PREFIX; DESTDIR is prepended to every path (staging, packages).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/sockmesh
# the daemon's built-in default config is /etc/sockmesh/sockmesh.yaml, whatever PREFIX is
SYSCONFDIR ?= /etc
# systemd reads units from its own directory (pkg-config systemd) and from
# /usr/local/lib/systemd/system
SYSTEMD_UNITDIR_USR = $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
SYSTEMD_UNITDIR ?= $(if $(filter /usr,$(PREFIX)),$(SYSTEMD_UNITDIR_USR),$(PREFIX)/lib/systemd/system)
# bash-completion also looks under $XDG_DATA_DIRS (/usr/local/share among them)
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
MAN_PAGES := $(wildcard docs/man/*.[1-8])
DOC_FILES := $(wildcard docs/*.md) docs/flow-schema.json
# the example config and catalog: installed when absent, never over an existing file
EXAMPLE_CONFIGS := packaging/sockmesh.yaml packaging/catalog.yaml

# Every file install puts, without DESTDIR; uninstall removes exactly these
# (an example config only when it is unchanged) and then sockmesh's own two
# directories if they are empty. The unit is written with the paths this
# install uses (ExecStart, -c, Documentation=) in place of /usr/sbin, /etc and
# /usr/share/doc.
INSTALLED = $(SBINDIR)/sockmeshd $(BINDIR)/sockmesh $(SYSTEMD_UNITDIR)/sockmeshd.service \
	$(foreach m,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m))) \
	$(BASHCOMPDIR)/sockmesh $(addprefix $(DOCDIR)/,$(notdir $(DOC_FILES)))

install: $(OUTPUT)/sockmeshd $(OUTPUT)/sockmesh ## daemon, CLI, systemd unit, example config, man pages, completion (PREFIX=/usr/local DESTDIR=)
	$(Q)install -D -m 0755 $(OUTPUT)/sockmeshd $(DESTDIR)$(SBINDIR)/sockmeshd
	$(Q)install -D -m 0755 $(OUTPUT)/sockmesh $(DESTDIR)$(BINDIR)/sockmesh
	$(Q)install -d -m 0755 $(DESTDIR)$(SYSTEMD_UNITDIR)
	$(Q)sed -e 's|/usr/sbin/sockmeshd|$(SBINDIR)/sockmeshd|' \
		-e 's|/etc/sockmesh/|$(SYSCONFDIR)/sockmesh/|' \
		-e 's|/usr/share/doc/sockmesh/|$(DOCDIR)/|' \
		packaging/sockmeshd.service >$(DESTDIR)$(SYSTEMD_UNITDIR)/sockmeshd.service
	$(Q)chmod 0644 $(DESTDIR)$(SYSTEMD_UNITDIR)/sockmeshd.service
	$(Q)$(foreach m,$(MAN_PAGES),install -D -m 0644 $(m) \
		$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)) &&) true
	$(Q)install -D -m 0644 packaging/bash-completion/sockmesh $(DESTDIR)$(BASHCOMPDIR)/sockmesh
	$(Q)install -d -m 0755 $(DESTDIR)$(DOCDIR)
	$(Q)install -m 0644 $(DOC_FILES) $(DESTDIR)$(DOCDIR)/
	$(Q)install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/sockmesh
	$(Q)for f in $(EXAMPLE_CONFIGS); do \
		t=$(DESTDIR)$(SYSCONFDIR)/sockmesh/$${f##*/}; \
		if [ -e "$$t" ] || [ -L "$$t" ]; then echo "  KEEP      $$t (exists; the example is $$f)"; \
		else install -m 0644 "$$f" "$$t"; fi; \
	done
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX) (config in $(DESTDIR)$(SYSCONFDIR)/sockmesh))

uninstall: ## remove what make install put (same PREFIX DESTDIR); an edited config stays
	$(Q)rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	$(Q)for f in $(EXAMPLE_CONFIGS); do \
		t=$(DESTDIR)$(SYSCONFDIR)/sockmesh/$${f##*/}; \
		if cmp -s "$$f" "$$t"; then rm -f "$$t"; \
		elif [ -e "$$t" ]; then echo "  KEEP      $$t kept: it differs from the example $$f"; fi; \
	done
	$(Q)rmdir $(DESTDIR)$(SYSCONFDIR)/sockmesh $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	$(call msg,UNINSTALL,$(DESTDIR)$(PREFIX))

# The Debian package: packaging/debian is copied with the sources into
# $(OUTPUT)/deb/sockmesh-VERSION (dpkg-buildpackage wants ./debian at the top
# of the tree, and builds outside the sources), debian/changelog is written
# from VERSION, and the objects go to $(OUTPUT)/deb/build, kept between runs
# so that a second make deb compiles only what changed. The .deb lands in
# $(OUTPUT)/deb/. It is built with Debian's hardening flags (dpkg-buildflags),
# which is why it cannot reuse the objects of $(OUTPUT) itself (the Makefile
# does not track flags: an object built with other flags would be linked as is).
DEB_DIR := $(OUTPUT)/deb
DEB_SRC := $(DEB_DIR)/sockmesh-$(VERSION)
DEB_EXCLUDES := --exclude-vcs --exclude=./.output* --exclude=./debian \
	$(if $(filter $(CURDIR)/%,$(OUTPUT)),--exclude=./$(patsubst $(CURDIR)/%,%,$(OUTPUT)))
DEB_MAINTAINER = $(shell sed -n 's/^Maintainer: //p' packaging/debian/control)
deb: | deps-check-build deps-check-deb ## the Debian package into $(OUTPUT)/deb/ (dpkg-buildpackage, lintian)
	$(call msg,DEB-SRC,$(DEB_SRC))
	$(Q)rm -rf $(DEB_SRC) $(DEB_DIR)/sockmesh_* $(DEB_DIR)/sockmesh-dbgsym_* && mkdir -p $(DEB_SRC)
	$(Q)tar -C $(CURDIR) $(DEB_EXCLUDES) -cf - . | tar -C $(DEB_SRC) -xf -
	$(Q)cp -R packaging/debian $(DEB_SRC)/debian
	$(Q)printf '%s (%s) unstable; urgency=medium\n\n  * Built from the sockmesh source tree, version %s (VERSION).\n\n -- %s  %s\n' \
		sockmesh $(VERSION) $(VERSION) '$(DEB_MAINTAINER)' \
		"$$(date -R -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)})" >$(DEB_SRC)/debian/changelog
	$(call msg,DEB,$(DEB_DIR)/sockmesh_$(VERSION)_*.deb)
	$(Q)cd $(DEB_SRC) && SM_DEB_OUTPUT=$(DEB_DIR)/build dpkg-buildpackage -b -us -uc -Jauto \
		$(if $(V),,>$(DEB_DIR)/build.log 2>&1) || \
		{ $(if $(V),,tail -n 40 $(DEB_DIR)/build.log;) echo "make deb: dpkg-buildpackage failed (log: $(DEB_DIR)/build.log)" >&2; exit 1; }
	$(call msg,LINTIAN,$(DEB_DIR)/sockmesh_$(VERSION)_*.deb)
	$(Q)lintian --fail-on error,warning $(DEB_DIR)/sockmesh_$(VERSION)_*.deb

# ---- fuzzing (libFuzzer, clang; docs/fuzzing.md) ----
# Every tests/fuzz/fuzz_NAME.c is a harness; its seeds are tests/fuzz/seeds/NAME/.
# The library is compiled once with the fuzzer's instrumentation and linked into
# each. A harness that includes "daemon.h" is also linked with the daemon's code
# (an archive: only what it calls is pulled in; main() is renamed sockmeshd_main
# so that libFuzzer's main stays), which needs the BPF skeleton. `make fuzz-coverage` builds the same harnesses
# with clang's source-based coverage instead of the sanitizers.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRCS))
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_DAEMON_NAMES := $(patsubst tests/fuzz/%.c,%,$(shell grep -l '^\#include "daemon.h"' \
	$(FUZZ_SRCS) /dev/null))
FUZZ_TIME ?= 60
FUZZ_JOBS ?= 1
# The harnesses are built with clang and their own flags; the user's CFLAGS (for
# $(CC)) do not apply, CPPFLAGS do.
FUZZ_CFLAGS := -g -O1 -fno-omit-frame-pointer -std=gnu11
# The harnesses get the project's warnings; the library has them in its gcc build.
FUZZ_WARN := $(filter-out -Wno-format-truncation,$(WARN))

# $(call fuzz_build,DIR,INSTRUMENTATION): the rules for $(OUTPUT)/DIR/.
define fuzz_build
$(OUTPUT)/$(1)/lib/%.o: userspace/lib/%.c VERSION | deps-check-build deps-check-fuzz
	$$(call msg,CC-FUZZ,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(CLANG) $$(SM_CPPFLAGS) $$(CPPFLAGS) $$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(2) \
		$$(DEPFLAGS) -c $$< -o $$@

$(OUTPUT)/$(1)/daemon/%.o: userspace/daemon/%.c VERSION | $$(SKEL) deps-check-build deps-check-fuzz
	$$(call msg,CC-FUZZ,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(CLANG) $$(SM_CPPFLAGS) $$(CPPFLAGS) -Iuserspace/daemon $$(FUZZ_CFLAGS) \
		-fsanitize=fuzzer-no-link $(2) $$(if $$(filter %/main.c,$$<),-Dmain=sockmeshd_main) \
		$$(DEPFLAGS) -c $$< -o $$@

$(OUTPUT)/$(1)/libsockmeshd.a: $$(patsubst userspace/daemon/%.c,$(OUTPUT)/$(1)/daemon/%.o, \
		$$(DAEMON_SRCS))
	$$(call msg,AR,$$@)
	$$(Q)rm -f $$@ && ar rcs $$@ $$^

$$(patsubst %,$(OUTPUT)/$(1)/%,$$(FUZZ_DAEMON_NAMES)): $(OUTPUT)/$(1)/libsockmeshd.a
$$(patsubst %,$(OUTPUT)/$(1)/%,$$(FUZZ_DAEMON_NAMES)): \
	FUZZ_DAEMON := -Iuserspace/daemon $(OUTPUT)/$(1)/libsockmeshd.a

$(OUTPUT)/$(1)/fuzz_%: tests/fuzz/fuzz_%.c \
		$$(patsubst userspace/lib/%.c,$(OUTPUT)/$(1)/lib/%.o,$$(LIB_SRCS)) VERSION \
		| deps-check-build deps-check-fuzz
	$$(call msg,FUZZ,$$@)
	$$(Q)$$(CLANG) $$(SM_CPPFLAGS) $$(CPPFLAGS) $$(FUZZ_CFLAGS) $$(FUZZ_WARN) -fsanitize=fuzzer \
		$(2) $$(DEPFLAGS) $$< $$(FUZZ_DAEMON) \
		$$(patsubst userspace/lib/%.c,$(OUTPUT)/$(1)/lib/%.o,$$(LIB_SRCS)) \
		$$(SM_LDLIBS) $$(LDLIBS) -o $$@
endef

comma := ,
$(eval $(call fuzz_build,fuzz,-fsanitize=address$(comma)undefined -fno-sanitize-recover=undefined))
$(eval $(call fuzz_build,fuzz-cov,-fprofile-instr-generate -fcoverage-mapping))

fuzz: $(patsubst %,$(OUTPUT)/fuzz/%,$(FUZZ_TARGETS)) ## run each libFuzzer harness FUZZ_TIME s (60), FUZZ_JOBS at once (1)
	$(Q)tests/fuzz/run.sh -t $(FUZZ_TIME) -j $(FUZZ_JOBS) -o $(OUTPUT)/fuzz $^

# Replays the seeds and the corpus `make fuzz` grew.
fuzz-coverage: $(patsubst %,$(OUTPUT)/fuzz-cov/%,$(FUZZ_TARGETS)) ## line coverage of the library by each harness's corpus (llvm-cov)
	$(Q)tests/fuzz/run.sh --coverage -o $(OUTPUT)/fuzz $^

# ---- test tools (traffic generators used by the integration tests and the demo) ----
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUTPUT)/tools/%,$(TOOL_SRCS))
# kernel programs of the tools (tests/bpf/NAME.bpf.c), next to them: NAME.bpf.o
TOOL_BPF_OBJS := $(patsubst tests/bpf/%.bpf.c,$(OUTPUT)/tools/%.bpf.o,$(wildcard tests/bpf/*.bpf.c))
all: $(TOOL_BINS) $(TOOL_BPF_OBJS)
# the kernel-side unit tests (tests/unit/test_bpf_*.c) load their programs from here
test-unit: $(TOOL_BPF_OBJS)

$(OUTPUT)/tools/%.bpf.o: tests/bpf/%.bpf.c | $(OUTPUT)/vmlinux.h deps-check-build
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(OUTPUT)/tools/%: tests/tools/%.c $(LIBSM) VERSION | deps-check-build
	$(call msg,TOOL,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) $(SM_LDFLAGS) $(LDFLAGS) $< $(LIBSM) $(SM_LDLIBS) $(LDLIBS) -lcrypto -o $@

# ---- bench tools (bench/*.c, run by the bench scripts; never part of make test) ----
$(OUTPUT)/bench/flowsink-bench: bench/flowsink-bench.c $(LIBSM) VERSION | deps-check-build
	$(call msg,BENCH,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(COMPILE) $(SM_LDFLAGS) $(LDFLAGS) $< $(LIBSM) $(SM_LDLIBS) $(LDLIBS) -o $@

# The headers each output was built from (-MMD -MP above); none exist before
# the first build, when everything is built anyway.
DEP_DIRS := . bpf lib daemon cli tests tests/lib tools bench \
	fuzz fuzz/lib fuzz/daemon fuzz-cov fuzz-cov/lib fuzz-cov/daemon
-include $(wildcard $(patsubst %,$(OUTPUT)/%/*.d,$(DEP_DIRS)))
# An output that exists without its .d (built by a Makefile that wrote none) is
# rebuilt once, or an edited header would not reach it.
DEP_OUTPUTS := $(BPF_OBJS) $(OUTPUT)/bpf/abi_check.bpf.o $(TOOL_BPF_OBJS) $(LIB_OBJS) \
	$(DAEMON_OBJS) $(CLI_OBJS) $(UNIT_LIB_OBJS) $(UNIT_BINS) $(TOOL_BINS)
$(foreach o,$(DEP_OUTPUTS),$(if $(wildcard $(o)),$(if $(wildcard $(basename $(o)).d),,$(eval $(o): FORCE))))
.PHONY: FORCE
FORCE:

bench-tools: $(OUTPUT)/bench/flowsink-bench ## build the bench drivers (bench/*.c)
