/*-------------------------------------------------------------------------
 *
 * log_writer.h
 *	  The background workers that write the queued attempts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_LOG_WRITER_H
#define AIR_LOG_WRITER_H

#include "fmgr.h"

extern void logwriter_register(void);
extern PGDLLEXPORT void air_log_writer_main(Datum main_arg);

#endif							/* AIR_LOG_WRITER_H */
