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
# and `make fuzz FUZZTIME=10m` runs longer. One package:FuzzFunc word each,
# for example:
#   FUZZ_TARGETS = ./budget:FuzzParseMoney ./budget:FuzzJobPrice
FUZZ_TARGETS ?= ./budget:FuzzParseTimeLimit ./budget:FuzzParseAmount
FUZZTIME     ?= 10s

# bench: which benchmarks, how long, how many repeats (quote medians: these
# machines are noisy, see PERF-NOTES).
BENCH      ?= .
BENCHTIME  ?= 1s
BENCHCOUNT ?= 1

# Every Go file git knows of or would add (so .gitignore'd trees such as
# .asbb-dev/ and .cache/ are skipped), less ones deleted in the work tree.
GOFILES = $(wildcard $(shell git ls-files -co --exclude-standard -- '*.go' 2>/dev/null))

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@echo 'usage: make TARGET [VAR=value...]'
	@echo
	@awk 'BEGIN {FS = ":[^#]*## "} /^[A-Za-z0-9_.\/-]+:[^#]*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo 'variables: GO PREFIX DESTDIR TESTFLAGS TEST_TIMEOUT FUZZ_TARGETS FUZZTIME BENCH BENCHTIME BENCHCOUNT'

.PHONY: build
build: ## build every package; commands go into bin/
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./...

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
