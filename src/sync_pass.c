/*-------------------------------------------------------------------------
 *
 * sync_pass.c
 *		  The passes of a sync run: the requests they make through the
 *		  concurrent transport and what each answer does.
 *
 * Requests carry a GhlSyncRequest as their tag, saying what they were
 * for; ghl_sync_handle() hands each answer to its pass.  The contacts
 * pass pages dateAdded slices side by side (or the contacts updated since
 * the watermark) and writes each page together with its contacts'
 * children as one batch; the tasks pass pages the location's task
 * search; the appointments pass reads each calendar's events window by
 * window.  A pass over a whole location that completes tombstones what it
 * did not see, after confirming one by one what a pass by offset or
 * window may have missed.  Each answer is handled in its own step, which
 * the run's loop (sync.c) commits.
 *
 * IDENTIFICATION
 *		  src/sync_pass.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* at most this many unseen records are confirmed one by one */
#define GHL_SYNC_MAX_CONFIRMATIONS	200
/* the longest time window one calendar events request asks for */
#define GHL_APPOINTMENT_WINDOW_MS	(INT64CONST(366) * 86400 * 1000)
/* how many slices a full pass makes per concurrent request */
#define GHL_SLICES_PER_REQUEST		2
/* contacts queued by webhook events that one run reads, and per batch */
#define GHL_SYNC_MAX_PENDING		1000
#define GHL_PENDING_PER_BATCH		50
/* appointment ids per ghl_fdw_appointments notification */
#define GHL_NOTIFY_IDS				250

/* the calendar events endpoint does not carry the per-contact "status" */
static const char *const calendar_absent_fields[] = {"status", NULL};

static GhlSyncRequest *new_request(GhlSyncRun *run, GhlSyncRequestKind kind,
								   GhlResourceKind resource, MemoryContext cxt);
static void queue(GhlSyncRun *run, GhlSyncRequest *sreq, GhlRequest *request);
static void queue_search(GhlSyncRun *run, GhlSyncRequestKind kind,
						 GhlSlice *slice, int page_limit, bool newest_first);
static void queue_get(GhlSyncRun *run, GhlSyncRequestKind kind,
					  GhlResourceKind resource, GhlEndpointKind endpoint,
					  const char *contact_id, const char *id,
					  GhlPageBatch *batch);
static void contacts_pass_start(GhlSyncRun *run);
static void contacts_first_page(GhlSyncRun *run, GhlJsonPage *page,
								TimestampTz as_of);
static void contacts_newest(GhlSyncRun *run, GhlJsonPage *page);
static void contacts_page(GhlSyncRun *run, GhlSlice *slice, GhlJsonPage *page,
						  TimestampTz as_of);
static void contacts_request_pages(GhlSyncRun *run);
static void contacts_pass_check(GhlSyncRun *run);
static void pending_start(GhlSyncRun *run);
static GhlPageBatch *batch_new(GhlSyncRun *run, GhlSlice *slice);
static void batch_request_children(GhlSyncRun *run, GhlPageBatch *batch);
static void batch_child(GhlSyncRun *run, GhlSyncRequest *sreq,
						GhlResponse *response);
static void batch_write_ready(GhlSyncRun *run, GhlSlice *slice);
static void batch_write(GhlSyncRun *run, GhlPageBatch *batch);
static void tasks_pass_start(GhlSyncRun *run);
static void tasks_request_page(GhlSyncRun *run);
static void tasks_page(GhlSyncRun *run, GhlSyncRequest *sreq, GhlJsonPage *page);
static void appointments_pass_start(GhlSyncRun *run);
static void appointments_calendars(GhlSyncRun *run, GhlJsonPage *page);
static void appointments_window(GhlSyncRun *run, GhlSyncRequest *sreq,
								GhlJsonPage *page);
static void confirm_unseen(GhlSyncRun *run, GhlResourceKind resource,
						   TimestampTz started, const char *window_column);
static void confirmation(GhlSyncRun *run, GhlSyncRequest *sreq,
						 GhlResponse *response);
static void mark_gone(GhlSyncRun *run, GhlResourceKind resource, const char *id);
static void confirmations_done(GhlSyncRun *run, GhlResourceKind resource);
static void write_rows(GhlSyncRun *run, GhlResourceKind resource, GhlRows *rows);
static void count_gone(GhlSyncRun *run, GhlResourceKind resource, List *gone);
static void notify_appointments(GhlSyncRun *run, List *ids);
static int64 timestamp_ms(TimestampTz ts);
static TimestampTz ms_timestamp(int64 ms);

/* the endpoint listing a contact's rows of each child resource */
static const GhlEndpointKind child_endpoints[GHL_NUM_RESOURCES] = {
	GHL_NUM_ENDPOINTS, GHL_EP_TASKS_OF_CONTACT, GHL_EP_NOTES_OF_CONTACT,
	GHL_EP_APPOINTMENTS_OF_CONTACT
};

/*
 * Start what the run needs: for refresh_contact the one contact with its
 * children; else the passes over the location its resources need.
 */
