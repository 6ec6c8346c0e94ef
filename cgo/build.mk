# cgo/build.mk - build libasbb.so (the budget core as a C shared library)
# and run its C ABI smoke test. Included by the top-level Makefile.
#
# Inputs (overridable):
#   LIBDIR   where libasbb.so is written (default: build; slurmhooks/build.mk
#            links against the same directory)
#   GO       the go command (default: go)
#
# Targets:
#   lib       build $(LIBDIR)/libasbb.so (and cgo's libasbb.h, which is not
#             the contract and is never installed: cgo/asbb.h is)
#   test-abi  build the library, compile cgo/smoke/smoke.c with gcc and run
#             it against a fresh test database, under valgrind when
#             installed (tests/abi; needs gcc, and PostgreSQL via pgtest)

ASBB_CGO_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
ASBB_ROOT := $(patsubst %/,%,$(dir $(abspath $(ASBB_CGO_DIR))))

LIBDIR ?= $(ASBB_ROOT)/build
GO ?= go
LIBASBB := $(LIBDIR)/libasbb.so

# Everything the library is built from; go build decides what changed.
LIBASBB_SRC := $(shell find $(ASBB_ROOT)/budget $(ASBB_ROOT)/cgo $(ASBB_ROOT)/sql \
	\( -name '*.go' -o -name '*.sql' -o -name '*.h' \) -not -name '*_test.go' 2>/dev/null) \
	$(ASBB_ROOT)/go.mod $(ASBB_ROOT)/go.sum

.PHONY: lib test-abi

lib: $(LIBASBB) ## build libasbb.so

$(LIBASBB): $(LIBASBB_SRC)
	@mkdir -p $(@D)
	cd $(ASBB_ROOT) && CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath \
		-ldflags '-extldflags -Wl,-soname,libasbb.so' -o $(abspath $@) ./cgo

test-abi: ## C ABI smoke test of libasbb.so (dlopen, every export, valgrind)
	cd $(ASBB_ROOT) && $(GO) test -count=1 -v -run TestABISmoke ./tests/abi/
