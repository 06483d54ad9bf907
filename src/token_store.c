/*-------------------------------------------------------------------------
 *
 * token_store.c
 *		  Reading and writing ghl_fdw.token_store, the durable home of each
 *		  user mapping's OAuth tokens.
 *
 * The table is owned by the extension's owner and closed to PUBLIC, so the
 * secrets in it are out of reach of ordinary roles.  Whoever runs a query
 * against a foreign table reads and writes it through these functions,
 * which switch to the owner for the duration of one SPI statement.  That
 * statement must run nothing of the caller's: its search_path is pinned
 * and its operators are schema-qualified.
 *
 * A row is keyed by the names of its server and of its mapping's role
 * ('public' for a PUBLIC mapping), not by OIDs: pg_dump carries the table,
 * and names are what a restore into another database or cluster keeps.
 * The OIDs of the mapping and its server are kept too, so that a row is
 * found again after ALTER SERVER or ALTER ROLE ... RENAME, but only when
 * the names it carries name nothing any more: a restored row never
 * attaches to another role's mapping.  (The seed fingerprint, checked by
 * the callers, guards the rest.)
 *
 * The locks that make token refreshes single flight live here too, in a
 * lock space no SQL function reaches.
 *
 * IDENTIFICATION
 *		  src/token_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#define GHL_STORE_COLUMNS \
	"seed_fingerprint, access_token, expires_at, refresh_token, " \
	"agency_token, agency_expires_at, scopes, user_type, company_id, " \
	"location_id, last_refresh"
#define GHL_STORE_NCOLUMNS 11

/* the key columns and the OIDs that find a renamed mapping's row */
#define GHL_STORE_NKEYS 4

/*
 * A row another mapping may take over: the server or role it names is
 * gone (renamed or never restored).  A row whose names still exist always
 * belongs to them.
 */
#define GHL_STORE_NAMES_GONE \
	"(NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server s" \
	" WHERE s.srvname OPERATOR(pg_catalog.=) t.server_name)" \
	" OR (t.role_name OPERATOR(pg_catalog.<>) 'public' AND NOT EXISTS" \
	" (SELECT FROM pg_catalog.pg_roles r" \
	" WHERE r.rolname OPERATOR(pg_catalog.=) t.role_name)))"

/* the row of the mapping: $1..$4 are server_name, role_name, serverid, umid */
#define GHL_STORE_OWN_ROW \
	"((t.server_name OPERATOR(pg_catalog.=) $1" \
	" AND t.role_name OPERATOR(pg_catalog.=) $2)" \
	" OR (t.serverid OPERATOR(pg_catalog.=) $3" \
	" AND t.umid OPERATOR(pg_catalog.=) $4 AND " GHL_STORE_NAMES_GONE "))"

/* the search_path of token store statements: nothing of the caller's */
#define GHL_STORE_SEARCH_PATH	"pg_catalog, pg_temp"

/*
 * The token store's OID, looked up by schema and name: no search_path is
 * involved.
 */
static Oid
store_relid(void)
{
	Oid			nspid = get_namespace_oid("ghl_fdw", false);
	Oid			relid = get_relname_relid("token_store", nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table ghl_fdw.token_store does not exist"),
				 errhint("Reinstall the ghl_fdw extension.")));
	return relid;
}

/*
 * The role that owns the token store: the only one, besides superusers,
 * that may read it.  Looked up each time, since the owner can change.
 */
Oid
ghl_store_owner(void)
{
	Oid			relid = store_relid();
	HeapTuple	tp;
	Oid			owner;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * Run one statement on the token store as its owner.  Through its
 * search_path, the caller could put an operator or function of its own
 * into the statement, to run with the owner's rights: so the statement
 * runs with search_path pinned to pg_catalog and pg_temp, besides naming
 * its table and operators with their schemas.  The caller's user,
 * security context and search_path come back even when the statement
 * fails.
 */
static void
store_execute(const char *sql, int nargs, Oid *argtypes, Datum *values,
			  const char *nulls, int expected)
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			save_nestlevel;
	int			rc;

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", GHL_STORE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(ghl_store_owner(),
						   saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
								   false, 1);
		if (rc != expected)
			elog(ERROR, "token store statement failed: %s",
				 SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
		AtEOXact_GUC(true, save_nestlevel);
	}
	PG_END_TRY();
}