void
ghl_sync_start_passes(GhlSyncRun *run)
{
	if (run->contact_id != NULL)
	{
		GhlPageBatch *batch = batch_new(run, NULL);
		int			r;

		for (r = GHL_RESOURCE_TASKS; r < GHL_NUM_RESOURCES; r++)
			run->child[r] = true;
		queue_get(run, GHL_SREQ_CONTACT, GHL_RESOURCE_CONTACTS,
				  GHL_EP_CONTACT_BY_ID, NULL, run->contact_id, batch);
		batch->contact_ids = list_make1(MemoryContextStrdup(batch->cxt, run->contact_id));
		batch_request_children(run, batch);
		batch->waiting++;		/* the contact itself */
	}
	else
	{
		if (run->wanted[GHL_RESOURCE_APPOINTMENTS] && strcmp(run->mode, "full") == 0)
			appointments_pass_start(run);
		contacts_pass_start(run);
		if (run->wanted[GHL_RESOURCE_TASKS])
			tasks_pass_start(run);
	}
}

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

/* A new request tag, in cxt. */
static GhlSyncRequest *
new_request(GhlSyncRun *run, GhlSyncRequestKind kind, GhlResourceKind resource,
			MemoryContext cxt)
{
	GhlSyncRequest *sreq = MemoryContextAllocZero(cxt, sizeof(GhlSyncRequest));

	sreq->kind = kind;
	sreq->resource = resource;
	return sreq;
}

/*
 * Hand a request to the transport.  It is counted under its resource, or,
 * when the run does not sync that resource (the contacts a run reads to
 * find their notes), under the first resource the run syncs.
 */
static void
queue(GhlSyncRun *run, GhlSyncRequest *sreq, GhlRequest *request)
{
	int			counted = sreq->resource;

	if (!run->wanted[counted])
	{
		for (counted = 0; !run->wanted[counted]; counted++)
			;
	}
	run->requests[counted]++;
	sreq->queued = GetCurrentTimestamp();
	request->authenticated = true;
	request->idempotent = true; /* a sync only reads */
	ghl_multi_add(run->multi, request, sreq);
}

/* One condition of a contact search on a timestamp, in epoch ms. */
static GhlFilterValue *
time_filter(const char *field, const char *op, int64 ms)
{
	GhlFilterValue *fv = palloc0(sizeof(GhlFilterValue));

	fv->field = field;
	fv->op = op;
	fv->is_ms = true;
	fv->ms = ms;
	return fv;
}

/*
 * A page of the contact search.  A full pass reads slices of dateAdded,
 * oldest first (its probe for the newest contact: newest first); an
 * incremental pass the contacts updated since the watermark less the
 * overlap, oldest update first.
 */
static void
queue_search(GhlSyncRun *run, GhlSyncRequestKind kind, GhlSlice *slice,
			 int page_limit, bool newest_first)
{
	GhlSyncRequest *sreq = new_request(run, kind, GHL_RESOURCE_CONTACTS, run->cxt);
	GhlRequest	request = {0};
	List	   *filters = NIL;

	if (!run->full_pass)
		filters = lappend(filters,
						  time_filter("dateUpdated", "gte",
									  timestamp_ms(run->pass.since) - run->settings.overlap_ms));
	if (slice != NULL && slice->state.bounded)
	{
		filters = lappend(filters, time_filter("dateAdded", "gte", slice->state.lo));
		filters = lappend(filters, time_filter("dateAdded", "lte", slice->state.hi));
	}
	request.method = "POST";
	request.path = "/contacts/search";
	request.api_version = run->options->api_version;
	request.body = ghl_json_search_body(run->options->location_id, page_limit,
										slice ? slice->next_after : NULL,
										filters, NULL,
										run->full_pass ? "dateAdded" : "dateUpdated",
										newest_first);
	sreq->slice = slice;
	if (slice != NULL)
		slice->in_flight = true;
	queue(run, sreq, &request);
}

/* A GET of one endpoint with its path parameters filled in. */
static void
queue_get(GhlSyncRun *run, GhlSyncRequestKind kind, GhlResourceKind resource,
		  GhlEndpointKind endpoint, const char *contact_id, const char *id,
		  GhlPageBatch *batch)
{
	const GhlEndpoint *ep = ghl_endpoint(endpoint);
	MemoryContext cxt = batch ? batch->cxt : run->cxt;
	GhlSyncRequest *sreq = new_request(run, kind, resource, cxt);
	GhlRequest	request = {0};

	sreq->batch = batch;
	sreq->contact_id = contact_id ? MemoryContextStrdup(cxt, contact_id) : NULL;
	sreq->id = id ? MemoryContextStrdup(cxt, id) : NULL;
	request.method = ep->method;
	request.path = ghl_request_path(ep, contact_id, id, run->options->server_name);
	request.api_version = ep->api_version ? ep->api_version : run->options->api_version;
	queue(run, sreq, &request);
}

/* The rows of an answer; NULL for a 404 (an endpoint that says "none"). */
static GhlJsonPage *
parse(GhlSyncRun *run, GhlResponse *response, GhlEndpointKind endpoint)
{
	const GhlEndpoint *ep = ghl_endpoint(endpoint);

	if (response->status == 404)
	{
		if (ep->not_found_is_empty)
			return NULL;
		elog(ERROR, "unexpected 404 from GHL server \"%s\"", run->options->server_name);
	}
	return ghl_json_parse_page(response->data, response->len, ep->response_key,
							   ep->single_object, run->options->server_name);
}

