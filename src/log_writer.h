/*-------------------------------------------------------------------------
 *
 * log_writer.h
 *	  The background worker that writes one database's queued attempts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_LOG_WRITER_H
#define AIR_LOG_WRITER_H

#include "fmgr.h"

extern bool logwriter_launch(int db_index, Oid dboid);
extern PGDLLEXPORT void air_log_writer_main(Datum main_arg);

#endif							/* AIR_LOG_WRITER_H */
