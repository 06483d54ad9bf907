/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Turning restriction clauses into a request plan: which endpoint
 *		  answers the scan and with which parameters, filters, sort and
 *		  page size.
 *
 * Every clause is also kept as a local filter, so a pushed-down condition
 * only narrows what is fetched; the result is always what SQL means.  That
 * is why a pushed condition may be looser than its clause (the API's email
 * match ignores case, timestamps are rounded outwards to milliseconds).
 *
 * IDENTIFICATION
 *		  src/pushdown.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <math.h>

#include "access/nbtree.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/* planner's guess at the tasks, notes or appointments of one contact */
#define GHL_ROWS_PER_CONTACT	5
/* planner's guess at the values of an array known only at run time */
#define GHL_ARRAY_VALUES		10
/* planner's guess at the calendars of a location */
#define GHL_CALENDARS			5
/* requests a plan no endpoint can answer is charged, so it loses */
#define GHL_IMPOSSIBLE_REQUESTS	1.0e9

/* Indexes into the list that carries a GhlRequestPlan through fdw_private. */
enum GhlRequestPlanIndex
{
	GhlPlanEndpoint,
	GhlPlanIdExpr,
	GhlPlanContactExpr,
	GhlPlanArraySlot,
	GhlPlanQueryExpr,
	GhlPlanSortField,
	GhlPlanSortDesc,
	GhlPlanLimit,
	GhlPlanEstimatedRows,
	GhlPlanEstimatedRequests,
	GhlPlanFilters
};

/* What the clauses of a scan offer, before an endpoint is chosen. */
typedef struct ClauseMatches
{
	Expr	   *id_value;
	bool		id_is_array;
	Expr	   *contact_value;
	bool		contact_is_array;
	Expr	   *query_value;
	List	   *filters;		/* MatchedFilter */
	List	   *filter_clauses; /* their RestrictInfos, for selectivity */
} ClauseMatches;

typedef struct MatchedFilter
{
	const GhlPushable *pushable;
	const char *op;				/* "eq", "gte" or "lte" */
	Expr	   *value;
} MatchedFilter;

static void match_clause(PlannerInfo *root, RelOptInfo *baserel,
						 const GhlResource *resource, RestrictInfo *rinfo,
						 ClauseMatches *m);
static bool match_var(PlannerInfo *root, RelOptInfo *baserel, Node *node,
					  char **field, Oid *type);
static bool value_usable(PlannerInfo *root, RelOptInfo *baserel, Node *value);
static void add_filter(ClauseMatches *m, RestrictInfo *rinfo,
					   const GhlPushable *pushable, const char *op,
					   Expr *value);
static bool has_window(List *filters);
static bool fan_out_allowed(PlannerInfo *root, RelOptInfo *baserel);
static int	add_expr(List **fdw_exprs, Expr *expr);
static double array_values(Expr *array);
static Oid	timestamptz_btree_family(void);
static char *pathkey_sort_field(PlannerInfo *root, RelOptInfo *baserel,
								const GhlResource *resource, List *pathkeys);

/*
 * Choose the endpoint for a scan of baserel that must satisfy clauses (its
 * own restrictions plus, for a parameterized path, the join clauses that
 * feed it) and deliver rows in pathkeys order, of which at most
 * limit_tuples are wanted (or -1).  Values are appended to *fdw_exprs, to
 * be evaluated by the executor (they may be Params of an outer query).
 *
 * Never fails: a plan no endpoint can answer gets GHL_NUM_ENDPOINTS and a
 * prohibitive cost, so that a join to contacts can win; only if such a
 * plan is chosen does ghl_plan_require_endpoint() report it.
 */
