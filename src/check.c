/*-------------------------------------------------------------------------
 *
 * check.c
 *		  ghl_fdw.check(server_name): the connection check an operator runs
 *		  first, one row per thing that has to be right.
 *
 * It asks the API as little as it can.  One search for a single contact
 * of the location shows whether the API is reached and accepts the
 * credentials, the Version header and the location, and the headers of its
 * answer carry the rate-limit headroom and the API's clock.  An OAuth
 * mapping adds one refresh, which proves that the refresh token works; a
 * server used for appointments adds the list of calendars.  Everything
 * else (the sync tables, the ledger, the pg_cron job) comes from the
 * catalogs, read as the caller.
 *
 * Every step runs in a subtransaction, so that whatever fails becomes the
 * failing row rather than an error, and the rows that depended on it say
 * that they were not checked.  A cancel or statement_timeout still ends the
 * call.  No row can show a secret: rows are made of the mapping's mode,
 * the token's expiry and scopes, the API's headers and the transport's
 * errors, which never quote a token or a token endpoint's answer.
 *
 * IDENTIFICATION
 *		  src/check.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

/* a local clock further than this from the API's is reported */
#define GHL_CHECK_MAX_SKEW_SECS		60
/* less than this share (in percent) of the daily budget left is reported */
#define GHL_CHECK_DAILY_RESERVE_PCT	10

PG_FUNCTION_INFO_V1(ghl_fdw_check);

/* The rows of ghl_fdw.check(), in the order they are returned. */
typedef enum GhlCheckRow
{
	GHL_CHECK_CONNECTION,
	GHL_CHECK_CREDENTIALS,
	GHL_CHECK_SCOPES,
	GHL_CHECK_LOCATION,
	GHL_CHECK_API_VERSION,
	GHL_CHECK_RATE_LIMIT,
	GHL_CHECK_CLOCK,
	GHL_CHECK_CALENDARS,
	GHL_CHECK_SYNC_TABLES,
	GHL_CHECK_SYNC_RUNS,
	GHL_CHECK_SYNC_SCHEDULE,
	GHL_CHECK_NUM_ROWS
} GhlCheckRow;

static const char *const row_names[GHL_CHECK_NUM_ROWS] = {
	[GHL_CHECK_CONNECTION] = "connection",
	[GHL_CHECK_CREDENTIALS] = "credentials",
	[GHL_CHECK_SCOPES] = "scopes",
	[GHL_CHECK_LOCATION] = "location",
	[GHL_CHECK_API_VERSION] = "api_version",
	[GHL_CHECK_RATE_LIMIT] = "rate_limit",
	[GHL_CHECK_CLOCK] = "clock",
	[GHL_CHECK_CALENDARS] = "calendars",
	[GHL_CHECK_SYNC_TABLES] = "sync_tables",
	[GHL_CHECK_SYNC_RUNS] = "sync_runs",
	[GHL_CHECK_SYNC_SCHEDULE] = "sync_schedule",
};

/*
 * The scopes each resource needs to be read (the write scope is the one
 * of its writes in resource.c): contacts and their tasks, notes and
 * appointments are read per contact, tasks also through the location's
 * task search, appointments through the calendars and their events.
 */
static const char *const read_scopes[GHL_NUM_RESOURCES][3] = {
	[GHL_RESOURCE_CONTACTS] = {"contacts.readonly"},
	[GHL_RESOURCE_TASKS] = {"contacts.readonly", "locations/tasks.readonly"},
	[GHL_RESOURCE_NOTES] = {"contacts.readonly"},
	[GHL_RESOURCE_APPOINTMENTS] = {"contacts.readonly", "calendars.readonly",
	"calendars/events.readonly"},
};

/* What a row says: ok is NULL (not checked, or nothing to check), false or true. */
typedef enum GhlCheckOutcome
{
	GHL_OUTCOME_UNSET = 0,
	GHL_OUTCOME_SKIPPED,
	GHL_OUTCOME_FAILED,
	GHL_OUTCOME_PASSED
} GhlCheckOutcome;

typedef struct GhlCheckResult
{
	GhlCheckOutcome outcome;
	char	   *detail;
	char	   *hint;
} GhlCheckResult;

/* One request of the check, and what came of it. */
typedef struct GhlCheckCall
{
	GhlRequest	request;
	const char *response_key;	/* the array of the answer to count */
	GhlRequestStats stats;
	GhlResponse response;
	ErrorData  *error;			/* NULL: a 2xx or a 404 */
	long		status;			/* of the answer; 0 when none arrived */
	long		ms;				/* how long it took, retries included */
	int64		total;			/* the answer's "total" */
	int			rows;			/* its rows */
} GhlCheckCall;

/* The last sync run of one resource, as ghl_fdw.sync_status shows it. */
typedef struct GhlCheckRun
{
	char	   *status;			/* NULL: the resource was never synced */
	char	   *age;
	char	   *error;
} GhlCheckRun;

