/*-------------------------------------------------------------------------
 *
 * pull.c
 *		  The application's own tables: pull a row's GHL contact when the
 *		  row appears (ghl_fdw.pull_contact_trigger), and fill blank
 *		  columns of existing rows (ghl_fdw.enrich).
 *
 * A row finds its contact by a match spec "kind:column,..." tried in
 * order: kind id (the column holds the contact id), email or phone (a
 * search with that one condition).  The contact is pulled with its tasks,
 * notes and appointments into the Rankr tables, as refresh_contact does,
 * and each column of the row that is blank (NULL, or empty) takes the
 * value of the contact's column mapped to it ("col=field"); a value the
 * application set is never overwritten.
 *
 * enrich() does the same for a table's existing rows in bulk: it matches
 * them against the synced contacts first, set-based, and asks the API
 * only for the rows no synced contact matches.
 *
 * IDENTIFICATION
 *		  src/pull.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

typedef enum GhlMatchKind
{
	GHL_MATCH_ID,				/* the column holds the contact's id */
	GHL_MATCH_EMAIL,			/* its email, searched for */
	GHL_MATCH_PHONE				/* its phone, searched for */
} GhlMatchKind;

static const char *const match_kinds[] = {"id", "email", "phone"};

/* One way a row finds its contact. */
typedef struct GhlMatch
{
	GhlMatchKind kind;
	char	   *column;
	AttrNumber	attnum;
} GhlMatch;

/* One column of the row filled from a column of the contact. */
typedef struct GhlFill
{
	char	   *column;
	AttrNumber	attnum;
	char	   *field;			/* a column of the contacts sync table */
} GhlFill;

PG_FUNCTION_INFO_V1(ghl_fdw_pull_contact_trigger);
PG_FUNCTION_INFO_V1(ghl_fdw_enrich);

/* The attribute number of a column of desc, or an error naming the table. */
static AttrNumber
column_attnum(TupleDesc desc, const char *column, const char *relname)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);

		if (!attr->attisdropped && strcmp(NameStr(attr->attname), column) == 0)
			return attr->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of table \"%s\" does not exist", column, relname)));
	return InvalidAttrNumber;
}

/*
 * Parse "kind:column,..." (kinds id, email, phone) against the table's
 * columns.
 */
static List *
parse_match(const char *spec, TupleDesc desc, const char *relname)
{
	List	   *matches = NIL;
	char	   *copy = pstrdup(spec);
	char	   *item;
	char	   *save;

	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *colon = strchr(item, ':');
		GhlMatch   *match = palloc0(sizeof(GhlMatch));
		int			k;

		while (*item == ' ')
			item++;
		if (colon == NULL || colon == item || colon[1] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid contact match \"%s\"", item),
					 errhint("Give kind:column pairs, kind id, email or phone, tried in order: 'id:ghl_contact_id,email:email'.")));
		*colon = '\0';
		for (k = 0; k < lengthof(match_kinds); k++)
		{
			if (strcmp(item, match_kinds[k]) == 0)
				break;
		}
		if (k == lengthof(match_kinds))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid contact match kind \"%s\"", item),
					 errhint("Kinds are id, email and phone.")));
		match->kind = (GhlMatchKind) k;
		match->column = pstrdup(colon + 1);
		match->attnum = column_attnum(desc, match->column, relname);
		matches = lappend(matches, match);
	}
	if (matches == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no contact match given"),
				 errhint("Give kind:column pairs, kind id, email or phone, tried in order: 'id:ghl_contact_id,email:email'.")));
	return matches;
}

/* A fill of column from field, both checked. */
static GhlFill *
make_fill(const char *column, const char *field, TupleDesc desc,
		  const char *relname, GhlTarget *contacts)
{
	GhlFill    *fill = palloc0(sizeof(GhlFill));
	int			c;

	fill->column = pstrdup(column);
	fill->attnum = column_attnum(desc, column, relname);
	fill->field = pstrdup(field);
	for (c = 0; c < ghl_target_ncolumns(contacts); c++)
	{
		if (strcmp(ghl_target_column(contacts, c), field) == 0)
			return fill;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("contacts have no column \"%s\"", field),
			 errhint("Map the column to one of the columns of the contacts sync table (first_name, phone, company_name, ...).")));
	return NULL;
}

