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
#include "commands/defrem.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/paths.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/timestamp.h"

/* cost of one API round trip, in units of seq_page_cost */
#define GHL_REQUEST_COST	1000.0
/* cost of turning one JSON row into a tuple */
#define GHL_ROW_COST		0.05

/* Planner state kept in baserel->fdw_private between planning callbacks. */
typedef struct GhlPlanState
{
	const GhlResource *resource;
	Bitmapset  *attrs_used;
} GhlPlanState;

/* Indexes into ForeignPath.fdw_private: the path's own request plan. */
enum GhlPathPrivateIndex
{
	GhlPathRequestPlan,			/* the GhlRequestPlan as a list */
	GhlPathFdwExprs				/* the values it computes at run time */
};

/* Indexes into ForeignScan.fdw_private. */
enum GhlScanPrivateIndex
{
	GhlScanRequestPlan,			/* the GhlRequestPlan as a list */
	GhlScanAttrsUsed			/* attribute numbers the query reads */
};

/* The request and the response of one key of a run, fetched side by side. */
typedef struct GhlKeyFetch
{
	GhlRequest	request;
	bool		arrived;
	GhlResponse response;
} GhlKeyFetch;

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
	List	   *filter_values;	/* GhlFilterValue of this run */
	char	   *query;			/* free-text search of this run, or NULL */

	/*
	 * A run repeats the endpoint once per key: each value of an id or
	 * contact id array, each calendar of the location, or each contact of
	 * the location for a table that allows the fan-out.
	 */
	char	  **keys;
	int			nkeys;
	int			next_key;
	List	   *listed_keys;	/* calendars or contacts, listed once per scan */
	bool		keys_listed;

	/*
	 * The keys' requests go side by side, max_concurrency at a time ahead
	 * of the key being read; key i's response waits in window[i %
	 * max_concurrency] for its turn, so rows keep the key order.
	 */
	GhlMulti   *multi;			/* the run's requests, or NULL */
	GhlKeyFetch *window;
	int			next_send;		/* the next key to request */

	GhlColumnMap *columns;		/* the columns the query reads */
	int			ncolumns;
	int			query_attindex; /* the filter-only search column, or -1 */

	/*
	 * paging: the request of the next page goes out as soon as the current
	 * page is parsed, so that it travels while the current rows are
	 * converted; page_request is that request, in request_cxt, until its
	 * response has been parsed
	 */
	GhlJsonPage *page;
	int			next_row;
	bool		exhausted;		/* no more pages for the current key */
	bool		page_requested; /* page_request is under way */
	GhlRequest	page_request;
	int			page_limit;		/* the pageLimit page_request asks for */
	int64		rows_fetched;	/* of the current key, for a pushed LIMIT */
	bool		started;		/* parameters evaluated for this run */
	bool		first_request;	/* the next request is the run's first */
	StringInfoData cursor;		/* searchAfter of the previous page */
	int			skip;			/* rows of the current key already read */

	MemoryContext scan_cxt;		/* lives as long as the scan */
	MemoryContext run_cxt;		/* values of the current (re)scan */
	MemoryContext page_cxt;		/* the current response and its JSON */
	MemoryContext request_cxt;	/* the page request under way */
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

static void add_scan_path(PlannerInfo *root, RelOptInfo *baserel,
						  GhlPlanState *ps, List *clauses, List *pathkeys,
						  Relids required_outer, double rows, double limit);
static List *add_param_info(PlannerInfo *root, RelOptInfo *baserel,
							RestrictInfo *rinfo, List *ppi_list);
static bool member_reads_field(PlannerInfo *root, RelOptInfo *rel,
							   EquivalenceClass *ec, EquivalenceMember *em,
							   void *arg);
static void start_scan(GhlFdwScanState *st);
static bool evaluate_parameters(GhlFdwScanState *st, ExprContext *econtext);
static bool evaluate_text_parameter(GhlFdwScanState *st, ExprContext *econtext,
									int expr_index, StringInfo buf);
static bool evaluate_keys(GhlFdwScanState *st, ExprContext *econtext,
						  int expr_index);
static bool evaluate_filter(GhlFdwScanState *st, ExprContext *econtext,
							GhlPushedFilter *filter);
static bool next_key(GhlFdwScanState *st);
static bool run_has_keys(GhlFdwScanState *st);
static char *key_request_path(GhlFdwScanState *st, const char *key);
static void fetch_next_page(GhlFdwScanState *st);
static void fetch_key_page(GhlFdwScanState *st);
static void advance_cursor(StringInfo cursor, GhlJsonPage *page, int nrows,
						   const char *server_name);
static void list_keys(GhlFdwScanState *st);
static void read_request(GhlOptions *options, const GhlEndpoint *ep,
						 GhlRequest *request);
static GhlJsonPage *response_page(GhlConnection *conn, GhlOptions *options,
								  const GhlEndpoint *ep,
								  const GhlRequest *request,
								  GhlResponse *response);
static GhlJsonPage *execute_request(GhlConnection **conn, GhlOptions *options,
									const GhlEndpoint *ep, GhlRequest *request,
									GhlRequestStats *stats);
