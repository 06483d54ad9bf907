/*-------------------------------------------------------------------------
 *
 * sync_worker.c
 *		  The SQL entry points of sync, and where their runs execute.
 *
 * A run commits its steps (sync.c), which a function cannot do: so
 * ghl_fdw.sync() hands the run to a background worker and waits for it,
 * then returns the run's ledger rows.  The worker connects as the
 * extension's owner (a role that may log in) and acts as the caller, in a
 * local user id context that forbids SET ROLE, so it has exactly the
 * caller's rights.  Cancelling the caller, or its statement_timeout,
 * cancels the worker, which records how far it got; if the caller goes
 * away, so does the run.
 *
 * The procedure ghl_fdw.run_sync(), which pg_cron jobs call, runs the same
 * steps in place and commits between them, so no transaction of a
 * scheduled sync stays open; a failed run raises an error after its
 * ledger rows are saved, so the job is recorded as failed.
 * refresh_contact() runs its one step in the caller's transaction.
 *
 * IDENTIFICATION
 *		  src/sync_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

/* how long a cancelled caller waits for its worker to record the failure */
#define GHL_SYNC_STOP_WAIT_MS	10000

/* A run handed to a worker, in a DSM segment shared with the caller. */
typedef struct GhlSyncJob
{
	/* set by the caller */
	Oid			dboid;
	Oid			owner;			/* the worker connects as this role */
	Oid			userid;			/* ... and acts as this one */
	Oid			serverid;
	int64		run_id;
	bool		resources[GHL_NUM_RESOURCES];
	bool		full;
	Latch	   *caller_latch;	/* set when the answer is in */

	/* set by the worker */
	pid_t		pid;
	bool		done;			/* the run's answer is in */
	int			sqlerrcode;		/* the run could not start; 0 if it did */
	char		message[1024];
	char		detail[1024];
	char		hint[1024];
} GhlSyncJob;

PG_FUNCTION_INFO_V1(ghl_fdw_sync);
PG_FUNCTION_INFO_V1(ghl_fdw_run_sync);
PG_FUNCTION_INFO_V1(ghl_fdw_refresh_contact);

/*
 * The server a sync names: a ghl_fdw server the caller may use, and for
 * which it has a user mapping.  Every entry point starts here, so that a
 * role learns nothing of servers it was not granted.
 */
Oid
ghl_sync_server(text *name)
{
	char	   *servername = text_to_cstring(name);
	ForeignServer *server = GetForeignServerByName(servername, true);
	AclResult	aclresult;

	if (server == NULL ||
		strcmp(GetForeignDataWrapper(server->fdwid)->fdwname, "ghl_fdw") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("ghl_fdw server \"%s\" does not exist", servername),
				 errhint("CREATE SERVER ... FOREIGN DATA WRAPPER ghl_fdw first.")));
	aclresult = pg_foreign_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, servername);
	(void) ghl_get_options(server->serverid, GetUserId());	/* the mapping */
	return server->serverid;
}

/* ghl_sync_server() of a function's first argument, server_name */
Oid
ghl_sync_server_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server_name must not be NULL")));
	return ghl_sync_server(PG_GETARG_TEXT_PP(0));
}

/*
 * The resources a call names (NULL: all), checked, as one flag per
 * resource.
 */
static void
sync_resources(ArrayType *array, bool *wanted)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			r;

	memset(wanted, array == NULL, sizeof(bool) * GHL_NUM_RESOURCES);
	if (array == NULL)
		return;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name = nulls[i] ? "" : TextDatumGetCString(elems[i]);

		for (r = 0; r < GHL_NUM_RESOURCES; r++)
		{
			if (strcmp(name, ghl_sync_resource_name(r)) == 0)
				break;
		}
		if (r == GHL_NUM_RESOURCES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid sync resource \"%s\"", name),
					 errhint("Resources are contacts, tasks, notes and appointments; NULL means all.")));
		wanted[r] = true;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid sync resource \"\""),
				 errhint("Resources are contacts, tasks, notes and appointments; NULL means all.")));
}

