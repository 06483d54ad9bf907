/*-------------------------------------------------------------------------
 *
 * http_multi.c
 *		  Requests side by side: batches of concurrent requests on one
 *		  connection, paced by the rate-limit governor, retried like any
 *		  request, and interruptible.
 *
 * A batch (GhlMulti) queues requests and keeps at most max_concurrency of
 * them under way: sent, or waiting out the backoff before a retry.  Each
 * attempt is built, collected and judged by http.c exactly as for a
 * request on its own; this file decides when attempts start and how the
 * backend waits for them.  The governor is asked before every attempt
 * without blocking: when it says wait, no request of the batch starts
 * until then, while the transfers already sent move on; a retry's backoff
 * is waited out the same way.  The wait itself polls the connection's
 * sockets for at most a second and is cut short by signals, so a cancel
 * or statement_timeout ends the batch promptly: its transfers are aborted
 * first, then the interrupt is processed.  A request on its own
 * (ghl_http_execute) is a batch of one.
 *
 * Errors are raised only by the batch's own calls, never inside curl
 * callbacks, and a call that raises one aborts the batch first.  A batch
 * abandoned by an error elsewhere is aborted when its memory context is
 * reset or deleted, so no transfer outlives the query that started it.
 *
 * IDENTIFICATION
 *		  src/http_multi.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "lib/ilist.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* the longest wait between two looks at interrupts */
#define GHL_POLL_MS				1000

/* One request of a batch, from its queueing to its outcome. */
typedef struct GhlTransfer
{
	dlist_node	node;			/* in the batch's queue or active list */
	GhlRequest	request;		/* the batch's copy, in the same chunk */
	void	   *tag;			/* the caller's, returned with the response */
	GhlAttempt *attempt;		/* the attempt under way, or NULL */
	TimestampTz not_before;		/* without an attempt: when to try again */
	GhlRetryState retry;
	bool		throttled;		/* the governor has made it wait */
} GhlTransfer;

struct GhlMulti
{
	GhlConnection *conn;
	int			max_concurrency;
	GhlRequestStats *stats;		/* the caller's counters, or NULL */
	MemoryContext cxt;			/* where the transfers live */
	dlist_head	queue;			/* added, not sent yet */
	dlist_head	active;			/* sent, or waiting to be sent again */
	int			nactive;
	TimestampTz paced_until;	/* the governor: nothing starts before */
	MemoryContextCallback cleanup;
};

/*
 * Set up an empty batch in the current memory context: shared by
 * ghl_multi_start and the batch of one of ghl_http_execute.  The governor
 * and the connection cache are sized for GHL_MAX_CONCURRENCY.
 */
static void
multi_init(GhlMulti *multi, GhlConnection *conn, int max_concurrency,
		   GhlRequestStats *stats)
{
	multi->conn = conn;
	multi->max_concurrency = Min(Max(max_concurrency, 1), GHL_MAX_CONCURRENCY);
	multi->stats = stats;
	multi->cxt = CurrentMemoryContext;
	dlist_init(&multi->queue);
	dlist_init(&multi->active);
	multi->nactive = 0;
	multi->paced_until = 0;
}

/* Memory context reset callback: the batch goes with its memory. */
static void
multi_cleanup(void *arg)
{
	ghl_multi_finish((GhlMulti *) arg);
}

/*
 * Start a batch of requests on a connection, at most max_concurrency of
 * them under way at once.  Lives in the current memory context and ends
 * with it, whatever way it ends.
 */
GhlMulti *
ghl_multi_start(GhlConnection *conn, int max_concurrency,
				GhlRequestStats *stats)
{
	GhlMulti   *multi = palloc0(sizeof(GhlMulti));

	multi_init(multi, conn, max_concurrency, stats);
	multi->cleanup.func = multi_cleanup;
	multi->cleanup.arg = multi;
	MemoryContextRegisterResetCallback(multi->cxt, &multi->cleanup);
	return multi;
}

/*
 * A transfer holding its own copy of the request, all in one chunk, so
 * that handing back its response frees everything: a batch may see
 * thousands of requests in its life.
 */
static GhlTransfer *
multi_new_transfer(GhlMulti *multi, const GhlRequest *request, void *tag)
{
	const char *strings[] = {request->method, request->path, request->url,
	request->api_version, request->body, request->content_type};
	size_t		size = sizeof(GhlTransfer);
	GhlTransfer *transfer;
	const char **copies[lengthof(strings)];
	char	   *next;
	int			i;

	for (i = 0; i < lengthof(strings); i++)
		size += strings[i] ? strlen(strings[i]) + 1 : 0;
	transfer = MemoryContextAllocZero(multi->cxt, size);
	transfer->request = *request;
	transfer->tag = tag;

	copies[0] = &transfer->request.method;
	copies[1] = &transfer->request.path;
	copies[2] = &transfer->request.url;
	copies[3] = &transfer->request.api_version;
	copies[4] = &transfer->request.body;
	copies[5] = &transfer->request.content_type;
	next = (char *) (transfer + 1);
	for (i = 0; i < lengthof(strings); i++)
	{
		if (strings[i] == NULL)
			continue;
		strcpy(next, strings[i]);
		*copies[i] = next;
		next += strlen(next) + 1;
	}
	return transfer;
}