GhlRequestPlan *
ghl_plan_request(PlannerInfo *root, RelOptInfo *baserel,
				 const GhlResource *resource, List *clauses, List *pathkeys,
				 double limit_tuples, List **fdw_exprs)
{
	GhlRequestPlan *plan = palloc0(sizeof(GhlRequestPlan));
	ClauseMatches m = {0};
	GhlOptions *options = ghl_get_options(baserel->serverid, GetUserId());
	const GhlEndpoint *by_id = NULL;
	double		values = 1;
	double		selectivity;
	ListCell   *lc;

	plan->endpoint = resource->scan_endpoint;
	plan->id_expr = -1;
	plan->contact_expr = -1;
	plan->query_expr = -1;

	foreach(lc, clauses)
		match_clause(root, baserel, resource, lfirst_node(RestrictInfo, lc), &m);

	/*
	 * Without pushdown, a resource that the API can list whole is read
	 * whole; the others still get the conditions they cannot do without.
	 * The free-text query stays: it is what the search column means.
	 */
	if (!ghl_enable_pushdown && resource->scan_endpoint == GHL_EP_CALENDAR_EVENTS)
		m.id_value = NULL;
	else if (!ghl_enable_pushdown && resource->scan_endpoint != GHL_NUM_ENDPOINTS)
	{
		Expr	   *query_value = m.query_value;

		memset(&m, 0, sizeof(m));
		m.query_value = query_value;
	}

	if (resource->by_id_endpoint != GHL_NUM_ENDPOINTS)
		by_id = ghl_endpoint(resource->by_id_endpoint);

	/*
	 * The most selective endpoint whose path parameters are all known.  A
	 * free-text query only the search can answer: it rules out the lookup.
	 */
	if (m.id_value && by_id && m.query_value == NULL &&
		(by_id->needs_contact ? m.contact_value != NULL : true) &&
		!(m.id_is_array && m.contact_is_array))
	{
		plan->endpoint = resource->by_id_endpoint;
		plan->id_expr = add_expr(fdw_exprs, m.id_value);
		if (by_id->needs_contact)
			plan->contact_expr = add_expr(fdw_exprs, m.contact_value);
		if (m.id_is_array)
			plan->array_slot = GHL_ARRAY_ID, values = array_values(m.id_value);
		else if (m.contact_is_array)
			plan->array_slot = GHL_ARRAY_CONTACT, values = array_values(m.contact_value);
		plan->estimated_rows = values;
		plan->estimated_requests = values;
		return plan;
	}
	if (m.contact_value && resource->by_contact_endpoint != GHL_NUM_ENDPOINTS)
	{
		plan->endpoint = resource->by_contact_endpoint;
		plan->contact_expr = add_expr(fdw_exprs, m.contact_value);
		if (m.contact_is_array)
			plan->array_slot = GHL_ARRAY_CONTACT, values = array_values(m.contact_value);
		plan->estimated_rows = values * GHL_ROWS_PER_CONTACT;
		plan->estimated_requests = values;
		return plan;
	}
	if (plan->endpoint == GHL_EP_CALENDAR_EVENTS && !has_window(m.filters))
		plan->endpoint = GHL_NUM_ENDPOINTS;
	if (plan->endpoint == GHL_NUM_ENDPOINTS &&
		resource->by_contact_endpoint != GHL_NUM_ENDPOINTS && fan_out_allowed(root, baserel))
	{
		/* the table allows asking every contact: that is what it costs */
		double		contacts = ghl_resource_by_name("contacts")->rows_estimate;

		plan->endpoint = resource->by_contact_endpoint;
		plan->array_slot = GHL_ARRAY_EVERY_CONTACT;
		plan->estimated_rows = contacts * GHL_ROWS_PER_CONTACT;
		plan->estimated_requests = contacts + ceil(contacts / options->page_size);
		return plan;
	}
	if (plan->endpoint == GHL_NUM_ENDPOINTS)
	{
		plan->estimated_rows = resource->rows_estimate;
		plan->estimated_requests = GHL_IMPOSSIBLE_REQUESTS;
		return plan;
	}

	/* a business's contacts have an endpoint of their own */
	if (plan->endpoint == GHL_EP_CONTACTS_SEARCH && list_length(m.filters) == 1 &&
		m.query_value == NULL && pathkeys == NIL &&
		strcmp(((MatchedFilter *) linitial(m.filters))->pushable->api_field,
			   "businessId") == 0)
	{
		plan->endpoint = GHL_EP_CONTACTS_OF_BUSINESS;
		plan->id_expr = add_expr(fdw_exprs,
								 ((MatchedFilter *) linitial(m.filters))->value);
	}
	else
	{
		foreach(lc, m.filters)
		{
			MatchedFilter *mf = lfirst(lc);
			GhlPushedFilter *f;

			if (mf->pushable->endpoint != plan->endpoint)
				continue;
			f = palloc0(sizeof(GhlPushedFilter));
			f->field = pstrdup(mf->pushable->api_field);
			f->op = pstrdup(mf->op);
			f->expr = add_expr(fdw_exprs, mf->value);
			plan->filters = lappend(plan->filters, f);
		}
		if (m.query_value && plan->endpoint == GHL_EP_CONTACTS_SEARCH)
			plan->query_expr = add_expr(fdw_exprs, m.query_value);
	}

	if (pathkeys != NIL && plan->endpoint == GHL_EP_CONTACTS_SEARCH)
	{
		plan->sort_field = pathkey_sort_field(root, baserel, resource, pathkeys);
		Assert(plan->sort_field != NULL);
		plan->sort_desc = (linitial_node(PathKey, pathkeys)->pk_strategy ==
						   BTGreaterStrategyNumber);
	}

	selectivity = clauselist_selectivity(root, m.filter_clauses, baserel->relid,
										 JOIN_INNER, NULL);
	plan->estimated_rows = clamp_row_est(resource->rows_estimate * selectivity);
	if (limit_tuples > 0 &&
		ghl_endpoint(plan->endpoint)->paging != GHL_PAGING_NONE)
		plan->limit = (int) Min(limit_tuples, PG_INT32_MAX);
	if (plan->endpoint == GHL_EP_CALENDAR_EVENTS)
		plan->estimated_requests = 1 + GHL_CALENDARS;
	else if (plan->limit > 0)
		plan->estimated_requests = Max(1, ceil(Min(plan->limit, plan->estimated_rows) /
											   options->page_size));
	else
		plan->estimated_requests = Max(1, ceil(plan->estimated_rows / options->page_size));
	return plan;
}