static List *custom_field_columns(Oid serverOid, const GhlResource *resource);
static char *calendar_events_path(GhlFdwScanState *st, const char *calendar_id);
static void explain_filters(ForeignScanState *node, GhlRequestPlan *plan,
							ExplainState *es);

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
 * Estimate the rows the scan returns.  Which endpoint answers is decided
 * per path, since a join can supply the contact id that a plain scan
 * lacks.
 */
static void
ghlGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
					 Oid foreigntableid)
{
	GhlPlanState *ps = palloc0(sizeof(GhlPlanState));
	GhlRequestPlan *plan;
	List	   *fdw_exprs = NIL;
	ListCell   *lc;

	ps->resource = ghl_resource_for_table(foreigntableid);
	plan = ghl_plan_request(root, baserel, ps->resource,
							baserel->baserestrictinfo, NIL, -1, &fdw_exprs);

	/* only the columns the query reads are converted from JSON */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &ps->attrs_used);
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		pull_varattnos((Node *) rinfo->clause, baserel->relid, &ps->attrs_used);
	}

	baserel->fdw_private = ps;
	baserel->rows = clamp_row_est(Min(plan->estimated_rows,
									  ps->resource->rows_estimate *
									  clauselist_selectivity(root,
															 baserel->baserestrictinfo,
															 0, JOIN_INNER, NULL)));
}

/*
 * Paths: the plain scan; the scan in the query's ORDER BY when the API can
 * sort; and one path per set of outer relations that can supply the id or
 * contact id, for a nested loop that makes one request per outer row.
 * Costs are dominated by the number of API round trips.
 */
static void
ghlGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
				   Oid foreigntableid)
{
	GhlPlanState *ps = (GhlPlanState *) baserel->fdw_private;
	List	   *ppi_list = NIL;
	ListCell   *lc;

	/* a LIMIT bounds this scan only if nothing else is joined to it */
	double		limit = bms_membership(root->all_baserels) == BMS_SINGLETON ?
		root->limit_tuples : -1;

	add_scan_path(root, baserel, ps, baserel->baserestrictinfo, NIL, NULL,
				  baserel->rows, root->query_pathkeys == NIL ? limit : -1);
	if (root->query_pathkeys != NIL &&
		ghl_pathkeys_pushable(root, baserel, ps->resource, root->query_pathkeys))
		add_scan_path(root, baserel, ps, baserel->baserestrictinfo,
					  root->query_pathkeys, NULL, baserel->rows, limit);

	/* join clauses such as t.contact_id = c.id that could feed the scan */
	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		if (join_clause_is_movable_to(rinfo, baserel))
			ppi_list = add_param_info(root, baserel, rinfo, ppi_list);
	}
	if (baserel->has_eclass_joins)
	{
		static const char *const fields[] = {"id", "contactId"};
		int			i;

		for (i = 0; i < lengthof(fields); i++)
		{
			List	   *clauses =
				generate_implied_equalities_for_column(root, baserel,
													   member_reads_field,
													   (void *) fields[i],
													   baserel->lateral_referencers);

			foreach(lc, clauses)
				ppi_list = add_param_info(root, baserel,
										  lfirst_node(RestrictInfo, lc), ppi_list);
		}
	}
	foreach(lc, ppi_list)
	{
		ParamPathInfo *ppi = lfirst(lc);

		add_scan_path(root, baserel, ps,
					  list_concat_copy(baserel->baserestrictinfo, ppi->ppi_clauses),
					  NIL, ppi->ppi_req_outer, ppi->ppi_rows, -1);
	}
}

/*
 * Plan the request for one path and add the path, costed by its requests.
 */
static void
add_scan_path(PlannerInfo *root, RelOptInfo *baserel, GhlPlanState *ps,
			  List *clauses, List *pathkeys, Relids required_outer,
			  double rows, double limit)
{
	List	   *fdw_exprs = NIL;
	GhlRequestPlan *plan = ghl_plan_request(root, baserel, ps->resource,
											clauses, pathkeys, limit,
											&fdw_exprs);
	Cost		startup_cost = GHL_REQUEST_COST;
	Cost		total_cost = plan->estimated_requests * GHL_REQUEST_COST +
		plan->estimated_rows * GHL_ROW_COST;

	/* a contact's tasks are a handful, whatever the join selectivity says */
	if (required_outer != NULL)
		rows = clamp_row_est(Min(rows, plan->estimated_rows));
	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, rows,
									 startup_cost, total_cost,
									 pathkeys, required_outer, NULL,
									 list_make2(ghl_request_plan_to_list(plan),
												fdw_exprs)));
}

/*
 * The parameterization a join clause asks for, added to ppi_list once.
 */
static List *
add_param_info(PlannerInfo *root, RelOptInfo *baserel, RestrictInfo *rinfo,
			   List *ppi_list)
{
	Relids		required_outer = bms_union(rinfo->clause_relids,
										   baserel->lateral_relids);

	required_outer = bms_del_member(required_outer, baserel->relid);
	if (bms_is_empty(required_outer))
		return ppi_list;
	return list_append_unique_ptr(ppi_list,
								  get_baserel_parampathinfo(root, baserel,
															required_outer));
}

