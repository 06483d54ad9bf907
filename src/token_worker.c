/*-------------------------------------------------------------------------
 *
 * token_worker.c
 *		  A short-lived background worker that refreshes one user mapping's
 *		  OAuth token in a transaction of its own.
 *
 * HighLevel's refresh tokens are single use: the answer to a refresh holds
 * the only copy of the next one.  If it were written in the transaction of
 * the query that needed a token, a ROLLBACK, a cancel or a crashed backend
 * would lose it and break the installation.  So the backend hands the job
 * to a worker that takes a per-mapping lock (single flight: concurrent
 * backends never spend the same refresh token), re-reads the store, asks
 * the token endpoint only if the stored token is still unusable, and
 * commits the answer before handing the access token back through dynamic
 * shared memory.  The backend waits interruptibly; if it goes away, the
 * worker still commits.
 *
 * IDENTIFICATION
 *		  src/token_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* The job and its answer, in a DSM segment shared by backend and worker. */
typedef struct GhlTokenJob
{
	/* set by the backend */
	Oid			dboid;
	Oid			owner;			/* the worker connects as the store's owner */
	Oid			serverid;
	Oid			userid;
	bool		agency;			/* the Company token itself is wanted */
	char		rejected[GHL_TOKEN_MAX];	/* access token the API refused */

	/* set by the worker */
	bool		done;
	int			sqlerrcode;		/* 0 on success */
	char		message[1024];
	char		detail[1024];
	char		hint[1024];
	char		access_token[GHL_TOKEN_MAX];
	TimestampTz expires_at;
	char		scopes[GHL_TOKEN_MAX];
	TimestampTz last_refresh;
	char		company_id[256];
} GhlTokenJob;

/*
 * What the worker runs with, whatever ALTER DATABASE or ALTER ROLE ... SET
 * gave its connection: the owner of a database need not be a superuser,
 * and must not get to run code as the store's owner (search_path), make a
 * refresh token get lost (a response limit below the size of the answer,
 * a commit that is not flushed) or cut refreshes short (timeouts, which
 * also mean nothing to a worker that runs no statements of a client).
 * The store is re-read once the lock is granted, which needs a snapshot
 * per statement, and written.
 */
