# Makefile for pg_ai_resilience (PGXS)
#
# The version is written once, in pg_ai_resilience.control; the install
# script is generated from src/pg_ai_resilience.sql for that version.

EXTENSION = pg_ai_resilience
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = pg_ai_resilience
OBJS = \
	src/pg_ai_resilience.o \
	src/guc.o \
	src/policy.o \
	src/breaker.o \
	src/route_health.o \
	src/openai_wire.o \
	src/transport.o \
	src/call_log.o \
	src/log_queue.o \
	src/log_writer.o \
	src/runner.o \
	src/sql_api.o

DATA_built = $(EXTENSION)--$(EXTVERSION).sql

REGRESS = setup chat_basic retry_fallback failures inputs guc_checks cancel keepalive batch stream log_survival route_health
REGRESS_OPTS = --inputdir=. --outputdir=test/results

PG_CPPFLAGS = -DPGAIR_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK = -lcurl

EXTRA_CLEAN = test/results test/unit/test_policy test/unit/test_breaker

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: src/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

# PGXS tracks no header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h)

# Unit tests of the pure policy code: no server, no network.
test/unit/test_policy: test/unit/test_policy.c src/policy.c src/policy.h
	$(CC) -std=gnu99 -Wall -Wextra -Werror -O2 -Isrc -o $@ test/unit/test_policy.c src/policy.c -lm

# Unit tests of the pure circuit breaker.
test/unit/test_breaker: test/unit/test_breaker.c src/breaker.c src/breaker.h src/policy.h
	$(CC) -std=gnu99 -Wall -Wextra -Werror -O2 -Isrc -o $@ test/unit/test_breaker.c src/breaker.c

unitcheck: test/unit/test_policy test/unit/test_breaker
	test/unit/test_policy
	test/unit/test_breaker

.PHONY: unitcheck
