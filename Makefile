# ghl_fdw/Makefile

MODULE_big = ghl_fdw
OBJS = \
	src/agency.o \
	src/auth.o \
	src/ghl_fdw.o \
	src/http.o \
	src/http_multi.o \
	src/json.o \
	src/json_parse.o \
	src/modify.o \
	src/option.o \
	src/pushdown.o \
	src/ratelimit.o \
	src/resource.o \
	src/token_store.o \
	src/token_worker.o \
	src/sync.o \
	src/sync_pass.o \
	src/sync_ledger.o \
	src/sync_target.o \
	src/sync_worker.o \
	src/verify.o \
	src/pull.o \
	src/webhook.o \
	src/webhook_apply.o \
	src/webhook_keys.o \
	src/check.o

EXTENSION = ghl_fdw
DATA = sql/ghl_fdw--1.0.sql sql/ghl_fdw--1.1.sql sql/ghl_fdw--1.0--1.1.sql
PGFILEDESC = "ghl_fdw - foreign data wrapper for the HighLevel Contacts API"

REGRESS_OPTS = --outputdir=test/results
# the suites need the mock GHL API: installcheck below starts it
NO_INSTALLCHECK = 1

PG_CONFIG ?= pg_config
PKG_CONFIG ?= pkg-config

PG_CPPFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl json-c libcrypto)
SHLIB_LINK = $(shell $(PKG_CONFIG) --libs libcurl json-c libcrypto)
PG_CFLAGS = -Werror

# no JIT bitcode: it needs clang, and the FDW's time is spent waiting on HTTP
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every source file reads the one private header
$(OBJS): src/ghl_fdw.h

.PHONY: test demo valgrind-check
test:
	test/run_tests.sh

valgrind-check:
	test/run_valgrind.sh

demo:
	test/demo.sh

# The regression suites against the installed extension, in the running
# cluster PGHOST/PGPORT point at; see test/installcheck.sh for what that
# cluster needs.
.PHONY: installcheck
installcheck:
	PG_CONFIG=$(PG_CONFIG) $(srcdir)/test/installcheck.sh

# The PGXN distribution, ghl_fdw-<version>.zip: HEAD of the git repository
# under a ghl_fdw-<version>/ prefix, the version from META.json.  The
# unpacked archive must pass test/check_meta.py (META.json valid, and its
# version that of the control file and the C header) before it is kept.
PYTHON ?= /usr/bin/python3
DIST_VERSION = $(shell git show HEAD:META.json | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["version"])')
DIST_NAME = $(EXTENSION)-$(DIST_VERSION)

.PHONY: dist
dist:
	@test -n "$(DIST_VERSION)" || { echo "dist: no version in META.json of HEAD" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "dist: warning: uncommitted changes are not in $(DIST_NAME).zip" >&2
	rm -rf $(DIST_NAME).zip dist-check
	mkdir dist-check
	git archive --format=zip --prefix=$(DIST_NAME)/ -o dist-check/$(DIST_NAME).zip HEAD
	cd dist-check && unzip -q $(DIST_NAME).zip
	$(PYTHON) test/check_meta.py dist-check/$(DIST_NAME) || { rm -rf dist-check; exit 1; }
	mv dist-check/$(DIST_NAME).zip . && rm -rf dist-check

# the webhook receiver, a program of its own (src/webhookd/Makefile)
.PHONY: webhookd install-webhookd uninstall-webhookd clean-webhookd bench-webhooks
all: webhookd
install: install-webhookd
uninstall: uninstall-webhookd
clean: clean-webhookd

webhookd:
	$(MAKE) -C src/webhookd PG_CONFIG=$(PG_CONFIG)

install-webhookd: webhookd
	$(MAKE) -C src/webhookd PG_CONFIG=$(PG_CONFIG) install

uninstall-webhookd:
	$(MAKE) -C src/webhookd PG_CONFIG=$(PG_CONFIG) uninstall

clean-webhookd:
	$(MAKE) -C src/webhookd PG_CONFIG=$(PG_CONFIG) clean

bench-webhooks:
	bench/webhook_replay.sh

# the release benchmark: ghl_fdw against its peers, one table (bench/run.sh)
.PHONY: bench
bench:
	bench/run.sh