typedef struct GhlCheck
{
	GhlOptions *options;
	GhlConnection *conn;
	bool		oauth;
	bool		used[GHL_NUM_RESOURCES];	/* what the server is used for */
	GhlCheckRun runs[GHL_NUM_RESOURCES];

	/* OAuth: what is known of the token, never the token itself */
	bool		have_token;
	GhlToken	token;			/* expiry, scopes, last refresh */
	char	   *token_location; /* the location it belongs to, if known */

	/* the headers of the latest answer of the API */
	bool		answered;
	GhlRateLimit rate;
	TimestampTz date;			/* its Date, 0 if it had none */
	TimestampTz received;		/* when it arrived, by the local clock */

	char	   *unchecked;		/* why rows left undecided were not checked */
	GhlCheckResult rows[GHL_CHECK_NUM_ROWS];
} GhlCheck;

typedef void (*GhlCheckStep) (GhlCheck *check, void *arg);

/*
 * Decide a row, unless it is decided already: the first finding about a
 * row is the one that explains it.  detail is a printf format.
 */
static void
pg_attribute_printf(5, 6)
set_row(GhlCheck *check, GhlCheckRow row, GhlCheckOutcome outcome,
		const char *hint, const char *fmt,...)
{
	GhlCheckResult *result = &check->rows[row];
	StringInfoData detail;

	if (result->outcome != GHL_OUTCOME_UNSET)
		return;
	initStringInfo(&detail);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	result->outcome = outcome;
	result->detail = detail.data;
	result->hint = hint ? pstrdup(hint) : NULL;
}

/* An error's message and detail, as a row's detail shows them. */
static char *
error_text(ErrorData *edata)
{
	return psprintf("%s%s%s", edata->message, edata->detail ? ": " : "",
					edata->detail ? edata->detail : "");
}

/*
 * A row that failed with an error: its message and detail say what went
 * wrong, and its own hint says what to do unless the row has a better one.
 */
static void
set_error_row(GhlCheck *check, GhlCheckRow row, ErrorData *edata,
			  const char *hint)
{
	set_row(check, row, GHL_OUTCOME_FAILED, hint ? hint : edata->hint,
			"%s", error_text(edata));
}

/*
 * Run one step in a subtransaction and return the error it raised, if
 * any, instead of throwing it: it becomes the failing row, and the other
 * checks go on.  A cancel or statement_timeout is thrown all the same.
 * What the step allocates in the caller's memory context survives.
 */
static ErrorData *
run_step(GhlCheckStep step, GhlCheck *check, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(check, arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Run a query of the check in the current SPI connection, as the caller,
 * so that it reads only what the caller may see (row security of the
 * ledger and of pg_cron's tables applies).  Its names are qualified and
 * search_path is pinned, so nothing on the caller's search_path changes
 * what it means; IntervalStyle too, so ages read the same in every session.
 */
static void
check_query(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_execute_with_args(sql, nargs, argtypes, values, NULL,
							  true, 0) != SPI_OK_SELECT)
		elog(ERROR, "check query failed: %s", sql);
	AtEOXact_GUC(true, nestlevel);
}

/* A column of the current SPI result as a string in cxt, or NULL. */
static char *
spi_text(int row, int col, MemoryContext cxt)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row],
									 SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

/* A boolean column of the current SPI result; NULL is false. */
static bool
spi_bool(int row, int col)
{
	bool		isnull;
	Datum		value = SPI_getbinval(SPI_tuptable->vals[row],
									  SPI_tuptable->tupdesc, col, &isnull);

	return !isnull && DatumGetBool(value);
}

/* A timestamp the way the session prints them. */
static char *
format_time(TimestampTz t)
{
	return DatumGetCString(DirectFunctionCall1(timestamptz_out,
											   TimestampTzGetDatum(t)));
}

/*
 * What the server is used for and how its syncs went: the resources of
 * its foreign tables and of its sync runs, and the last run of each.  A
 * foreign table naming no resource fails on its own use and is ignored.
 */
static void
step_catalog(GhlCheck *check, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[1];
	Datum		values[1];
	uint64		i;
	int			r;

	SPI_connect();
	argtypes[0] = OIDOID;
	values[0] = ObjectIdGetDatum(check->options->serverid);
	check_query("SELECT ft.ftrelid FROM pg_catalog.pg_foreign_table ft"
				" WHERE ft.ftserver OPERATOR(pg_catalog.=) $1",
				1, argtypes, values);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc,
														   1, &isnull));
		char	   *name = ghl_get_table_option(relid, "resource");
		const GhlResource *resource = ghl_resource_by_name(name ? name :
														   get_rel_name(relid));

		if (resource != NULL)
			check->used[resource->kind] = true;
	}

	argtypes[0] = TEXTOID;
	values[0] = CStringGetTextDatum(check->options->server_name);
	check_query("SELECT s.resource, s.status,"
				" pg_catalog.date_trunc('second', s.age)::pg_catalog.text, s.error"
				" FROM ghl_fdw.sync_status s"
				" WHERE s.server_name OPERATOR(pg_catalog.=) $1",
				1, argtypes, values);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *resource = SPI_getvalue(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1);

		for (r = 0; r < GHL_NUM_RESOURCES; r++)
		{
			if (strcmp(resource, ghl_sync_resource_name(r)) != 0)
				continue;
			check->used[r] = true;
			check->runs[r].status = spi_text(i, 2, cxt);
			check->runs[r].age = spi_text(i, 3, cxt);
			check->runs[r].error = spi_text(i, 4, cxt);
		}
	}
	SPI_finish();
}

