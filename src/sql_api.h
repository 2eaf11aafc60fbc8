/*-------------------------------------------------------------------------
 *
 * sql_api.h
 *	  What the SQL entry points of sql_api.c share with the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_SQL_API_H
#define AIR_SQL_API_H

#include "fmgr.h"
#include "nodes/pg_list.h"

extern List *models_argument(FunctionCallInfo fcinfo, int argno);

#endif							/* AIR_SQL_API_H */