/* A text column of the current SPI row, copied into cxt, or NULL. */
static char *
store_text(HeapTuple tuple, TupleDesc desc, int attno, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, attno, &isnull);

	return isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

/* A timestamptz column of the current SPI row, 0 when NULL. */
static TimestampTz
store_timestamp(HeapTuple tuple, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, attno, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * The first GHL_STORE_NKEYS statement parameters, which name a mapping's
 * row: its server's name, its role's name ('public' for PUBLIC, a name no
 * role can have), the server's OID and its own.
 */
static void
store_key(Oid umid, Oid *argtypes, Datum *values, char *nulls)
{
	HeapTuple	tp = SearchSysCache1(USERMAPPINGOID, ObjectIdGetDatum(umid));
	Form_pg_user_mapping um;
	Oid			serverid;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for user mapping %u", umid);
	um = (Form_pg_user_mapping) GETSTRUCT(tp);
	serverid = um->umserver;
	values[1] = CStringGetTextDatum(OidIsValid(um->umuser) ?
									GetUserNameFromId(um->umuser, false) :
									"public");
	ReleaseSysCache(tp);

	values[0] = CStringGetTextDatum(GetForeignServer(serverid)->servername);
	values[2] = ObjectIdGetDatum(serverid);
	values[3] = ObjectIdGetDatum(umid);
	argtypes[0] = argtypes[1] = TEXTOID;
	argtypes[2] = argtypes[3] = OIDOID;
	memset(nulls, ' ', GHL_STORE_NKEYS);
}

/*
 * Read a mapping's stored tokens into *token (allocated in the caller's
 * memory context).  Returns false, with *token zeroed, when there is no
 * row yet.  The row under the mapping's names comes first; a row of a
 * renamed server or role, found by OIDs, only when there is none.
 */
bool
ghl_store_read(Oid umid, GhlToken *token)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[GHL_STORE_NKEYS];
	Datum		values[GHL_STORE_NKEYS];
	char		nulls[GHL_STORE_NKEYS];
	bool		found = false;

	memset(token, 0, sizeof(GhlToken));
	store_key(umid, argtypes, values, nulls);
	SPI_connect();
	store_execute("SELECT " GHL_STORE_COLUMNS
				  " FROM ghl_fdw.token_store t WHERE " GHL_STORE_OWN_ROW
				  " ORDER BY t.server_name OPERATOR(pg_catalog.=) $1"
				  " AND t.role_name OPERATOR(pg_catalog.=) $2 DESC",
				  GHL_STORE_NKEYS, argtypes, values, nulls, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		token->seed_fingerprint = store_text(tuple, desc, 1, cxt);
		token->access_token = store_text(tuple, desc, 2, cxt);
		token->expires_at = store_timestamp(tuple, desc, 3);
		token->refresh_token = store_text(tuple, desc, 4, cxt);
		token->agency_token = store_text(tuple, desc, 5, cxt);
		token->agency_expires_at = store_timestamp(tuple, desc, 6);
		token->scopes = store_text(tuple, desc, 7, cxt);
		token->user_type = store_text(tuple, desc, 8, cxt);
		token->company_id = store_text(tuple, desc, 9, cxt);
		token->location_id = store_text(tuple, desc, 10, cxt);
		token->last_refresh = store_timestamp(tuple, desc, 11);
		found = true;
	}
	SPI_finish();
	return found;
}

/* Set one text parameter, NULL for a NULL string. */
static void
store_arg_text(Datum *values, char *nulls, int i, const char *value)
{
	values[i] = value ? CStringGetTextDatum(value) : (Datum) 0;
	nulls[i] = value ? ' ' : 'n';
}

/* Set one timestamptz parameter, NULL for 0. */
static void
store_arg_timestamp(Datum *values, char *nulls, int i, TimestampTz value)
{
	values[i] = TimestampTzGetDatum(value);
	nulls[i] = value != 0 ? ' ' : 'n';
}