/*
 * generate_implied_equalities_for_column() callback: the member is this
 * table's column reading the field in arg.
 */
static bool
member_reads_field(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				   EquivalenceMember *em, void *arg)
{
	Expr	   *expr = em->em_expr;

	if (IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	return IsA(expr, Var) && ((Var *) expr)->varno == rel->relid &&
		((Var *) expr)->varattno > 0 && ((Var *) expr)->varlevelsup == 0 &&
		strcmp(ghl_get_column_field(planner_rt_fetch(rel->relid, root)->relid,
									((Var *) expr)->varattno),
			   (const char *) arg) == 0;
}

static ForeignScan *
ghlGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
				  Oid foreigntableid, ForeignPath *best_path,
				  List *tlist, List *scan_clauses, Plan *outer_plan)
{
	GhlPlanState *ps = (GhlPlanState *) baserel->fdw_private;
	List	   *plan_list = list_nth(best_path->fdw_private, GhlPathRequestPlan);
	List	   *attnums = NIL;
	int			attnum = -1;
	bool		whole_row;

	ghl_plan_require_endpoint(ghl_request_plan_from_list(plan_list), ps->resource);

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
							list_nth(best_path->fdw_private, GhlPathFdwExprs),
							list_make2(plan_list, attnums),
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
										st->resource, &st->ncolumns,
										&st->query_attindex);
	st->fdw_expr_states = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	initStringInfo(&st->cursor);
	initStringInfo(&st->id_value);
	initStringInfo(&st->contact_value);

	st->scan_cxt = CurrentMemoryContext;
	st->run_cxt = AllocSetContextCreate(estate->es_query_cxt,
										"ghl_fdw run",
										ALLOCSET_SMALL_SIZES);
	st->page_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "ghl_fdw page",
										 ALLOCSET_DEFAULT_SIZES);
	st->request_cxt = AllocSetContextCreate(estate->es_query_cxt,
											"ghl_fdw request",
											ALLOCSET_SMALL_SIZES);
	st->tuple_cxt = AllocSetContextCreate(estate->es_query_cxt,
										  "ghl_fdw tuple",
										  ALLOCSET_DEFAULT_SIZES);
	start_scan(st);
}

/*
 * How each column read by the query is filled: its JSON key and the input
 * function of its type.  attnums holds 0 when the whole row is needed.
 * The filter-only search column is not read from JSON: its index goes to
 * *query_attindex (else -1).  Writes fill their RETURNING rows through the
 * same maps.
 */
GhlColumnMap *
ghl_build_column_maps(Relation rel, List *attnums, const GhlResource *resource,
					  int *ncolumns, int *query_attindex)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	GhlColumnMap *columns = palloc0(sizeof(GhlColumnMap) * tupdesc->natts);
	bool		all = list_member_int(attnums, 0);
	int			n = 0;
	int			i;

	*query_attindex = -1;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		GhlColumnMap *col = &columns[n];
		char	   *field;

		if (attr->attisdropped || !(all || list_member_int(attnums, attr->attnum)))
			continue;

		field = ghl_get_column_field(RelationGetRelid(rel), attr->attnum);
		if (strcmp(field, GHL_QUERY_FIELD) == 0)
		{
			if (attr->atttypid != TEXTOID)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
						 errmsg("search column \"%s\" of foreign table \"%s\" must be of type text",
								NameStr(attr->attname), RelationGetRelationName(rel))));
			*query_attindex = i;
			continue;
		}
		col->attindex = i;
		col->attname = pstrdup(NameStr(attr->attname));
		col->is_raw = strcmp(field, "*") == 0 ||
			(strcmp(col->attname, "raw") == 0 && strcmp(field, "raw") == 0);
		col->field = field;
		col->search_field = ghl_search_field_for(resource, field);
		ghl_column_map_set_type(col, attr->atttypid, attr->atttypmod);

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
 * Fill in how a column map converts to its SQL type: the input function of
 * the type (of its element type, for arrays) and what json.c needs to know
 * about the type.  Scans, writes and sync share it.
 */
void
ghl_column_map_set_type(GhlColumnMap *col, Oid typid, int32 typmod)
{
	Oid			inputfunc;

	col->typid = typid;
	col->typmod = typmod;
	col->is_json = (typid == JSONBOID || typid == JSONOID);
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
}

/*
 * (Re)start the scan: forget any page and value of a previous run.
 * Run-time parameters are evaluated by the first fetch, since initplans
 * they depend on have not run yet when the scan begins.
 */
static void
start_scan(GhlFdwScanState *st)
{
	MemoryContextReset(st->page_cxt);
	MemoryContextReset(st->run_cxt);	/* aborts what is under way */
	MemoryContextReset(st->request_cxt);
	st->page = NULL;
	st->next_row = 0;
	st->exhausted = true;
	st->page_requested = false;
	st->started = false;
	st->first_request = true;
	st->keys = NULL;
	st->nkeys = 0;
	st->next_key = 0;
	st->filter_values = NIL;
	st->query = NULL;
	st->multi = NULL;
	st->window = NULL;
	st->next_send = 0;
}