/* Hand an answer to what asked for it. */
void
ghl_sync_handle(GhlSyncRun *run, GhlSyncRequest *sreq, GhlResponse *response)
{
	switch (sreq->kind)
	{
		case GHL_SREQ_FIRST_PAGE:
			contacts_first_page(run, parse(run, response, GHL_EP_CONTACTS_SEARCH),
								sreq->queued);
			break;
		case GHL_SREQ_NEWEST:
			contacts_newest(run, parse(run, response, GHL_EP_CONTACTS_SEARCH));
			break;
		case GHL_SREQ_SLICE_PAGE:
			sreq->slice->in_flight = false;
			run->pages_held--;
			contacts_page(run, sreq->slice, parse(run, response, GHL_EP_CONTACTS_SEARCH),
						  sreq->queued);
			break;
		case GHL_SREQ_CHILDREN:
		case GHL_SREQ_CONTACT:
			batch_child(run, sreq, response);
			break;
		case GHL_SREQ_TASKS_PAGE:
			tasks_page(run, sreq, parse(run, response, GHL_EP_TASKS_SEARCH));
			break;
		case GHL_SREQ_CALENDARS:
			appointments_calendars(run, parse(run, response, GHL_EP_CALENDARS));
			break;
		case GHL_SREQ_WINDOW:
			appointments_window(run, sreq, parse(run, response, GHL_EP_CALENDAR_EVENTS));
			break;
		case GHL_SREQ_CONFIRM:
			confirmation(run, sreq, response);
			break;
	}
}

/* ----------------------------------------------------------------
 * The contacts pass
 * ----------------------------------------------------------------
 */

/*
 * Start reading contacts if the run needs them: their own rows, or the
 * contacts whose notes (or appointments) it reads.  A pass a failed run
 * left with the same resources is resumed where it stopped.
 */
static void
contacts_pass_start(GhlSyncRun *run)
{
	bool		full = strcmp(run->mode, "full") == 0;
	const char *pass = full ? "full" : "incremental";
	GhlSlice   *slice;
	TimestampTz since;
	MemoryContext oldcxt;

	run->child[GHL_RESOURCE_NOTES] = run->wanted[GHL_RESOURCE_NOTES];
	run->child[GHL_RESOURCE_APPOINTMENTS] = run->wanted[GHL_RESOURCE_APPOINTMENTS] &&
		!run->appointments_pass;
	if (!run->wanted[GHL_RESOURCE_CONTACTS] && !run->child[GHL_RESOURCE_NOTES] &&
		!run->child[GHL_RESOURCE_APPOINTMENTS])
		return;
	run->contacts_pass = true;
	run->contacts_pass_ran = true;
	run->full_pass = full;

	oldcxt = MemoryContextSwitchTo(run->cxt);
	since = run->pass.since;
	if (ghl_pass_load(run->options->server_name, pass, run->options->location_id,
					  run->wanted, &run->pass))
	{
		ListCell   *lc;

		foreach(lc, run->pass.slices)
		{
			slice = palloc0(sizeof(GhlSlice));
			slice->state = *(GhlSliceState *) lfirst(lc);
			slice->next_after = slice->state.after;
			slice->received_all = slice->state.done;
			slice->received = slice->state.read;
			run->slices = lappend(run->slices, slice);
		}
		MemoryContextSwitchTo(oldcxt);
		contacts_request_pages(run);
		contacts_pass_check(run);
		return;
	}

	run->pass.started = run->started;
	run->pass.since = since;
	slice = palloc0(sizeof(GhlSlice));
	run->slices = list_make1(slice);
	MemoryContextSwitchTo(oldcxt);
	if (full)
	{
		/* the oldest page first: if it is not full, it is all there is */
		run->planning = true;
		run->pages_held++;
		queue_search(run, GHL_SREQ_FIRST_PAGE, slice, run->options->page_size, false);
	}
	else
		contacts_request_pages(run);
}

/*
 * The first page of a full pass.  A short page is the whole location.  A
 * full one starts the first slice; the rest are planned once the newest
 * contact is known.
 */
static void
contacts_first_page(GhlSyncRun *run, GhlJsonPage *page, TimestampTz as_of)
{
	GhlSlice   *slice = linitial(run->slices);

	slice->in_flight = false;
	run->pages_held--;
	run->pass.total = page ? ghl_json_page_total(page) : 0;
	if (page != NULL && ghl_json_page_rows(page) == run->options->page_size)
		queue_search(run, GHL_SREQ_NEWEST, NULL, 1, true);
	else
		run->planning = false;
	contacts_page(run, slice, page, as_of);
}

/*
 * The newest contact is known: split what follows the first page into
 * dateAdded slices, enough to keep every concurrent request busy and to
 * even out uneven ranges.  The first slice goes on from the first page's
 * cursor; the others start at their range.
 */
