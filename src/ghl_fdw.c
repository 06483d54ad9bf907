/*-------------------------------------------------------------------------
 *
 * ghl_fdw.c
 *		  The FdwRoutine of ghl_fdw: planning, scanning, EXPLAIN and
 *		  IMPORT FOREIGN SCHEMA.
 *
 * A scan streams: it holds one response page at a time in a page memory
 * context and builds each tuple in a tuple context, so memory does not
 * grow with the number of rows.
 *
 * IDENTIFICATION
 *		  src/ghl_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* cost of one API round trip, in units of seq_page_cost */
#define GHL_REQUEST_COST	1000.0
/* cost of turning one JSON row into a tuple */
#define GHL_ROW_COST		0.05

/* Planner state kept in baserel->fdw_private between planning callbacks. */
typedef struct GhlPlanState
{
	const GhlResource *resource;
	GhlRequestPlan *plan;
	List	   *fdw_exprs;
	Bitmapset  *attrs_used;
} GhlPlanState;

/* Indexes into ForeignScan.fdw_private. */
enum GhlScanPrivateIndex
{
	GhlScanRequestPlan,			/* the GhlRequestPlan as a list */
	GhlScanAttrsUsed			/* attribute numbers the query reads */
};

/* Executor state of one foreign scan. */
typedef struct GhlFdwScanState
{
	Relation	rel;
	const GhlResource *resource;
	GhlRequestPlan *plan;
	const GhlEndpoint *endpoint;
	GhlOptions *options;
	GhlConnection *conn;		/* opened on the first fetch */

	List	   *fdw_expr_states;
	StringInfoData id_value;	/* the id to fetch, for by-id endpoints */
	StringInfoData contact_value;	/* the contact whose rows to fetch */

	GhlColumnMap *columns;		/* the columns the query reads */
	int			ncolumns;

	/* paging */
	GhlJsonPage *page;
	int			next_row;
	bool		exhausted;
	bool		started;		/* parameters evaluated for this run */
	StringInfoData cursor;		/* searchAfter of the previous page */

	MemoryContext page_cxt;		/* the current response and its JSON */
	MemoryContext tuple_cxt;	/* the current tuple's values */

	GhlRequestStats stats;
	int64		pages;
} GhlFdwScanState;

PG_FUNCTION_INFO_V1(ghl_fdw_handler);

static void ghlGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
								 Oid foreigntableid);
static void ghlGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
							   Oid foreigntableid);
static ForeignScan *ghlGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
									  Oid foreigntableid, ForeignPath *best_path,
									  List *tlist, List *scan_clauses,
									  Plan *outer_plan);
static void ghlBeginForeignScan(ForeignScanState *node, int eflags);
static TupleTableSlot *ghlIterateForeignScan(ForeignScanState *node);
static void ghlReScanForeignScan(ForeignScanState *node);
static void ghlEndForeignScan(ForeignScanState *node);
static void ghlExplainForeignScan(ForeignScanState *node, ExplainState *es);
static List *ghlImportForeignSchema(ImportForeignSchemaStmt *stmt,
									Oid serverOid);

static void start_scan(GhlFdwScanState *st);
static bool evaluate_parameters(GhlFdwScanState *st, ExprContext *econtext);
static bool evaluate_text_parameter(GhlFdwScanState *st, ExprContext *econtext,
									int expr_index, StringInfo buf);
static void fetch_next_page(GhlFdwScanState *st);

/*
 * The handler: tells PostgreSQL which callbacks implement the FDW.
 */
Datum
ghl_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = ghlGetForeignRelSize;
	routine->GetForeignPaths = ghlGetForeignPaths;
	routine->GetForeignPlan = ghlGetForeignPlan;
	routine->BeginForeignScan = ghlBeginForeignScan;
	routine->IterateForeignScan = ghlIterateForeignScan;
	routine->ReScanForeignScan = ghlReScanForeignScan;
	routine->EndForeignScan = ghlEndForeignScan;
	routine->ExplainForeignScan = ghlExplainForeignScan;
	routine->ImportForeignSchema = ghlImportForeignSchema;

	/* writes: modify.c */
	ghl_modify_routine(routine);

	PG_RETURN_POINTER(routine);
}

/*
 * Decide the request plan early, because the row estimate depends on it:
 * a lookup by id returns one row, a search returns the whole location.
 */
