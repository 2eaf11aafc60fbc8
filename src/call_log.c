/*-------------------------------------------------------------------------
 *
 * call_log.c
 *	  One ai_call_log row per HTTP attempt.
 *
 * Every write goes through calllog_append.  Rows are inserted with SPI in
 * the caller's transaction, as the table's owner, so that callers need no
 * privilege on the log and cannot forge rows through it.  A statement that
 * fails and rolls back takes its rows with it; the autonomous log writer
 * (a background worker fed through shared memory) will replace the body of
 * calllog_append without changing its callers.
 *
 * The insert plan is prepared once per backend and kept; the extension's
 * schema and the table are looked up again once per transaction, so that a
 * dropped and re-created extension is found.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "call_log.h"

#define CALLLOG_NCOLUMNS	26

/* The prepared INSERT, and what it was prepared for. */
static SPIPlanPtr calllog_plan = NULL;
static Oid	calllog_relid = InvalidOid;
static Oid	calllog_owner = InvalidOid;
static LocalTransactionId calllog_checked_lxid = InvalidLocalTransactionId;

static void calllog_prepare(void);
static Oid	extension_namespace(Oid extension);

/* Insert one attempt into ai_call_log. */
void
calllog_append(const CallAttempt *a)
{
	Datum		values[CALLLOG_NCOLUMNS];
	char		nulls[CALLLOG_NCOLUMNS];
	const char *class_name = policy_class_name(a->error_class);
	Oid			saved_user;
	int			saved_context;
	int			rc;
	int			i = 0;

	memset(nulls, ' ', sizeof(nulls));

#define SET_VALUE(datum) (values[i++] = (datum))
#define SET_NULLABLE(isnull, datum) \
	(nulls[i] = (isnull) ? 'n' : ' ', values[i] = (isnull) ? (Datum) 0 : (datum), i++)

	SET_VALUE(UUIDPGetDatum(&a->call_id));
	SET_VALUE(Int32GetDatum(a->attempt));
	SET_VALUE(Int32GetDatum(a->route_index));
	SET_VALUE(Int32GetDatum(a->route_attempt));
	SET_VALUE(TimestampTzGetDatum(a->started_at));
	SET_VALUE(Float8GetDatum(a->latency_ms));
	SET_VALUE(CStringGetTextDatum(a->model));
	SET_VALUE(CStringGetTextDatum(a->endpoint));
	SET_NULLABLE(a->http_status == 0, Int32GetDatum(a->http_status));
	SET_NULLABLE(class_name == NULL, CStringGetTextDatum(class_name));
	SET_NULLABLE(a->error == NULL, CStringGetTextDatum(a->error));
	SET_VALUE(BoolGetDatum(a->streaming));
	SET_NULLABLE(a->retry_after_ms < 0, Int32GetDatum(a->retry_after_ms));
	SET_NULLABLE(a->backoff_ms < 0, Int32GetDatum(a->backoff_ms));
	SET_VALUE(CStringGetTextDatum(policy_outcome_name(a->outcome)));
	SET_NULLABLE(a->request_id == NULL, CStringGetTextDatum(a->request_id));
	SET_NULLABLE(a->model_returned == NULL, CStringGetTextDatum(a->model_returned));
	SET_NULLABLE(a->finish_reason == NULL, CStringGetTextDatum(a->finish_reason));
	SET_NULLABLE(a->prompt_tokens < 0, Int32GetDatum(a->prompt_tokens));
	SET_NULLABLE(a->completion_tokens < 0, Int32GetDatum(a->completion_tokens));
	SET_VALUE(BoolGetDatum(a->new_connection));
	SET_VALUE(CStringGetTextDatum(a->role_name));
	SET_VALUE(Int32GetDatum(MyProcPid));
	SET_NULLABLE(a->prompt == NULL, CStringGetTextDatum(a->prompt));
	SET_NULLABLE(a->ttft_ms < 0, Float8GetDatum(a->ttft_ms));
	SET_NULLABLE(a->response_bytes < 0, Int32GetDatum(a->response_bytes));

#undef SET_VALUE
#undef SET_NULLABLE
	Assert(i == CALLLOG_NCOLUMNS);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	calllog_prepare();

	/* write as the table's owner; an error restores the user on abort */
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(calllog_owner,
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	rc = SPI_execute_plan(calllog_plan, values, nulls, false, 0);
	SetUserIdAndSecContext(saved_user, saved_context);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not insert into ai_call_log: %s",
			 SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * Find the log table (once per transaction) and prepare the INSERT for it
 * (once per table).  Runs inside SPI_connect.
 */
static void
calllog_prepare(void)
{
	static const Oid argtypes[CALLLOG_NCOLUMNS] = {
		UUIDOID, INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID, FLOAT8OID,
		TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, BOOLOID, INT4OID,
		INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
		BOOLOID, TEXTOID, INT4OID, TEXTOID, FLOAT8OID, INT4OID
	};
	Oid			extension;
	Oid			namespace;
	Oid			relid;
	HeapTuple	tuple;
	SPIPlanPtr	plan;
	char	   *sql;

	if (calllog_plan != NULL && calllog_checked_lxid == MyProc->lxid)
		return;

	extension = get_extension_oid("pg_ai_resilience", true);
	if (!OidIsValid(extension))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_ai_resilience\" is not installed in this database")));
	namespace = extension_namespace(extension);
	relid = get_relname_relid("ai_call_log", namespace);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"ai_call_log\" of extension \"pg_ai_resilience\" is missing")));

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	calllog_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	if (calllog_plan == NULL || relid != calllog_relid)
	{
		sql = psprintf("INSERT INTO %s.ai_call_log (call_id, attempt, route_index,"
					   " route_attempt, started_at, latency_ms, model, endpoint,"
					   " code, error_class, error, streaming, retry_after_ms,"
					   " backoff_ms, outcome, request_id, model_returned,"
					   " finish_reason, prompt_tokens, completion_tokens,"
					   " new_connection, role_name, backend_pid, prompt, ttft_ms,"
					   " response_bytes)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
					   " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,"
					   " $23, $24, $25, $26)",
					   quote_identifier(get_namespace_name(namespace)));
		plan = SPI_prepare(sql, CALLLOG_NCOLUMNS, (Oid *) argtypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the ai_call_log insert: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the ai_call_log insert plan");
		if (calllog_plan != NULL)
			SPI_freeplan(calllog_plan);
		calllog_plan = plan;
		calllog_relid = relid;
	}
	calllog_checked_lxid = MyProc->lxid;
}

/* The schema an extension was installed in (PostgreSQL 15 has no export). */
static Oid
extension_namespace(Oid extension)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			namespace = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		namespace = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return namespace;
}