/*
 * Send one attempt of a transfer if the governor allows it now.  If it
 * does not, nothing of the batch starts before the time it names (it is
 * a queue), and the wait is counted like any throttled request's; a wait
 * that would outlast statement_timeout fails the batch at once.
 */
static bool
multi_send(GhlMulti *multi, GhlTransfer *transfer)
{
	GhlConnection *conn = multi->conn;
	ErrorContextCallback errcallback;

	errcallback.callback = ghl_request_context;
	errcallback.arg = (void *) &transfer->request;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	if (transfer->request.authenticated)
	{
		GhlOptions *options = ghl_connection_options(conn);
		long		wait_ms = ghl_governor_try_acquire(options);

		if (wait_ms > 0)
		{
			ghl_governor_check_deadline(options, wait_ms);
			ghl_governor_count_wait(options, wait_ms, !transfer->throttled);
			transfer->throttled = true;
			multi->paced_until =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
			error_context_stack = errcallback.previous;
			return false;
		}
	}
	transfer->attempt = ghl_attempt_start(conn, &transfer->request,
										  multi->stats);
	error_context_stack = errcallback.previous;
	return true;
}

/*
 * Send what may be sent now: first the retries whose backoff is over,
 * then queued requests while fewer than max_concurrency are under way.
 * Ends at the first request the governor holds back.
 */
static void
multi_start_ready(GhlMulti *multi)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;

	if (multi->paced_until > now)
		return;
	dlist_foreach(iter, &multi->active)
	{
		GhlTransfer *transfer = dlist_container(GhlTransfer, node, iter.cur);

		if (transfer->attempt != NULL || transfer->not_before > now)
			continue;
		if (!multi_send(multi, transfer))
			return;
	}
	while (multi->nactive < multi->max_concurrency &&
		   !dlist_is_empty(&multi->queue))
	{
		GhlTransfer *transfer = dlist_head_element(GhlTransfer, node,
												   &multi->queue);

		if (!multi_send(multi, transfer))
			return;
		dlist_delete(&transfer->node);
		dlist_push_tail(&multi->active, &transfer->node);
		multi->nactive++;
	}
}

/*
 * How long to wait for the transfers before looking again: until the
 * next retry is due or the governor lets the next request go, and never
 * more than GHL_POLL_MS.
 */
static long
multi_wait_ms(GhlMulti *multi)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake = TimestampTzPlusMilliseconds(now, GHL_POLL_MS);
	dlist_iter	iter;

	dlist_foreach(iter, &multi->active)
	{
		GhlTransfer *transfer = dlist_container(GhlTransfer, node, iter.cur);

		if (transfer->attempt == NULL)
			wake = Min(wake, Max(transfer->not_before, multi->paced_until));
	}
	if (multi->nactive < multi->max_concurrency &&
		!dlist_is_empty(&multi->queue))
		wake = Min(wake, multi->paced_until);
	return TimestampDifferenceMilliseconds(now, wake);
}

/*
 * The transfer of this batch whose attempt finished first, or NULL:
 * responses come back in the order they arrived.
 */
static GhlTransfer *
multi_first_finished(GhlMulti *multi)
{
	GhlTransfer *first = NULL;
	uint64		first_order = 0;
	dlist_iter	iter;

	dlist_foreach(iter, &multi->active)
	{
		GhlTransfer *transfer = dlist_container(GhlTransfer, node, iter.cur);
		uint64		order;

		if (transfer->attempt == NULL)
			continue;
		order = ghl_attempt_finished(transfer->attempt);
		if (order > 0 && (first == NULL || order < first_order))
		{
			first = transfer;
			first_order = order;
		}
	}
	return first;
}

/*
 * A cancel or termination ends the batch: its transfers are aborted, then
 * the interrupt is processed, in the context of a request of the batch.
 * Other interrupts are simply processed.
 */
static void
multi_check_interrupts(GhlMulti *multi)
{
	ErrorContextCallback errcallback;
	dlist_head *named = dlist_is_empty(&multi->active) ? &multi->queue
		: &multi->active;

	if (!QueryCancelPending && !ProcDiePending)
	{
		CHECK_FOR_INTERRUPTS();
		return;
	}
	errcallback.callback = ghl_request_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	if (!dlist_is_empty(named))
	{
		errcallback.arg = &dlist_head_element(GhlTransfer, node, named)->request;
		error_context_stack = &errcallback;
	}
	ghl_multi_finish(multi);
	CHECK_FOR_INTERRUPTS();
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling request to GHL server \"%s\"",
					ghl_connection_options(multi->conn)->server_name)));
}

