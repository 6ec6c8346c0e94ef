# ASBB: budget enforcement for Slurm on PostgreSQL.
#
# `make help` lists the targets: a target documents itself with a `## text`
# comment on its rule line. Variables can be set on the command line, e.g.
# `make test TESTFLAGS= TEST_TIMEOUT=5m` or `make install PREFIX=/usr`.

GO       ?= go
GOFMT    ?= $(shell $(GO) env GOROOT)/bin/gofmt
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  ?= -X main.Version=$(VERSION)

# go test: the race detector is on because the ledger is concurrent code
# (TESTFLAGS= turns it off); the timeout is per test binary.
TESTFLAGS    ?= -race
TEST_TIMEOUT ?= 15m

# FUZZ_TARGETS: fuzz functions that `make test` runs briefly (FUZZTIME each)
# and `make fuzz FUZZTIME=2000000x` runs longer. One package:FuzzFunc word
# each, for example:
#   FUZZ_TARGETS = ./budget:FuzzParseMoney ./budget:FuzzJobPrice
# FUZZTIME is an execution count, not a duration: with a duration, Go 1.26's
# fuzz coordinator can report its own deadline as a failure ("context
# deadline exceeded", no failing input; go.dev/issue/75804, fixed in 1.27),
# which turned a green CI red. A count has no deadline to race.
FUZZ_TARGETS ?= ./budget:FuzzParseTimeLimit ./budget:FuzzParseAmount ./budget/api:FuzzDecoders
FUZZTIME     ?= 60000x

# bench: which benchmarks, how long, how many repeats (quote medians: these
# machines are noisy, see PERF-NOTES).
BENCH      ?= .
BENCHTIME  ?= 1s
BENCHCOUNT ?= 1

# Every Go file git knows of or would add (so .gitignore'd trees such as
# .asbb-dev/ and .cache/ are skipped), less ones deleted in the work tree.
GOFILES = $(wildcard $(shell git ls-files -co --exclude-standard -- '*.go' 2>/dev/null))

.DEFAULT_GOAL := help

# libasbb.so (cgo/build.mk: lib, test-abi) and what Slurm loads
# (slurmhooks/build.mk: hooks, hooks-check, hooks-install); both build into
# LIBDIR (default build/).
include cgo/build.mk
include slurmhooks/build.mk

.PHONY: help
help: ## list the targets
	@echo 'usage: make TARGET [VAR=value...]'
	@echo
	@awk 'BEGIN {FS = ":[^#]*## "} /^[A-Za-z0-9_.\/-]+:[^#]*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo 'variables: GO PREFIX DESTDIR TESTFLAGS TEST_TIMEOUT FUZZ_TARGETS FUZZTIME BENCH BENCHTIME BENCHCOUNT'

.PHONY: build
build: ## build the commands into bin/ (asbb-admin, asbb-service, asbb-epilog, asbb-demo)
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

.PHONY: plugins
plugins: lib hooks ## build libasbb.so, the job_submit/asbb plugin and the Lua module into build/

# Where `make install` puts things. The plugin and the Lua module are linked
# with an rpath to LIB_INSTALL_DIR, so they are rebuilt for it.
LIB_INSTALL_DIR ?= $(PREFIX)/lib/asbb
SHARE_INSTALL_DIR ?= $(PREFIX)/share/asbb

# install_by_rename SRC DIR NAME MODE: copy to a temporary name, then rename
# over the target, so a running slurmctld that has the old file mapped keeps
# its (unlinked) copy instead of seeing it rewritten under it.
install_by_rename = install -d $(2) && install -m $(4) $(1) $(2)/.$(3).new && mv -f $(2)/.$(3).new $(2)/$(3)

.PHONY: install
install: build lib ## install binaries, libasbb.so, the plugin, the Lua module and hooks (PREFIX, DESTDIR)
	$(MAKE) --no-print-directory hooks HOOKS_OUT=$(CURDIR)/build/install ASBB_RPATH=$(LIB_INSTALL_DIR)
	$(call install_by_rename,$(LIBASBB),$(DESTDIR)$(LIB_INSTALL_DIR),libasbb.so,0755)
	install -d $(DESTDIR)$(LIB_INSTALL_DIR)/include && install -m 0644 cgo/asbb.h $(DESTDIR)$(LIB_INSTALL_DIR)/include/asbb.h
	$(MAKE) --no-print-directory hooks-install HOOKS_OUT=$(CURDIR)/build/install ASBB_RPATH=$(LIB_INSTALL_DIR) \
		PLUGIN_INSTALL_DIR=$(LIB_INSTALL_DIR)/slurm LUA_CMOD_DIR=$(PREFIX)/lib/lua/5.1
	for b in asbb-admin asbb-service asbb-epilog; do \
		$(call install_by_rename,bin/$$b,$(DESTDIR)$(BINDIR),$$b,0755) || exit 1; \
	done
	install -d $(DESTDIR)$(SHARE_INSTALL_DIR)
	install -m 0644 slurmhooks/lua/job_submit.lua slurmhooks/lua/jobcomp.lua etc/asbb.toml.example $(DESTDIR)$(SHARE_INSTALL_DIR)/
	@echo "installed under $(DESTDIR)$(PREFIX); copy $(SHARE_INSTALL_DIR)/*.lua next to slurm.conf for the Lua path"

.PHONY: provision
provision: ## install what building and testing need (idempotent; root installs)
	tests/tools/provision.sh

.PHONY: test
test: provision lint ## provision, lint, run all tests, then fuzz briefly
	$(GO) test $(TESTFLAGS) -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory fuzz

.PHONY: lint
lint: ## check formatting (gofmt) and run go vet
	@unformatted=$$($(GOFMT) -l $(GOFILES)); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...

.PHONY: fuzz
fuzz: ## run each FUZZ_TARGETS entry for FUZZTIME
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz: $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) "$$pkg"; \
	done

.PHONY: bench
bench: ## run benchmarks (BENCH=regexp BENCHTIME=1s BENCHCOUNT=1)
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) -benchmem -timeout 60m ./...

.PHONY: test-e2e
test-e2e: provision ## the Slurm end-to-end suite alone (tests/e2e; root, a private cluster and PostgreSQL)
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) ./tests/e2e/

# BENCH_SUBMITS: submissions per variant (at least 500 for a p99).
BENCH_SUBMITS ?= 600

.PHONY: bench-slurm
bench-slurm: provision ## slurmctld's time per sbatch: no plugin vs the plugin (free and held); BENCH_SUBMITS per variant
	ASBB_BENCH_SUBMITS=$(BENCH_SUBMITS) $(GO) test -count=1 -v -run='^$$' -bench='^BenchmarkSlurmctldSubmit$$' -benchtime=1x -timeout 60m ./tests/e2e/

.PHONY: demo
demo: ## start PostgreSQL in .asbb-dev/pg, migrate, run the demo
	tests/tools/demo.sh

.PHONY: demo-stop
demo-stop: ## stop the demo's PostgreSQL (its data stays in .asbb-dev/)
	$(GO) run ./tests/tools/pgserver stop $(CURDIR)/.asbb-dev/pg

.PHONY: pgtest-stop
pgtest-stop: ## stop the shared PostgreSQL that tests start and leave running
	$(GO) run ./tests/tools/pgserver stop

.PHONY: clean
clean: ## remove build outputs (not .asbb-dev/, the demo's database)
	rm -rf bin/ build/ .cache/
