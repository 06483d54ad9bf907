/*-------------------------------------------------------------------------
 *
 * sync_ledger.c
 *		  The bookkeeping of sync runs: the ledger ghl_fdw.sync_runs, the
 *		  passes in progress (ghl_fdw.sync_passes), watermarks
 *		  (ghl_fdw.sync_state), settings, and the lock that keeps two runs
 *		  off one location.
 *
 * These tables belong to the extension, and a role that may only run a
 * sync must not be able to rewrite another server's ledger, watermark or
 * position: every statement here runs as the tables' owner, with
 * search_path pinned and operators qualified, so nothing of the caller's
 * can run with the owner's rights.  Users read them through row security
 * (only servers they may use).
 *
 * IDENTIFICATION
 *		  src/sync_ledger.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* the defaults of ghl_fdw.sync_settings, for a server without a row */
#define GHL_DEFAULT_OVERLAP_MS		(5 * 60 * 1000)
#define GHL_DEFAULT_HORIZON_MS		(INT64CONST(365) * 86400 * 1000)

static Oid	ledger_relid(void);
static void owner_run(const char *sql, int nargs, Oid *argtypes,
					  Datum *values, const char *nulls, int expected,
					  bool latest);
static Datum resource_array(const bool *wanted);
static int64 spi_int64(int row, int attno);
static Datum int8_array(const bool *wanted, const int64 *values);

/*
 * The ledger table's OID: its owner runs the statements here, and it
 * names the space of the sync lock.
 */
static Oid
ledger_relid(void)
{
	Oid			nspid = get_namespace_oid("ghl_fdw", false);
	Oid			relid = get_relname_relid("sync_runs", nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table ghl_fdw.sync_runs does not exist"),
				 errhint("Reinstall the ghl_fdw extension.")));
	return relid;
}

/*
 * Run one statement as the owner of the extension's tables, inside the
 * caller's SPI connection, with search_path pinned.  The caller's user and
 * security context and its search_path come back even when it fails.
 * With "latest", it reads with a snapshot taken now, whatever the
 * transaction's isolation: what another process has just committed.
 */
static void
owner_run(const char *sql, int nargs, Oid *argtypes, Datum *values,
		  const char *nulls, int expected, bool latest)
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			nestlevel;
	HeapTuple	tp;
	Oid			owner;
	int			rc;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(ledger_relid()));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for ghl_fdw.sync_runs");
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(owner, saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (latest)
		{
			SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

			if (plan == NULL)
				elog(ERROR, "could not prepare a sync bookkeeping statement");
			rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
									  InvalidSnapshot, true, false, 0);
		}
		else
			rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
		if (rc != expected)
			elog(ERROR, "sync bookkeeping statement failed: %s",
				 SPI_result_code_string(rc));
		AtEOXact_GUC(true, nestlevel);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
	}
	PG_END_TRY();
}

static void
owner_execute(const char *sql, int nargs, Oid *argtypes, Datum *values,
			  const char *nulls, int expected)
{
	owner_run(sql, nargs, argtypes, values, nulls, expected, false);
}