static void
ghlGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
					 Oid foreigntableid)
{
	GhlPlanState *ps = palloc0(sizeof(GhlPlanState));
	ListCell   *lc;

	ps->resource = ghl_resource_for_table(foreigntableid);
	ps->plan = ghl_plan_request(root, baserel, ps->resource, &ps->fdw_exprs);

	/* only the columns the query reads are converted from JSON */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &ps->attrs_used);
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		pull_varattnos((Node *) rinfo->clause, baserel->relid, &ps->attrs_used);
	}

	baserel->fdw_private = ps;
	baserel->rows = clamp_row_est(ps->plan->estimated_rows *
								  clauselist_selectivity(root,
														 baserel->baserestrictinfo,
														 0, JOIN_INNER, NULL));
}

/*
 * One path: the request plan chosen above.  Its cost is dominated by the
 * number of API round trips.
 */
static void
ghlGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
				   Oid foreigntableid)
{
	GhlPlanState *ps = (GhlPlanState *) baserel->fdw_private;
	Cost		startup_cost = GHL_REQUEST_COST;
	Cost		total_cost = ps->plan->estimated_requests * GHL_REQUEST_COST +
		ps->plan->estimated_rows * GHL_ROW_COST;

	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL,
									 baserel->rows,
									 startup_cost, total_cost,
									 NIL, NULL, NULL, NIL));
}

static ForeignScan *
ghlGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
				  Oid foreigntableid, ForeignPath *best_path,
				  List *tlist, List *scan_clauses, Plan *outer_plan)
{
	GhlPlanState *ps = (GhlPlanState *) baserel->fdw_private;
	List	   *attnums = NIL;
	int			attnum = -1;
	bool		whole_row;

	/*
	 * Every clause is checked locally too: the API's matching differs from
	 * SQL's in places (case, trimming), and rechecking an exact match is
	 * cheap.
	 */
	scan_clauses = extract_actual_clauses(scan_clauses, false);

	whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber,
							  ps->attrs_used);
	while ((attnum = bms_next_member(ps->attrs_used, attnum)) >= 0)
	{
		AttrNumber	attno = attnum + FirstLowInvalidHeapAttributeNumber;

		if (attno > 0)
			attnums = lappend_int(attnums, attno);
	}
	if (whole_row)
		attnums = list_make1_int(0);

	return make_foreignscan(tlist, scan_clauses, baserel->relid,
							ps->fdw_exprs,
							list_make2(ghl_request_plan_to_list(ps->plan), attnums),
							NIL, NIL, outer_plan);
}

/*
 * Set up the scan without touching the network: EXPLAIN stops here, and
 * the connection is opened by the first fetch.
 */
static void
ghlBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	RangeTblEntry *rte;
	GhlFdwScanState *st;
	Oid			userid;

	st = palloc0(sizeof(GhlFdwScanState));
	node->fdw_state = st;
	st->rel = node->ss.ss_currentRelation;
	st->resource = ghl_resource_for_table(RelationGetRelid(st->rel));
	st->plan = ghl_request_plan_from_list(list_nth(fsplan->fdw_private,
												   GhlScanRequestPlan));
	st->endpoint = ghl_endpoint(st->plan->endpoint);

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	rte = exec_rt_fetch(fsplan->scan.scanrelid, estate);
	userid = OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
	st->options = ghl_get_options(GetForeignTable(RelationGetRelid(st->rel))->serverid,
								  userid);
	st->columns = ghl_build_column_maps(st->rel,
										list_nth(fsplan->fdw_private, GhlScanAttrsUsed),
										st->resource, &st->ncolumns);
	st->fdw_expr_states = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	initStringInfo(&st->cursor);
	initStringInfo(&st->id_value);
	initStringInfo(&st->contact_value);

	st->page_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "ghl_fdw page",
										 ALLOCSET_DEFAULT_SIZES);
	st->tuple_cxt = AllocSetContextCreate(estate->es_query_cxt,
										  "ghl_fdw tuple",
										  ALLOCSET_DEFAULT_SIZES);
	start_scan(st);
}

/*
 * How each column read by the query is filled: its JSON key and the input
 * function of its type.  attnums holds 0 when the whole row is needed.
 * Writes fill their RETURNING rows through the same maps.
 */
