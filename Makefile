# Makefile for pg_ai_resilience (PGXS)
#
# The version is written once, in pg_ai_resilience.control; the install
# script is generated from src/pg_ai_resilience.sql for that version.
# src/sql/ holds the scripts of released versions, frozen and installed as
# they are: each earlier version's install script (so that
# CREATE EXTENSION ... VERSION 'x' works and the upgrade test can start from
# it) and the upgrade scripts pg_ai_resilience--A--B.sql.  A change to the
# SQL objects goes into src/pg_ai_resilience.sql and into the upgrade
# script from the last release.

EXTENSION = pg_ai_resilience
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = pg_ai_resilience
OBJS = \
	src/pg_ai_resilience.o \
	src/guc.o \
	src/secrets.o \
	src/gateway_text.o \
	src/policy.o \
	src/breaker.o \
	src/route_health.o \
	src/openai_wire.o \
	src/transport.o \
	src/call_log.o \
	src/log_queue.o \
	src/log_writer.o \
	src/runner.o \
	src/batch_order.o \
	src/versions.o \
	src/sql_api.o \
	src/probe.o

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard src/sql/$(EXTENSION)--*.sql)

REGRESS = setup upgrade chat_basic retry_fallback failures inputs guc_checks privileges cancel keepalive batch stream hostile_wire log_survival memory_limits security_keys route_health gateway attribution analysis probe enrich
REGRESS_OPTS = --inputdir=. --outputdir=test/results

PG_CPPFLAGS = -DPGAIR_VERSION=\"$(EXTVERSION)\"
# Warnings are errors only where our CI asks (test.sh: make COPT=-Werror);
# a packager's newer compiler may warn about more.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter
SHLIB_LINK = -lcurl

EXTRA_CLEAN = test/results test/unit/test_policy test/unit/test_breaker

# pg_regress and the TAP tests need the gateway simulator: the installcheck
# and prove_installcheck targets below start one of their own.
NO_INSTALLCHECK = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: src/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

# PGXS tracks no header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h)

# Unit tests of the pure policy code: no server, no network.  COPT applies
# as to the extension (-Werror, sanitizers).
test/unit/test_policy: test/unit/test_policy.c test/unit/unit_check.h src/policy.c src/policy.h
	$(CC) -std=gnu99 -Wall -Wextra -O2 $(COPT) -Isrc -o $@ test/unit/test_policy.c src/policy.c -lm

# Unit tests of the pure circuit breaker.
test/unit/test_breaker: test/unit/test_breaker.c test/unit/unit_check.h src/breaker.c src/breaker.h src/policy.h
	$(CC) -std=gnu99 -Wall -Wextra -O2 $(COPT) -Isrc -o $@ test/unit/test_breaker.c src/breaker.c

unitcheck: test/unit/test_policy test/unit/test_breaker
	test/unit/test_policy
	test/unit/test_breaker

# Each suite gets a gateway simulator of its own: started on a free port, its
# address exported as AI_SIM_URL (test/scripts/sim.sh), stopped at the end.
with_sim = . test/scripts/sim.sh && start_sim &&

installcheck prove_installcheck: SHELL = /bin/bash

# pg_regress, against the server PGHOST/PGPORT name; it must preload the
# library (shared_preload_libraries = pg_ai_resilience).
installcheck: gateway-sim
	$(with_sim) $(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

# The TAP tests start clusters of their own: run as a user initdb accepts,
# in a checkout that user may write (tmp_check).
prove_installcheck: gateway-sim
	$(with_sim) $(prove_installcheck)

# the simulator's own Makefile knows when to rebuild it
gateway-sim:
	$(MAKE) -C test/gateway

.PHONY: unitcheck installcheck prove_installcheck gateway-sim