/*
 * Judge a finished attempt: the request is tried again after the delay
 * http.c decides, or its outcome is final and goes to *response (or is
 * raised).  Returns whether *response holds it.
 */
static bool
multi_conclude(GhlMulti *multi, GhlTransfer *transfer, GhlResponse *response)
{
	GhlConnection *conn = multi->conn;
	long		delay_ms;
	bool		retry;

	retry = ghl_attempt_retry(conn, transfer->attempt, &transfer->request,
							  &transfer->retry, multi->stats, &delay_ms);
	if (!retry)
		ghl_attempt_response(conn, transfer->attempt, &transfer->request,
							 response);
	ghl_attempt_release(conn, transfer->attempt);
	transfer->attempt = NULL;
	if (retry)
	{
		transfer->not_before =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
		return false;
	}
	dlist_delete(&transfer->node);
	multi->nactive--;
	return true;
}

/*
 * Start what can start and let curl send it now, so it travels while the
 * caller works.
 */
static void
multi_kick(GhlMulti *multi)
{
	multi_start_ready(multi);
	ghl_connection_wait(multi->conn, 0);
}

/*
 * Drive the batch until one of its requests has its outcome; NULL when
 * nothing is queued or under way.
 */
static GhlTransfer *
multi_wait_next(GhlMulti *multi, GhlResponse *response)
{
	for (;;)
	{
		GhlTransfer *transfer;

		multi_check_interrupts(multi);
		transfer = multi_first_finished(multi);
		if (transfer != NULL)
		{
			if (!multi_conclude(multi, transfer, response))
				continue;
			multi_kick(multi);
			return transfer;
		}
		if (multi->nactive == 0 && dlist_is_empty(&multi->queue))
			return NULL;
		multi_start_ready(multi);
		ghl_connection_wait(multi->conn, multi_wait_ms(multi));
	}
}

/*
 * Queue a request (copied) with the caller's tag, and send it at once if
 * the batch has room and the governor allows.
 */
void
ghl_multi_add(GhlMulti *multi, const GhlRequest *request, void *tag)
{
	GhlTransfer *transfer = multi_new_transfer(multi, request, tag);

	dlist_push_tail(&multi->queue, &transfer->node);
	PG_TRY();
	{
		multi_kick(multi);
	}
	PG_CATCH();
	{
		ghl_multi_finish(multi);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Wait for the next request of the batch to finish, in the order they
 * finish, after its retries: a 2xx or 404 response comes back in
 * *response (data palloc'd in the current memory context) with its tag;
 * every other outcome raises the error ghl_http_execute would raise.
 * Returns false when nothing is queued or under way.
 */
bool
ghl_multi_next(GhlMulti *multi, GhlResponse *response, void **tag)
{
	GhlTransfer *transfer;

	PG_TRY();
	{
		transfer = multi_wait_next(multi, response);
	}
	PG_CATCH();
	{
		ghl_multi_finish(multi);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (transfer == NULL)
		return false;
	if (tag != NULL)
		*tag = transfer->tag;
	pfree(transfer);
	return true;
}

/*
 * Stop the batch: abort its transfers and give their handles back to the
 * connection's pool.  Never raises an error, since it runs on error paths
 * and from the memory context reset callback; calling it twice is
 * harmless.
 */
void
ghl_multi_finish(GhlMulti *multi)
{
	dlist_iter	iter;

	dlist_foreach(iter, &multi->active)
	{
		GhlTransfer *transfer = dlist_container(GhlTransfer, node, iter.cur);

		if (transfer->attempt != NULL)
		{
			ghl_attempt_release(multi->conn, transfer->attempt);
			transfer->attempt = NULL;
		}
	}
	dlist_init(&multi->active);
	dlist_init(&multi->queue);
	multi->nactive = 0;
}

/*
 * Perform a request, retrying what is safe to retry, and return only with
 * a 2xx or 404 response; every other outcome is an error whose errcontext
 * names the request.  A batch of one, on the stack: the same attempts,
 * pacing and interrupts as requests side by side.
 */
void
ghl_http_execute(GhlConnection *conn, const GhlRequest *request,
				 GhlResponse *response, GhlRequestStats *stats)
{
	GhlMulti	multi;

	multi_init(&multi, conn, 1, stats);
	ghl_multi_add(&multi, request, NULL);
	if (!ghl_multi_next(&multi, response, NULL))
		elog(ERROR, "request to GHL server \"%s\" was lost",
			 ghl_connection_options(conn)->server_name);
}
