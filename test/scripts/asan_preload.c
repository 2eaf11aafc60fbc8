/*
 * asan_preload.c
 *	  Preloaded after libasan into the servers of the sanitizer stage
 *	  (test/scripts/test.sh).  PostgreSQL is not instrumented, so the ASan
 *	  runtime starts on the first malloc it intercepts.  In Debian 12 that
 *	  first malloc comes from a library constructor (libgpg-error's
 *	  bindtextdomain, p11-kit's newlocale) holding a glibc lock that the
 *	  runtime's start-up takes again (through dlerror and gettext): the lock
 *	  is corrupted and the process hangs.  Wrapping those two functions
 *	  starts the runtime before the lock is taken.  Test equipment only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <locale.h>
#include <stdlib.h>

extern locale_t __newlocale(int mask, const char *locale, locale_t base);

/* Start the sanitizer runtime, if not yet started: one intercepted malloc. */
static void
start_runtime(void)
{
	void	   *volatile p = malloc(1);	/* volatile: not optimised away */

	free(p);
}

/* bindtextdomain(3), after starting the runtime. */
char *
bindtextdomain(const char *domain, const char *dir)
{
	static char *(*next) (const char *, const char *);

	start_runtime();
	if (next == NULL)
		next = dlsym(RTLD_NEXT, "bindtextdomain");
	return next(domain, dir);
}

/* newlocale(3), after starting the runtime. */
locale_t
newlocale(int mask, const char *locale, locale_t base)
{
	start_runtime();
	return __newlocale(mask, locale, base);
}
