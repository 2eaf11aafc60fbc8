/*-------------------------------------------------------------------------
 *
 * unit_check.h
 *	  The check counter shared by the unit tests of test/unit.
 *
 * Each test program includes it once: check() prints a TAP line per check,
 * checks_done() the plan and the closing "N passed, M failed" line and
 * returns the program's exit code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef UNIT_CHECK_H
#define UNIT_CHECK_H

#include <stdio.h>

static int	checks_run = 0;
static int	checks_failed = 0;

/* Record one check. */
static void
check(int ok, const char *description)
{
	checks_run++;
	if (!ok)
		checks_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", checks_run, description);
}

/* Print the plan and the totals; the exit code of the test program. */
static int
checks_done(void)
{
	printf("1..%d\n", checks_run);
	printf("%d passed, %d failed\n", checks_run - checks_failed, checks_failed);
	return checks_failed == 0 ? 0 : 1;
}

#endif							/* UNIT_CHECK_H */