/*
 * Report a plan that no endpoint can answer, with the condition that
 * would make it answerable.  Called when the plan is final, never for a
 * mere candidate path.
 */
void
ghl_plan_require_endpoint(GhlRequestPlan *plan, const GhlResource *resource)
{
	if (plan->endpoint != GHL_NUM_ENDPOINTS)
		return;
	if (resource->scan_endpoint == GHL_EP_CALENDAR_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_CREATE_EXECUTION),
				 errmsg("the GHL API lists the %s of a location only for a time window",
						resource->name),
				 errhint("Add WHERE start_time >= ... AND start_time < ..., or WHERE contact_id = ..., or join %s to contacts on contact_id, or allow one request per contact with ALTER FOREIGN TABLE ... OPTIONS (ADD fan_out 'true').",
						 resource->name)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_CREATE_EXECUTION),
			 errmsg("the GHL API cannot list all %s of a location", resource->name),
			 errhint("Add WHERE contact_id = ... or join %s to contacts on contact_id, or allow one request per contact with ALTER FOREIGN TABLE ... OPTIONS (ADD fan_out 'true').",
					 resource->name)));
}

/*
 * Record what one clause offers the API: an id or contact id (scalar or
 * array), a free-text query, or a filter from the pushable table.
 */
static void
match_clause(PlannerInfo *root, RelOptInfo *baserel,
			 const GhlResource *resource, RestrictInfo *rinfo,
			 ClauseMatches *m)
{
	Node	   *clause = (Node *) rinfo->clause;
	char	   *field;
	Oid			type;
	const GhlPushable *p;

	/* a bare boolean column, or its negation */
	if (match_var(root, baserel, clause, &field, &type) && type == BOOLOID)
	{
		if ((p = ghl_pushable(resource->kind, field, GHL_QUAL_BOOL_EQ)) != NULL)
			add_filter(m, rinfo, p, "eq", (Expr *) makeBoolConst(true, false));
		return;
	}
	if (is_notclause(clause) &&
		match_var(root, baserel, (Node *) get_notclausearg((Expr *) clause),
				  &field, &type) && type == BOOLOID)
	{
		if ((p = ghl_pushable(resource->kind, field, GHL_QUAL_BOOL_EQ)) != NULL)
			add_filter(m, rinfo, p, "eq", (Expr *) makeBoolConst(false, false));
		return;
	}

	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) clause;
		Node	   *left = linitial(op->args);
		Node	   *right = lsecond(op->args);
		Node	   *value;
		bool		var_left;

		if (match_var(root, baserel, left, &field, &type) &&
			value_usable(root, baserel, right))
			var_left = true, value = right;
		else if (match_var(root, baserel, right, &field, &type) &&
				 value_usable(root, baserel, left))
			var_left = false, value = left;
		else
			return;

		if (op->opno == TextEqualOperator)
		{
			if (strcmp(field, "id") == 0 && m->id_value == NULL)
				m->id_value = (Expr *) value, m->id_is_array = false;
			else if (strcmp(field, "contactId") == 0 && m->contact_value == NULL)
				m->contact_value = (Expr *) value, m->contact_is_array = false;
			else if (strcmp(field, GHL_QUERY_FIELD) == 0 && m->query_value == NULL)
				m->query_value = (Expr *) value;
			else if ((p = ghl_pushable(resource->kind, field, GHL_QUAL_TEXT_EQ)) != NULL)
				add_filter(m, rinfo, p, "eq", (Expr *) value);
		}
		else if (op->opno == BooleanEqualOperator)
		{
			if ((p = ghl_pushable(resource->kind, field, GHL_QUAL_BOOL_EQ)) != NULL)
				add_filter(m, rinfo, p, "eq", (Expr *) value);
		}
		else if (op->opno == OID_ARRAY_CONTAINS_OP && var_left &&
				 IsA(value, Const) && !((Const *) value)->constisnull &&
				 type == TEXTARRAYOID &&
				 (p = ghl_pushable(resource->kind, field, GHL_QUAL_ARRAY_HAS)) != NULL)
		{
			/* col @> ARRAY['a', 'b']: one "has" filter per element */
			ArrayType  *array = DatumGetArrayTypeP(((Const *) value)->constvalue);
			Datum	   *elems;
			bool	   *nulls;
			int			n;
			int			i;

			deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &n);
			for (i = 0; i < n; i++)
			{
				if (nulls[i])
					return;		/* never true; leave it to the local filter */
			}
			for (i = 0; i < n; i++)
				add_filter(m, rinfo, p, "eq",
						   (Expr *) makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1,
											  elems[i], false, false));
		}
		else if (type == TIMESTAMPTZOID && exprType(value) == TIMESTAMPTZOID &&
				 (p = ghl_pushable(resource->kind, field, GHL_QUAL_RANGE)) != NULL)
		{
			int			strategy = get_op_opfamily_strategy(op->opno,
															timestamptz_btree_family());
			bool		lower;
			bool		upper;

			/* with the column on the right, "<" bounds it from below */
			if (!var_left)
				strategy = BTCommuteStrategyNumber(strategy);
			lower = (strategy == BTGreaterStrategyNumber ||
					 strategy == BTGreaterEqualStrategyNumber ||
					 strategy == BTEqualStrategyNumber);
			upper = (strategy == BTLessStrategyNumber ||
					 strategy == BTLessEqualStrategyNumber ||
					 strategy == BTEqualStrategyNumber);
			if (lower)
				add_filter(m, rinfo, p, "gte", (Expr *) value);
			if (upper)
				add_filter(m, rinfo, p, "lte", (Expr *) value);
		}
		return;
	}

	if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
		Node	   *left = linitial(saop->args);
		Node	   *right = lsecond(saop->args);

		if (!saop->useOr || saop->opno != TextEqualOperator)
			return;
		/* col = ANY(array): id or contact id, one request per value */
		if (match_var(root, baserel, left, &field, &type) &&
			value_usable(root, baserel, right))
		{
			if (strcmp(field, "id") == 0 && m->id_value == NULL)
				m->id_value = (Expr *) right, m->id_is_array = true;
			else if (strcmp(field, "contactId") == 0 && m->contact_value == NULL)
				m->contact_value = (Expr *) right, m->contact_is_array = true;
		}
		/* 'x' = ANY(col): the array column has an element */
		else if (match_var(root, baserel, right, &field, &type) &&
				 type == TEXTARRAYOID && value_usable(root, baserel, left) &&
				 (p = ghl_pushable(resource->kind, field, GHL_QUAL_ARRAY_HAS)) != NULL)
			add_filter(m, rinfo, p, "eq", (Expr *) left);
	}
}

