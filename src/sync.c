/*-------------------------------------------------------------------------
 *
 * sync.c
 *		  A sync run: materializing one server's records into its Rankr
 *		  tables in short, resumable steps.
 *
 * A run reads the API through the concurrent transport, every request
 * paced by the governor, and commits its progress step by step: a page of
 * contacts is written together with the children of its contacts in one
 * transaction, along with the position the run has reached.  A failed or
 * cancelled run keeps what it committed, and the next run resumes there.
 *
 * The work is organized in passes over the location, all served at once
 * by one loop over the transport:
 *   - contacts: a full pass in dateAdded slices read side by side, or an
 *     incremental pass over the contacts updated since the watermark; with
 *     the notes of each contact (and its appointments, when they are not
 *     read through the calendars);
 *   - tasks, through the location-wide task search;
 *   - appointments of every calendar within a time horizon (full runs).
 * A row is tombstoned only when a pass over its whole location completes:
 * mark and sweep, see sync_target.c.  Records a pass read by offset or
 * within a window are confirmed one by one before they are tombstoned,
 * since such a pass can miss a record that moved meanwhile.  The
 * watermark moves only when the contacts pass completes.
 *
 * This file holds a run's life: its first step, the loop that serves the
 * transport step by step, its end and its report.  The passes themselves,
 * the requests they make and what each answer does are in sync_pass.c.
 *
 * Where a run executes is its host's business (sync_worker.c): a
 * background worker for ghl_fdw.sync(), the caller for the procedure
 * ghl_fdw.run_sync() (which commits between steps), or the caller's own
 * transaction for refresh_contact.  Bookkeeping is written as the
 * extension's owner (sync_ledger.c), the Rankr tables (sync_target.c) as
 * the role that runs the sync.
 *
 * IDENTIFICATION
 *		  src/sync.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* the request rate is measured over at least this long */
#define GHL_RATE_WINDOW_MS			10000

static GhlSyncRun *run_create(GhlSyncHost host, Oid serverid, int64 run_id,
							  const bool *resources, bool full,
							  const char *contact_id);
static bool run_begin(GhlSyncRun *run);
static void run_loop(GhlSyncRun *run);
static void run_finish(GhlSyncRun *run);
static void run_fail(GhlSyncRun *run, ErrorData *edata);
static char *progress_json(GhlSyncRun *run);

/* the tables whose statistics a worker refreshes after answering, by OID */
static List *analyze_later = NIL;

/* the name of each resource, by GhlResourceKind */
static const char *const resource_names[GHL_NUM_RESOURCES] = {
	"contacts", "tasks", "notes", "appointments"
};

const char *
ghl_sync_resource_name(int resource)
{
	Assert(resource >= 0 && resource < GHL_NUM_RESOURCES);
	return resource_names[resource];
}

/* ----------------------------------------------------------------
 * A run
 * ----------------------------------------------------------------
 */

/*
 * Run a sync of a server inside a transaction that the host lets commit
 * between steps ("full" or incremental; or, with contact_id, the one
 * contact of refresh_contact).  A failure of the run itself is recorded
 * in the ledger and makes this return false; in the caller's transaction
 * it is raised instead, for the caller to record.  Returns true also when
 * the run was skipped because another one holds the location.
 */