static void
contacts_newest(GhlSyncRun *run, GhlJsonPage *page)
{
	GhlSlice   *first = linitial(run->slices);
	GhlRows    *rows = ghl_rows_new(run->targets[GHL_RESOURCE_CONTACTS],
									run->options->location_id, NULL);
	int64		lo;
	int64		hi;
	int64		remaining;
	int			nslices;
	int64		width;
	int			i;
	MemoryContext oldcxt;

	Assert(first->head != NULL);
	lo = timestamp_ms(ghl_rows_time(first->head->contacts,
									ghl_rows_count(first->head->contacts) - 1,
									"date_added"));
	hi = lo;
	if (page != NULL && ghl_json_page_rows(page) > 0)
	{
		ghl_rows_add_json(rows, page, 0, true, NULL, 0);
		hi = Max(lo, timestamp_ms(ghl_rows_time(rows, 0, "date_added")));
	}
	remaining = Max(run->pass.total - run->options->page_size, 1);
	nslices = (int) Min((remaining + run->options->page_size - 1) / run->options->page_size,
						(int64) GHL_SLICES_PER_REQUEST * run->options->max_concurrency);
	nslices = Max(nslices, 1);
	width = (hi - lo) / nslices + 1;

	oldcxt = MemoryContextSwitchTo(run->cxt);
	first->state.bounded = true;
	first->state.lo = lo;
	first->state.hi = nslices == 1 ? hi : lo + width - 1;
	for (i = 1; i < nslices; i++)
	{
		GhlSlice   *slice = palloc0(sizeof(GhlSlice));

		slice->state.bounded = true;
		slice->state.lo = lo + i * width;
		slice->state.hi = i == nslices - 1 ? hi : lo + (i + 1) * width - 1;
		run->slices = lappend(run->slices, slice);
	}
	MemoryContextSwitchTo(oldcxt);

	/*
	 * The first slice's totals count from its lower bound: of the first
	 * page, only the contacts added at that very millisecond are its own.
	 */
	first->received = 0;
	for (i = 0; i < ghl_rows_count(first->head->contacts); i++)
	{
		if (timestamp_ms(ghl_rows_time(first->head->contacts, i, "date_added")) >= lo)
			first->received++;
	}
	first->head->read = first->received;
	run->planning = false;
	batch_write_ready(run, first);
	contacts_request_pages(run);
}

/*
 * A page of a slice arrived: keep its contacts as a batch and ask for the
 * children of each; ask for more pages while memory allows.
 */
static void
contacts_page(GhlSyncRun *run, GhlSlice *slice, GhlJsonPage *page,
			  TimestampTz as_of)
{
	GhlPageBatch *batch = batch_new(run, slice);
	int			nrows = page ? ghl_json_page_rows(page) : 0;
	GhlTarget  *target = run->targets[GHL_RESOURCE_CONTACTS];
	MemoryContext oldcxt = MemoryContextSwitchTo(batch->cxt);
	int64		total;
	int			i;

	batch->contacts = ghl_rows_new(target, run->options->location_id, NULL);
	for (i = 0; i < nrows; i++)
	{
		ghl_rows_add_json(batch->contacts, page, i, true, NULL, as_of);
		batch->contact_ids = lappend(batch->contact_ids,
									 ghl_rows_id(batch->contacts, i));
	}
	/*
	 * A short page ends the slice; so does reaching the number of contacts
	 * the search reports for the slice's conditions, which saves asking
	 * for an empty page.  (The first page of a full pass has no conditions
	 * yet, and totals of 10,000 and more may be capped.)
	 */
	slice->received += nrows;
	total = page ? ghl_json_page_total(page) : 0;
	batch->last = nrows < run->options->page_size ||
		((slice->state.bounded || !run->full_pass) &&
		 total > 0 && total < GHL_SEARCH_WINDOW && slice->received >= total);
	batch->read = slice->received;
	batch->cursor = nrows > 0 ? ghl_json_row_cursor(page, nrows - 1) : NULL;
	if (!batch->last && batch->cursor == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("GHL server \"%s\" returned a full page without a searchAfter cursor",
						run->options->server_name)));
	MemoryContextSwitchTo(oldcxt);

	if (batch->cursor != NULL)
		slice->next_after = MemoryContextStrdup(run->cxt, batch->cursor);
	if (batch->last)
		slice->received_all = true;
	run->pages_held++;
	batch_request_children(run, batch);
	batch_write_ready(run, slice);
	contacts_request_pages(run);
}

/*
 * Ask for the next page of every slice that has none on the way, while
 * the pages held (received, or on the way) stay within bounds.
 */
static void
contacts_request_pages(GhlSyncRun *run)
{
	ListCell   *lc;

	if (run->planning)
		return;
	foreach(lc, run->slices)
	{
		GhlSlice   *slice = lfirst(lc);

		if (run->pages_held >= run->max_pages)
			break;
		if (slice->received_all || slice->in_flight)
			continue;
		run->pages_held++;
		queue_search(run, GHL_SREQ_SLICE_PAGE, slice, run->options->page_size, false);
	}
}

/*
 * The contacts pass is complete when every slice is written.  A full pass
 * then tombstones what it did not see: contacts gone upstream, and the
 * notes (and appointments read per contact) of contacts gone or removed.
 */
