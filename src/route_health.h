/*-------------------------------------------------------------------------
 *
 * route_health.h
 *	  Route health shared by every backend: a circuit breaker per route
 *	  (endpoint, model) and per endpoint, in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_ROUTE_HEALTH_H
#define AIR_ROUTE_HEALTH_H

#include "datatype/timestamp.h"

#include "policy.h"

/* Every route of a call is open: the call fails without an attempt. */
#define ERRCODE_AI_ROUTES_OPEN		MAKE_SQLSTATE('R','A','0','0','3')

/* The probes a call holds (rh_admit's *probes), as flags. */
#define RH_PROBE_ROUTE		0x01
#define RH_PROBE_ENDPOINT	0x02

extern bool air_breaker;

extern void rh_define_gucs(void);
extern void rh_request_shmem(void);
extern void rh_init_shmem(void);
extern bool rh_admit(const char *endpoint, const char *model, TimestampTz now,
					 long lease_ms, int *probes);
extern void rh_record(const char *endpoint, const char *model,
					  AttemptClass cls, TransportFailure transport,
					  int http_status, int retry_after_ms, int probes,
					  TimestampTz now);
extern bool rh_grant_retry(const char *endpoint, TimestampTz now);
extern char *rh_describe(const char *endpoint, const char *model);
extern void rh_release_probes(void);

#endif							/* AIR_ROUTE_HEALTH_H */