/*
 * Evaluate the request plan's run-time values for this run of the scan,
 * and the keys the run repeats its requests for.  Returns false when the
 * values rule out every row: every pushed condition is strict, so a NULL
 * matches nothing.
 */
static bool
evaluate_parameters(GhlFdwScanState *st, ExprContext *econtext)
{
	GhlRequestPlan *plan = st->plan;
	MemoryContext oldcxt = MemoryContextSwitchTo(st->run_cxt);
	bool		ok = true;
	ListCell   *lc;
	StringInfoData query;

	if (plan->array_slot == GHL_ARRAY_ID)
		ok = evaluate_keys(st, econtext, plan->id_expr);
	else
		ok = evaluate_text_parameter(st, econtext, plan->id_expr, &st->id_value);
	if (plan->array_slot == GHL_ARRAY_CONTACT)
		ok = ok && evaluate_keys(st, econtext, plan->contact_expr);
	else
		ok = ok && evaluate_text_parameter(st, econtext, plan->contact_expr,
										   &st->contact_value);
	foreach(lc, plan->filters)
		ok = ok && evaluate_filter(st, econtext, lfirst(lc));
	if (ok && plan->query_expr >= 0)
	{
		initStringInfo(&query);
		ok = evaluate_text_parameter(st, econtext, plan->query_expr, &query);
		st->query = query.data;
	}

	if (ok && (plan->endpoint == GHL_EP_CALENDAR_EVENTS ||
			   plan->array_slot == GHL_ARRAY_EVERY_CONTACT))
	{
		/* the calendars or contacts of the location do not change meanwhile */
		if (!st->keys_listed)
			list_keys(st);
		st->nkeys = list_length(st->listed_keys);
		st->keys = palloc(sizeof(char *) * Max(st->nkeys, 1));
		foreach(lc, st->listed_keys)
			st->keys[foreach_current_index(lc)] = lfirst(lc);
	}
	else if (ok && st->keys == NULL)
	{
		/* no array: the run is one sequence of pages */
		st->nkeys = 1;
		st->keys = palloc0(sizeof(char *));
	}
	MemoryContextSwitchTo(oldcxt);
	return ok;
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

/*
 * The distinct non-NULL values of a text array, sorted, as the keys of the
 * run: a value listed twice must not fetch its rows twice.
 */
static bool
evaluate_keys(GhlFdwScanState *st, ExprContext *econtext, int expr_index)
{
	ExprState  *state = list_nth(st->fdw_expr_states, expr_index);
	bool		isnull;
	Datum		value = ExecEvalExpr(state, econtext, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (isnull)
		return false;
	deconstruct_array(DatumGetArrayTypeP(value), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	st->keys = palloc(sizeof(char *) * Max(n, 1));
	st->nkeys = 0;
	for (i = 0; i < n; i++)
	{
		if (!nulls[i])
			st->keys[st->nkeys++] = TextDatumGetCString(elems[i]);
	}
	qsort(st->keys, st->nkeys, sizeof(char *), pg_qsort_strcmp);
	for (i = 0, n = 0; i < st->nkeys; i++)
	{
		if (n == 0 || strcmp(st->keys[n - 1], st->keys[i]) != 0)
			st->keys[n++] = st->keys[i];
	}
	st->nkeys = n;
	return n > 0;
}

/*
 * One pushed condition's value, ready for the request.  Timestamps are
 * rounded outwards to the API's milliseconds: a lower bound down, an
 * upper bound up, so the API returns every row the clause can accept.
 */
static bool
evaluate_filter(GhlFdwScanState *st, ExprContext *econtext,
				GhlPushedFilter *filter)
{
	ExprState  *state = list_nth(st->fdw_expr_states, filter->expr);
	Oid			type = exprType((Node *) state->expr);
	GhlFilterValue *fv = palloc0(sizeof(GhlFilterValue));
	bool		isnull;
	Datum		value = ExecEvalExpr(state, econtext, &isnull);

	if (isnull)
		return false;
	fv->field = filter->field;
	fv->op = filter->op;
	if (type == BOOLOID)
		fv->is_bool = true, fv->boolean = DatumGetBool(value);
	else if (type == TIMESTAMPTZOID)
	{
		TimestampTz ts = DatumGetTimestampTz(value);
		bool		lower = strcmp(filter->op, "gte") == 0;
		int64		us;

		fv->is_ms = true;
		/* year 1 and year 9999 stand in for the infinities */
		if (TIMESTAMP_IS_NOBEGIN(ts))
			fv->ms = INT64CONST(-62135596800000);
		else if (TIMESTAMP_IS_NOEND(ts))
			fv->ms = INT64CONST(253402300799999);
		else
		{
			us = ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
			fv->ms = us / 1000;
			if (lower && us % 1000 < 0)
				fv->ms--;
			else if (!lower && us % 1000 > 0)
				fv->ms++;
		}
	}
	else
		fv->text = TextDatumGetCString(value);
	st->filter_values = lappend(st->filter_values, fv);
	return true;
}

/*
 * Move to the next key of the run and restart paging for it.  Returns
 * false after the last key.
 */
static bool
next_key(GhlFdwScanState *st)
{
	if (st->next_key >= st->nkeys)
		return false;
	st->next_key++;
	resetStringInfo(&st->cursor);
	st->skip = 0;
	st->rows_fetched = 0;
	st->exhausted = false;
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
			/* the search column reads back the query it was given */
			if (st->query_attindex >= 0 && st->query != NULL)
			{
				slot->tts_values[st->query_attindex] = CStringGetTextDatum(st->query);
				slot->tts_isnull[st->query_attindex] = false;
			}
			MemoryContextSwitchTo(oldcxt);
			st->next_row++;
			return ExecStoreVirtualTuple(slot);
		}
		if (!st->started)
		{
			st->started = true;
			if (!evaluate_parameters(st, node->ss.ps.ps_ExprContext))
				return slot;
		}
		if (st->exhausted && !next_key(st))
			return slot;
		if (run_has_keys(st))
			fetch_key_page(st);
		else
			fetch_next_page(st);
	}
}

/*
 * Whether the run repeats its request per key (each value of an id or
 * contact id array, each calendar, each contact of a fan-out): such
 * requests are independent of each other and go side by side.  Every
 * endpoint a run repeats answers in one page.
 */
static bool
run_has_keys(GhlFdwScanState *st)
{
	bool		keyed = st->plan->array_slot != GHL_ARRAY_NONE ||
		st->plan->endpoint == GHL_EP_CALENDAR_EVENTS;

	Assert(!keyed || st->endpoint->paging == GHL_PAGING_NONE);
	return keyed;
}

/*
 * The path of the request for one key of the run: the key fills the slot
 * the run repeats (the id, the contact or the calendar), the run's own
 * values the others.  key is NULL for a run without repeats.
 */
static char *
key_request_path(GhlFdwScanState *st, const char *key)
{
	const char *contact = st->contact_value.data;
	const char *id = st->id_value.data;

	if (st->plan->endpoint == GHL_EP_CALENDAR_EVENTS)
		return calendar_events_path(st, key);
	if (st->plan->array_slot == GHL_ARRAY_ID)
		id = key;
	else if (st->plan->array_slot != GHL_ARRAY_NONE)
		contact = key;
	return ghl_request_path(st->endpoint, contact, id,
							st->options->server_name);
}

/*
 * The page of the current key of a run with keys.  The requests of the
 * next max_concurrency keys are under way while their responses wait in
 * the window for their turn: memory holds at most that many responses,
 * and rows come in key order, as if fetched one after the other.
 */
static void
fetch_key_page(GhlFdwScanState *st)
{
	int			width = st->options->max_concurrency;
	int			current = st->next_key - 1;
	GhlKeyFetch *fetch;
	MemoryContext oldcxt;

	MemoryContextReset(st->page_cxt);
	st->page = NULL;
	st->next_row = 0;
	st->exhausted = true;

	oldcxt = MemoryContextSwitchTo(st->run_cxt);
	if (st->multi == NULL)
	{
		if (st->conn == NULL)
			st->conn = ghl_get_connection(st->options);
		st->multi = ghl_multi_start(st->conn, width, &st->stats);
		st->window = palloc0(sizeof(GhlKeyFetch) * width);
		st->next_send = current;
	}
	while (st->next_send < st->nkeys && st->next_send < current + width)
	{
		fetch = &st->window[st->next_send % width];
		read_request(st->options, st->endpoint, &fetch->request);
		fetch->request.path = key_request_path(st, st->keys[st->next_send]);
		ghl_multi_add(st->multi, &fetch->request, fetch);
		st->next_send++;
	}

	fetch = &st->window[current % width];
	while (!fetch->arrived)
	{
		GhlResponse response;
		void	   *tag;

		if (!ghl_multi_next(st->multi, &response, &tag))
			elog(ERROR, "the request of a key of the scan was lost");
		((GhlKeyFetch *) tag)->response = response;
		((GhlKeyFetch *) tag)->arrived = true;
		st->pages++;
	}

	MemoryContextSwitchTo(st->page_cxt);
	st->page = response_page(st->conn, st->options, st->endpoint,
							 &fetch->request, &fetch->response);
	MemoryContextSwitchTo(oldcxt);
	pfree(fetch->response.data);
	pfree((char *) fetch->request.path);
	fetch->arrived = false;
}

/*
 * Send the request of the current key's next page, as far as the cursor
 * or skip has come, on the run's batch of one.
 */
static void
send_page_request(GhlFdwScanState *st)
{
	const GhlEndpoint *ep = st->endpoint;
	GhlOptions *options = st->options;
	GhlRequest *request = &st->page_request;
	MemoryContext oldcxt;

	/* a LIMIT makes the first page just big enough */
	st->page_limit = options->page_size;
	if (st->first_request && st->plan->limit > 0)
		st->page_limit = Min(st->plan->limit, options->page_size);
	st->first_request = false;

	MemoryContextReset(st->request_cxt);
	oldcxt = MemoryContextSwitchTo(st->request_cxt);
	memset(request, 0, sizeof(GhlRequest));
	switch (st->plan->endpoint)
	{
		case GHL_EP_CONTACTS_SEARCH:
			request->path = pstrdup(ep->path);
			request->body = ghl_json_search_body(options->location_id,
												 st->page_limit,
												 st->cursor.len > 0 ? st->cursor.data : NULL,
												 st->filter_values, st->query,
												 st->plan->sort_field,
												 st->plan->sort_desc);
			break;
		case GHL_EP_CONTACTS_OF_BUSINESS:
			request->path = psprintf("%s?locationId=%s&limit=%d&skip=%d",
									 ghl_request_path(ep, NULL, st->id_value.data,
													  options->server_name),
									 ghl_url_escape(options->location_id),
									 st->page_limit, st->skip);
			break;
		case GHL_EP_TASKS_SEARCH:
			request->path = psprintf(ep->path, ghl_url_escape(options->location_id));
			request->body = ghl_json_task_search_body(st->filter_values,
													  st->page_limit, st->skip);
			break;
		default:
			request->path = key_request_path(st, NULL);
			break;
	}
	read_request(options, ep, request);

	MemoryContextSwitchTo(st->run_cxt);
	if (st->multi == NULL)
	{
		if (st->conn == NULL)
			st->conn = ghl_get_connection(options);
		st->multi = ghl_multi_start(st->conn, 1, &st->stats);
	}
	MemoryContextSwitchTo(oldcxt);
	ghl_multi_add(st->multi, request, NULL);
	st->page_requested = true;
}

/*
 * Fetch the next page of the current key into the page context, replacing
 * the previous one, and work out whether another page follows.  If one
 * does, its request goes out at once, unless the rows at hand already
 * reach a pushed-down LIMIT: then they may be all the query needs, and a
 * request it never reads would be spent.
 */
static void
fetch_next_page(GhlFdwScanState *st)
{
	const GhlEndpoint *ep = st->endpoint;
	GhlResponse response;
	MemoryContext oldcxt;
	int			nrows;

	MemoryContextReset(st->page_cxt);
	st->page = NULL;
	st->next_row = 0;
	if (!st->page_requested)
		send_page_request(st);

	oldcxt = MemoryContextSwitchTo(st->page_cxt);
	if (!ghl_multi_next(st->multi, &response, NULL))
		elog(ERROR, "the request of a page of the scan was lost");
	st->page_requested = false;
	st->pages++;
	st->page = response_page(st->conn, st->options, ep, &st->page_request,
							 &response);
	nrows = st->page ? ghl_json_page_rows(st->page) : 0;
	st->rows_fetched += nrows;

	if (st->page == NULL || ep->paging == GHL_PAGING_NONE ||
		nrows < st->page_limit)
		st->exhausted = true;
	else if (ep->paging == GHL_PAGING_SKIP)
		st->skip += nrows;
	else
		advance_cursor(&st->cursor, st->page, nrows, st->options->server_name);
	MemoryContextSwitchTo(oldcxt);

	if (!st->exhausted &&
		(st->plan->limit <= 0 || st->rows_fetched < st->plan->limit))
		send_page_request(st);
}

/*
 * Take the searchAfter cursor of a full page's last row for the next page.
 */
static void
advance_cursor(StringInfo cursor, GhlJsonPage *page, int nrows,
			   const char *server_name)
{
	char	   *next = ghl_json_row_cursor(page, nrows - 1);

	if (next == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("GHL server \"%s\" returned a full page without a searchAfter cursor",
						server_name),
				 errhint("The scan cannot continue past this page.")));
	/* a cursor that does not move would page forever */
	if (cursor->len > 0 && strcmp(next, cursor->data) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("GHL server \"%s\" returned the same page twice",
						server_name),
				 errdetail("The searchAfter cursor did not advance.")));
	resetStringInfo(cursor);
	appendStringInfoString(cursor, next);
}