static void
contacts_pass_check(GhlSyncRun *run)
{
	ListCell   *lc;
	const char *pass = run->full_pass ? "full" : "incremental";
	int			r;

	if (!run->contacts_pass || run->planning)
		return;
	foreach(lc, run->slices)
	{
		if (!((GhlSlice *) lfirst(lc))->state.done)
			return;
	}

	if (run->full_pass)
	{
		for (r = 0; r < GHL_NUM_RESOURCES; r++)
		{
			if ((r == GHL_RESOURCE_CONTACTS && run->wanted[r]) || run->child[r])
				count_gone(run, r, ghl_target_sweep(run->targets[r],
													run->options->location_id,
													run->pass.started));
		}
		/* every contact's children were read: none is pending any more */
		if (run->child[GHL_RESOURCE_NOTES] || run->child[GHL_RESOURCE_APPOINTMENTS])
			ghl_pending_done(run->options->server_name, NIL, run->pass.started);
	}
	ghl_pass_drop(run->options->server_name, pass);
	run->contacts_pass = false;
	if (!run->full_pass)
		pending_start(run);
	ghl_sync_report(run, "running", NULL, NULL);
}

/*
 * After an incremental pass, read the children of the contacts that
 * webhook events queued (ghl_fdw.sync_pending): an event of a note or an
 * appointment lacks fields only those reads return, and the pass saw only
 * contacts that changed themselves.  Batches of them are read and written
 * like pages of contacts, without the contacts.
 */
static void
pending_start(GhlSyncRun *run)
{
	const char *location = run->options->location_id;
	GhlPageBatch *batch = NULL;
	List	   *ids;
	ListCell   *lc;

	if (!run->child[GHL_RESOURCE_NOTES] && !run->child[GHL_RESOURCE_APPOINTMENTS])
		return;
	ids = ghl_pending_load(run->options->server_name, location, GHL_SYNC_MAX_PENDING);
	foreach(lc, ids)
	{
		MemoryContext oldcxt;

		if (batch == NULL)
		{
			batch = batch_new(run, NULL);
			oldcxt = MemoryContextSwitchTo(batch->cxt);
			batch->contacts = ghl_rows_new(run->targets[GHL_RESOURCE_CONTACTS],
										   location, NULL);
		}
		else
			oldcxt = MemoryContextSwitchTo(batch->cxt);
		batch->contact_ids = lappend(batch->contact_ids, pstrdup(lfirst(lc)));
		MemoryContextSwitchTo(oldcxt);
		if (list_length(batch->contact_ids) == GHL_PENDING_PER_BATCH ||
			lnext(ids, lc) == NULL)
		{
			batch_request_children(run, batch);
			batch = NULL;
		}
	}
}

/* ----------------------------------------------------------------
 * Batches: a page of contacts with their children
 * ----------------------------------------------------------------
 */

static GhlPageBatch *
batch_new(GhlSyncRun *run, GhlSlice *slice)
{
	MemoryContext cxt = AllocSetContextCreate(run->cxt, "ghl_fdw sync batch",
											  ALLOCSET_DEFAULT_SIZES);
	GhlPageBatch *batch = MemoryContextAllocZero(cxt, sizeof(GhlPageBatch));

	batch->cxt = cxt;
	batch->slice = slice;
	if (slice != NULL)
	{
		if (slice->tail)
			slice->tail->next = batch;
		else
			slice->head = batch;
		slice->tail = batch;
	}
	return batch;
}

/* Ask for the children of every contact of a batch. */
static void
batch_request_children(GhlSyncRun *run, GhlPageBatch *batch)
{
	ListCell   *lc;
	int			r;

	batch->fetched = GetCurrentTimestamp();
	for (r = GHL_RESOURCE_TASKS; r < GHL_NUM_RESOURCES; r++)
	{
		MemoryContext oldcxt;

		if (!run->child[r])
			continue;
		oldcxt = MemoryContextSwitchTo(batch->cxt);
		batch->children[r] = ghl_rows_new(run->targets[r], run->options->location_id,
										  NULL);
		MemoryContextSwitchTo(oldcxt);
		foreach(lc, batch->contact_ids)
		{
			queue_get(run, GHL_SREQ_CHILDREN, r, child_endpoints[r],
					  lfirst(lc), NULL, batch);
			batch->waiting++;
		}
	}
}

/*
 * A child list of a batch (or, for refresh_contact, the contact itself)
 * arrived: keep its rows, and write the batch once it is complete.
 */
static void
batch_child(GhlSyncRun *run, GhlSyncRequest *sreq, GhlResponse *response)
{
	GhlPageBatch *batch = sreq->batch;
	MemoryContext oldcxt;
	GhlJsonPage *page;
	int			i;

	if (sreq->kind == GHL_SREQ_CONTACT)
	{
		page = parse(run, response, GHL_EP_CONTACT_BY_ID);
		oldcxt = MemoryContextSwitchTo(batch->cxt);
		batch->contacts = ghl_rows_new(run->targets[GHL_RESOURCE_CONTACTS],
									   run->options->location_id, NULL);
		if (page != NULL)
			ghl_rows_add_json(batch->contacts, page, 0, false, NULL, sreq->queued);
		else
			batch->contact_gone = true;
		MemoryContextSwitchTo(oldcxt);
	}
	else
	{
		page = parse(run, response, child_endpoints[sreq->resource]);
		oldcxt = MemoryContextSwitchTo(batch->cxt);
		for (i = 0; page != NULL && i < ghl_json_page_rows(page); i++)
			ghl_rows_add_json(batch->children[sreq->resource], page, i, false,
							  sreq->contact_id, sreq->queued);
		MemoryContextSwitchTo(oldcxt);
	}
	if (--batch->waiting > 0)
		return;
	if (batch->slice != NULL)
	{
		batch_write_ready(run, batch->slice);
		return;
	}

	/* refresh_contact, or contacts queued by webhooks: one step each */
	batch_write(run, batch);
	ghl_pending_done(run->options->server_name, batch->contact_ids, batch->fetched);
	MemoryContextDelete(batch->cxt);
}