GhlColumnMap *
ghl_build_column_maps(Relation rel, List *attnums,
					  const GhlResource *resource, int *ncolumns)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	GhlColumnMap *columns = palloc0(sizeof(GhlColumnMap) * tupdesc->natts);
	bool		all = list_member_int(attnums, 0);
	int			n = 0;
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		GhlColumnMap *col = &columns[n];
		Oid			inputfunc;
		Oid			typid;
		char	   *field;

		if (attr->attisdropped || !(all || list_member_int(attnums, attr->attnum)))
			continue;

		col->attindex = i;
		col->attname = pstrdup(NameStr(attr->attname));
		field = ghl_get_column_field(RelationGetRelid(rel), attr->attnum);
		col->is_raw = strcmp(field, "*") == 0 ||
			(strcmp(col->attname, "raw") == 0 && strcmp(field, "raw") == 0);
		col->field = field;
		col->search_field = ghl_search_field_for(resource, field);
		col->typid = attr->atttypid;
		col->typmod = attr->atttypmod;
		col->is_json = (attr->atttypid == JSONBOID || attr->atttypid == JSONOID);

		typid = attr->atttypid;
		col->elemtypid = col->is_json ? InvalidOid : get_element_type(typid);
		if (OidIsValid(col->elemtypid))
		{
			typid = col->elemtypid;
			get_typlenbyvalalign(typid, &col->elemlen, &col->elembyval,
								 &col->elemalign);
		}
		col->is_timestamp = (typid == TIMESTAMPTZOID || typid == TIMESTAMPOID);
		getTypeInputInfo(typid, &inputfunc, &col->ioparam);
		fmgr_info(inputfunc, &col->input);

		if (col->is_raw && !col->is_json)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("column \"%s\" of foreign table \"%s\" must be of type jsonb to hold the whole object",
							col->attname, RelationGetRelationName(rel))));
		n++;
	}
	*ncolumns = n;
	return columns;
}

/*
 * (Re)start paging: forget any page of a previous run.  Run-time
 * parameters are evaluated by the first fetch, since initplans they depend
 * on have not run yet when the scan begins.
 */
static void
start_scan(GhlFdwScanState *st)
{
	MemoryContextReset(st->page_cxt);
	st->page = NULL;
	st->next_row = 0;
	st->exhausted = false;
	st->started = false;
	resetStringInfo(&st->cursor);
}

/*
 * Evaluate the request plan's run-time values (the id of a lookup) for
 * this run of the scan.  Returns false when they rule out every row.
 */
static bool
evaluate_parameters(GhlFdwScanState *st, ExprContext *econtext)
{
	return evaluate_text_parameter(st, econtext, st->plan->id_expr,
								   &st->id_value) &&
		evaluate_text_parameter(st, econtext, st->plan->contact_expr,
								&st->contact_value);
}

/*
 * One text parameter into buf (reused: a nested loop rescans once per
 * outer row).  "= NULL" matches nothing, so a NULL rules out every row.
 */
static bool
evaluate_text_parameter(GhlFdwScanState *st, ExprContext *econtext,
						int expr_index, StringInfo buf)
{
	ExprState  *state;
	bool		isnull;
	Datum		value;

	resetStringInfo(buf);
	if (expr_index < 0)
		return true;
	state = list_nth(st->fdw_expr_states, expr_index);
	value = ExecEvalExpr(state, econtext, &isnull);
	if (isnull)
		return false;
	appendStringInfoString(buf, TextDatumGetCString(value));
	return true;
}

static TupleTableSlot *
ghlIterateForeignScan(ForeignScanState *node)
{
	GhlFdwScanState *st = (GhlFdwScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	ExecClearTuple(slot);
	for (;;)
	{
		if (st->page != NULL && st->next_row < ghl_json_page_rows(st->page))
		{
			MemoryContext oldcxt;

			MemoryContextReset(st->tuple_cxt);
			oldcxt = MemoryContextSwitchTo(st->tuple_cxt);
			memset(slot->tts_isnull, true,
				   sizeof(bool) * slot->tts_tupleDescriptor->natts);
			ghl_json_row_to_values(st->page, st->next_row,
								   st->columns, st->ncolumns,
								   st->endpoint->uses_search_fields,
								   RelationGetRelationName(st->rel),
								   slot->tts_values, slot->tts_isnull);
			MemoryContextSwitchTo(oldcxt);
			st->next_row++;
			return ExecStoreVirtualTuple(slot);
		}
		if (st->exhausted)
			return slot;
		if (!st->started)
		{
			st->started = true;
			if (!evaluate_parameters(st, node->ss.ps.ps_ExprContext))
			{
				st->exhausted = true;
				continue;
			}
		}
		fetch_next_page(st);
	}
}

/*
 * Fetch the next page of the scan into the page context, replacing the
 * previous one, and work out whether another page follows.
 */
static void
fetch_next_page(GhlFdwScanState *st)
{
	const GhlEndpoint *ep = st->endpoint;
	GhlOptions *options = st->options;
	GhlRequest request = {0};
	GhlResponse response;
	MemoryContext oldcxt;
	int			nrows;

	if (st->conn == NULL)
		st->conn = ghl_get_connection(options);

	MemoryContextReset(st->page_cxt);
	st->page = NULL;
	st->next_row = 0;
	oldcxt = MemoryContextSwitchTo(st->page_cxt);

	request.method = ep->method;
	request.api_version = ep->api_version ? ep->api_version : options->api_version;
	request.authenticated = true;
	/* every request a scan makes is a read, so retrying it is safe */
	request.idempotent = true;

	request.path = ghl_endpoint_path(ep,
									 ghl_url_escape(st->contact_value.data),
									 ghl_url_escape(st->id_value.data));
	if (st->plan->endpoint == GHL_EP_CONTACTS_SEARCH)
		request.body = ghl_json_search_body(options->location_id,
											options->page_size,
											st->cursor.len > 0 ? st->cursor.data : NULL);

	ghl_http_execute(st->conn, &request, &response, &st->stats);
	st->pages++;

	if (response.status == 404 && ep->not_found_is_empty)
	{
		/* a lookup of an id that does not exist: zero rows, not an error */
		st->exhausted = true;
		MemoryContextSwitchTo(oldcxt);
		return;
	}
	if (response.status < 200 || response.status >= 300)
		ghl_report_http_error(st->conn, &request, &response);

	st->page = ghl_json_parse_page(response.data, response.len,
								   ep->response_key, ep->single_object,
								   options->server_name);
	nrows = ghl_json_page_rows(st->page);

	if (ep->paging == GHL_PAGING_NONE || nrows < options->page_size)
		st->exhausted = true;
	else
	{
		char	   *cursor = ghl_json_row_cursor(st->page, nrows - 1);

		if (cursor == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("GHL server \"%s\" returned a full page without a searchAfter cursor",
							options->server_name),
					 errhint("The scan cannot continue past this page.")));
		/* a cursor that does not move would page forever */
		if (st->cursor.len > 0 && strcmp(cursor, st->cursor.data) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("GHL server \"%s\" returned the same page twice",
							options->server_name),
					 errdetail("The searchAfter cursor did not advance.")));
		resetStringInfo(&st->cursor);
		appendStringInfoString(&st->cursor, cursor);
	}
	MemoryContextSwitchTo(oldcxt);
}