/* ----------------------------------------------------------------
 * Credentials
 * ----------------------------------------------------------------
 */

/* The OAuth token's state: *arg says whether to renew it first. */
static void
step_token(GhlCheck *check, void *arg)
{
	ghl_auth_describe(check->conn, check->options, *(bool *) arg,
					  &check->token);
}

/* Overwrite a secret that was read, so no copy of it lingers in memory. */
static void
wipe(char *secret)
{
	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
}

/*
 * The location the OAuth token belongs to, as the token endpoint said:
 * the stored row of the mapping (grown from its current seed) has it.
 */
static void
step_token_location(GhlCheck *check, void *arg)
{
	char	   *fingerprint = ghl_auth_seed_fingerprint(check->options);
	GhlToken	stored;

	if (ghl_store_read(check->options->umid, &stored) &&
		stored.seed_fingerprint != NULL &&
		strcmp(stored.seed_fingerprint, fingerprint) == 0)
		check->token_location = stored.location_id;
	wipe(stored.access_token);
	wipe(stored.refresh_token);
	wipe(stored.agency_token);
}

/*
 * Whether an error is about reaching the API at all (no connection, a
 * timeout, a URL or address the server may not use) rather than about
 * what the API answered.
 */
static bool
connection_error(ErrorData *edata, long status)
{
	switch (edata->sqlerrcode)
	{
		case ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION:
		case ERRCODE_CONNECTION_FAILURE:
		case ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE:
			return true;
		case ERRCODE_INSUFFICIENT_PRIVILEGE:
			return status == 0;
		default:
			return false;
	}
}

/*
 * OAuth: get a token, and prove that the refresh works.  A token that had
 * to be refreshed anyway is the proof; else the token is renewed once.  If
 * the renewal fails, the current token is still used for the rest of the
 * check, since it works until it expires.
 */
static void
check_oauth_token(GhlCheck *check)
{
	TimestampTz started = GetCurrentTimestamp();
	bool		renew = false;
	ErrorData  *edata = run_step(step_token, check, &renew);

	if (edata == NULL && check->token.last_refresh < started)
	{
		renew = true;
		edata = run_step(step_token, check, &renew);
		check->have_token = true;
	}
	else
		check->have_token = edata == NULL;

	if (edata != NULL && connection_error(edata, 0))
	{
		set_error_row(check, GHL_CHECK_CONNECTION, edata,
					  "Check token_url and base_url, and that this database server can reach them (DNS, firewall, proxy).");
		check->unchecked = "the token endpoint was not reached";
	}
	else if (edata != NULL && check->have_token)
		set_row(check, GHL_CHECK_CREDENTIALS, GHL_OUTCOME_FAILED, edata->hint,
				"The current token works until %s, but the refresh failed: %s",
				format_time(check->token.expires_at), error_text(edata));
	else if (edata != NULL)
	{
		set_error_row(check, GHL_CHECK_CREDENTIALS, edata, NULL);
		check->unchecked = "there is no token to send";
	}

	if (check->have_token)
		(void) run_step(step_token_location, check, NULL);
}

/* The credentials row of a mapping whose token worked or was not refused. */
static void
pass_credentials(GhlCheck *check)
{
	GhlOptions *options = check->options;

	if (!check->oauth)
		set_row(check, GHL_CHECK_CREDENTIALS, GHL_OUTCOME_PASSED, NULL,
				"A Private Integration Token (access_token), accepted by the API; it does not expire.");
	else
		set_row(check, GHL_CHECK_CREDENTIALS, GHL_OUTCOME_PASSED, NULL,
				"OAuth, %s mode, user type %s: the token was refreshed at %s and expires at %s.",
				options->auth_mode == GHL_AUTH_REFRESH_TOKEN ?
				"refresh_token" : "client_credentials",
				options->user_type, format_time(check->token.last_refresh),
				format_time(check->token.expires_at));
}

/* ----------------------------------------------------------------
 * Scopes
 * ----------------------------------------------------------------
 */

