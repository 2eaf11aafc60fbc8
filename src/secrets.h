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

/* What to do about more keys than one that do not match the endpoints. */
#define SECRETS_KEY_COUNT_HINT \
	"Give one key for every endpoint, or one key per endpoint."

/* Settings that cannot work together, or cannot be used at all. */
typedef struct SettingsProblem
{
	char	   *message;		/* palloc'd; quotes no secret */
	const char *hint;			/* NULL: none */
	bool		unset;			/* no endpoint yet: no warning at SET */
} SettingsProblem;

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
extern char *secrets_resource_url(const char *url, const char *resource);
extern List *secrets_api_keys(void);
extern List *secrets_extra_headers(int endpoint, int nendpoints);
extern char *secrets_key_count_problem(int nkeys, int nendpoints);
extern List *secrets_settings_problems(List **endpoints);
extern void secrets_warn_problems(void);

#endif							/* AIR_SECRETS_H */