/* A column value as text, or NULL when it is NULL or empty (blank). */
static char *
value_text(Datum value, bool isnull, Oid typid)
{
	Oid			outfunc;
	bool		varlena;
	char	   *text;

	if (isnull)
		return NULL;
	getTypeOutputInfo(typid, &outfunc, &varlena);
	text = OidOutputFunctionCall(outfunc, value);
	return text[0] == '\0' ? NULL : text;
}

/*
 * The id of the server's contact whose email (or phone) is value: a search
 * with that one condition (the API matches emails without regard to case
 * and phones in any format).  NULL when there is none.
 */
static char *
search_contact(GhlOptions *options, const char *field, const char *value,
			   GhlRequestStats *stats)
{
	GhlRequest	request = {0};
	GhlResponse response;
	GhlFilterValue fv = {0};
	GhlJsonPage *page;
	ListCell   *lc;

	fv.field = field;
	fv.op = "eq";
	fv.text = value;
	request.method = "POST";
	request.path = ghl_endpoint(GHL_EP_CONTACTS_SEARCH)->path;
	request.api_version = options->api_version;
	request.body = ghl_json_search_body(options->location_id, 1, NULL,
										list_make1(&fv), NULL, NULL, false);
	request.authenticated = true;
	request.idempotent = true;
	ghl_http_execute(ghl_get_connection(options), &request, &response, stats);
	if (response.status == 404)
		return NULL;
	page = ghl_json_parse_page(response.data, response.len, "contacts", false,
							   options->server_name);
	foreach(lc, ghl_json_page_strings(page, "id"))
	{
		if (lfirst(lc) != NULL)
			return lfirst(lc);
	}
	return NULL;
}

/*
 * Whether the contact is live in the server's contacts sync table (after
 * a pull: whether the API has it).
 */
static bool
contact_synced(GhlOptions *options, const char *contact_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		found;
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	args[0] = CStringGetTextDatum(options->location_id);
	args[1] = CStringGetTextDatum(contact_id);
	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT 1 FROM %s.contacts"
									   " WHERE location_id = $1 AND id = $2 AND deleted_at IS NULL",
									   quote_identifier(options->sync_schema)),
							  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the contacts sync table");
	found = SPI_processed > 0;
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return found;
}

/*
 * Find the contact of a row (the matches in order) and pull it.  Returns
 * its id, or NULL when nothing matches.  An API failure is raised; with
 * "keep" it is recorded in the ledger and NULL is returned instead.
 */
static char *
find_and_pull(Oid serverid, GhlOptions *options, List *matches, TupleDesc desc,
			  Datum *values, bool *nulls, bool keep)
{
	ListCell   *lc;

	foreach(lc, matches)
	{
		GhlMatch   *match = lfirst(lc);
		int			i = match->attnum - 1;
		char	   *value = value_text(values[i], nulls[i], TupleDescAttr(desc, i)->atttypid);
		char	   *contact = NULL;
		ErrorData  *edata = NULL;

		if (value == NULL)
			continue;
		if (match->kind == GHL_MATCH_ID)
			contact = value;
		else
		{
			MemoryContext oldcxt = CurrentMemoryContext;
			ResourceOwner oldowner = CurrentResourceOwner;

			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(oldcxt);
			PG_TRY();
			{
				contact = search_contact(options, match->kind == GHL_MATCH_EMAIL ?
										 "email" : "phone", value, NULL);
				ReleaseCurrentSubTransaction();
			}
			PG_CATCH();
			{
				MemoryContextSwitchTo(oldcxt);
				edata = CopyErrorData();
				FlushErrorState();
				RollbackAndReleaseCurrentSubTransaction();
				if (!keep || edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
					ReThrowError(edata);
				ghl_sync_record_failure(serverid, ghl_ledger_next_run_id(),
										"contact", edata);
			}
			PG_END_TRY();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
		}
		if (edata == NULL && contact != NULL)
			(void) ghl_sync_refresh(serverid, contact, keep ? &edata : NULL);
		if (edata != NULL)
		{
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("could not pull the GHL contact of the row: %s", edata->message),
					 errdetail("The row is kept as it is; the failure is in ghl_fdw.sync_runs.")));
			return NULL;
		}
		if (contact != NULL && contact_synced(options, contact))
			return contact;
	}
	return NULL;
}

/*
 * The contact's values of the fills' fields, as text (NULL for NULL), read
 * from the contacts sync table.
 */