/*
 * If node is a column of baserel (under a binary-compatible cast), return
 * the JSON field it reads and its type.
 */
static bool
match_var(PlannerInfo *root, RelOptInfo *baserel, Node *node, char **field,
		  Oid *type)
{
	Var		   *var;
	RangeTblEntry *rte;

	if (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node == NULL || !IsA(node, Var))
		return false;
	var = (Var *) node;
	if (var->varno != baserel->relid || var->varlevelsup != 0 || var->varattno <= 0)
		return false;
	rte = planner_rt_fetch(baserel->relid, root);
	*field = ghl_get_column_field(rte->relid, var->varattno);
	*type = var->vartype;
	return true;
}

/*
 * A value the executor can compute before fetching: no column of this
 * table, nothing volatile, no subplan (initplans arrive as Params).
 * Columns of other tables are fine: a nested loop supplies them.
 */
static bool
value_usable(PlannerInfo *root, RelOptInfo *baserel, Node *value)
{
	return !bms_is_member(baserel->relid, pull_varnos(root, value)) &&
		!contain_volatile_functions(value) &&
		!contain_subplans(value);
}

static void
add_filter(ClauseMatches *m, RestrictInfo *rinfo, const GhlPushable *pushable,
		   const char *op, Expr *value)
{
	MatchedFilter *mf = palloc(sizeof(MatchedFilter));

	mf->pushable = pushable;
	mf->op = op;
	mf->value = value;
	m->filters = lappend(m->filters, mf);
	m->filter_clauses = list_append_unique_ptr(m->filter_clauses, rinfo);
}

