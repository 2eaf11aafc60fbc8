/*-------------------------------------------------------------------------
 *
 * gateway_text.h
 *	  The one boundary for text from a gateway on its way to a log or error.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_GATEWAY_TEXT_H
#define AIR_GATEWAY_TEXT_H

#include "nodes/pg_list.h"

/* What replaces an API key found in a gateway's text. */
#define GATEWAY_TEXT_REDACTED	"[REDACTED]"

extern int	gateway_text(char *dest, int dest_size, const char *text,
						 const List *keys);
extern char *gateway_text_copy(const char *text, int max_bytes,
							   const List *keys);
extern char *gateway_text_for_client(const char *text);

#endif							/* AIR_GATEWAY_TEXT_H */