bool
ghl_sync_execute(GhlSyncHost host, Oid serverid, int64 run_id,
				 const bool *resources, bool full, const char *contact_id)
{
	GhlSyncRun *run = run_create(host, serverid, run_id, resources, full,
								 contact_id);

	/*
	 * A worker's context at entry belongs to its first transaction, which
	 * the first step commits; the caller's contexts outlive the steps.
	 */
	MemoryContext return_cxt = host == GHL_HOST_WORKER ? TopMemoryContext :
		CurrentMemoryContext;
	bool		ok = true;

	PG_TRY();
	{
		if (run_begin(run))
		{
			run_loop(run);
			run_finish(run);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (run->multi != NULL)
			ghl_multi_finish(run->multi);
		run->multi = NULL;
		/* a run that could not even read its options has nothing to record */
		if (host == GHL_HOST_TRANSACTION || run->options == NULL)
		{
			if (run->locked)
				ghl_sync_unlock(&run->lock);
			MemoryContextSwitchTo(return_cxt);
			MemoryContextDelete(run->cxt);
			PG_RE_THROW();
		}
		MemoryContextSwitchTo(run->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		run_fail(run, edata);
		ok = false;
	}
	PG_END_TRY();

	if (run->locked)
		ghl_sync_unlock(&run->lock);
	MemoryContextSwitchTo(return_cxt);
	MemoryContextDelete(run->cxt);
	return ok;
}

/* The run's state, in a context that outlives its steps. */
static GhlSyncRun *
run_create(GhlSyncHost host, Oid serverid, int64 run_id, const bool *resources,
		   bool full, const char *contact_id)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "ghl_fdw sync run",
											  ALLOCSET_DEFAULT_SIZES);
	GhlSyncRun *run = MemoryContextAllocZero(cxt, sizeof(GhlSyncRun));

	run->cxt = cxt;
	run->iter_cxt = AllocSetContextCreate(cxt, "ghl_fdw sync answer",
										  ALLOCSET_DEFAULT_SIZES);
	run->host = host;
	run->serverid = serverid;
	run->run_id = run_id;
	memcpy(run->wanted, resources, sizeof(run->wanted));
	run->mode = contact_id ? "contact" : full ? "full" : "incremental";
	run->contact_id = contact_id ? MemoryContextStrdup(cxt, contact_id) : NULL;
	run->started = GetCurrentTimestamp();
	run->rate_since = run->started;
	return run;
}

/*
 * The first step: options and settings, the tables, the location's lock,
 * the mode, and the ledger rows that say the run is running.  Returns
 * false when another run holds the location; the ledger then says
 * "skipped".  The tables are checked before the lock is taken: a role
 * whose run is refused them (a server of another's location and schema)
 * must not hold that location's lock even briefly, or it could keep the
 * owner's runs skipped.
 */
static bool
run_begin(GhlSyncRun *run)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);
	GhlOptions *options;
	int			r;

	run->options = options = ghl_get_options(run->serverid, GetUserId());
	ghl_sync_settings(options->server_name, &run->settings);
	MemoryContextSwitchTo(oldcxt);

	/* contacts are read (for their children) even when not synced */
	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		if (run->wanted[r] || r == GHL_RESOURCE_CONTACTS)
		{
			run->targets[r] = ghl_target_open(options->sync_schema,
											  ghl_resource_by_name(resource_names[r]),
											  true, run->cxt);
			if (run->contact_id == NULL)
				ghl_target_insert_first(run->targets[r]);
		}
	}

	if (run->contact_id == NULL)
	{
		if (!ghl_sync_lock(options->sync_schema, options->location_id, &run->lock))
		{
			ghl_ledger_skipped(run->run_id, options->server_name,
							   options->location_id, run->mode, run->wanted,
							   psprintf("another sync of location %s into schema %s is running",
										options->location_id, options->sync_schema));
			ghl_sync_step_end(run);
			return false;
		}
		run->locked = true;
		if (strcmp(run->mode, "incremental") == 0)
		{
			for (r = 0; r < GHL_NUM_RESOURCES; r++)
			{
				TimestampTz watermark;

				if (!run->wanted[r])
					continue;
				watermark = ghl_state_watermark(options->server_name,
												options->location_id,
												resource_names[r]);
				if (watermark == 0)
				{
					/* a resource never synced needs everything */
					run->mode = "full";
					break;
				}
				if (run->pass.since == 0 || watermark < run->pass.since)
					run->pass.since = watermark;
			}
		}
		ghl_ledger_interrupted(options->server_name, run->run_id);
	}
	ghl_ledger_start(run->run_id, options->server_name, options->location_id,
					 run->mode, run->wanted, run->started, progress_json(run));
	ghl_sync_step_end(run);
	run->in_ledger = true;
	return true;
}

/*
 * End a step: commit what it wrote and begin the next transaction, as the
 * host allows.  In the caller's transaction everything is one step.
 */
void
ghl_sync_step_end(GhlSyncRun *run)
{
	/* the contexts of the step's transaction go with it */
	MemoryContextSwitchTo(run->cxt);
	switch (run->host)
	{
		case GHL_HOST_WORKER:
			/* statements need a snapshot to exist; each takes its own */
			PopActiveSnapshot();
			CommitTransactionCommand();
			/* now() and pg_stat_activity.xact_start are the step's */
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			break;
		case GHL_HOST_PROCEDURE:
			SPI_commit();
			break;
		case GHL_HOST_TRANSACTION:
			break;
	}
}

