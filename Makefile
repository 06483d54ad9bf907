# ghl_fdw/Makefile

MODULE_big = ghl_fdw
OBJS = \
	src/auth.o \
	src/ghl_fdw.o \
	src/http.o \
	src/json.o \
	src/modify.o \
	src/option.o \
	src/pushdown.o \
	src/ratelimit.o \
	src/resource.o \
	src/token_store.o \
	src/token_worker.o \
	src/webhook.o \
	src/webhook_apply.o \
	src/webhook_keys.o

EXTENSION = ghl_fdw
DATA = sql/ghl_fdw--1.0.sql sql/ghl_fdw--1.1.sql sql/ghl_fdw--1.0--1.1.sql
PGFILEDESC = "ghl_fdw - foreign data wrapper for the HighLevel Contacts API"

REGRESS_OPTS = --outputdir=test/results

PG_CONFIG ?= pg_config
PKG_CONFIG ?= pkg-config

PG_CPPFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl json-c libcrypto)
SHLIB_LINK = $(shell $(PKG_CONFIG) --libs libcurl json-c libcrypto)
PG_CFLAGS = -Werror

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# no JIT bitcode: it needs clang, and the FDW's time is spent waiting on HTTP
with_llvm = no

.PHONY: test demo valgrind-check
test:
	test/run_tests.sh

valgrind-check:
	test/run_valgrind.sh

demo:
	test/demo.sh

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