/* Add a scope to a list of what needs it, once. */
static void
need_scope(List **scopes, List **uses, const char *scope, const char *use)
{
	ListCell   *lc;

	foreach(lc, *scopes)
	{
		if (strcmp(lfirst(lc), scope) == 0)
			return;
	}
	*scopes = lappend(*scopes, (void *) scope);
	*uses = lappend(*uses, (void *) use);
}

/* A list of strings joined with ", ". */
static char *
join(List *items)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, items)
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
						 (char *) lfirst(lc));
	return buf.data;
}

/*
 * Whether the token has the scopes the server needs for what it is used
 * for: reading each resource in use and, unless the server is read_only,
 * writing it.  Only an OAuth token lists its scopes; of a Private
 * Integration Token nothing can be known without using each of them.
 */
static void
check_scopes(GhlCheck *check)
{
	GhlOptions *options = check->options;
	List	   *needed = NIL;
	List	   *uses = NIL;
	List	   *missing = NIL;
	bool		missing_reads = false;
	ListCell   *lc1;
	ListCell   *lc2;
	int			r;
	int			i;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		if (!check->used[r])
			continue;
		for (i = 0; i < lengthof(read_scopes[r]) && read_scopes[r][i]; i++)
			need_scope(&needed, &uses, read_scopes[r][i],
					   ghl_sync_resource_name(r));
	}
	for (r = 0; r < GHL_NUM_RESOURCES && !options->read_only; r++)
	{
		if (check->used[r])
			need_scope(&needed, &uses,
					   ghl_write_endpoint(r, GHL_WRITE_CREATE)->scope, "writes");
	}

	if (!check->oauth)
	{
		set_row(check, GHL_CHECK_SCOPES, GHL_OUTCOME_SKIPPED,
				"Make sure the token was created with these scopes.",
				"A Private Integration Token carries no list of its scopes: the API checks them request by request. The server needs %s.",
				join(needed));
		return;
	}
	if (!check->have_token)
		return;
	if (check->token.scopes == NULL)
	{
		set_row(check, GHL_CHECK_SCOPES, GHL_OUTCOME_SKIPPED,
				"Make sure the app has these scopes.",
				"The token endpoint did not say which scopes the token has. The server needs %s.",
				join(needed));
		return;
	}

	forboth(lc1, needed, lc2, uses)
	{
		if (ghl_scope_listed(check->token.scopes, lfirst(lc1)))
			continue;
		missing = lappend(missing, psprintf("%s (%s)", (char *) lfirst(lc1),
											(char *) lfirst(lc2)));
		missing_reads |= strcmp(lfirst(lc2), "writes") != 0;
	}
	if (missing == NIL)
		set_row(check, GHL_CHECK_SCOPES, GHL_OUTCOME_PASSED, NULL,
				"The token has every scope the server needs: %s.", join(needed));
	else
		set_row(check, GHL_CHECK_SCOPES, GHL_OUTCOME_FAILED,
				missing_reads ?
				"Add the scopes to the app, authorize it again and set the new credentials in the user mapping." :
				psprintf("Add the scopes to the app, authorize it again and set the new credentials in the user mapping; or, if the server must not write, ALTER SERVER %s OPTIONS (ADD read_only 'true').",
						 quote_identifier(options->server_name)),
				"The token lacks %s.%s", join(missing),
				missing_reads ? "" : " The server may write, since it is not read_only.");
}

/* Whether the OAuth token is known to lack a scope. */
static bool
token_lacks(GhlCheck *check, const char *scope)
{
	return check->oauth && check->token.scopes != NULL &&
		!ghl_scope_listed(check->token.scopes, scope);
}

/* ----------------------------------------------------------------
 * The API
 * ----------------------------------------------------------------
 */

/* Send the request of a call, and count the rows of a 2xx answer. */
static void
step_call(GhlCheck *check, void *arg)
{
	GhlCheckCall *call = (GhlCheckCall *) arg;

	ghl_http_execute(check->conn, &call->request, &call->response,
					 &call->stats);
	if (call->response.status >= 200 && call->response.status < 300)
	{
		GhlJsonPage *page = ghl_json_parse_page(call->response.data,
												call->response.len,
												call->response_key, false,
												check->options->server_name);

		call->rows = ghl_json_page_rows(page);
		call->total = ghl_json_page_total(page);
	}
}

/*
 * Send one request of the check.  Whether or not it succeeds, the status
 * and headers of the answer, if one came, are kept: a refusal still tells
 * the API's clock and rate-limit headroom.
 */
