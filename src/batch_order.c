/*-------------------------------------------------------------------------
 *
 * batch_order.c
 *	  Put a batch's rows back in the prompts' order as they finish.
 *
 * A batch's calls finish in any order, and its rows must come out in the
 * prompts' order, without a slow prompt holding up the calls after it.  A
 * row that finishes when every earlier row is out goes out at once.
 * Otherwise it waits: in a ring of 'window' rows after the first row not yet
 * out, as long as the strings of the rows waiting there take at most
 * work_mem; beyond either bound, in a tuplesort, which spills to temporary
 * files past work_mem.  The ring drains as the rows before it arrive; the
 * sort is read in order once every row has arrived (batch_order_end), since
 * a tuplesort is read only once.  So the rows waiting hold at most twice
 * work_mem in memory, whatever the number of rows.
 *
 * Memory: everything lives in the order's own context, created under the
 * context current at batch_order_begin (the SQL function's, which outlives
 * the batch) and deleted by batch_order_end, whatever context rows are
 * added from: a run's sources and sinks run in a call's memory, which is
 * reset as soon as the call is over.  Rows go out through the emit
 * callback, called in a scratch context reset after each row, so the
 * callback copies what it keeps (a tuplestore does).  After an error the
 * order's context goes with the function's memory and the sort's temporary
 * files with the resource owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/tuplesort.h"

#include "batch_order.h"

/* Columns of a row in the sort: the ordinal, then BatchRow's fields. */
enum
{
	SORT_ORDINAL = 1,
	SORT_CALLED,
	SORT_CALL_ID,
	SORT_ATTEMPTS,
	SORT_RESPONSE,
	SORT_ERROR,
	SORT_COLUMNS = SORT_ERROR
};

/* A place in the ring. */
typedef struct WaitingRow
{
	bool		present;		/* a row waits here */
	BatchRow	row;			/* its strings in the order's memory */
} WaitingRow;

/* The rows of one batch on their way out. */
struct BatchOrder
{
	MemoryContext memory;		/* everything of the order */
	MemoryContext row_memory;	/* one row on its way out; reset after it */
	BatchEmit	emit;
	void	   *emit_arg;
	int			nrows;
	int			next;			/* the first row not yet out */
	int			window;			/* size of ring[] */
	WaitingRow *ring;			/* row i waits at ring[i % window] */
	Size		ring_bytes;		/* strings of the rows in the ring */
	Size		ring_max_bytes;
	Tuplesortstate *sort;		/* rows past the ring, or NULL */
	TupleDesc	sort_desc;
	TupleTableSlot *sort_slot;	/* for putting rows into the sort */
};

static void emit_row(BatchOrder *order, const BatchRow *row);
static Size row_bytes(const BatchRow *row);
static void sort_row(BatchOrder *order, int ordinal, const BatchRow *row);
static void start_sort(BatchOrder *order);
static void emit_sorted(BatchOrder *order);
static const char *slot_text(TupleTableSlot *slot, AttrNumber attnum);

/*
 * Start putting nrows rows in order, holding up to 'window' of them in the
 * ring; emit receives each row.
 */
BatchOrder *
batch_order_begin(int nrows, int window, BatchEmit emit, void *emit_arg)
{
	MemoryContext memory = AllocSetContextCreate(CurrentMemoryContext,
												 "ai_chat_batch order",
												 ALLOCSET_DEFAULT_SIZES);
	BatchOrder *order = MemoryContextAllocZero(memory, sizeof(BatchOrder));

	order->memory = memory;
	order->row_memory = AllocSetContextCreate(memory, "ai_chat_batch row",
											  ALLOCSET_DEFAULT_SIZES);
	order->emit = emit;
	order->emit_arg = emit_arg;
	order->nrows = nrows;
	order->window = Max(1, Min(window, nrows));
	order->ring = MemoryContextAllocZero(memory,
										 sizeof(WaitingRow) * order->window);
	order->ring_max_bytes = (Size) work_mem * 1024;
	return order;
}

/*
 * Row 'ordinal' (0-based) has finished: send it out with every row it held
 * up, or keep a copy until the rows before it are out.
 */
void
batch_order_add(BatchOrder *order, int ordinal, const BatchRow *row)
{
	Size		bytes = row_bytes(row);
	WaitingRow *waiting;

	Assert(ordinal >= order->next && ordinal < order->nrows);

	if (ordinal == order->next)
	{
		emit_row(order, row);
		while ((waiting = &order->ring[order->next % order->window])->present)
		{
			emit_row(order, &waiting->row);
			order->ring_bytes -= row_bytes(&waiting->row);
			if (waiting->row.response)
				pfree((char *) waiting->row.response);
			if (waiting->row.error)
				pfree((char *) waiting->row.error);
			waiting->present = false;
		}
		return;
	}

	if (ordinal >= order->next + order->window ||
		order->ring_bytes + bytes > order->ring_max_bytes)
	{
		sort_row(order, ordinal, row);
		return;
	}

	waiting = &order->ring[ordinal % order->window];
	Assert(!waiting->present);
	waiting->row = *row;
	if (row->response)
		waiting->row.response = MemoryContextStrdup(order->memory,
													row->response);
	if (row->error)
		waiting->row.error = MemoryContextStrdup(order->memory, row->error);
	waiting->present = true;
	order->ring_bytes += bytes;
}

/*
 * Every row has been added: send out those still waiting, in order, and
 * free everything.
 */