/*
 * Start the passes the run needs, then serve the transport until every
 * one has completed.  Each answer is handled, and what it completes is
 * written, in a step of its own.
 */
static void
run_loop(GhlSyncRun *run)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

	run->conn = ghl_get_connection(run->options);
	run->multi = ghl_multi_start(run->conn, run->options->max_concurrency,
								 &run->stats);
	MemoryContextSwitchTo(oldcxt);
	run->max_pages = Max(2, run->options->max_concurrency);

	ghl_sync_start_passes(run);
	ghl_sync_step_end(run);

	for (;;)
	{
		GhlResponse response;
		void	   *tag;
		bool		more;

		MemoryContextReset(run->iter_cxt);
		oldcxt = MemoryContextSwitchTo(run->iter_cxt);
		more = ghl_multi_next(run->multi, &response, &tag);
		if (more)
			ghl_sync_handle(run, (GhlSyncRequest *) tag, &response);
		MemoryContextSwitchTo(oldcxt);
		if (!more)
			break;
		ghl_sync_step_end(run);
	}
	MemoryContextReset(run->iter_cxt);
	ghl_multi_finish(run->multi);
	run->multi = NULL;

	if (run->contacts_pass || run->tasks_pass || run->appointments_pass)
		elog(ERROR, "sync of GHL server \"%s\" ended with a pass unfinished",
			 run->options->server_name);
}

/*
 * The last step of a run that got through: watermarks, the ledger's final
 * rows, pruning of old ledger rows and the summary notification.
 */
static void
run_finish(GhlSyncRun *run)
{
	TimestampTz watermark[GHL_NUM_RESOURCES] = {0};
	const char *server = run->options->server_name;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES && run->contact_id == NULL; r++)
	{
		TimestampTz old;

		if (!run->wanted[r])
			continue;
		old = ghl_state_watermark(server, run->options->location_id,
								  resource_names[r]);

		/*
		 * The newest update of the contacts the run read; a run that read
		 * no contacts (tasks, appointments of the calendars) covered the
		 * location as of its start.
		 */
		watermark[r] = run->contacts_pass_ran ? run->pass.newest_update : run->started;
		if (strcmp(run->mode, "incremental") == 0 && old > watermark[r])
			watermark[r] = old;
		if (watermark[r] != 0)
			ghl_state_set_watermark(server, run->options->location_id,
									resource_names[r], watermark[r]);
		if (!ghl_target_stale_statistics(run->targets[r],
										 run->upserted[r] + run->deleted[r]))
			continue;
		if (run->host == GHL_HOST_WORKER)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

			analyze_later = lappend_oid(analyze_later,
										ghl_target_relid(run->targets[r]));
			MemoryContextSwitchTo(oldcxt);
		}
		else
			ghl_target_analyze(ghl_target_relid(run->targets[r]));
	}
	ghl_sync_report(run, "succeeded", NULL, watermark);
	if (run->contact_id == NULL)
		ghl_ledger_prune(server);
	ghl_sync_step_end(run);
}

/*
 * A worker's caller has its answer once the run's last step commits; the
 * statistics its tables need come after, in transactions of the worker's
 * own (ANALYZE of a large table takes a good part of a second, and the
 * rows it reads are committed already).  The worker calls this once it
 * has answered.
 */
void
ghl_sync_analyze_later(void)
{
	ListCell   *lc;

	foreach(lc, analyze_later)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		ghl_target_analyze(lfirst_oid(lc));
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	list_free(analyze_later);
	analyze_later = NIL;
}

/*
 * The run failed: undo its unfinished step, then record in a step of its
 * own how far it got and why it failed.
 */
static void
run_fail(GhlSyncRun *run, ErrorData *edata)
{
	/* an abort releases session locks too: the location's lock is gone */
	run->locked = false;
	if (run->host == GHL_HOST_WORKER)
	{
		AbortCurrentTransaction();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	else
		SPI_rollback();

	/* a run that failed in its first step has no rows yet to say so */
	if (!run->in_ledger)
		ghl_ledger_start(run->run_id, run->options->server_name,
						 run->options->location_id, run->mode, run->wanted,
						 run->started, progress_json(run));
	ghl_sync_report(run, "failed",
		   psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode), edata->message),
		   NULL);
	ghl_sync_step_end(run);
}