static void
api_call(GhlCheck *check, GhlCheckCall *call, const char *method,
		 const char *path, const char *api_version, const char *body,
		 const char *response_key)
{
	TimestampTz start = GetCurrentTimestamp();

	memset(call, 0, sizeof(GhlCheckCall));
	call->request.method = method;
	call->request.path = path;
	call->request.api_version = api_version;
	call->request.body = body;
	call->request.authenticated = true;
	call->request.idempotent = true;	/* both calls only read */
	call->response_key = response_key;
	call->error = run_step(step_call, check, call);
	call->ms = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());

	/* the connection's last answer is this request's only if it was sent */
	if (call->stats.requests > 0)
	{
		GhlRateLimit rate;
		TimestampTz date;

		ghl_http_last_response(check->conn, &call->status, &rate, &date);
		if (call->status != 0)
		{
			check->answered = true;
			check->rate = rate;
			check->received = GetCurrentTimestamp();
			if (date != 0)
				check->date = date;
		}
	}
}

/*
 * The probe: a search for one contact of the location.  It needs only
 * contacts.readonly, which every use of the server needs (GET
 * /locations/{id} would need locations.readonly, which nothing else of
 * ghl_fdw does), and its answer says whether the API is reached, takes
 * the credentials, the Version and the location, and how many contacts
 * the location has.
 */
static void
check_probe(GhlCheck *check)
{
	GhlOptions *options = check->options;
	const GhlEndpoint *ep = ghl_endpoint(GHL_EP_CONTACTS_SEARCH);
	const char *server = quote_identifier(options->server_name);
	GhlCheckCall call;
	GhlCheckRow row;
	int			code;

	if (token_lacks(check, "contacts.readonly"))
	{
		check->unchecked = "the token lacks contacts.readonly";
		return;
	}

	api_call(check, &call, ep->method, ep->path, options->api_version,
			 ghl_json_search_body(options->location_id, 1, NULL, NIL, NULL,
								  NULL, false),
			 ep->response_key);

	if (call.error == NULL && call.response.status == 404)
	{
		set_row(check, GHL_CHECK_CONNECTION, GHL_OUTCOME_FAILED,
				"Check the server option base_url (the default is " GHL_DEFAULT_BASE_URL ").",
				"HTTP 404 for %s %s: base_url does not lead to the GHL API.",
				ep->method, ep->path);
		check->unchecked = "the API was not found";
		return;
	}
	if (call.status != 0)
		set_row(check, GHL_CHECK_CONNECTION, GHL_OUTCOME_PASSED, NULL,
				"HTTP %ld from %s %s in %ld ms.", call.status, ep->method,
				ep->path, call.ms);
	if (call.error == NULL)
	{
		pass_credentials(check);
		set_row(check, GHL_CHECK_LOCATION, GHL_OUTCOME_PASSED, NULL,
				"The token reads location %s (%lld contacts)%s.",
				options->location_id, (long long) call.total,
				check->token_location &&
				strcmp(check->token_location, options->location_id) == 0 ?
				", which it belongs to" : "");
		set_row(check, GHL_CHECK_API_VERSION, GHL_OUTCOME_PASSED, NULL,
				"The API accepts Version %s.", options->api_version);
		return;
	}

	/* which row the failure speaks of */
	code = call.error->sqlerrcode;
	if (code == ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION)
		row = GHL_CHECK_CREDENTIALS;
	else if (code == ERRCODE_CONFIGURATION_LIMIT_EXCEEDED)
		row = GHL_CHECK_RATE_LIMIT;
	else if (call.status == 403)
		row = GHL_CHECK_LOCATION;
	else if (call.status == 400 || call.status == 422)
		row = GHL_CHECK_API_VERSION;
	else
		row = GHL_CHECK_CONNECTION;

	switch (row)
	{
		case GHL_CHECK_CREDENTIALS:
			set_error_row(check, row, call.error, check->oauth ? NULL :
						  psprintf("Check access_token in the user mapping for server %s: a Private Integration Token of location %s, with the scopes the server needs.",
								   server, options->location_id));
			check->unchecked = "the API refused the credentials";
			break;
		case GHL_CHECK_RATE_LIMIT:
			set_error_row(check, row, call.error, NULL);
			check->unchecked = "the rate limit allowed no request";
			break;
		case GHL_CHECK_LOCATION:
			if (check->token_location != NULL &&
				strcmp(check->token_location, options->location_id) != 0)
				set_row(check, row, GHL_OUTCOME_FAILED,
						psprintf("Set location_id to the token's location with ALTER SERVER %s OPTIONS (SET location_id '%s'), or install the app at location %s and set its credentials in the user mapping.",
								 server, check->token_location, options->location_id),
						"The token belongs to location %s, the server names location %s: %s",
						check->token_location, options->location_id,
						call.error->detail ? call.error->detail : call.error->message);
			else
				set_error_row(check, row, call.error,
							  psprintf("Check the server option location_id (%s): the token must belong to that location.",
									   options->location_id));
			check->unchecked = "the API refused the location";
			break;
		case GHL_CHECK_API_VERSION:
			set_error_row(check, row, call.error,
						  psprintf("Check the server option api_version (the default is " GHL_DEFAULT_API_VERSION "): ALTER SERVER %s OPTIONS (DROP api_version).",
								   server));
			check->unchecked = "the API refused the request";
			break;
		default:
			set_error_row(check, row, call.error,
						  connection_error(call.error, call.status) ?
						  "Check the server option base_url, and that this database server can reach it (DNS, firewall, proxy)." :
						  NULL);
			check->unchecked = call.status != 0 ?
				"the API failed" : "the API was not reached";
			break;
	}
	if (row != GHL_CHECK_CREDENTIALS && call.status != 0)
		pass_credentials(check);
}