static char **
contact_values(GhlOptions *options, const char *contact_id, List *fills)
{
	char	  **texts = palloc0(sizeof(char *) * Max(list_length(fills), 1));
	StringInfoData sql;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	MemoryContext cxt = CurrentMemoryContext;
	int			nestlevel = NewGUCNestLevel();
	ListCell   *lc;

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	foreach(lc, fills)
		appendStringInfo(&sql, "%s%s::text", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(((GhlFill *) lfirst(lc))->field));
	appendStringInfo(&sql, " FROM %s.contacts WHERE location_id = $1 AND id = $2",
					 quote_identifier(options->sync_schema));
	args[0] = CStringGetTextDatum(options->location_id);
	args[1] = CStringGetTextDatum(contact_id);
	SPI_connect();
	if (SPI_execute_with_args(sql.data, 2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the contacts sync table");
	foreach(lc, fills)
	{
		char	   *text = SPI_processed > 0 ?
			SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						 foreach_current_index(lc) + 1) : NULL;

		texts[foreach_current_index(lc)] = text ? MemoryContextStrdup(cxt, text) : NULL;
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return texts;
}

/*
 * Trigger: BEFORE INSERT OR UPDATE FOR EACH ROW on an application table,
 * with arguments ('<server>', '<match>', '<col>=<field>', ...
 * [, 'on_error=fail|keep']).  Pulls the row's contact into the Rankr
 * tables and fills the row's blank mapped columns.  An UPDATE that leaves
 * the match columns as they were does nothing.
 */
Datum
ghl_fdw_pull_contact_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	char	  **args;
	HeapTuple	tuple;
	Oid			serverid;
	GhlOptions *options;
	GhlTarget  *contacts;
	List	   *matches;
	List	   *fills = NIL;
	bool		keep = false;
	Datum	   *values;
	bool	   *nulls;
	char	   *contact;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ghl_fdw.pull_contact_trigger() must be a BEFORE INSERT OR UPDATE trigger FOR EACH ROW")));
	if (trigdata->tg_trigger->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ghl_fdw.pull_contact_trigger() needs a server and a contact match"),
				 errhint("EXECUTE FUNCTION ghl_fdw.pull_contact_trigger('ghl', 'id:ghl_contact_id,email:email', 'phone=phone')")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	args = trigdata->tg_trigger->tgargs;
	tuple = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ?
		trigdata->tg_trigtuple : trigdata->tg_newtuple;
	serverid = ghl_sync_server(cstring_to_text(args[0]));
	options = ghl_get_options(serverid, GetUserId());
	contacts = ghl_target_open(options->sync_schema,
							   ghl_resource_by_name("contacts"), true,
							   CurrentMemoryContext);
	matches = parse_match(args[1], desc, RelationGetRelationName(rel));
	for (i = 2; i < trigdata->tg_trigger->tgnargs; i++)
	{
		char	   *eq = strchr(args[i], '=');

		if (eq == NULL || eq == args[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid argument \"%s\" of ghl_fdw.pull_contact_trigger()", args[i]),
					 errhint("Give column=field pairs, and optionally on_error=fail or on_error=keep.")));
		*eq = '\0';
		if (strcmp(args[i], "on_error") == 0)
		{
			if (strcmp(eq + 1, "keep") != 0 && strcmp(eq + 1, "fail") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid on_error \"%s\"", eq + 1),
						 errhint("on_error=fail fails the statement; on_error=keep keeps the row and records the failure.")));
			keep = strcmp(eq + 1, "keep") == 0;
		}
		else
			fills = lappend(fills, make_fill(args[i], eq + 1, desc,
											 RelationGetRelationName(rel), contacts));
		*eq = '=';
	}

	/* an UPDATE that leaves every match column as it was: nothing to do */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		ListCell   *lc;
		bool		changed = false;

		foreach(lc, matches)
		{
			GhlMatch   *match = lfirst(lc);
			Form_pg_attribute attr = TupleDescAttr(desc, match->attnum - 1);
			bool		oldnull;
			bool		newnull;
			Datum		old = heap_getattr(trigdata->tg_trigtuple, match->attnum, desc, &oldnull);
			Datum		new = heap_getattr(tuple, match->attnum, desc, &newnull);

			changed |= oldnull != newnull ||
				(!oldnull && !datumIsEqual(old, new, attr->attbyval, attr->attlen));
		}
		if (!changed)
			return PointerGetDatum(tuple);
	}

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, values, nulls);
	contact = find_and_pull(serverid, options, matches, desc, values, nulls, keep);
	if (contact != NULL && fills != NIL)
	{
		char	  **texts = contact_values(options, contact, fills);
		ListCell   *lc;

		foreach(lc, fills)
		{
			GhlFill    *fill = lfirst(lc);
			int			a = fill->attnum - 1;
			Form_pg_attribute attr = TupleDescAttr(desc, a);
			char	   *text = texts[foreach_current_index(lc)];
			Oid			infunc;
			Oid			ioparam;

			if (text == NULL || value_text(values[a], nulls[a], attr->atttypid) != NULL)
				continue;
			getTypeInputInfo(attr->atttypid, &infunc, &ioparam);
			values[a] = OidInputFunctionCall(infunc, text, ioparam, attr->atttypmod);
			nulls[a] = false;
		}
		tuple = heap_form_tuple(desc, values, nulls);
	}
	return PointerGetDatum(tuple);
}