static void
ghlReScanForeignScan(ForeignScanState *node)
{
	GhlFdwScanState *st = (GhlFdwScanState *) node->fdw_state;

	start_scan(st);
}

static void
ghlEndForeignScan(ForeignScanState *node)
{
	/* memory contexts go with the query; the connection stays cached */
}

/*
 * Show the API plan.  Plain EXPLAIN never calls the API; EXPLAIN ANALYZE
 * adds what the scan actually did.
 */
static void
ghlExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	GhlFdwScanState *st = (GhlFdwScanState *) node->fdw_state;

	ExplainPropertyText("GHL Request",
						ghl_request_plan_describe(st->plan, st->resource), es);
	if (es->verbose && es->costs)
		ExplainPropertyFloat("GHL Estimated Requests", NULL,
							 st->plan->estimated_requests, 0, es);
	if (es->analyze)
	{
		ExplainPropertyInteger("GHL Requests", NULL, st->stats.requests, es);
		ExplainPropertyInteger("GHL Pages", NULL, st->pages, es);
		ExplainPropertyInteger("GHL Retries", NULL, st->stats.retries, es);
		if (es->verbose)
			ExplainPropertyInteger("GHL Bytes", "bytes", st->stats.bytes, es);
	}
}

/*
 * IMPORT FOREIGN SCHEMA ghl: one foreign table per resource, with the
 * standard columns.  The remote schema is always "ghl".
 */
static List *
ghlImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	static const char *const names[] = {"contacts", "tasks", "notes", "appointments"};
	List	   *commands = NIL;
	int			i;

	if (strcmp(stmt->remote_schema, "ghl") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("GHL server \"%s\" has no schema \"%s\"",
						server->servername, stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA ghl.")));

	for (i = 0; i < lengthof(names); i++)
	{
		const GhlResource *resource = ghl_resource_by_name(names[i]);
		StringInfoData buf;
		bool		listed = false;
		ListCell   *lc;
		int			c;

		foreach(lc, stmt->table_list)
		{
			if (strcmp(lfirst_node(RangeVar, lc)->relname, resource->name) == 0)
				listed = true;
		}
		if ((stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO && !listed) ||
			(stmt->list_type == FDW_IMPORT_SCHEMA_EXCEPT && listed))
			continue;

		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (\n",
						 quote_identifier(resource->name));
		for (c = 0; c < resource->ncolumns; c++)
		{
			const GhlColumnDef *col = &resource->columns[c];

			appendStringInfo(&buf, "  %s %s%s\n",
							 quote_identifier(col->name), col->sql_type,
							 c + 1 < resource->ncolumns ? "," : "");
		}
		appendStringInfo(&buf, ") SERVER %s OPTIONS (resource %s)",
						 quote_identifier(server->servername),
						 quote_literal_cstr(resource->name));
		commands = lappend(commands, buf.data);
	}
	return commands;
}