/*
 * The calendars of the location, for a server used for appointments:
 * sync and scans find appointments through them, with Version 2021-04-15.
 */
static void
check_calendars(GhlCheck *check)
{
	GhlOptions *options = check->options;
	const GhlEndpoint *ep = ghl_endpoint(GHL_EP_CALENDARS);
	GhlCheckCall call;

	if (!check->used[GHL_RESOURCE_APPOINTMENTS])
	{
		set_row(check, GHL_CHECK_CALENDARS, GHL_OUTCOME_SKIPPED, NULL,
				"Nothing of the server reads appointments.");
		return;
	}
	if (check->rows[GHL_CHECK_LOCATION].outcome != GHL_OUTCOME_PASSED)
		return;
	if (token_lacks(check, "calendars.readonly"))
	{
		set_row(check, GHL_CHECK_CALENDARS, GHL_OUTCOME_SKIPPED, NULL,
				"Not checked: the token lacks calendars.readonly.");
		return;
	}

	api_call(check, &call, ep->method,
			 psprintf("%s?locationId=%s", ep->path,
					  ghl_url_escape(options->location_id)),
			 ep->api_version, NULL, ep->response_key);
	if (call.error != NULL)
		set_error_row(check, GHL_CHECK_CALENDARS, call.error,
					  call.status == 401 || call.status == 403 ?
					  "The token needs the scopes calendars.readonly and calendars/events.readonly to read appointments." :
					  NULL);
	else if (call.response.status == 404)
		set_row(check, GHL_CHECK_CALENDARS, GHL_OUTCOME_FAILED, NULL,
				"HTTP 404 for %s %s.", ep->method, ep->path);
	else
		set_row(check, GHL_CHECK_CALENDARS, GHL_OUTCOME_PASSED, NULL,
				"The location has %d calendars (Version %s).", call.rows,
				ep->api_version);
}

/*
 * Rate-limit headroom and clock skew, from the headers of the API's
 * latest answer.  The Date header has whole seconds: the API's time is
 * taken as the middle of its second.
 */
static void
check_headers(GhlCheck *check)
{
	GhlOptions *options = check->options;
	GhlRateLimit *rate = &check->rate;
	StringInfoData detail;
	bool		low;

	if (!check->answered)
		return;

	initStringInfo(&detail);
	if (rate->daily_remaining >= 0)
		appendStringInfo(&detail, "%lld%s%s requests of the day left",
						 (long long) rate->daily_remaining,
						 rate->daily_limit >= 0 ? " of " : "",
						 rate->daily_limit >= 0 ?
						 psprintf("%lld", (long long) rate->daily_limit) : "");
	if (rate->remaining >= 0)
		appendStringInfo(&detail, "%s%lld%s requests left in the current burst%s",
						 detail.len > 0 ? "; " : "",
						 (long long) rate->remaining,
						 rate->max >= 0 ?
						 psprintf(" of %lld", (long long) rate->max) : "",
						 rate->interval_ms >= 0 ?
						 psprintf(" (%lld ms)", (long long) rate->interval_ms) : "");
	low = rate->daily_remaining == 0 ||
		(rate->daily_remaining > 0 && rate->daily_remaining <= options->daily_budget_floor) ||
		(rate->daily_remaining >= 0 && rate->daily_limit > 0 &&
		 rate->daily_remaining * 100 < rate->daily_limit * GHL_CHECK_DAILY_RESERVE_PCT);
	if (detail.len == 0)
		set_row(check, GHL_CHECK_RATE_LIMIT, GHL_OUTCOME_SKIPPED, NULL,
				"The API sent no X-RateLimit headers.");
	else
		set_row(check, GHL_CHECK_RATE_LIMIT,
				low ? GHL_OUTCOME_FAILED : GHL_OUTCOME_PASSED,
				low ? "Wait for the daily budget to reset; ghl_fdw.request_stats and the requests column of ghl_fdw.sync_runs show what spends it." : NULL,
				"%s.", detail.data);

	if (check->date == 0)
		set_row(check, GHL_CHECK_CLOCK, GHL_OUTCOME_SKIPPED, NULL,
				"The API sent no Date header.");
	else
	{
		TimestampTz skew = check->received - check->date - USECS_PER_SEC / 2;
		int64		secs = (Abs(skew) + USECS_PER_SEC / 2) / USECS_PER_SEC;

		if (secs > GHL_CHECK_MAX_SKEW_SECS)
			set_row(check, GHL_CHECK_CLOCK, GHL_OUTCOME_FAILED,
					"Synchronize this database server's clock (NTP): tokens expire and webhook deliveries are accepted by it.",
					"The local clock is %lld s %s the API's (its Date header).",
					(long long) secs, skew > 0 ? "ahead of" : "behind");
		else
			set_row(check, GHL_CHECK_CLOCK, GHL_OUTCOME_PASSED, NULL,
					"The local clock is within %d s of the API's (its Date header).",
					GHL_CHECK_MAX_SKEW_SECS);
	}
}