static const struct
{
	const char *name;
	const char *value;
}			worker_settings[] =
{
	{"search_path", "pg_catalog, pg_temp"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_read_only", "off"},
	{"lock_timeout", "0"},
	{"statement_timeout", "0"},
	{"synchronous_commit", "on"},
	{"ghl_fdw.max_response_bytes", "64MB"},
};

/* Copy a string into a fixed buffer of the job; "" for NULL. */
static void
job_copy(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

/*
 * Save the token and commit at once, then go on in a new transaction: from
 * here on the new refresh token survives whatever happens next.  The
 * worker's memory context, which holds the token, outlives the commit;
 * the transaction's memory does not.
 */
static void
commit_token(Oid umid, GhlToken *token)
{
	MemoryContext cxt = CurrentMemoryContext;

	ghl_store_write(umid, token);
	PopActiveSnapshot();
	CommitTransactionCommand();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
}

/*
 * Read a mapping's stored tokens under its lock; tokens grown from other
 * seed credentials (first use, or ALTER USER MAPPING brought new ones)
 * give way to the seed.
 */
static void
read_token(GhlOptions *options, GhlToken *token)
{
	char	   *fingerprint = ghl_auth_seed_fingerprint(options);

	if (!ghl_store_read(options->umid, token) ||
		token->seed_fingerprint == NULL ||
		strcmp(token->seed_fingerprint, fingerprint) != 0)
	{
		memset(token, 0, sizeof(GhlToken));
		token->seed_fingerprint = fingerprint;
		token->refresh_token = options->refresh_token;
	}
}

/*
 * Ask the token endpoint, committing a rotated refresh token before
 * anything else of the answer is looked at, then the rest.
 */
static void
renew_grant(GhlConnection *conn, GhlOptions *options, GhlToken *token)
{
	GhlTokenResponse answer;

	ghl_auth_grant(conn, options, token, &answer);
	if (options->auth_mode == GHL_AUTH_REFRESH_TOKEN)
		commit_token(options->umid, token);
	ghl_auth_accept_grant(options, token, &answer);
	commit_token(options->umid, token);
}

/*
 * A location server's token, bought with the Company token of the agency
 * mapping (options->agency_serverid).  The caller holds the location
 * mapping's lock; the agency mapping's lock is taken only while its
 * Company token is checked and, if need be, renewed, so the agency's
 * refresh token has one lineage and many location servers renew it once.
 * A refused location token casts doubt on the Company token only when it
 * was bought with the Company token still stored (the same expiry):
 * after another location has renewed it, buying is enough.  Neither the
 * Company token nor a refresh token is stored with the location's.
 */
static void
derive_location_token(GhlTokenJob *job, GhlOptions *options, GhlToken *token)
{
	GhlOptions *agency = ghl_get_options(options->agency_serverid, job->userid);
	GhlConnection *conn = ghl_get_connection(agency);
	GhlOptions	buyer = *agency;
	GhlToken	company;
	LOCKTAG		tag;

	ghl_store_lock(agency->umid, GHL_STORE_LOCK_REFRESH, &tag);
	read_token(agency, &company);
	if (!ghl_auth_agency_usable(&company) ||
		(job->rejected[0] != '\0' &&
		 token->agency_expires_at == company.agency_expires_at))
		renew_grant(conn, agency, &company);
	ghl_store_unlock(&tag);

	/* the request goes to the agency's API, errors name the location server */
	buyer.location_id = options->location_id;
	buyer.server_name = options->server_name;
	token->agency_token = company.agency_token;
	token->company_id = company.company_id;
	token->user_type = company.user_type;
	ghl_auth_location_token(conn, &buyer, token);
	token->refresh_token = NULL;	/* the seed, in read_token() */
	token->agency_token = NULL;
	token->agency_expires_at = company.agency_expires_at;
	commit_token(options->umid, token);
}

/*
 * The worker's job proper: under the lock, reuse what another worker has
 * just stored, or ask the token endpoint and commit its answer.  A job
 * for the Company token itself (job->agency) renews that one only.
 */
static void
obtain_token(GhlTokenJob *job)
{
	GhlOptions *options = ghl_get_options(job->serverid, job->userid);
	bool		company = strcmp(options->user_type, "Company") == 0;
	GhlToken	token;
	LOCKTAG		tag;
	const char *handed;

	/*
	 * Single flight, for the rest of this process: the worker exits right
	 * after its last commit, and the commit that saves a rotated refresh
	 * token must not release the lock early.
	 */
	ghl_store_lock(options->umid, GHL_STORE_LOCK_REFRESH, &tag);
	read_token(options, &token);

	if (job->agency)
	{
		if (!ghl_auth_agency_usable(&token))
			renew_grant(ghl_get_connection(options), options, &token);
	}
	else if (ghl_auth_token_usable(options, &token, job->rejected))
	{
		/* another worker has just renewed it */
	}
	else if (OidIsValid(options->agency_serverid))
		derive_location_token(job, options, &token);
	else
	{
		GhlConnection *conn = ghl_get_connection(options);

		/*
		 * A location token the API refused casts doubt on the Company token
		 * it was bought with (both are revoked together): renew both.
		 */
		if (!company || !ghl_auth_agency_usable(&token) ||
			job->rejected[0] != '\0')
			renew_grant(conn, options, &token);
		if (company)
		{
			ghl_auth_location_token(conn, options, &token);
			commit_token(options->umid, &token);
		}
	}

	handed = job->agency ? token.agency_token : token.access_token;
	if (strlen(handed) >= sizeof(job->access_token) ||
		(token.scopes && strlen(token.scopes) >= sizeof(job->scopes)) ||
		(token.company_id && strlen(token.company_id) >= sizeof(job->company_id)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("token, scope list or company id from GHL server \"%s\" is too long",
						options->server_name)));
	job_copy(job->access_token, sizeof(job->access_token), handed);
	job_copy(job->scopes, sizeof(job->scopes), token.scopes);
	job_copy(job->company_id, sizeof(job->company_id), token.company_id);
	job->expires_at = job->agency ? token.agency_expires_at : token.expires_at;
	job->last_refresh = token.last_refresh;
}

/*
 * At exit, release the single-flight lock, held at session level: only an
 * aborted transaction releases such locks by itself, and the worker may
 * end outside one, after its last commit or when terminated between two.
 */
static void
release_locks(int code, Datum arg)
{
	LockReleaseAll(DEFAULT_LOCKMETHOD, true);
}

/*
 * Entry point of the worker.  Every error is caught and handed to the
 * backend, which raises it as its own; the worker itself exits quietly.
 */
void
ghl_token_worker_main(Datum arg)
{
	dsm_segment *seg;
	GhlTokenJob *job;
	int			i;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the backend gave up before we started */
	job = (GhlTokenJob *) dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(job->dboid, job->owner, 0);
	before_shmem_exit(release_locks, (Datum) 0);
	for (i = 0; i < lengthof(worker_settings); i++)
		SetConfigOption(worker_settings[i].name, worker_settings[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_activity(STATE_RUNNING, "ghl_fdw token refresh");

	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		/* what obtain_token() keeps must survive its commits */
		MemoryContextSwitchTo(AllocSetContextCreate(TopMemoryContext,
													"ghl_fdw token refresh",
													ALLOCSET_DEFAULT_SIZES));
		obtain_token(job);
		PopActiveSnapshot();
		CommitTransactionCommand();
		job->sqlerrcode = 0;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		job->sqlerrcode = edata->sqlerrcode;
		job_copy(job->message, sizeof(job->message), edata->message);
		job_copy(job->detail, sizeof(job->detail), edata->detail);
		job_copy(job->hint, sizeof(job->hint), edata->hint);
		job->access_token[0] = '\0';
	}
	PG_END_TRY();

	pg_write_barrier();
	job->done = true;
	dsm_detach(seg);
	proc_exit(0);
}

/*
 * Run a worker for this mapping and wait for it: the wait ends on cancel
 * and statement_timeout like any other, while the worker finishes and
 * commits regardless.  On success *token holds the access token (the
 * Company token itself when agency is set), its expiry, scopes and
 * company; a failure of the worker is raised here.
 */
void
ghl_token_worker_run(GhlOptions *options, const char *rejected, bool agency,
					 GhlToken *token)
{
	dsm_segment *seg;
	GhlTokenJob *job;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;

	seg = dsm_create(sizeof(GhlTokenJob), 0);
	job = (GhlTokenJob *) dsm_segment_address(seg);
	memset(job, 0, sizeof(GhlTokenJob));
	job->dboid = MyDatabaseId;
	job->owner = ghl_store_owner();
	job->serverid = options->serverid;
	job->userid = options->userid;
	job->agency = agency;
	job_copy(job->rejected, sizeof(job->rejected), rejected);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ghl_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ghl_token_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ghl_fdw token refresh for %s",
			 options->server_name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ghl_fdw token refresh");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a background worker to refresh the token for GHL server \"%s\"",
						options->server_name),
				 errhint("Raise max_worker_processes.")));

	status = WaitForBackgroundWorkerShutdown(handle);
	pg_read_barrier();
	if (status != BGWH_STOPPED || !job->done)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("token refresh worker for GHL server \"%s\" ended without an answer",
						options->server_name),
				 errhint("See the server log.")));
	if (job->sqlerrcode != 0)
		ereport(ERROR,
				(errcode(job->sqlerrcode),
				 errmsg("%s", job->message),
				 job->detail[0] ? errdetail("%s", job->detail) : 0,
				 job->hint[0] ? errhint("%s", job->hint) : 0));

	memset(token, 0, sizeof(GhlToken));
	token->access_token = pstrdup(job->access_token);
	token->scopes = pstrdup(job->scopes);
	token->company_id = pstrdup(job->company_id);
	token->expires_at = job->expires_at;
	token->last_refresh = job->last_refresh;
	explicit_bzero(job->access_token, sizeof(job->access_token));
	explicit_bzero(job->rejected, sizeof(job->rejected));
	dsm_detach(seg);
}