/* The names of the resources a run syncs, as a text[]. */
static Datum
resource_array(const bool *wanted)
{
	Datum		elems[GHL_NUM_RESOURCES];
	int			n = 0;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		if (wanted[r])
			elems[n++] = CStringGetTextDatum(ghl_sync_resource_name(r));
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* One counter per resource the run syncs, as a bigint[]. */
static Datum
int8_array(const bool *wanted, const int64 *values)
{
	Datum		elems[GHL_NUM_RESOURCES];
	int			n = 0;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		if (wanted[r])
			elems[n++] = Int64GetDatum(values[r]);
	}
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A new run id, from the ledger's sequence. */
int64
ghl_ledger_next_run_id(void)
{
	int64		run_id;
	bool		isnull;

	SPI_connect();
	owner_execute("SELECT pg_catalog.nextval('ghl_fdw.sync_run_id_seq')",
				  0, NULL, NULL, NULL, SPI_OK_SELECT);
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return run_id;
}

/* The ledger rows of a run that starts: one per resource, "running". */
void
ghl_ledger_start(int64 run_id, const char *server_name, const char *location_id,
				 const char *mode, const bool *wanted, TimestampTz started,
				 const char *progress)
{
	Oid			argtypes[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
	TEXTARRAYOID, TEXTOID};
	Datum		values[7];

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(server_name);
	values[2] = CStringGetTextDatum(location_id);
	values[3] = CStringGetTextDatum(mode);
	values[4] = TimestampTzGetDatum(started);
	values[5] = resource_array(wanted);
	values[6] = CStringGetTextDatum(progress);
	SPI_connect();
	owner_execute("INSERT INTO ghl_fdw.sync_runs (run_id, server_name, resource, mode,"
				  " status, started_at, rows_upserted, rows_deleted, requests,"
				  " location_id, progress)"
				  " SELECT $1, $2, r, $4, 'running', $5, 0, 0, 0, $3, $7::jsonb"
				  " FROM pg_catalog.unnest($6) AS r",
				  7, argtypes, values, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Bring a run's ledger rows up to date: counters and progress while it
 * runs; when it ends also its status, error and the watermark each
 * resource reached (watermark NULL: none).
 */
void
ghl_ledger_update(int64 run_id, const bool *wanted, const int64 *upserted,
				  const int64 *deleted, const int64 *requests,
				  const char *progress, const char *status, const char *error,
				  const TimestampTz *watermark)
{
	Oid			argtypes[9] = {INT8OID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZARRAYOID};
	Datum		values[9];
	char		nulls[10] = "         ";
	Datum		marks[GHL_NUM_RESOURCES];
	bool		marknulls[GHL_NUM_RESOURCES];
	int			dims[1];
	int			lbs[1] = {1};
	int			n = 0;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		if (!wanted[r])
			continue;
		marknulls[n] = watermark == NULL || watermark[r] == 0;
		marks[n++] = TimestampTzGetDatum(watermark ? watermark[r] : 0);
	}
	dims[0] = n;
	values[0] = Int64GetDatum(run_id);
	values[1] = resource_array(wanted);
	values[2] = int8_array(wanted, upserted);
	values[3] = int8_array(wanted, deleted);
	values[4] = int8_array(wanted, requests);
	values[5] = CStringGetTextDatum(progress);
	values[6] = CStringGetTextDatum(status);
	values[7] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[7] = error ? ' ' : 'n';
	values[8] = PointerGetDatum(construct_md_array(marks, marknulls, 1, dims, lbs,
												   TIMESTAMPTZOID, sizeof(TimestampTz),
												   true, TYPALIGN_DOUBLE));
	SPI_connect();
	owner_execute("UPDATE ghl_fdw.sync_runs AS r SET rows_upserted = u.upserted,"
				  " rows_deleted = u.deleted, requests = u.requests,"
				  " progress = $6::jsonb, status = $7, error = $8, watermark = u.watermark,"
				  " finished_at = CASE WHEN $7 OPERATOR(pg_catalog.<>) 'running'"
				  "   THEN pg_catalog.clock_timestamp() END"
				  " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
				  "   pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($9))"
				  "   AS u(resource, upserted, deleted, requests, watermark)"
				  " WHERE r.run_id OPERATOR(pg_catalog.=) $1"
				  "   AND r.resource OPERATOR(pg_catalog.=) u.resource",
				  9, argtypes, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
}

/*
 * Put a run's ledger rows into a tuple store of ghl_fdw.sync_runs rows,
 * in resource order.  They are read with a fresh snapshot: a worker
 * committed them after the caller's statement (or transaction) began.
 * Returns whether any of them says "failed".
 */
bool
ghl_ledger_rows(int64 run_id, Tuplestorestate *store, TupleDesc desc)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	bool		failed = false;
	uint64		i;

	values[0] = Int64GetDatum(run_id);
	SPI_connect();
	owner_run("SELECT * FROM ghl_fdw.sync_runs"
			  " WHERE run_id OPERATOR(pg_catalog.=) $1"
			  " ORDER BY pg_catalog.array_position("
			  "   '{contacts,tasks,notes,appointments}'::text[], resource)",
			  1, argtypes, values, NULL, SPI_OK_SELECT, true);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		char	   *status = SPI_getvalue(tuple, SPI_tuptable->tupdesc,
										  SPI_fnumber(SPI_tuptable->tupdesc, "status"));

		failed |= status != NULL && strcmp(status, "failed") == 0;
		tuplestore_puttuple(store, tuple);
	}
	SPI_finish();
	return failed;
}

/* The requests a run made, all resources together. */
int64
ghl_ledger_requests(int64 run_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	int64		requests;

	values[0] = Int64GetDatum(run_id);
	SPI_connect();
	owner_execute("SELECT coalesce(sum(requests), 0)::bigint FROM ghl_fdw.sync_runs"
				  " WHERE run_id OPERATOR(pg_catalog.=) $1",
				  1, argtypes, values, NULL, SPI_OK_SELECT);
	requests = spi_int64(0, 1);
	SPI_finish();
	return requests;
}

/* The error a failed run recorded, for a message. */
char *
ghl_ledger_error(int64 run_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	char	   *error = NULL;

	values[0] = Int64GetDatum(run_id);
	SPI_connect();
	owner_run("SELECT error FROM ghl_fdw.sync_runs"
			  " WHERE run_id OPERATOR(pg_catalog.=) $1 AND error IS NOT NULL LIMIT 1",
			  1, argtypes, values, NULL, SPI_OK_SELECT, true);
	if (SPI_processed > 0)
		error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	error = MemoryContextStrdup(cxt, error ? error : "(no error recorded)");
	SPI_finish();
	return error;
}

/* The ledger rows of a run that did not start: another one was running. */
void
ghl_ledger_skipped(int64 run_id, const char *server_name,
				   const char *location_id, const char *mode,
				   const bool *wanted, const char *reason)
{
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID};
	Datum		values[6];

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(server_name);
	values[2] = CStringGetTextDatum(location_id);
	values[3] = CStringGetTextDatum(mode);
	values[4] = resource_array(wanted);
	values[5] = CStringGetTextDatum(reason);
	SPI_connect();
	owner_execute("INSERT INTO ghl_fdw.sync_runs (run_id, server_name, resource, mode,"
				  " status, started_at, finished_at, error, location_id)"
				  " SELECT $1, $2, r, $4, 'skipped', pg_catalog.clock_timestamp(),"
				  " pg_catalog.clock_timestamp(), $6, $3 FROM pg_catalog.unnest($5) AS r",
				  6, argtypes, values, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Runs of the server the ledger still calls running, while this one holds
 * the location: their process ended without finishing (a crash, a
 * terminated worker).  Say so, so that status views tell the truth.
 */
void
ghl_ledger_interrupted(const char *server_name, int64 run_id)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(server_name);
	values[1] = Int64GetDatum(run_id);
	SPI_connect();
	owner_execute("UPDATE ghl_fdw.sync_runs SET status = 'failed',"
				  " finished_at = pg_catalog.clock_timestamp(),"
				  " error = '57P01: the run ended without finishing; the next run resumes it'"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND status OPERATOR(pg_catalog.=) 'running'"
				  "   AND mode OPERATOR(pg_catalog.<>) 'contact'"
				  "   AND run_id OPERATOR(pg_catalog.<>) $2",
				  2, argtypes, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/* Drop the server's ledger rows older than its keep_runs (30 days). */
void
ghl_ledger_prune(const char *server_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(server_name);
	SPI_connect();
	owner_execute("DELETE FROM ghl_fdw.sync_runs AS r"
				  " WHERE r.server_name OPERATOR(pg_catalog.=) $1"
				  "   AND r.status OPERATOR(pg_catalog.<>) 'running'"
				  "   AND r.started_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
				  "     OPERATOR(pg_catalog.-) coalesce((SELECT s.keep_runs"
				  "       FROM ghl_fdw.sync_settings AS s"
				  "       WHERE s.server_name OPERATOR(pg_catalog.=) $1), '30 days'))",
				  1, argtypes, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}

/*
 * The watermark of a server's resource, or 0 when it never synced from
 * this location: a server moved to another location must read that
 * location in full, not from where the old one had got to.
 */
TimestampTz
ghl_state_watermark(const char *server_name, const char *location_id,
					const char *resource)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	TimestampTz watermark = 0;

	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(resource);
	values[2] = CStringGetTextDatum(location_id);
	SPI_connect();
	owner_execute("SELECT watermark FROM ghl_fdw.sync_state"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND resource OPERATOR(pg_catalog.=) $2"
				  "   AND location_id OPERATOR(pg_catalog.=) $3",
				  3, argtypes, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		if (!isnull)
			watermark = DatumGetTimestampTz(d);
	}
	SPI_finish();
	return watermark;
}

void
ghl_state_set_watermark(const char *server_name, const char *location_id,
						const char *resource, TimestampTz watermark)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(resource);
	values[2] = TimestampTzGetDatum(watermark);
	values[3] = CStringGetTextDatum(location_id);
	SPI_connect();
	owner_execute("INSERT INTO ghl_fdw.sync_state (server_name, resource, watermark, location_id)"
				  " VALUES ($1, $2, $3, $4) ON CONFLICT (server_name, resource)"
				  " DO UPDATE SET watermark = EXCLUDED.watermark,"
				  " location_id = EXCLUDED.location_id",
				  4, argtypes, values, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/* A timestamp column of the current SPI row, 0 when NULL. */
static TimestampTz
spi_timestamp(int row, int attno)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  attno, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/* A bigint column of the current SPI row, 0 when NULL. */
static int64
spi_int64(int row, int attno)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  attno, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Load the pass a failed run of the server left, if it covered the same
 * location and resources (into CurrentMemoryContext).  A pass left for
 * other resources or another location cannot be resumed and is dropped.
 */
bool
ghl_pass_load(const char *server_name, const char *pass, const char *location_id,
			  const bool *wanted, GhlPassState *state)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID};
	Datum		values[4];
	bool		found;
	uint64		i;

	memset(state, 0, sizeof(GhlPassState));
	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(pass);
	values[2] = CStringGetTextDatum(location_id);
	values[3] = resource_array(wanted);

	SPI_connect();
	owner_execute("DELETE FROM ghl_fdw.sync_passes"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND pass OPERATOR(pg_catalog.=) $2"
				  "   AND (location_id OPERATOR(pg_catalog.<>) $3"
				  "        OR resources OPERATOR(pg_catalog.<>) $4)",
				  4, argtypes, values, NULL, SPI_OK_DELETE);
	owner_execute("SELECT started_at, (cursor->>'since')::bigint,"
				  " (cursor->>'newest_update')::bigint, (cursor->>'total')::bigint,"
				  " (cursor->>'done')::bigint, (cursor->>'pages')::bigint,"
				  " (cursor->>'skip')::bigint"
				  " FROM ghl_fdw.sync_passes"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND pass OPERATOR(pg_catalog.=) $2",
				  2, argtypes, values, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	if (found)
	{
		state->started = spi_timestamp(0, 1);
		state->since = spi_int64(0, 2);
		state->newest_update = spi_int64(0, 3);
		state->total = spi_int64(0, 4);
		state->done = spi_int64(0, 5);
		state->pages = spi_int64(0, 6);
		state->skip = spi_int64(0, 7);
		owner_execute("SELECT (s->>'bounded')::boolean, (s->>'lo')::bigint,"
					  " (s->>'hi')::bigint, s->>'after', (s->>'done')::boolean,"
					  " (s->>'read')::bigint"
					  " FROM ghl_fdw.sync_passes AS p,"
					  "   pg_catalog.jsonb_array_elements(p.cursor->'slices')"
					  "     WITH ORDINALITY AS e(s, n)"
					  " WHERE p.server_name OPERATOR(pg_catalog.=) $1"
					  "   AND p.pass OPERATOR(pg_catalog.=) $2 ORDER BY e.n",
					  2, argtypes, values, NULL, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			GhlSliceState *slice = MemoryContextAllocZero(cxt, sizeof(GhlSliceState));
			MemoryContext oldcxt;
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			char	   *after = SPI_getvalue(tuple, desc, 4);

			slice->bounded = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
			slice->lo = spi_int64(i, 2);
			slice->hi = spi_int64(i, 3);
			slice->after = after ? MemoryContextStrdup(cxt, after) : NULL;
			slice->done = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
			slice->read = spi_int64(i, 6);
			oldcxt = MemoryContextSwitchTo(cxt);
			state->slices = lappend(state->slices, slice);
			MemoryContextSwitchTo(oldcxt);
		}
	}
	SPI_finish();
	return found;
}

/* Save how far a pass has got, with the step that got it there. */
void
ghl_pass_save(const char *server_name, const char *pass, const char *location_id,
			  const bool *wanted, const GhlPassState *state)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID,
	TIMESTAMPTZOID, TEXTOID};
	Datum		values[6];
	StringInfoData cursor;
	ListCell   *lc;

	initStringInfo(&cursor);
	appendStringInfo(&cursor, "{\"total\": " INT64_FORMAT ", \"done\": " INT64_FORMAT
					 ", \"pages\": " INT64_FORMAT ", \"skip\": " INT64_FORMAT,
					 state->total, state->done, state->pages, state->skip);
	/* times as PostgreSQL's microseconds: no DateStyle can garble them */
	appendStringInfo(&cursor, ", \"since\": " INT64_FORMAT ", \"newest_update\": " INT64_FORMAT,
					 state->since, state->newest_update);
	appendStringInfoString(&cursor, ", \"slices\": [");
	foreach(lc, state->slices)
	{
		GhlSliceState *slice = lfirst(lc);

		appendStringInfo(&cursor, "%s{\"bounded\": %s, \"lo\": " INT64_FORMAT
						 ", \"hi\": " INT64_FORMAT ", \"read\": " INT64_FORMAT
						 ", \"done\": %s, \"after\": ",
						 foreach_current_index(lc) > 0 ? ", " : "",
						 slice->bounded ? "true" : "false", slice->lo, slice->hi,
						 slice->read, slice->done ? "true" : "false");
		if (slice->after)
			escape_json(&cursor, slice->after);
		else
			appendStringInfoString(&cursor, "null");
		appendStringInfoChar(&cursor, '}');
	}
	appendStringInfoString(&cursor, "]}");

	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(pass);
	values[2] = CStringGetTextDatum(location_id);
	values[3] = resource_array(wanted);
	values[4] = TimestampTzGetDatum(state->started);
	values[5] = CStringGetTextDatum(cursor.data);
	SPI_connect();
	owner_execute("INSERT INTO ghl_fdw.sync_passes (server_name, pass, location_id,"
				  " resources, started_at, cursor, updated_at)"
				  " VALUES ($1, $2, $3, $4, $5, $6::jsonb, pg_catalog.clock_timestamp())"
				  " ON CONFLICT (server_name, pass) DO UPDATE SET"
				  " location_id = EXCLUDED.location_id, resources = EXCLUDED.resources,"
				  " started_at = EXCLUDED.started_at, cursor = EXCLUDED.cursor,"
				  " updated_at = EXCLUDED.updated_at",
				  6, argtypes, values, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/* A pass completed: nothing to resume. */
void
ghl_pass_drop(const char *server_name, const char *pass)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(pass);
	SPI_connect();
	owner_execute("DELETE FROM ghl_fdw.sync_passes"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND pass OPERATOR(pg_catalog.=) $2",
				  2, argtypes, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}

/*
 * Contacts of the location that webhook events queued for the server's
 * next incremental run (ghl_fdw.sync_pending), the longest waiting first,
 * at most limit of them.  The ids are in CurrentMemoryContext.
 */
List *
ghl_pending_load(const char *server_name, const char *location_id, int limit)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];
	List	   *ids = NIL;
	uint64		i;

	values[0] = CStringGetTextDatum(server_name);
	values[1] = CStringGetTextDatum(location_id);
	values[2] = Int32GetDatum(limit);
	SPI_connect();
	owner_execute("SELECT contact_id FROM ghl_fdw.sync_pending"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND location_id OPERATOR(pg_catalog.=) $2"
				  " ORDER BY queued_at, contact_id LIMIT $3",
				  3, argtypes, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext spicxt = MemoryContextSwitchTo(cxt);

		ids = lappend(ids, pstrdup(id));
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	return ids;
}

/*
 * The queued contacts (all when contact_ids is NIL) were read at "read":
 * unqueue them, unless an event queued them again since.
 */
void
ghl_pending_done(const char *server_name, List *contact_ids, TimestampTz read)
{
	Oid			argtypes[3] = {TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		values[3];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(contact_ids), 1));
	ListCell   *lc;

	foreach(lc, contact_ids)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	values[0] = CStringGetTextDatum(server_name);
	values[1] = PointerGetDatum(construct_array(elems, list_length(contact_ids),
												TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = TimestampTzGetDatum(read);
	SPI_connect();
	owner_execute("DELETE FROM ghl_fdw.sync_pending"
				  " WHERE server_name OPERATOR(pg_catalog.=) $1"
				  "   AND ($2 OPERATOR(pg_catalog.=) '{}' OR"
				  "        contact_id OPERATOR(pg_catalog.=) ANY ($2))"
				  "   AND queued_at OPERATOR(pg_catalog.<=) $3",
				  3, argtypes, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}

/* A server's row of ghl_fdw.sync_settings, or the defaults. */
void
ghl_sync_settings(const char *server_name, GhlSyncSettings *settings)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	settings->overlap_ms = GHL_DEFAULT_OVERLAP_MS;
	settings->appointments_back_ms = GHL_DEFAULT_HORIZON_MS;
	settings->appointments_ahead_ms = GHL_DEFAULT_HORIZON_MS;
	settings->appointments_by_contact = false;

	values[0] = CStringGetTextDatum(server_name);
	SPI_connect();
	owner_execute("SELECT (pg_catalog.date_part('epoch', overlap) * 1000)::bigint,"
				  " (pg_catalog.date_part('epoch', appointments_back) * 1000)::bigint,"
				  " (pg_catalog.date_part('epoch', appointments_ahead) * 1000)::bigint,"
				  " appointments_by_contact"
				  " FROM ghl_fdw.sync_settings WHERE server_name OPERATOR(pg_catalog.=) $1",
				  1, argtypes, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;

		settings->overlap_ms = spi_int64(0, 1);
		settings->appointments_back_ms = spi_int64(0, 2);
		settings->appointments_ahead_ms = spi_int64(0, 3);
		settings->appointments_by_contact =
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   4, &isnull));
	}
	SPI_finish();
}

/*
 * The tag of the lock that keeps two runs off one location and schema.
 * It lives in a space no SQL function reaches (an object lock whose class
 * is the ledger table), so no role can take it to block syncs.  Location
 * and schema are hashed together into all 48 bits the tag has left: a
 * role that may name its own sync_schema must not find, in a few
 * thousand tries, a schema whose lock is another role's.
 */
static void
sync_locktag(LOCKTAG *tag, const char *schema, const char *location_id)
{
	uint64		hash = hash_combine64(hash_bytes_extended((const unsigned char *) location_id,
														  strlen(location_id), 0),
									  hash_bytes_extended((const unsigned char *) schema,
														  strlen(schema), 0));

	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, ledger_relid(), (uint32) hash,
					   (uint16) (hash >> 32));
}