/*
 * The arguments of sync() and run_sync(), (server_name, resources, full),
 * checked: the server's OID is returned, the resources and "full" are
 * set.
 */
static Oid
sync_arguments(FunctionCallInfo fcinfo, bool *resources, bool *full)
{
	Oid			serverid = ghl_sync_server_arg(fcinfo);

	sync_resources(PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1), resources);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("full must not be NULL")));
	*full = PG_GETARG_BOOL(2);
	return serverid;
}

/*
 * Whether this backend runs a pg_cron job (as a background worker, or as
 * a connection pg_cron opened): a failed run must then fail the job.
 */
static bool
in_cron_job(void)
{
	const char *appname = GetConfigOption("application_name", true, false);

	return (MyBgworkerEntry != NULL &&
			strcmp(MyBgworkerEntry->bgw_library_name, "pg_cron") == 0) ||
		(appname != NULL && strcmp(appname, "pg_cron") == 0);
}

/* Raise the failure of a run whose ledger rows are saved. */
static void pg_attribute_noreturn()
sync_failed(Oid serverid, int64 run_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("sync of GHL server \"%s\" failed",
					GetForeignServer(serverid)->servername),
			 errdetail("%s", ghl_ledger_error(run_id)),
			 errhint("The ledger ghl_fdw.sync_runs has the rows of run " INT64_FORMAT
					 "; the next run resumes where this one stopped.", run_id)));
}

/* ----------------------------------------------------------------
 * ghl_fdw.sync(): a worker runs it, the caller waits
 * ----------------------------------------------------------------
 */

/*
 * If the caller goes away while its worker runs (the caller was
 * terminated), stop the worker too.
 */
static void
sync_job_detach(dsm_segment *seg, Datum arg)
{
	GhlSyncJob *job = (GhlSyncJob *) DatumGetPointer(arg);

	pg_read_barrier();
	if (!job->done && job->pid != 0)
		kill(job->pid, SIGINT);
}

/*
 * Stop a worker whose caller was cancelled: cancel it, and give it a few
 * seconds to record how far it got.  Interrupts are held: the caller is
 * already on its way out with an error.
 */
static void
sync_job_stop(GhlSyncJob *job, BackgroundWorkerHandle *handle)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  GHL_SYNC_STOP_WAIT_MS);
	pid_t		pid;

	HOLD_INTERRUPTS();
	pg_read_barrier();
	if (job->pid != 0)
		kill(job->pid, SIGINT);
	while (GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED &&
		   GetCurrentTimestamp() < end)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	RESUME_INTERRUPTS();
}

/*
 * Wait until the worker has answered (it may go on to refresh statistics,
 * see ghl_sync_analyze_later()) or has stopped without answering.
 */