/* Whether the filters bound start_time on both sides, as the calendar needs. */
static bool
has_window(List *filters)
{
	bool		lower = false;
	bool		upper = false;
	ListCell   *lc;

	foreach(lc, filters)
	{
		MatchedFilter *mf = lfirst(lc);

		if (mf->pushable->endpoint != GHL_EP_CALENDAR_EVENTS)
			continue;
		lower |= strcmp(mf->op, "gte") == 0;
		upper |= strcmp(mf->op, "lte") == 0;
	}
	return lower && upper;
}

/* Whether the table's fan_out option allows one request per contact. */
static bool
fan_out_allowed(PlannerInfo *root, RelOptInfo *baserel)
{
	char	   *value = ghl_get_table_option(planner_rt_fetch(baserel->relid, root)->relid,
											 "fan_out");
	bool		result = false;

	return value != NULL && parse_bool(value, &result) && result;
}

static int
add_expr(List **fdw_exprs, Expr *expr)
{
	*fdw_exprs = lappend(*fdw_exprs, expr);
	return list_length(*fdw_exprs) - 1;
}

/* How many values an array expression holds, as far as planning can tell. */
static double
array_values(Expr *array)
{
	if (IsA(array, Const) && !((Const *) array)->constisnull)
		return Max(1, ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(((Const *) array)->constvalue)),
									 ARR_DIMS(DatumGetArrayTypeP(((Const *) array)->constvalue))));
	return GHL_ARRAY_VALUES;
}

static Oid
timestamptz_btree_family(void)
{
	return get_opclass_family(GetDefaultOpClass(TIMESTAMPTZOID, BTREE_AM_OID));
}

/*
 * Whether the search endpoint can deliver rows in this order.
 */
bool
ghl_pathkeys_pushable(PlannerInfo *root, RelOptInfo *baserel,
					  const GhlResource *resource, List *pathkeys)
{
	return pathkey_sort_field(root, baserel, resource, pathkeys) != NULL;
}

/*
 * The API sort field that yields rows in pathkeys order, or NULL: one key,
 * a sortable timestamp of this table, SQL's default placement of NULLs.
 * The API puts rows without the value last in both directions; the
 * timestamps it sorts by are set on every record, so the orders agree.
 */
static char *
pathkey_sort_field(PlannerInfo *root, RelOptInfo *baserel,
				   const GhlResource *resource, List *pathkeys)
{
	PathKey    *pk;
	ListCell   *lc;

	if (!ghl_enable_pushdown || resource->scan_endpoint != GHL_EP_CONTACTS_SEARCH ||
		list_length(pathkeys) != 1)
		return NULL;
	pk = linitial_node(PathKey, pathkeys);
	if (pk->pk_opfamily != timestamptz_btree_family() ||
		pk->pk_nulls_first != (pk->pk_strategy == BTGreaterStrategyNumber))
		return NULL;
	foreach(lc, pk->pk_eclass->ec_members)
	{
		EquivalenceMember *em = lfirst(lc);
		char	   *field;
		Oid			type;

		if (bms_equal(em->em_relids, baserel->relids) &&
			match_var(root, baserel, (Node *) em->em_expr, &field, &type) &&
			ghl_sortable(resource->kind, field))
			return field;
	}
	return NULL;
}