/* ----------------------------------------------------------------
 * Sync
 * ----------------------------------------------------------------
 */

/*
 * The tables of the resources the server synced must be there: a table
 * dropped since is created again only by the next sync.
 */
static void
check_sync_tables(GhlCheck *check)
{
	GhlOptions *options = check->options;
	Oid			nspid = get_namespace_oid(options->sync_schema, true);
	List	   *present = NIL;
	List	   *missing = NIL;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		const char *name = ghl_sync_resource_name(r);
		char	   *table = quote_qualified_identifier(options->sync_schema, name);

		if (check->runs[r].status == NULL)
			continue;
		if (OidIsValid(nspid) && OidIsValid(get_relname_relid(name, nspid)))
			present = lappend(present, table);
		else
			missing = lappend(missing, table);
	}
	if (present == NIL && missing == NIL)
		set_row(check, GHL_CHECK_SYNC_TABLES, GHL_OUTCOME_SKIPPED,
				psprintf("SELECT * FROM ghl_fdw.sync(%s) creates and fills them.",
						 quote_literal_cstr(options->server_name)),
				"The server has not been synced into schema %s yet.",
				quote_identifier(options->sync_schema));
	else if (missing != NIL)
		set_row(check, GHL_CHECK_SYNC_TABLES, GHL_OUTCOME_FAILED,
				psprintf("The next sync creates them again; a full one fills them: SELECT * FROM ghl_fdw.sync(%s, full => true).",
						 quote_literal_cstr(options->server_name)),
				"Synced before, but missing now: %s.", join(missing));
	else
		set_row(check, GHL_CHECK_SYNC_TABLES, GHL_OUTCOME_PASSED, NULL,
				"%s.", join(present));
}

/* The last sync run of each resource the server synced. */
static void
check_sync_runs(GhlCheck *check)
{
	List	   *runs = NIL;
	bool		failed = false;
	int			r;

	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		GhlCheckRun *run = &check->runs[r];

		if (run->status == NULL)
			continue;
		runs = lappend(runs, psprintf("%s %s %s ago%s%s", ghl_sync_resource_name(r),
									  run->status, run->age,
									  run->error ? ": " : "",
									  run->error ? run->error : ""));
		failed |= strcmp(run->status, "failed") == 0;
	}
	if (runs == NIL)
		set_row(check, GHL_CHECK_SYNC_RUNS, GHL_OUTCOME_SKIPPED, NULL,
				"The server has not been synced yet.");
	else
		set_row(check, GHL_CHECK_SYNC_RUNS,
				failed ? GHL_OUTCOME_FAILED : GHL_OUTCOME_PASSED,
				failed ? "Remove the cause the error names; the next run resumes where the failed one stopped, and ghl_fdw.sync_runs keeps every run." : NULL,
				"Last runs: %s.", join(runs));
}

/*
 * The pg_cron job schedule_sync() makes for the server, in this database,
 * and its last run.  The caller sees its own jobs (a superuser, all);
 * without pg_cron, or without USAGE on its schema, there is nothing to see.
 */