/*
 * Run one statement of enrich() as the caller, with search_path pinned;
 * returns the rows it processed.
 */
static uint64
enrich_execute(const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	int			nestlevel = NewGUCNestLevel();
	uint64		processed;

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 0) < 0)
		elog(ERROR, "enrich statement failed: %s", sql);
	processed = SPI_processed;
	AtEOXact_GUC(true, nestlevel);
	return processed;
}

/* "t.col IS NULL OR t.col::text = ''", the blank test of a column */
static char *
blank_sql(const char *column)
{
	const char *q = quote_identifier(column);

	return psprintf("(t.%s IS NULL OR t.%s::text = '')", q, q);
}

/*
 * The key by which a row of the target (prefix "t") or a synced contact
 * (prefix "c") matches, by one kind: the id; the email, whatever the case;
 * the phone's digits.  NULL when the row has none.
 */
static char *
match_key_sql(GhlMatchKind kind, const char *prefix, const char *column)
{
	const char *q = psprintf("%s.%s", prefix, quote_identifier(column));

	switch (kind)
	{
		case GHL_MATCH_ID:
			return psprintf("nullif(%s::text, '')", q);
		case GHL_MATCH_EMAIL:
			return psprintf("nullif(lower(%s::text), '')", q);
		case GHL_MATCH_PHONE:
			return psprintf("nullif(regexp_replace(%s::text, '\\D', '', 'g'), '')", q);
	}
	return NULL;
}

/*
 * ghl_fdw.enrich(target regclass, server_name text, match text,
 * column_map jsonb): fill the blank mapped columns of a table's existing
 * rows from their GHL contacts, matched (per "match") against the synced
 * contacts first and, for the rows none of those match, through the API
 * (the contacts found are pulled into the Rankr tables).  Values the
 * table holds are never overwritten.  Returns a summary: rows with a
 * blank mapped column, how many matched synced contacts and contacts
 * found through the API, the requests made, and the values filled per
 * column.
 */