List *
ghl_request_plan_to_list(GhlRequestPlan *plan)
{
	List	   *filters = NIL;
	ListCell   *lc;

	foreach(lc, plan->filters)
	{
		GhlPushedFilter *f = lfirst(lc);

		filters = lappend(filters, list_make3(makeString(f->field),
											  makeString(f->op),
											  makeInteger(f->expr)));
	}
	return lappend(list_concat(list_make5(makeInteger(plan->endpoint),
										  makeInteger(plan->id_expr),
										  makeInteger(plan->contact_expr),
										  makeInteger(plan->array_slot),
										  makeInteger(plan->query_expr)),
							   list_make5(makeString(plan->sort_field ? plan->sort_field : ""),
										  makeBoolean(plan->sort_desc),
										  makeInteger(plan->limit),
										  makeFloat(psprintf("%.0f", plan->estimated_rows)),
										  makeFloat(psprintf("%.0f", plan->estimated_requests)))),
				   filters);
}

GhlRequestPlan *
ghl_request_plan_from_list(List *list)
{
	GhlRequestPlan *plan = palloc0(sizeof(GhlRequestPlan));
	ListCell   *lc;

	plan->endpoint = (GhlEndpointKind) intVal(list_nth(list, GhlPlanEndpoint));
	plan->id_expr = intVal(list_nth(list, GhlPlanIdExpr));
	plan->contact_expr = intVal(list_nth(list, GhlPlanContactExpr));
	plan->array_slot = (GhlArraySlot) intVal(list_nth(list, GhlPlanArraySlot));
	plan->query_expr = intVal(list_nth(list, GhlPlanQueryExpr));
	plan->sort_field = strVal(list_nth(list, GhlPlanSortField));
	if (plan->sort_field[0] == '\0')
		plan->sort_field = NULL;
	plan->sort_desc = boolVal(list_nth(list, GhlPlanSortDesc));
	plan->limit = intVal(list_nth(list, GhlPlanLimit));
	plan->estimated_rows = floatVal(list_nth(list, GhlPlanEstimatedRows));
	plan->estimated_requests = floatVal(list_nth(list, GhlPlanEstimatedRequests));
	foreach(lc, (List *) list_nth(list, GhlPlanFilters))
	{
		List	   *item = lfirst(lc);
		GhlPushedFilter *f = palloc0(sizeof(GhlPushedFilter));

		f->field = strVal(linitial(item));
		f->op = strVal(lsecond(item));
		f->expr = intVal(lthird(item));
		plan->filters = lappend(plan->filters, f);
	}
	return plan;
}

/*
 * What EXPLAIN shows: the method and path the scan will call, and what a
 * request is repeated for.
 */
char *
ghl_request_plan_describe(GhlRequestPlan *plan, const GhlResource *resource)
{
	const GhlEndpoint *ep = ghl_endpoint(plan->endpoint);
	char	   *path;

	if (ep->location_in_path)
		path = psprintf(ep->path, "{locationId}");
	else if (plan->endpoint == GHL_EP_CONTACTS_OF_BUSINESS)
		path = ghl_endpoint_path(ep, NULL, "{businessId}");
	else
		path = ghl_endpoint_path(ep, "{contactId}", "{id}");

	switch (plan->array_slot)
	{
		case GHL_ARRAY_ID:
			return psprintf("%s %s per id", ep->method, path);
		case GHL_ARRAY_CONTACT:
			return psprintf("%s %s per contact", ep->method, path);
		case GHL_ARRAY_EVERY_CONTACT:
			return psprintf("%s %s per contact of %s %s", ep->method, path,
							ghl_endpoint(GHL_EP_CONTACTS_SEARCH)->method,
							ghl_endpoint(GHL_EP_CONTACTS_SEARCH)->path);
		case GHL_ARRAY_NONE:
			break;
	}
	if (plan->endpoint == GHL_EP_CALENDAR_EVENTS)
		return psprintf("%s %s per calendar of %s %s", ep->method, path,
						ghl_endpoint(GHL_EP_CALENDARS)->method,
						ghl_endpoint(GHL_EP_CALENDARS)->path);
	return psprintf("%s %s", ep->method, path);
}