static void
sync_job_wait(GhlSyncJob *job, BackgroundWorkerHandle *handle, Oid serverid)
{
	for (;;)
	{
		pid_t		pid;

		pg_read_barrier();
		if (job->done)
			return;
		switch (GetBackgroundWorkerPid(handle, &pid))
		{
			case BGWH_STOPPED:
				return;
			case BGWH_POSTMASTER_DIED:
				ereport(ERROR,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("the server shut down while syncing GHL server \"%s\"",
								GetForeignServer(serverid)->servername)));
				break;
			default:
				break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 WAIT_EVENT_BGWORKER_SHUTDOWN);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Run a sync in a background worker and wait for it.  A failure to start
 * the run at all is raised here as the worker's error.
 */
static void
sync_in_worker(Oid serverid, int64 run_id, const bool *resources, bool full)
{
	dsm_segment *seg = dsm_create(sizeof(GhlSyncJob), 0);
	GhlSyncJob *job = (GhlSyncJob *) dsm_segment_address(seg);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(job, 0, sizeof(GhlSyncJob));
	job->dboid = MyDatabaseId;
	job->owner = ghl_store_owner();
	job->userid = GetUserId();
	job->serverid = serverid;
	job->run_id = run_id;
	memcpy(job->resources, resources, sizeof(job->resources));
	job->full = full;
	job->caller_latch = MyLatch;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ghl_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ghl_sync_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ghl_fdw sync of %s",
			 GetForeignServer(serverid)->servername);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ghl_fdw sync");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a background worker to sync GHL server \"%s\"",
						GetForeignServer(serverid)->servername),
				 errhint("Raise max_worker_processes, or run the sync with CALL ghl_fdw.run_sync(...).")));
	on_dsm_detach(seg, sync_job_detach, PointerGetDatum(job));

	PG_TRY();
	{
		sync_job_wait(job, handle, serverid);
	}
	PG_CATCH();
	{
		sync_job_stop(job, handle);
		PG_RE_THROW();
	}
	PG_END_TRY();

	pg_read_barrier();
	if (!job->done)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("the worker syncing GHL server \"%s\" ended without an answer",
						GetForeignServer(serverid)->servername),
				 errhint("See the server log.")));
	if (job->sqlerrcode != 0)
		ereport(ERROR,
				(errcode(job->sqlerrcode),
				 errmsg("%s", job->message),
				 job->detail[0] ? errdetail("%s", job->detail) : 0,
				 job->hint[0] ? errhint("%s", job->hint) : 0));
	dsm_detach(seg);
}

/*
 * ghl_fdw.sync(server_name, resources, full): run a sync and return its
 * ledger rows, one per resource.  A failed run returns its "failed" rows,
 * except in a pg_cron job, where it fails the job.
 */
Datum
ghl_fdw_sync(PG_FUNCTION_ARGS)
{
	Oid			serverid;
	bool		resources[GHL_NUM_RESOURCES];
	bool		full;
	int64		run_id;

	serverid = sync_arguments(fcinfo, resources, &full);
	run_id = ghl_ledger_next_run_id();

	sync_in_worker(serverid, run_id, resources, full);

	InitMaterializedSRF(fcinfo, 0);
	if (ghl_ledger_rows(run_id, ((ReturnSetInfo *) fcinfo->resultinfo)->setResult,
						((ReturnSetInfo *) fcinfo->resultinfo)->setDesc) &&
		in_cron_job())
		sync_failed(serverid, run_id);
	return (Datum) 0;
}

/*
 * The worker: connect, act as the caller, run the sync in transactions of
 * its own.  A failure of the run is in the ledger; only a failure to
 * start it goes back to the caller through the job.
 */