/*
 * Write the batches at the head of a slice that are complete, in order:
 * the slice's position may only move past pages that are written.  Then
 * see whether the pass is complete.
 */
static void
batch_write_ready(GhlSyncRun *run, GhlSlice *slice)
{
	if (run->planning)
		return;
	while (slice->head != NULL && slice->head->waiting == 0)
	{
		GhlPageBatch *batch = slice->head;

		batch_write(run, batch);
		slice->head = batch->next;
		if (slice->head == NULL)
			slice->tail = NULL;
		run->pages_held--;
		MemoryContextDelete(batch->cxt);
	}
	contacts_pass_check(run);
	contacts_request_pages(run);
}

/*
 * One step's worth of writing: a page of contacts, the children of its
 * contacts (a contact's children are replaced as a set, so a child gone
 * upstream is tombstoned here), and the position of its slice, which
 * commit together.
 */
static void
batch_write(GhlSyncRun *run, GhlPageBatch *batch)
{
	GhlSlice   *slice = batch->slice;
	const char *location = run->options->location_id;
	int			r;

	if (run->wanted[GHL_RESOURCE_CONTACTS])
	{
		if (batch->contact_gone)
			count_gone(run, GHL_RESOURCE_CONTACTS,
					   ghl_target_tombstone(run->targets[GHL_RESOURCE_CONTACTS], location,
											batch->contact_ids, batch->fetched));
		else
			write_rows(run, GHL_RESOURCE_CONTACTS, batch->contacts);
	}
	for (r = GHL_RESOURCE_TASKS; r < GHL_NUM_RESOURCES; r++)
	{
		List	   *seen = NIL;
		int			i;

		if (!run->child[r] || !run->wanted[r])
			continue;
		write_rows(run, r, batch->children[r]);
		for (i = 0; i < ghl_rows_count(batch->children[r]); i++)
			seen = lappend(seen, ghl_rows_id(batch->children[r], i));
		count_gone(run, r, ghl_target_replace_children(run->targets[r], location,
													   batch->contact_ids, seen,
													   batch->fetched));
	}
	if (slice == NULL)
		return;

	/* an incremental pass has read what webhook events queued of these */
	if (!run->full_pass &&
		(run->child[GHL_RESOURCE_NOTES] || run->child[GHL_RESOURCE_APPOINTMENTS]))
		ghl_pending_done(run->options->server_name, batch->contact_ids, batch->fetched);

	/* the slice's position, and the run's progress, move with the rows */
	slice->state.after = batch->cursor ?
		MemoryContextStrdup(run->cxt, batch->cursor) : slice->state.after;
	slice->state.done = batch->last;
	slice->state.read = batch->read;
	run->pass.pages++;
	run->pass.done += list_length(batch->contact_ids);
	for (r = 0; r < ghl_rows_count(batch->contacts); r++)
	{
		TimestampTz updated = ghl_rows_time(batch->contacts, r, "date_updated");

		if (updated > run->pass.newest_update)
			run->pass.newest_update = updated;
	}
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);
		ListCell   *lc;

		list_free(run->pass.slices);
		run->pass.slices = NIL;
		foreach(lc, run->slices)
			run->pass.slices = lappend(run->pass.slices,
									   &((GhlSlice *) lfirst(lc))->state);
		MemoryContextSwitchTo(oldcxt);
	}
	ghl_pass_save(run->options->server_name, run->full_pass ? "full" : "incremental",
				  location, run->wanted, &run->pass);
	ghl_sync_report(run, "running", NULL, NULL);
}

/* ----------------------------------------------------------------
 * The tasks pass
 * ----------------------------------------------------------------
 */

/*
 * Read every task of the location through the task search, page by page
 * (it pages by offset), resuming where a failed run stopped.
 */
static void
tasks_pass_start(GhlSyncRun *run)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

	run->tasks_pass = true;
	if (!ghl_pass_load(run->options->server_name, "tasks", run->options->location_id,
					   run->wanted, &run->tasks))
		run->tasks.started = run->started;
	MemoryContextSwitchTo(oldcxt);
	tasks_request_page(run);
}

/* Ask for the next page of tasks, from the offset the pass has reached. */
static void
tasks_request_page(GhlSyncRun *run)
{
	GhlSyncRequest *sreq = new_request(run, GHL_SREQ_TASKS_PAGE, GHL_RESOURCE_TASKS,
									   run->cxt);
	GhlRequest	request = {0};

	if (run->tasks.skip > INT_MAX - run->options->page_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("GHL server \"%s\" lists more tasks than the task search can page through",
						run->options->server_name)));
	request.method = "POST";
	request.path = psprintf(ghl_endpoint(GHL_EP_TASKS_SEARCH)->path,
							ghl_url_escape(run->options->location_id));
	request.api_version = run->options->api_version;
	request.body = ghl_json_task_search_body(NIL, run->options->page_size,
											 (int) run->tasks.skip);
	queue(run, sreq, &request);
}

/*
 * A page of tasks: write it with the new offset; a short page was the last,
 * and then the tasks the pass did not see are confirmed.
 */