/*
 * List the keys a location-wide run repeats its requests for, once per
 * scan and into the scan's context: the ids of the location's calendars,
 * or of all its contacts for a fan-out.
 */
static void
list_keys(GhlFdwScanState *st)
{
	bool		contacts = (st->plan->array_slot == GHL_ARRAY_EVERY_CONTACT);
	const GhlEndpoint *ep = ghl_endpoint(contacts ? GHL_EP_CONTACTS_SEARCH :
										 GHL_EP_CALENDARS);
	MemoryContext oldcxt = MemoryContextSwitchTo(st->scan_cxt);
	StringInfoData cursor;
	bool		more;

	initStringInfo(&cursor);
	do
	{
		GhlRequest request = {0};
		GhlJsonPage *page;
		ListCell   *lc;

		MemoryContextReset(st->page_cxt);
		MemoryContextSwitchTo(st->page_cxt);
		if (contacts)
		{
			request.path = ep->path;
			request.body = ghl_json_search_body(st->options->location_id,
												st->options->page_size,
												cursor.len > 0 ? cursor.data : NULL,
												NIL, NULL, NULL, false);
		}
		else
			request.path = psprintf("%s?locationId=%s", ep->path,
									ghl_url_escape(st->options->location_id));
		page = execute_request(&st->conn, st->options, ep, &request, &st->stats);
		st->pages++;

		MemoryContextSwitchTo(st->scan_cxt);
		foreach(lc, ghl_json_page_strings(page, "id"))
		{
			if (lfirst(lc) != NULL)
				st->listed_keys = lappend(st->listed_keys, lfirst(lc));
		}
		more = contacts && ghl_json_page_rows(page) == st->options->page_size;
		if (more)
			advance_cursor(&cursor, page, st->options->page_size,
						   st->options->server_name);
	} while (more);

	MemoryContextReset(st->page_cxt);
	st->keys_listed = true;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Fill in what every read request of the endpoint sends, besides its path
 * and body.
 */
static void
read_request(GhlOptions *options, const GhlEndpoint *ep, GhlRequest *request)
{
	request->method = ep->method;
	request->api_version = ep->api_version ? ep->api_version : options->api_version;
	request->authenticated = true;
	/* every request a scan or an import makes is a read: retrying is safe */
	request->idempotent = true;
}

/*
 * Parse the response to a read into the current memory context.  Returns
 * NULL for a 404 that means zero rows; any other status but 2xx is an
 * error.
 */
static GhlJsonPage *
response_page(GhlConnection *conn, GhlOptions *options, const GhlEndpoint *ep,
			  const GhlRequest *request, GhlResponse *response)
{
	/* a lookup of an id that does not exist: zero rows, not an error */
	if (response->status == 404 && ep->not_found_is_empty)
		return NULL;
	if (response->status < 200 || response->status >= 300)
		ghl_report_http_error(conn, request, response);

	return ghl_json_parse_page(response->data, response->len,
							   ep->response_key, ep->single_object,
							   options->server_name);
}

/*
 * Send one read request of the endpoint, opening *conn if needed, and
 * parse its page into the current memory context.  Returns NULL for a 404
 * that means zero rows.
 */
static GhlJsonPage *
execute_request(GhlConnection **conn, GhlOptions *options,
				const GhlEndpoint *ep, GhlRequest *request,
				GhlRequestStats *stats)
{
	GhlResponse response;

	if (*conn == NULL)
		*conn = ghl_get_connection(options);
	read_request(options, ep, request);
	ghl_http_execute(*conn, request, &response, stats);
	return response_page(*conn, options, ep, request, &response);
}

/*
 * GET /calendars/events for one calendar and the tightest window the
 * start_time conditions allow.
 */
static char *
calendar_events_path(GhlFdwScanState *st, const char *calendar_id)
{
	int64		start = PG_INT64_MIN;
	int64		end = PG_INT64_MAX;
	char	   *location = ghl_url_escape(st->options->location_id);
	char	   *calendar = ghl_url_escape(calendar_id);
	char	   *path;
	ListCell   *lc;

	foreach(lc, st->filter_values)
	{
		GhlFilterValue *fv = lfirst(lc);

		if (strcmp(fv->op, "gte") == 0)
			start = Max(start, fv->ms);
		else
			end = Min(end, fv->ms);
	}
	path = psprintf("%s?locationId=%s&calendarId=%s&startTime=" INT64_FORMAT "&endTime=" INT64_FORMAT,
					st->endpoint->path, location, calendar, start, end);
	pfree(location);
	pfree(calendar);
	return path;
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
 * Show the API plan.  Plain EXPLAIN never calls the API; VERBOSE adds what
 * is pushed down, and EXPLAIN ANALYZE what the scan actually did.
 */
static void
ghlExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	GhlFdwScanState *st = (GhlFdwScanState *) node->fdw_state;

	ExplainPropertyText("GHL Request",
						ghl_request_plan_describe(st->plan, st->resource), es);
	if (es->verbose)
		explain_filters(node, st->plan, es);
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
 * The pushed-down filters, free-text query, sort and first page size, with
 * their values as SQL expressions (a nested loop's are Params).
 */
static void
explain_filters(ForeignScanState *node, GhlRequestPlan *plan, ExplainState *es)
{
	List	   *fdw_exprs = ((ForeignScan *) node->ss.ps.plan)->fdw_exprs;
	ListCell   *lc;

	if (plan->filters != NIL)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		foreach(lc, plan->filters)
		{
			GhlPushedFilter *f = lfirst(lc);

			appendStringInfo(&buf, "%s%s %s %s",
							 buf.len > 0 ? ", " : "", f->field, f->op,
							 deparse_expression(list_nth(fdw_exprs, f->expr),
												es->deparse_cxt, false, false));
		}
		ExplainPropertyText("GHL Filters", buf.data, es);
	}
	if (plan->query_expr >= 0)
		ExplainPropertyText("GHL Query",
							deparse_expression(list_nth(fdw_exprs, plan->query_expr),
											   es->deparse_cxt, false, false),
							es);
	if (plan->sort_field)
		ExplainPropertyText("GHL Sort", psprintf("%s %s", plan->sort_field,
												 plan->sort_desc ? "desc" : "asc"),
							es);
	if (plan->limit > 0)
		ExplainPropertyInteger("GHL Limit", NULL, plan->limit, es);
}

/*
 * IMPORT FOREIGN SCHEMA ghl: one foreign table per resource, with the
 * standard columns.  The remote schema is always "ghl".  With the option
 * custom_fields 'true', contacts also get one typed column per custom
 * field of the location, read from the API.
 */
static List *
ghlImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	static const char *const names[] = {"contacts", "tasks", "notes", "appointments"};
	List	   *commands = NIL;
	bool		custom_fields = false;
	ListCell   *lc;
	int			i;

	if (strcmp(stmt->remote_schema, "ghl") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("GHL server \"%s\" has no schema \"%s\"",
						server->servername, stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA ghl.")));
	foreach(lc, stmt->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "custom_fields") == 0)
			custom_fields = defGetBoolean(def);
		else
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid IMPORT FOREIGN SCHEMA option \"%s\"", def->defname),
					 errhint("The only option is custom_fields.")));
	}

	for (i = 0; i < lengthof(names); i++)
	{
		const GhlResource *resource = ghl_resource_by_name(names[i]);
		StringInfoData buf;
		List	   *columns = NIL;
		bool		listed = false;
		int			c;

		foreach(lc, stmt->table_list)
		{
			if (strcmp(lfirst_node(RangeVar, lc)->relname, resource->name) == 0)
				listed = true;
		}
		if ((stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO && !listed) ||
			(stmt->list_type == FDW_IMPORT_SCHEMA_EXCEPT && listed))
			continue;

		for (c = 0; c < resource->ncolumns; c++)
			columns = lappend(columns,
							  psprintf("  %s %s", quote_identifier(resource->columns[c].name),
									   resource->columns[c].sql_type));
		if (custom_fields && resource->kind == GHL_RESOURCE_CONTACTS)
			columns = list_concat(columns, custom_field_columns(serverOid, resource));

		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (\n",
						 quote_identifier(resource->name));
		foreach(lc, columns)
			appendStringInfo(&buf, "%s%s\n", (char *) lfirst(lc),
							 lnext(columns, lc) ? "," : "");
		appendStringInfo(&buf, ") SERVER %s OPTIONS (resource %s)",
						 quote_identifier(server->servername),
						 quote_literal_cstr(resource->name));
		commands = lappend(commands, buf.data);
	}
	return commands;
}