void
ghl_sync_worker_main(Datum arg)
{
	dsm_segment *seg;
	GhlSyncJob *job;

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller gave up before we started */
	job = (GhlSyncJob *) dsm_segment_address(seg);
	job->pid = MyProcPid;
	pg_write_barrier();

	BackgroundWorkerInitializeConnectionByOid(job->dboid, job->owner, 0);

	/*
	 * Whatever the role's or database's settings: names resolve in
	 * pg_catalog only, steps see each other's commits, may write, and do
	 * not wait for a lock forever (a caller holding one in its open
	 * transaction would otherwise wait for its own worker).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "60s", PGC_SUSET, PGC_S_SESSION);
	SetUserIdAndSecContext(job->userid, SECURITY_LOCAL_USERID_CHANGE);
	pgstat_report_activity(STATE_RUNNING, "ghl_fdw sync");

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		(void) ghl_sync_execute(GHL_HOST_WORKER, job->serverid, job->run_id,
								job->resources, job->full, NULL);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		job->sqlerrcode = edata->sqlerrcode;
		strlcpy(job->message, edata->message ? edata->message : "", sizeof(job->message));
		strlcpy(job->detail, edata->detail ? edata->detail : "", sizeof(job->detail));
		strlcpy(job->hint, edata->hint ? edata->hint : "", sizeof(job->hint));
	}
	PG_END_TRY();

	pg_write_barrier();
	job->done = true;
	SetLatch(job->caller_latch);

	pgstat_report_activity(STATE_RUNNING, "ghl_fdw sync: statistics");
	ghl_sync_analyze_later();
	dsm_detach(seg);
	proc_exit(0);
}

/* ----------------------------------------------------------------
 * ghl_fdw.run_sync(): a procedure that commits between steps
 * ----------------------------------------------------------------
 */

/*
 * CALL ghl_fdw.run_sync(server_name, resources, full): the sync run in
 * place, committing step by step; a failed run raises an error once its
 * ledger rows are saved.  What pg_cron jobs made by schedule_sync call.
 */
Datum
ghl_fdw_run_sync(PG_FUNCTION_ARGS)
{
	Oid			serverid;
	bool		resources[GHL_NUM_RESOURCES];
	bool		full;
	int64		run_id;
	bool		ok;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		((CallContext *) fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("ghl_fdw.run_sync() must be called with CALL outside a transaction block"),
				 errhint("Use SELECT * FROM ghl_fdw.sync(...) inside a transaction.")));
	serverid = sync_arguments(fcinfo, resources, &full);
	run_id = ghl_ledger_next_run_id();

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ok = ghl_sync_execute(GHL_HOST_PROCEDURE, serverid, run_id, resources, full, NULL);
	SPI_finish();
	if (!ok)
		sync_failed(serverid, run_id);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * ghl_fdw.refresh_contact(): one contact now
 * ----------------------------------------------------------------
 */

/*
 * Pull one contact with its tasks, notes and appointments into the Rankr
 * tables, in the caller's transaction (inside a subtransaction of its
 * own).  A failure is recorded in the ledger; it is returned as
 * *edata_out when that is given, else raised.  Returns the run id.
 */
int64
ghl_sync_refresh(Oid serverid, const char *contact_id, ErrorData **edata_out)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		all[GHL_NUM_RESOURCES] = {true, true, true, true};
	int64		run_id = ghl_ledger_next_run_id();

	if (edata_out)
		*edata_out = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		(void) ghl_sync_execute(GHL_HOST_TRANSACTION, serverid, run_id, all,
								false, contact_id);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		ghl_sync_record_failure(serverid, run_id, "contact", edata);
		if (edata_out == NULL)
			ReThrowError(edata);
		*edata_out = edata;
	}
	PG_END_TRY();
	return run_id;
}

/*
 * Record in the ledger a run of mode "contact" that failed before it could
 * record anything itself (its own rows went with its subtransaction).
 */
void
ghl_sync_record_failure(Oid serverid, int64 run_id, const char *mode,
						ErrorData *edata)
{
	bool		all[GHL_NUM_RESOURCES] = {true, true, true, true};
	int64		zero[GHL_NUM_RESOURCES] = {0};
	ForeignServer *server = GetForeignServer(serverid);

	ghl_ledger_start(run_id, server->servername,
					 ghl_get_options(serverid, GetUserId())->location_id,
					 mode, all, GetCurrentTimestamp(), "{}");
	ghl_ledger_update(run_id, all, zero, zero, zero, "{}", "failed",
					  psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode),
							   edata->message),
					  NULL);
}

/*
 * ghl_fdw.refresh_contact(server_name, contact_id): pull one contact with
 * its tasks, notes and appointments into the Rankr tables, in the
 * caller's transaction.  It neither waits for nor blocks a running sync.
 * A failure is recorded in the ledger and returned as "failed" rows.
 */
Datum
ghl_fdw_refresh_contact(PG_FUNCTION_ARGS)
{
	Oid			serverid;
	char	   *contact_id;
	ErrorData  *edata;
	int64		run_id;

	serverid = ghl_sync_server_arg(fcinfo);
	contact_id = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (contact_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("contact_id must not be empty")));
	run_id = ghl_sync_refresh(serverid, contact_id, &edata);

	InitMaterializedSRF(fcinfo, 0);
	(void) ghl_ledger_rows(run_id, ((ReturnSetInfo *) fcinfo->resultinfo)->setResult,
						   ((ReturnSetInfo *) fcinfo->resultinfo)->setDesc);
	return (Datum) 0;
}