/*
 * Bring the ledger up to date with the run: its counters, its progress,
 * and when it ends its status, error and watermarks, with a summary on
 * channel ghl_fdw_sync.  Long runs also show their progress in
 * pg_stat_activity.
 */
void
ghl_sync_report(GhlSyncRun *run, const char *status, const char *error,
	   const TimestampTz *watermark)
{
	char	   *progress = progress_json(run);

	ghl_ledger_update(run->run_id, run->wanted, run->upserted, run->deleted,
					  run->requests, progress, status, error, watermark);
	if (strcmp(status, "running") != 0)
	{
		StringInfoData summary;
		int			r;

		initStringInfo(&summary);
		appendStringInfo(&summary, "{\"run_id\": " INT64_FORMAT ", \"server\": ",
						 run->run_id);
		escape_json(&summary, run->options->server_name);
		appendStringInfo(&summary, ", \"mode\": \"%s\", \"status\": \"%s\", \"error\": ",
						 run->mode, status);
		if (error)
			escape_json(&summary, pnstrdup(error, 1000));
		else
			appendStringInfoString(&summary, "null");
		appendStringInfoString(&summary, ", \"resources\": {");
		for (r = 0; r < GHL_NUM_RESOURCES; r++)
		{
			if (!run->wanted[r])
				continue;
			appendStringInfo(&summary, "%s\"%s\": {\"upserted\": " INT64_FORMAT
							 ", \"deleted\": " INT64_FORMAT ", \"requests\": " INT64_FORMAT "}",
							 summary.data[summary.len - 1] == '{' ? "" : ", ",
							 resource_names[r], run->upserted[r], run->deleted[r],
							 run->requests[r]);
		}
		appendStringInfoString(&summary, "}}");
		ghl_notify("ghl_fdw_sync", summary.data);
	}
	if (run->host != GHL_HOST_TRANSACTION)
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("ghl_fdw sync of server %s (run " INT64_FORMAT "): %s",
										run->options->server_name, run->run_id,
										progress));
}

/*
 * How far the run has got, as the JSON the ledger keeps in "progress" and
 * ghl_fdw.sync_progress shows: the phase, pages and contacts done of the
 * total, requests, the recent request rate and an estimate of the time
 * left.  The total is null until the API has told it (the first page of a
 * full pass): answers come in any order, so the other passes may report
 * before it.
 */
static char *
progress_json(GhlSyncRun *run)
{
	TimestampTz now = GetCurrentTimestamp();
	long		elapsed = TimestampDifferenceMilliseconds(run->rate_since, now);
	long		running = TimestampDifferenceMilliseconds(run->started, now);
	const char *phase;
	char		total[MAXINT8LEN + 1] = "null";
	StringInfoData buf;

	if (elapsed >= GHL_RATE_WINDOW_MS || run->rate == 0)
	{
		if (elapsed > 0)
			run->rate = (double) (run->stats.requests - run->rate_base) * 1000.0 / elapsed;
		if (elapsed >= GHL_RATE_WINDOW_MS)
		{
			run->rate_since = now;
			run->rate_base = run->stats.requests;
		}
	}
	phase = run->contacts_pass ? "contacts" : run->tasks_pass ? "tasks" :
		run->appointments_pass ? "appointments" : "done";
	if (run->pass.total > 0)
		snprintf(total, sizeof(total), INT64_FORMAT, run->pass.total);

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "{\"phase\": \"%s\", \"pages\": " INT64_FORMAT
					 ", \"contacts_done\": " INT64_FORMAT
					 ", \"contacts_total\": %s"
					 ", \"tasks_done\": " INT64_FORMAT
					 ", \"requests\": " INT64_FORMAT
					 ", \"retries\": " INT64_FORMAT ", \"rate\": %.1f, \"pid\": %d",
					 phase, run->pass.pages, run->pass.done, total,
					 run->tasks.done, run->stats.requests, run->stats.retries,
					 run->rate, MyProcPid);
	if (run->contacts_pass && run->pass.done > 0 && run->pass.total > run->pass.done &&
		running > 0)
		appendStringInfo(&buf, ", \"eta_seconds\": %.0f",
						 (double) (run->pass.total - run->pass.done) *
						 (running / 1000.0) / run->pass.done);
	appendStringInfoString(&buf, "}");
	return buf.data;
}