static void
step_schedule(GhlCheck *check, void *arg)
{
	GhlOptions *options = check->options;
	char	   *server = quote_literal_cstr(options->server_name);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	SPI_connect();
	check_query("SELECT pg_catalog.has_schema_privilege('cron', 'USAGE')"
				" FROM pg_catalog.pg_extension e"
				" WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron'",
				0, NULL, NULL);
	if (SPI_processed == 0)
		set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_SKIPPED,
				"To sync on a schedule, install pg_cron (see ghl_fdw.schedule_sync).",
				"pg_cron is not installed in this database: the server syncs only when ghl_fdw.sync() is called.");
	else if (!spi_bool(0, 1))
		set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_SKIPPED,
				psprintf("GRANT USAGE ON SCHEMA cron TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false))),
				"The current user may not see pg_cron's jobs.");
	else
	{
		values[0] = CStringGetTextDatum(psprintf("ghl_fdw_sync_%s",
												 options->server_name));
		check_query("SELECT j.jobid, j.schedule, j.active, d.status, d.return_message,"
					" pg_catalog.date_trunc('second', pg_catalog.now()"
					" OPERATOR(pg_catalog.-) d.end_time)::pg_catalog.text"
					" FROM cron.job j LEFT JOIN LATERAL"
					" (SELECT r.status, r.return_message, r.end_time"
					"  FROM cron.job_run_details r"
					"  WHERE r.jobid OPERATOR(pg_catalog.=) j.jobid"
					"  ORDER BY r.runid DESC LIMIT 1) d ON true"
					" WHERE j.jobname OPERATOR(pg_catalog.=) $1"
					" AND j.database OPERATOR(pg_catalog.=) pg_catalog.current_database()"
					" ORDER BY (j.username OPERATOR(pg_catalog.=) CURRENT_USER) DESC"
					" LIMIT 1",
					1, argtypes, values);
		if (SPI_processed == 0)
			set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_SKIPPED,
					psprintf("SELECT ghl_fdw.schedule_sync(%s); syncs it every 15 minutes.",
							 server),
					"The server has no pg_cron job (%s) in this database.",
					TextDatumGetCString(values[0]));
		else
		{
			char	   *job = psprintf("pg_cron job %s (%s)", SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
									   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
			char	   *status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
			char	   *message = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
			char	   *age = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);

			if (!spi_bool(0, 3))
				set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_FAILED,
						psprintf("SELECT cron.alter_job(%s, active => true);",
								 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
						"%s is not active.", job);
			else if (status == NULL)
				set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_PASSED, NULL,
						"%s has not run yet.", job);
			else if (strcmp(status, "failed") == 0)
				set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_FAILED,
						"ghl_fdw.sync_runs has the run's rows; cron.job_run_details all runs of the job.",
						"The last run of %s failed%s%s: %s", job,
						age ? " " : "", age ? psprintf("%s ago", age) : "",
						message ? message : "(no message)");
			else
				set_row(check, GHL_CHECK_SYNC_SCHEDULE, GHL_OUTCOME_PASSED, NULL,
						"The last run of %s: %s%s%s.", job, status,
						age ? " " : "", age ? psprintf("%s ago", age) : "");
		}
	}
	SPI_finish();
}

/*
 * SQL: ghl_fdw.check(server_name) RETURNS TABLE (check, ok, detail, hint).
 * Like the other entry points it acts only for a role with USAGE on the
 * server and a user mapping for it.
 */
Datum
ghl_fdw_check(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	GhlCheck   *check = palloc0(sizeof(GhlCheck));
	ErrorData  *edata;
	bool		nothing_used;
	int			r;

	check->options = ghl_get_options(ghl_sync_server_arg(fcinfo), GetUserId());
	check->conn = ghl_get_connection(check->options);
	check->oauth = check->options->auth_mode != GHL_AUTH_ACCESS_TOKEN;
	InitMaterializedSRF(fcinfo, 0);

	edata = run_step(step_catalog, check, NULL);
	if (edata != NULL)
	{
		set_error_row(check, GHL_CHECK_SYNC_TABLES, edata, NULL);
		set_error_row(check, GHL_CHECK_SYNC_RUNS, edata, NULL);
	}
	/* nothing in use yet: everything is checked */
	nothing_used = true;
	for (r = 0; r < GHL_NUM_RESOURCES; r++)
		nothing_used &= !check->used[r];
	if (nothing_used)
		memset(check->used, true, sizeof(check->used));

	if (check->oauth)
		check_oauth_token(check);
	if (check->unchecked == NULL)
		check_probe(check);
	check_scopes(check);
	check_calendars(check);
	check_headers(check);
	check_sync_tables(check);
	check_sync_runs(check);
	edata = run_step(step_schedule, check, NULL);
	if (edata != NULL)
		set_error_row(check, GHL_CHECK_SYNC_SCHEDULE, edata, NULL);

	for (r = 0; r < GHL_CHECK_NUM_ROWS; r++)
	{
		GhlCheckResult *result = &check->rows[r];
		Datum		values[4];
		bool		nulls[4] = {0};

		if (result->outcome == GHL_OUTCOME_UNSET)
			set_row(check, r, GHL_OUTCOME_SKIPPED, NULL, "Not checked: %s.",
					check->unchecked ? check->unchecked : "an earlier check failed");
		values[0] = CStringGetTextDatum(row_names[r]);
		nulls[1] = result->outcome == GHL_OUTCOME_SKIPPED;
		values[1] = BoolGetDatum(result->outcome == GHL_OUTCOME_PASSED);
		values[2] = CStringGetTextDatum(result->detail);
		nulls[3] = result->hint == NULL;
		if (result->hint != NULL)
			values[3] = CStringGetTextDatum(result->hint);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