/*
 * Insert or replace a mapping's row, under its current names; the row of
 * its old names, if a rename left one, goes.  The caller commits: in the
 * token worker that happens right after, so a new refresh token is never
 * held only in memory.
 */
void
ghl_store_write(Oid umid, const GhlToken *token)
{
	Oid			argtypes[GHL_STORE_NKEYS + GHL_STORE_NCOLUMNS];
	Datum		values[GHL_STORE_NKEYS + GHL_STORE_NCOLUMNS];
	char		nulls[GHL_STORE_NKEYS + GHL_STORE_NCOLUMNS];
	int			k = GHL_STORE_NKEYS;
	int			i;

	store_key(umid, argtypes, values, nulls);
	for (i = k; i < k + GHL_STORE_NCOLUMNS; i++)
		argtypes[i] = TEXTOID;
	argtypes[k + 2] = argtypes[k + 5] = argtypes[k + 10] = TIMESTAMPTZOID;
	store_arg_text(values, nulls, k, token->seed_fingerprint);
	store_arg_text(values, nulls, k + 1, token->access_token);
	store_arg_timestamp(values, nulls, k + 2, token->expires_at);
	store_arg_text(values, nulls, k + 3, token->refresh_token);
	store_arg_text(values, nulls, k + 4, token->agency_token);
	store_arg_timestamp(values, nulls, k + 5, token->agency_expires_at);
	store_arg_text(values, nulls, k + 6, token->scopes);
	store_arg_text(values, nulls, k + 7, token->user_type);
	store_arg_text(values, nulls, k + 8, token->company_id);
	store_arg_text(values, nulls, k + 9, token->location_id);
	store_arg_timestamp(values, nulls, k + 10, token->last_refresh);

	SPI_connect();
	store_execute("WITH renamed AS (DELETE FROM ghl_fdw.token_store t"
				  " WHERE " GHL_STORE_OWN_ROW
				  " AND NOT (t.server_name OPERATOR(pg_catalog.=) $1"
				  " AND t.role_name OPERATOR(pg_catalog.=) $2))"
				  " INSERT INTO ghl_fdw.token_store (server_name, role_name,"
				  " serverid, umid, " GHL_STORE_COLUMNS ")"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
				  " $13, $14, $15)"
				  " ON CONFLICT (server_name, role_name) DO UPDATE SET"
				  " (serverid, umid, " GHL_STORE_COLUMNS ") ="
				  " (EXCLUDED.serverid, EXCLUDED.umid, EXCLUDED.seed_fingerprint,"
				  " EXCLUDED.access_token, EXCLUDED.expires_at,"
				  " EXCLUDED.refresh_token, EXCLUDED.agency_token,"
				  " EXCLUDED.agency_expires_at, EXCLUDED.scopes,"
				  " EXCLUDED.user_type, EXCLUDED.company_id,"
				  " EXCLUDED.location_id, EXCLUDED.last_refresh)",
				  GHL_STORE_NKEYS + GHL_STORE_NCOLUMNS, argtypes, values, nulls,
				  SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Take one of a mapping's locks at session level, so that no commit
 * releases it (the token worker holds its lock across its own commits);
 * ghl_store_unlock() or an abort does.  It is an object lock whose class
 * is the token store itself: no SQL function takes locks of that kind,
 * unlike advisory locks, which any role could take and hold to stop every
 * refresh of the mapping.  The wait ends on cancel and statement_timeout
 * like any lock wait.  *tag is what ghl_store_unlock() needs: releasing
 * then looks nothing up.
 */
void
ghl_store_lock(Oid umid, GhlStoreLock purpose, LOCKTAG *tag)
{
	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, store_relid(), umid,
					   (uint16) purpose);
	(void) LockAcquire(tag, ExclusiveLock, true, false);
}

/* Release a lock of ghl_store_lock(). */
void
ghl_store_unlock(const LOCKTAG *tag)
{
	LockRelease(tag, ExclusiveLock, true);
}
