/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  API keys and endpoint credentials: where they are read, how they hide.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_SECRETS_H
#define AIR_SECRETS_H

#include "nodes/pg_list.h"

/* Shortest API key accepted, in bytes. */
#define MIN_API_KEY_LEN		8

/* Where the parts of an endpoint URL start, as offsets into it. */
typedef struct UrlParts
{
	int			authority;		/* after "scheme://" */
	int			host;			/* after the last '@' of the authority */
	int			path;			/* the first '/', '?' or '#' after it */
	int			query;			/* '?' or '#' after the path, or the end */
	int			fragment;		/* '#' or the end */
} UrlParts;

extern void secrets_split_url(const char *url, UrlParts *parts);
extern int	secrets_url_display(const char *url, char *dest);
extern char *secrets_chat_url(const char *url);
extern List *secrets_api_keys(void);
extern List *secrets_extra_headers(int endpoint, int nendpoints);

#endif							/* AIR_SECRETS_H */