/*
 * Column definitions for the contact custom fields of the server's
 * location: named after the field key ("contact.lifetime_value" becomes
 * lifetime_value, or cf_lifetime_value if a standard column has that
 * name), typed after the field's data type.
 */
static List *
custom_field_columns(Oid serverOid, const GhlResource *resource)
{
	GhlOptions *options = ghl_get_options(serverOid, GetUserId());
	const GhlEndpoint *ep = ghl_endpoint(GHL_EP_CUSTOM_FIELDS);
	GhlConnection *conn = NULL;
	GhlRequestStats stats = {0};
	GhlRequest request = {0};
	GhlJsonPage *page;
	List	   *ids;
	List	   *keys;
	List	   *types;
	List	   *columns = NIL;
	int			i;

	request.path = psprintf("%s?model=contact",
							psprintf(ep->path, ghl_url_escape(options->location_id)));
	page = execute_request(&conn, options, ep, &request, &stats);
	ids = ghl_json_page_strings(page, "id");
	keys = ghl_json_page_strings(page, "fieldKey");
	types = ghl_json_page_strings(page, "dataType");

	for (i = 0; i < list_length(ids); i++)
	{
		const char *id = list_nth(ids, i);
		const char *key = list_nth(keys, i);
		const char *type = list_nth(types, i);
		const char *name;
		const char *sql_type = "text";
		int			c;

		if (id == NULL || key == NULL)
			continue;
		name = strchr(key, '.') ? strchr(key, '.') + 1 : key;
		for (c = 0; c < resource->ncolumns; c++)
		{
			if (strcmp(resource->columns[c].name, name) == 0)
				name = psprintf("cf_%s", name);
		}
		if (type && (strcmp(type, "NUMERICAL") == 0 || strcmp(type, "MONETORY") == 0))
			sql_type = "numeric";
		else if (type && strcmp(type, "DATE") == 0)
			sql_type = "date";
		else if (type && (strcmp(type, "MULTIPLE_OPTIONS") == 0 ||
						  strcmp(type, "CHECKBOX") == 0))
			sql_type = "text[]";
		else if (type && (strcmp(type, "FILE_UPLOAD") == 0 ||
						  strcmp(type, "SIGNATURE") == 0))
			sql_type = "jsonb";
		columns = lappend(columns,
						  psprintf("  %s %s OPTIONS (field %s)", quote_identifier(name),
								   sql_type,
								   quote_literal_cstr(psprintf("%s%s", GHL_CUSTOM_FIELD_PREFIX,
															   id))));
	}
	return columns;
}
