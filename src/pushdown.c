/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Turning restriction clauses into a request plan: which endpoint
 *		  answers the scan and with which parameters.
 *
 * Every clause is also kept as a local filter, so a pushed-down condition
 * only narrows what is fetched; the result is always what SQL means.
 *
 * IDENTIFICATION
 *		  src/pushdown.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"

/* planner's guess at the tasks, notes or appointments of one contact */
#define GHL_ROWS_PER_CONTACT	5

/* Indexes into the list that carries a GhlRequestPlan through fdw_private. */
enum GhlRequestPlanIndex
{
	GhlPlanEndpoint,
	GhlPlanIdExpr,
	GhlPlanContactExpr,
	GhlPlanEstimatedRows,
	GhlPlanEstimatedRequests
};

static Expr *match_column_equality(PlannerInfo *root, RelOptInfo *baserel,
								   Expr *clause, const char *field);

/*
 * Choose the endpoint for a scan of baserel.  Values compared with pushed
 * columns are appended to *fdw_exprs, to be evaluated by the executor
 * (they may be Params of an outer query).
 */
GhlRequestPlan *
ghl_plan_request(PlannerInfo *root, RelOptInfo *baserel,
				 const GhlResource *resource, List **fdw_exprs)
{
	GhlRequestPlan *plan = palloc0(sizeof(GhlRequestPlan));
	Expr	   *id_value = NULL;
	Expr	   *contact_value = NULL;
	ListCell   *lc;

	plan->endpoint = resource->scan_endpoint;
	plan->id_expr = -1;
	plan->contact_expr = -1;
	plan->estimated_rows = resource->rows_estimate;

	if (ghl_enable_pushdown)
	{
		foreach(lc, baserel->baserestrictinfo)
		{
			RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

			if (id_value == NULL)
				id_value = match_column_equality(root, baserel, rinfo->clause, "id");
			if (contact_value == NULL)
				contact_value = match_column_equality(root, baserel, rinfo->clause,
													  "contactId");
		}
	}

	/* the most selective endpoint whose path parameters are all known */
	if (id_value && resource->by_id_endpoint != GHL_NUM_ENDPOINTS &&
		(contact_value || !ghl_endpoint(resource->by_id_endpoint)->needs_contact))
	{
		plan->endpoint = resource->by_id_endpoint;
		plan->estimated_rows = 1;
	}
	else if (contact_value && resource->by_contact_endpoint != GHL_NUM_ENDPOINTS)
	{
		plan->endpoint = resource->by_contact_endpoint;
		plan->estimated_rows = GHL_ROWS_PER_CONTACT;
	}

	if (plan->endpoint == GHL_NUM_ENDPOINTS)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_CREATE_EXECUTION),
				 errmsg("the GHL API cannot list all %s of a location", resource->name),
				 errhint("Add WHERE contact_id = ... or join %s to contacts on contact_id.",
						 resource->name)));

	if (ghl_endpoint(plan->endpoint)->needs_id)
	{
		*fdw_exprs = lappend(*fdw_exprs, id_value);
		plan->id_expr = list_length(*fdw_exprs) - 1;
	}
	if (ghl_endpoint(plan->endpoint)->needs_contact)
	{
		*fdw_exprs = lappend(*fdw_exprs, contact_value);
		plan->contact_expr = list_length(*fdw_exprs) - 1;
	}

	if (ghl_endpoint(plan->endpoint)->paging == GHL_PAGING_NONE)
		plan->estimated_requests = 1;
	else
	{
		GhlOptions *options = ghl_get_options(baserel->serverid, GetUserId());

		plan->estimated_requests =
			ceil(plan->estimated_rows / options->page_size) + 1;
	}
	return plan;
}

/*
 * If clause is "column = value" (either way round) for the column that
 * reads the given JSON field, and value can be computed before the scan,
 * return the value expression.
 */
static Expr *
match_column_equality(PlannerInfo *root, RelOptInfo *baserel, Expr *clause,
					  const char *field)
{
	OpExpr	   *op;
	Expr	   *left;
	Expr	   *right;
	Var		   *var;
	Expr	   *value;
	RangeTblEntry *rte;
	char	   *opname;

	if (!IsA(clause, OpExpr))
		return NULL;
	op = (OpExpr *) clause;
	if (list_length(op->args) != 2)
		return NULL;
	opname = get_opname(op->opno);
	if (opname == NULL || strcmp(opname, "=") != 0)
		return NULL;

	left = linitial(op->args);
	right = lsecond(op->args);
	if (IsA(left, RelabelType))
		left = ((RelabelType *) left)->arg;
	if (IsA(right, RelabelType))
		right = ((RelabelType *) right)->arg;

	if (IsA(left, Var) && ((Var *) left)->varno == baserel->relid)
		var = (Var *) left, value = right;
	else if (IsA(right, Var) && ((Var *) right)->varno == baserel->relid)
		var = (Var *) right, value = left;
	else
		return NULL;

	if (var->varattno <= 0 || var->varlevelsup != 0 ||
		exprType((Node *) var) != TEXTOID ||
		exprType((Node *) value) != TEXTOID)
		return NULL;
	if (!(IsA(value, Const) || IsA(value, Param)))
		return NULL;

	rte = planner_rt_fetch(baserel->relid, root);
	if (strcmp(ghl_get_column_field(rte->relid, var->varattno), field) != 0)
		return NULL;
	return value;
}

List *
ghl_request_plan_to_list(GhlRequestPlan *plan)
{
	return list_make5(makeInteger(plan->endpoint),
					  makeInteger(plan->id_expr),
					  makeInteger(plan->contact_expr),
					  makeFloat(psprintf("%.0f", plan->estimated_rows)),
					  makeFloat(psprintf("%.0f", plan->estimated_requests)));
}

GhlRequestPlan *
ghl_request_plan_from_list(List *list)
{
	GhlRequestPlan *plan = palloc0(sizeof(GhlRequestPlan));

	plan->endpoint = (GhlEndpointKind) intVal(list_nth(list, GhlPlanEndpoint));
	plan->id_expr = intVal(list_nth(list, GhlPlanIdExpr));
	plan->contact_expr = intVal(list_nth(list, GhlPlanContactExpr));
	plan->estimated_rows = floatVal(list_nth(list, GhlPlanEstimatedRows));
	plan->estimated_requests = floatVal(list_nth(list, GhlPlanEstimatedRequests));
	return plan;
}

/*
 * What EXPLAIN shows: the method and path the scan will call.
 */
char *
ghl_request_plan_describe(GhlRequestPlan *plan, const GhlResource *resource)
{
	const GhlEndpoint *ep = ghl_endpoint(plan->endpoint);

	return psprintf("%s %s", ep->method,
					ghl_endpoint_path(ep, "{contactId}", "{id}"));
}