static void
tasks_page(GhlSyncRun *run, GhlSyncRequest *sreq, GhlJsonPage *page)
{
	int			nrows = page ? ghl_json_page_rows(page) : 0;
	GhlRows    *rows = ghl_rows_new(run->targets[GHL_RESOURCE_TASKS],
									run->options->location_id, NULL);
	int			i;

	for (i = 0; i < nrows; i++)
		ghl_rows_add_json(rows, page, i, false, NULL, sreq->queued);
	write_rows(run, GHL_RESOURCE_TASKS, rows);
	run->tasks.skip += nrows;
	run->tasks.done += nrows;
	run->tasks.pages++;
	if (nrows < run->options->page_size)
		confirm_unseen(run, GHL_RESOURCE_TASKS, run->tasks.started, NULL);
	else
	{
		ghl_pass_save(run->options->server_name, "tasks", run->options->location_id,
					  run->wanted, &run->tasks);
		tasks_request_page(run);
	}
	ghl_sync_report(run, "running", NULL, NULL);
}

/* ----------------------------------------------------------------
 * The appointments pass, through the calendars
 * ----------------------------------------------------------------
 */

/*
 * Read the appointments of every calendar of the location within the
 * horizon (sync settings appointments_back and appointments_ahead): a few
 * requests per calendar instead of one per contact.
 */
static void
appointments_pass_start(GhlSyncRun *run)
{
	GhlSyncRequest *sreq;
	GhlRequest	request = {0};
	int64		now = timestamp_ms(run->started);

	if (run->settings.appointments_by_contact)
		return;
	run->appointments_pass = true;
	run->appointments_started = run->started;
	run->horizon_lo = now - run->settings.appointments_back_ms;
	run->horizon_hi = now + run->settings.appointments_ahead_ms;

	sreq = new_request(run, GHL_SREQ_CALENDARS, GHL_RESOURCE_APPOINTMENTS, run->cxt);
	request.method = "GET";
	request.path = psprintf("%s?locationId=%s", ghl_endpoint(GHL_EP_CALENDARS)->path,
							ghl_url_escape(run->options->location_id));
	request.api_version = ghl_endpoint(GHL_EP_CALENDARS)->api_version;
	queue(run, sreq, &request);
}

/* The calendars are known: ask for each one's events, window by window. */
static void
appointments_calendars(GhlSyncRun *run, GhlJsonPage *page)
{
	ListCell   *lc;

	foreach(lc, page ? ghl_json_page_strings(page, "id") : NIL)
	{
		const char *calendar = lfirst(lc);
		int64		lo;

		if (calendar == NULL)
			continue;
		for (lo = run->horizon_lo; lo <= run->horizon_hi; lo += GHL_APPOINTMENT_WINDOW_MS)
		{
			GhlSyncRequest *sreq = new_request(run, GHL_SREQ_WINDOW,
											   GHL_RESOURCE_APPOINTMENTS, run->cxt);
			GhlRequest	request = {0};
			int64		hi = Min(lo + GHL_APPOINTMENT_WINDOW_MS - 1, run->horizon_hi);

			request.method = "GET";
			request.path = psprintf("%s?locationId=%s&calendarId=%s&startTime=" INT64_FORMAT
									"&endTime=" INT64_FORMAT,
									ghl_endpoint(GHL_EP_CALENDAR_EVENTS)->path,
									ghl_url_escape(run->options->location_id),
									ghl_url_escape(calendar), lo, hi);
			request.api_version = ghl_endpoint(GHL_EP_CALENDAR_EVENTS)->api_version;
			queue(run, sreq, &request);
			run->windows_pending++;
		}
	}
	if (run->windows_pending == 0)
		confirm_unseen(run, GHL_RESOURCE_APPOINTMENTS, run->appointments_started,
					   "start_time");
}

/*
 * One calendar window: write its appointments (keeping the per-contact
 * "status" the events endpoint lacks); after the last window, confirm the
 * appointments of the horizon that no window listed.
 */
static void
appointments_window(GhlSyncRun *run, GhlSyncRequest *sreq, GhlJsonPage *page)
{
	GhlRows    *rows = ghl_rows_new(run->targets[GHL_RESOURCE_APPOINTMENTS],
									run->options->location_id,
									calendar_absent_fields);
	int			i;

	for (i = 0; page != NULL && i < ghl_json_page_rows(page); i++)
		ghl_rows_add_json(rows, page, i, false, NULL, sreq->queued);
	write_rows(run, GHL_RESOURCE_APPOINTMENTS, rows);
	if (--run->windows_pending == 0)
		confirm_unseen(run, GHL_RESOURCE_APPOINTMENTS, run->appointments_started,
					   "start_time");
	ghl_sync_report(run, "running", NULL, NULL);
}

/* ----------------------------------------------------------------
 * Confirming what a pass did not see
 * ----------------------------------------------------------------
 */

/*
 * A pass that read by offset (tasks) or within a window (appointments)
 * has completed.  A record it did not see is gone, or moved out of its
 * view while it read: ask for each one by id before tombstoning it.
 * Beyond GHL_SYNC_MAX_CONFIRMATIONS (a mass deletion) they are tombstoned
 * as the pass saw them.
 */
