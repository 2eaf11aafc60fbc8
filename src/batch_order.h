/*-------------------------------------------------------------------------
 *
 * batch_order.h
 *	  Put a batch's rows back in the prompts' order as they finish.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_BATCH_ORDER_H
#define AIR_BATCH_ORDER_H

#include "utils/uuid.h"

/* What a finished row carries besides its position. */
typedef struct BatchRow
{
	bool		called;			/* false for a NULL prompt */
	pg_uuid_t	call_id;
	int			attempts;
	const char *response;		/* NULL when there is none */
	const char *error;			/* why the call failed, or NULL */
} BatchRow;

/* Receives the rows in order; what it keeps it must copy. */
typedef void (*BatchEmit) (void *arg, int ordinal, const BatchRow *row);

typedef struct BatchOrder BatchOrder;

extern BatchOrder *batch_order_begin(int nrows, int window, BatchEmit emit,
									 void *emit_arg);
extern void batch_order_add(BatchOrder *order, int ordinal,
							const BatchRow *row);
extern void batch_order_end(BatchOrder *order);

#endif							/* AIR_BATCH_ORDER_H */