/*
 * Take the location's sync lock for the rest of the run (across its
 * transactions), without waiting: false when another run holds it.
 */
bool
ghl_sync_lock(const char *schema, const char *location_id, LOCKTAG *tag)
{
	sync_locktag(tag, schema, location_id);
	return LockAcquire(tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Until the transaction ends, keep other transactions from creating sync
 * tables in schema: runs of two locations into one schema may start at
 * once, and of two transactions creating the same schema or table the
 * later would fail on a unique index of the catalogs.  The waiter then
 * sees what the first one created.  The tag is an object lock whose class
 * is the table sync_state, a space apart from the runs' locks, with 48
 * bits of the schema's name for the same reason as theirs.
 */
void
ghl_sync_lock_creation(const char *schema)
{
	LOCKTAG		tag;
	uint64		hash = hash_bytes_extended((const unsigned char *) schema,
										   strlen(schema), 0);

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId,
					   get_relname_relid("sync_state", get_namespace_oid("ghl_fdw", false)),
					   (uint32) hash, (uint16) (hash >> 32));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	AcceptInvalidationMessages();
}

/* Release the lock; needs no catalog access, so it works after an error. */
void
ghl_sync_unlock(const LOCKTAG *tag)
{
	LockRelease(tag, ExclusiveLock, true);
}

/* NOTIFY channel, payload: delivered when the transaction commits. */
void
ghl_notify(const char *channel, const char *payload)
{
	Async_Notify(channel, payload);
}