void
batch_order_end(BatchOrder *order)
{
	if (order->sort != NULL)
	{
		int			end = Min(order->nrows, order->next + order->window);
		int			i;

		/* the ring's rows join the sort, which holds every row left */
		for (i = order->next; i < end; i++)
		{
			WaitingRow *waiting = &order->ring[i % order->window];

			if (waiting->present)
				sort_row(order, i, &waiting->row);
		}
		emit_sorted(order);
	}
	Assert(order->next == order->nrows);
	MemoryContextDelete(order->memory);
}

/* Send the next row out, in the scratch context. */
static void
emit_row(BatchOrder *order, const BatchRow *row)
{
	MemoryContext old_context = MemoryContextSwitchTo(order->row_memory);

	order->emit(order->emit_arg, order->next, row);
	MemoryContextSwitchTo(old_context);
	MemoryContextReset(order->row_memory);
	order->next++;
}

/* The bytes a row's strings take. */
static Size
row_bytes(const BatchRow *row)
{
	return (row->response ? strlen(row->response) + 1 : 0) +
		(row->error ? strlen(row->error) + 1 : 0);
}

/* Put a copy of a row into the sort, keyed by its ordinal. */
static void
sort_row(BatchOrder *order, int ordinal, const BatchRow *row)
{
	TupleTableSlot *slot;
	MemoryContext old_context;

	if (order->sort == NULL)
		start_sort(order);

	old_context = MemoryContextSwitchTo(order->row_memory);
	slot = order->sort_slot;
	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * SORT_COLUMNS);
	slot->tts_values[SORT_ORDINAL - 1] = Int32GetDatum(ordinal);
	slot->tts_values[SORT_CALLED - 1] = BoolGetDatum(row->called);
	slot->tts_values[SORT_CALL_ID - 1] = UUIDPGetDatum(&row->call_id);
	slot->tts_values[SORT_ATTEMPTS - 1] = Int32GetDatum(row->attempts);
	slot->tts_isnull[SORT_RESPONSE - 1] = row->response == NULL;
	if (row->response)
		slot->tts_values[SORT_RESPONSE - 1] =
			CStringGetTextDatum(row->response);
	slot->tts_isnull[SORT_ERROR - 1] = row->error == NULL;
	if (row->error)
		slot->tts_values[SORT_ERROR - 1] = CStringGetTextDatum(row->error);
	ExecStoreVirtualTuple(slot);
	tuplesort_puttupleslot(order->sort, slot);
	ExecClearTuple(slot);
	MemoryContextSwitchTo(old_context);
	MemoryContextReset(order->row_memory);
}

/* Create the sort, its tuple descriptor and slot, in the order's memory. */
static void
start_sort(BatchOrder *order)
{
	MemoryContext old_context = MemoryContextSwitchTo(order->memory);
	AttrNumber	sort_column = SORT_ORDINAL;
	Oid			sort_operator = Int4LessOperator;
	Oid			sort_collation = InvalidOid;
	bool		nulls_first = false;
	TupleDesc	desc = CreateTemplateTupleDesc(SORT_COLUMNS);

	TupleDescInitEntry(desc, SORT_ORDINAL, "ordinal", INT4OID, -1, 0);
	TupleDescInitEntry(desc, SORT_CALLED, "called", BOOLOID, -1, 0);
	TupleDescInitEntry(desc, SORT_CALL_ID, "call_id", UUIDOID, -1, 0);
	TupleDescInitEntry(desc, SORT_ATTEMPTS, "attempts", INT4OID, -1, 0);
	TupleDescInitEntry(desc, SORT_RESPONSE, "response", TEXTOID, -1, 0);
	TupleDescInitEntry(desc, SORT_ERROR, "error", TEXTOID, -1, 0);
	order->sort_desc = desc;
	order->sort = tuplesort_begin_heap(desc, 1, &sort_column, &sort_operator,
									   &sort_collation, &nulls_first,
									   work_mem, NULL, TUPLESORT_NONE);
	order->sort_slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	MemoryContextSwitchTo(old_context);
}

/* Read the sort in order and send its rows out. */
static void
emit_sorted(BatchOrder *order)
{
	TupleTableSlot *slot;
	MemoryContext old_context = MemoryContextSwitchTo(order->memory);

	tuplesort_performsort(order->sort);
	slot = MakeSingleTupleTableSlot(order->sort_desc, &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(order->row_memory);
	while (tuplesort_gettupleslot(order->sort, true, false, slot, NULL))
	{
		BatchRow	row;
		bool		isnull;

		Assert(DatumGetInt32(slot_getattr(slot, SORT_ORDINAL, &isnull)) ==
			   order->next);
		memset(&row, 0, sizeof(row));
		row.called = DatumGetBool(slot_getattr(slot, SORT_CALLED, &isnull));
		row.call_id = *DatumGetUUIDP(slot_getattr(slot, SORT_CALL_ID, &isnull));
		row.attempts = DatumGetInt32(slot_getattr(slot, SORT_ATTEMPTS,
												  &isnull));
		row.response = slot_text(slot, SORT_RESPONSE);
		row.error = slot_text(slot, SORT_ERROR);
		emit_row(order, &row);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextSwitchTo(old_context);
	tuplesort_end(order->sort);
	order->sort = NULL;
}

/* A text column of a sorted row as a C string, or NULL. */
static const char *
slot_text(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);

	return isnull ? NULL : TextDatumGetCString(value);
}