Datum
ghl_fdw_enrich(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			serverid;
	GhlOptions *options;
	GhlTarget  *contacts;
	Relation	rel;
	TupleDesc	desc;
	char	   *relname;
	char	   *qualified;
	List	   *matches;
	List	   *fills = NIL;
	AclResult	aclresult;
	GhlRequestStats stats = {0};
	StringInfoData blank;
	StringInfoData summary;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int64		candidates;
	int64		from_synced = 0;
	int64		from_api = 0;
	int64		refresh_requests = 0;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the arguments of ghl_fdw.enrich() must not be NULL")));
	relid = PG_GETARG_OID(0);
	serverid = ghl_sync_server(PG_GETARG_TEXT_PP(1));
	options = ghl_get_options(serverid, GetUserId());
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT | ACL_UPDATE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));

	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	relname = RelationGetRelationName(rel);
	qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   relname);
	contacts = ghl_target_open(options->sync_schema, ghl_resource_by_name("contacts"),
							   true, CurrentMemoryContext);
	matches = parse_match(text_to_cstring(PG_GETARG_TEXT_PP(2)), desc, relname);

	/* the column map, {"<col>": "<field>"} */
	SPI_connect();
	args[0] = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(jsonb_out,
																	  PG_GETARG_DATUM(3))));
	if (SPI_execute_with_args("SELECT key, value FROM pg_catalog.jsonb_each_text($1::pg_catalog.jsonb)",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column_map must be a JSON object of column names")));
	{
		uint64		i;

		for (i = 0; i < SPI_processed; i++)
		{
			char	   *column = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			char	   *field = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			MemoryContext spicxt = MemoryContextSwitchTo(TopTransactionContext);

			if (field == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("column_map maps column \"%s\" to null", column),
						 errhint("Give {\"<column>\": \"<contact column>\", ...}.")));
			fills = lappend(fills, make_fill(column, field, desc, relname, contacts));
			MemoryContextSwitchTo(spicxt);
		}
	}
	if (fills == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column_map names no column"),
				 errhint("Give {\"<column>\": \"<contact column>\", ...}.")));

	initStringInfo(&blank);
	foreach(lc, fills)
		appendStringInfo(&blank, "%s%s", blank.len ? " OR " : "",
						 blank_sql(((GhlFill *) lfirst(lc))->column));

	/* the rows with something to fill, locked, and which contact each gets */
	if (OidIsValid(RangeVarGetRelid(makeRangeVar("pg_temp", "ghl_fdw_enrich", -1),
									NoLock, true)))
		enrich_execute("TRUNCATE pg_temp.ghl_fdw_enrich", 0, NULL, NULL);
	else
		enrich_execute("CREATE TEMP TABLE ghl_fdw_enrich (row_id tid PRIMARY KEY,"
					   " contact_id text) ON COMMIT DROP;"
					   " CREATE TEMP TABLE ghl_fdw_enrich_keys (row_id tid, key text)"
					   " ON COMMIT DROP;"
					   " CREATE INDEX ON pg_temp.ghl_fdw_enrich_keys (key)", 0, NULL, NULL);
	candidates = enrich_execute(psprintf("SELECT 1 FROM %s t WHERE %s FOR UPDATE",
										 qualified, blank.data), 0, NULL, NULL);

	/*
	 * Match kind by kind.  The keys of the rows still unmatched go to an
	 * indexed, analyzed table of their own first: joined on expressions,
	 * with the statistics of a table just created, the planner could
	 * otherwise compare every row with every contact.
	 */
	args[0] = CStringGetTextDatum(options->location_id);
	foreach(lc, matches)
	{
		GhlMatch   *match = lfirst(lc);

		enrich_execute("TRUNCATE pg_temp.ghl_fdw_enrich_keys", 0, NULL, NULL);
		enrich_execute(psprintf("INSERT INTO pg_temp.ghl_fdw_enrich_keys"
								" SELECT t.ctid, %s FROM %s t WHERE (%s) AND %s IS NOT NULL"
								" AND NOT EXISTS (SELECT 1 FROM pg_temp.ghl_fdw_enrich m"
								"                 WHERE m.row_id = t.ctid)",
								match_key_sql(match->kind, "t", match->column), qualified,
								blank.data, match_key_sql(match->kind, "t", match->column)),
					   0, NULL, NULL);
		enrich_execute("ANALYZE pg_temp.ghl_fdw_enrich_keys", 0, NULL, NULL);
		from_synced += enrich_execute(psprintf(
			"INSERT INTO pg_temp.ghl_fdw_enrich"
			" SELECT DISTINCT ON (k.row_id) k.row_id, c.id"
			" FROM pg_temp.ghl_fdw_enrich_keys k JOIN %s.contacts c ON k.key = %s"
			" WHERE c.location_id = $1 AND c.deleted_at IS NULL"
			" ORDER BY k.row_id, c.id",
			quote_identifier(options->sync_schema),
			match_key_sql(match->kind, "c", match->kind == GHL_MATCH_ID ? "id" :
						  match->kind == GHL_MATCH_EMAIL ? "email" : "phone")),
			1, argtypes, args);
	}

	/* the rows no synced contact matches: through the API, one by one */
	{
		StringInfoData sql;
		uint64		i;
		uint64		n;
		SPITupleTable *unmatched;
		Oid			maptypes[2] = {TIDOID, TEXTOID};
		Datum		mapargs[2];
		bool		isnull;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT t.ctid");
		foreach(lc, matches)
			appendStringInfo(&sql, ", t.%s::text",
							 quote_identifier(((GhlMatch *) lfirst(lc))->column));
		appendStringInfo(&sql, " FROM %s t WHERE (%s) AND NOT EXISTS"
						 " (SELECT 1 FROM pg_temp.ghl_fdw_enrich m WHERE m.row_id = t.ctid)",
						 qualified, blank.data);
		n = enrich_execute(sql.data, 0, NULL, NULL);
		unmatched = SPI_tuptable;
		for (i = 0; i < n; i++)
		{
			char	   *contact = NULL;

			foreach(lc, matches)
			{
				GhlMatch   *match = lfirst(lc);
				char	   *value = SPI_getvalue(unmatched->vals[i], unmatched->tupdesc,
												 foreach_current_index(lc) + 2);

				if (value == NULL || value[0] == '\0')
					continue;
				contact = match->kind == GHL_MATCH_ID ? value :
					search_contact(options, match->kind == GHL_MATCH_EMAIL ? "email" : "phone",
								   value, &stats);
				if (contact != NULL)
				{
					refresh_requests +=
						ghl_ledger_requests(ghl_sync_refresh(serverid, contact, NULL));
					if (contact_synced(options, contact))
						break;
					contact = NULL;
				}
			}
			if (contact == NULL)
				continue;
			mapargs[0] = SPI_getbinval(unmatched->vals[i], unmatched->tupdesc, 1, &isnull);
			mapargs[1] = CStringGetTextDatum(contact);
			from_api += enrich_execute("INSERT INTO pg_temp.ghl_fdw_enrich VALUES ($1, $2)",
									   2, maptypes, mapargs);
		}
	}

	/* fill, and count what each column got */
	enrich_execute("ANALYZE pg_temp.ghl_fdw_enrich", 0, NULL, NULL);
	initStringInfo(&summary);
	appendStringInfo(&summary, "{\"rows\": " INT64_FORMAT ", \"from_synced\": " INT64_FORMAT
					 ", \"from_api\": " INT64_FORMAT ", \"unmatched\": " INT64_FORMAT
					 ", \"requests\": " INT64_FORMAT ", \"filled\": {",
					 candidates, from_synced, from_api,
					 candidates - from_synced - from_api,
					 stats.requests + refresh_requests);
	{
		StringInfoData counts;
		StringInfoData sets;
		char	   *joined = psprintf("pg_temp.ghl_fdw_enrich m, %s.contacts c"
									  " WHERE t.ctid = m.row_id AND c.location_id = $1"
									  " AND c.id = m.contact_id",
									  quote_identifier(options->sync_schema));

		/*
		 * One UPDATE fills every column (a second would no longer find the
		 * rows by their ctid); the counts come first.
		 */
		initStringInfo(&counts);
		initStringInfo(&sets);
		foreach(lc, fills)
		{
			GhlFill    *fill = lfirst(lc);
			Form_pg_attribute attr = TupleDescAttr(desc, fill->attnum - 1);
			const char *column = quote_identifier(fill->column);
			const char *field = quote_identifier(fill->field);

			appendStringInfo(&counts, "%scount(*) FILTER (WHERE %s AND c.%s IS NOT NULL)",
							 foreach_current_index(lc) ? ", " : "",
							 blank_sql(fill->column), field);
			appendStringInfo(&sets, "%s%s = CASE WHEN %s THEN c.%s::text::%s ELSE t.%s END",
							 foreach_current_index(lc) ? ", " : "", column,
							 blank_sql(fill->column), field,
							 format_type_extended(attr->atttypid, attr->atttypmod,
												  FORMAT_TYPE_TYPEMOD_GIVEN |
												  FORMAT_TYPE_FORCE_QUALIFY),
							 column);
		}
		args[0] = CStringGetTextDatum(options->location_id);
		(void) enrich_execute(psprintf("SELECT %s FROM %s t, %s", counts.data, qualified,
									   joined), 1, argtypes, args);
		foreach(lc, fills)
		{
			appendStringInfoString(&summary, foreach_current_index(lc) ? ", " : "");
			escape_json(&summary, ((GhlFill *) lfirst(lc))->column);
			appendStringInfo(&summary, ": %s",
							 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  foreach_current_index(lc) + 1));
		}
		(void) enrich_execute(psprintf("UPDATE %s t SET %s FROM %s", qualified, sets.data,
									   joined), 1, argtypes, args);
	}
	appendStringInfoString(&summary, "}}");
	SPI_finish();
	table_close(rel, NoLock);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(summary.data)));
}