static void
confirm_unseen(GhlSyncRun *run, GhlResourceKind resource, TimestampTz started,
			   const char *window_column)
{
	List	   *unseen;
	ListCell   *lc;

	unseen = ghl_target_unseen(run->targets[resource], run->options->location_id,
							   started, window_column,
							   ms_timestamp(run->horizon_lo),
							   ms_timestamp(run->horizon_hi));
	if (list_length(unseen) > GHL_SYNC_MAX_CONFIRMATIONS)
	{
		List	   *ids = NIL;

		foreach(lc, unseen)
			ids = lappend(ids, linitial(lfirst(lc)));
		count_gone(run, resource, ghl_target_tombstone(run->targets[resource],
													   run->options->location_id,
													   ids, GetCurrentTimestamp()));
		unseen = NIL;
	}
	foreach(lc, unseen)
	{
		const char *id = linitial(lfirst(lc));
		const char *contact = lsecond(lfirst(lc));

		if (resource == GHL_RESOURCE_TASKS && contact == NULL)
		{
			mark_gone(run, resource, id);
			continue;
		}
		queue_get(run, GHL_SREQ_CONFIRM, resource,
				  resource == GHL_RESOURCE_TASKS ? GHL_EP_TASK_BY_ID : GHL_EP_APPOINTMENT_BY_ID,
				  resource == GHL_RESOURCE_TASKS ? contact : NULL, id, NULL);
		run->confirming[resource]++;
	}
	if (run->confirming[resource] == 0)
		confirmations_done(run, resource);
}

/* An answer about one unseen record: still there (write it), or gone. */
static void
confirmation(GhlSyncRun *run, GhlSyncRequest *sreq, GhlResponse *response)
{
	GhlResourceKind resource = sreq->resource;
	GhlJsonPage *page = parse(run, response,
							  resource == GHL_RESOURCE_TASKS ? GHL_EP_TASK_BY_ID :
							  GHL_EP_APPOINTMENT_BY_ID);

	if (page == NULL)
		mark_gone(run, resource, sreq->id);
	else
	{
		GhlRows    *rows = ghl_rows_new(run->targets[resource], run->options->location_id,
										resource == GHL_RESOURCE_APPOINTMENTS ?
										calendar_absent_fields : NULL);

		ghl_rows_add_json(rows, page, 0, false, NULL, sreq->queued);
		write_rows(run, resource, rows);
	}
	if (--run->confirming[resource] == 0)
		confirmations_done(run, resource);
}

/* Remember a record confirmed gone, for the run's lifetime. */
static void
mark_gone(GhlSyncRun *run, GhlResourceKind resource, const char *id)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

	run->gone[resource] = lappend(run->gone[resource], pstrdup(id));
	MemoryContextSwitchTo(oldcxt);
}

/* Every unseen record is accounted for: tombstone the gone ones. */
static void
confirmations_done(GhlSyncRun *run, GhlResourceKind resource)
{
	count_gone(run, resource, ghl_target_tombstone(run->targets[resource],
												   run->options->location_id,
												   run->gone[resource],
												   GetCurrentTimestamp()));
	if (resource == GHL_RESOURCE_TASKS)
	{
		ghl_pass_drop(run->options->server_name, "tasks");
		run->tasks_pass = false;
	}
	else
		run->appointments_pass = false;
	ghl_sync_report(run, "running", NULL, NULL);
}

/* ----------------------------------------------------------------
 * Helpers
 * ----------------------------------------------------------------
 */

/* Upsert rows of a resource, counting and announcing what changed. */
static void
write_rows(GhlSyncRun *run, GhlResourceKind resource, GhlRows *rows)
{
	List	   *changed = ghl_target_upsert(run->targets[resource], rows);

	run->upserted[resource] += list_length(changed);
	if (resource == GHL_RESOURCE_APPOINTMENTS)
		notify_appointments(run, changed);
}

/* Count and announce rows tombstoned. */
static void
count_gone(GhlSyncRun *run, GhlResourceKind resource, List *gone)
{
	run->deleted[resource] += list_length(gone);
	if (resource == GHL_RESOURCE_APPOINTMENTS)
		notify_appointments(run, gone);
}

/*
 * Tell reminder jobs listening on ghl_fdw_appointments which appointment
 * rows changed, in chunks that keep each payload well under NOTIFY's
 * 8000-byte limit.  Delivered when the step commits.
 */
static void
notify_appointments(GhlSyncRun *run, List *ids)
{
	StringInfoData payload;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&payload);
	foreach(lc, ids)
	{
		if (n == 0)
		{
			resetStringInfo(&payload);
			appendStringInfoString(&payload, "{\"server\": ");
			escape_json(&payload, run->options->server_name);
			appendStringInfo(&payload, ", \"run_id\": " INT64_FORMAT ", \"ids\": [",
							 run->run_id);
		}
		else
			appendStringInfoString(&payload, ", ");
		escape_json(&payload, lfirst(lc));
		if (++n == GHL_NOTIFY_IDS || lnext(ids, lc) == NULL)
		{
			appendStringInfoString(&payload, "]}");
			ghl_notify("ghl_fdw_appointments", payload.data);
			n = 0;
		}
	}
}

/* A timestamp in epoch milliseconds, as the API counts. */
static int64
timestamp_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

static TimestampTz
ms_timestamp(int64 ms)
{
	return ms * 1000 - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}

