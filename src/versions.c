/*-------------------------------------------------------------------------
 *
 * versions.c
 *	  ai_versions(): the versions a support ticket asks for.
 *
 * The extension's version is the one this library was built as; libcurl's
 * is the library loaded in this process (curl_version_info, which needs no
 * curl_global_init and allocates nothing), with its TLS library; the
 * server's is the running server's server_version.  Nothing here is
 * secret, and nothing is kept: the strings are palloc'd in the caller's
 * memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(ai_versions);

#define VERSIONS_COLUMNS	3

/* ai_versions() returns the versions of the extension, libcurl and the server. */
Datum
ai_versions(PG_FUNCTION_ARGS)
{
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
	TupleDesc	tupdesc;
	Datum		values[VERSIONS_COLUMNS];
	bool		nulls[VERSIONS_COLUMNS] = {false, false, false};
	const char *libcurl;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* a TLS problem is libcurl's TLS library's: name it too */
	libcurl = curl->ssl_version ?
		psprintf("%s %s", curl->version, curl->ssl_version) : curl->version;

	values[0] = CStringGetTextDatum(PGAIR_VERSION);
	values[1] = CStringGetTextDatum(libcurl);
	values[2] = CStringGetTextDatum(psprintf("PostgreSQL %s",
											 GetConfigOption("server_version",
															 false, false)));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
