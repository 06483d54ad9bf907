/*-------------------------------------------------------------------------
 *
 * modify.c
 *		  INSERT, UPDATE and DELETE on GHL foreign tables.
 *
 * Each row is one API write (an UPDATE of a contact's tags may add one
 * request for the tags added and one for the tags removed).  The API is
 * not transactional: when a statement fails on its tenth row, the nine
 * rows before it have been written and stay written.  Errors therefore
 * name the row that failed.
 *
 * A row is identified by its id, and tasks and notes also by their
 * contact, which the scan below the ModifyTable fetches as junk columns.
 * RETURNING rows are the row as written, overlaid with whatever the API
 * answered (server-assigned id, dates).
 *
 * IDENTIFICATION
 *		  src/modify.c
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
#include "optimizer/appendinfo.h"
#include "optimizer/inherit.h"
#include "optimizer/pathnode.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* names of the junk columns that identify the row to update or delete */
#define GHL_JUNK_ID			"ghl_id"
#define GHL_JUNK_CONTACT	"ghl_contact_id"
#define GHL_JUNK_WHOLEROW	"wholerow"

/* Indexes into the fdw_private list of one result relation. */
enum GhlModifyPrivateIndex
{
	GhlModifyTargetAttrs,		/* attnums the write sends, an IntList */
	GhlModifyWriteKind			/* GhlWriteKind of the main request */
};

/* Executor state of the writes to one foreign table. */
typedef struct GhlFdwModifyState
{
	Relation	rel;
	const GhlResource *resource;
	CmdType		operation;
	const GhlWriteEndpoint *endpoint;	/* the main request of each row */
	List	   *target_attrs;	/* columns sent: INSERT all, UPDATE assigned */
	const GhlWriteField **fields;	/* per attribute, NULL if read-only */

	GhlOptions *options;
	GhlConnection *conn;

	AttrNumber	id_junk;		/* junk columns of the subplan's rows */
	AttrNumber	contact_junk;
	AttrNumber	wholerow_junk;
	AttrNumber	tags_attno;		/* tags column an UPDATE changes, or 0 */

	GhlColumnMap *columns;		/* every column, to fill RETURNING rows */
	int			ncolumns;
	GhlColumnMap *tags_column;	/* the tags column alone */

	MemoryContext row_cxt;		/* requests and responses of one row */
	GhlRequestStats stats;

	/* the row being written, for errcontext */
	int64		rowno;
	const char *row_id;
	const char *row_contact;
} GhlFdwModifyState;

static void ghlAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
									   RangeTblEntry *target_rte,
									   Relation target_relation);
static List *ghlPlanForeignModify(PlannerInfo *root, ModifyTable *plan,
								  Index resultRelation, int subplan_index);
static void ghlBeginForeignModify(ModifyTableState *mtstate,
								  ResultRelInfo *rinfo, List *fdw_private,
								  int subplan_index, int eflags);
static TupleTableSlot *ghlExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
											TupleTableSlot *slot,
											TupleTableSlot *planSlot);
static TupleTableSlot *ghlExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
											TupleTableSlot *slot,
											TupleTableSlot *planSlot);
static TupleTableSlot *ghlExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
											TupleTableSlot *slot,
											TupleTableSlot *planSlot);
static void ghlBeginForeignInsert(ModifyTableState *mtstate,
								  ResultRelInfo *rinfo);
static void ghlEndForeignInsert(EState *estate, ResultRelInfo *rinfo);
static void ghlEndForeignModify(EState *estate, ResultRelInfo *rinfo);
static int	ghlIsForeignRelUpdatable(Relation rel);
static void ghlExplainForeignModify(ModifyTableState *mtstate,
									ResultRelInfo *rinfo, List *fdw_private,
									int subplan_index, ExplainState *es);

static void begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						 List *target_attrs, GhlWriteKind kind, int eflags);
static List *all_columns(Relation rel);
static AttrNumber tags_column(GhlFdwModifyState *fmstate);
static AttrNumber column_for_field(Relation rel, const char *field);
static const GhlWriteEndpoint *write_endpoint(const GhlResource *resource,
											  GhlWriteKind kind, Relation rel);
static const GhlWriteField **write_fields(Relation rel,
										  const GhlResource *resource);
static void add_identity_var(PlannerInfo *root, Index rtindex, Relation rel,
							 const char *field, const char *junk_name);
static void begin_row(GhlFdwModifyState *fmstate, TupleTableSlot *planSlot,
					  ErrorContextCallback *errcallback);
static void modify_error_callback(void *arg);
static void check_writable(GhlFdwModifyState *fmstate);
static bool send_write(GhlFdwModifyState *fmstate, const GhlWriteEndpoint *wep,
					   const char *contact_id, const char *id, const char *body,
					   GhlJsonPage **page);
static void store_merged(GhlFdwModifyState *fmstate, TupleTableSlot *slot,
						 GhlJsonPage *page, GhlColumnMap *columns,
						 int ncolumns);
static char *datum_to_json(Datum value, Oid typid);
static bool old_row(GhlFdwModifyState *fmstate, TupleTableSlot *planSlot,
					HeapTuple tuple);
static List *array_strings(Datum array, Oid elemtype);
static char *tags_json(List *tags, List *except);
static bool change_tags(GhlFdwModifyState *fmstate, TupleTableSlot *slot,
						TupleTableSlot *planSlot);

/*
 * Install the write callbacks into the FDW's routine.
 */
void
ghl_modify_routine(FdwRoutine *routine)
{
	routine->AddForeignUpdateTargets = ghlAddForeignUpdateTargets;
	routine->PlanForeignModify = ghlPlanForeignModify;
	routine->BeginForeignModify = ghlBeginForeignModify;
	routine->ExecForeignInsert = ghlExecForeignInsert;
	routine->ExecForeignUpdate = ghlExecForeignUpdate;
	routine->ExecForeignDelete = ghlExecForeignDelete;
	routine->EndForeignModify = ghlEndForeignModify;
	routine->BeginForeignInsert = ghlBeginForeignInsert;
	routine->EndForeignInsert = ghlEndForeignInsert;
	routine->IsForeignRelUpdatable = ghlIsForeignRelUpdatable;
	routine->ExplainForeignModify = ghlExplainForeignModify;
}

/*
 * The column of a foreign table that holds a JSON field, or
 * InvalidAttrNumber.  Tables may rename columns (option "field"), so the
 * row's id is found by its field, not by a column name.
 */
static AttrNumber
column_for_field(Relation rel, const char *field)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (!attr->attisdropped &&
			strcmp(ghl_get_column_field(RelationGetRelid(rel), attr->attnum),
				   field) == 0)
			return attr->attnum;
	}
	return InvalidAttrNumber;
}

/*
 * A write endpoint the resource must have; a resource without one cannot
 * take that kind of statement.
 */
static const GhlWriteEndpoint *
write_endpoint(const GhlResource *resource, GhlWriteKind kind, Relation rel)
{
	const GhlWriteEndpoint *wep = ghl_write_endpoint(resource->kind, kind);

	if (wep == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the GHL API offers no such write on foreign table \"%s\"",
						RelationGetRelationName(rel))));
	return wep;
}

/*
 * For each attribute, how a write sends it (NULL: the API cannot set it).
 */
static const GhlWriteField **
write_fields(Relation rel, const GhlResource *resource)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	const GhlWriteField **fields = palloc0(sizeof(GhlWriteField *) * tupdesc->natts);
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (!attr->attisdropped)
			fields[i] = ghl_write_field(resource->kind,
										ghl_get_column_field(RelationGetRelid(rel),
															 attr->attnum));
	}
	return fields;
}

/*
 * Ask the scan for one identity column as a junk column.
 */
static void
add_identity_var(PlannerInfo *root, Index rtindex, Relation rel,
				 const char *field, const char *junk_name)
{
	AttrNumber	attno = column_for_field(rel, field);
	Form_pg_attribute attr;

	if (attno == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no column for the field \"%s\"",
						RelationGetRelationName(rel), field),
				 errdetail("Updates and deletes identify a row by it."),
				 errhint("Add the column, as IMPORT FOREIGN SCHEMA creates it.")));
	attr = TupleDescAttr(RelationGetDescr(rel), attno - 1);
	add_row_identity_var(root,
						 makeVar(rtindex, attno, attr->atttypid, attr->atttypmod,
								 attr->attcollation, 0),
						 rtindex, junk_name);
}

/*
 * The row's id, and for tasks and notes its contact (they live under it),
 * travel from the scan to the write as junk columns.  A DELETE with
 * RETURNING also needs the whole row, since the API answers a delete with
 * no row at all.
 */
static void
ghlAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
						   RangeTblEntry *target_rte, Relation target_relation)
{
	const GhlResource *resource = ghl_resource_for_table(RelationGetRelid(target_relation));
	const GhlWriteEndpoint *wep = write_endpoint(resource, GHL_WRITE_DELETE,
												 target_relation);

	add_identity_var(root, rtindex, target_relation, "id", GHL_JUNK_ID);
	if (wep->endpoint.needs_contact)
		add_identity_var(root, rtindex, target_relation, "contactId",
						 GHL_JUNK_CONTACT);

	/* the same Var the planner adds for UPDATE, so the two are merged */
	if (root->parse->commandType == CMD_DELETE && root->parse->returningList != NIL)
		add_row_identity_var(root,
							 makeVar(rtindex, InvalidAttrNumber, RECORDOID, -1,
									 InvalidOid, 0),
							 rtindex, GHL_JUNK_WHOLEROW);
}

/*
 * Every live column: an INSERT sends each one that is not NULL.
 */
static List *
all_columns(Relation rel)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	List	   *attnums = NIL;
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		if (!TupleDescAttr(tupdesc, i)->attisdropped)
			attnums = lappend_int(attnums, i + 1);
	}
	return attnums;
}

/*
 * Decide what each row's write sends.  Columns the API cannot set are
 * refused here, before anything runs: an UPDATE of contacts.company_name
 * fails at once rather than half-way through a statement.
 */
static List *
ghlPlanForeignModify(PlannerInfo *root, ModifyTable *plan,
					 Index resultRelation, int subplan_index)
{
	CmdType		operation = plan->operation;
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	Relation	rel = table_open(rte->relid, NoLock);
	const GhlResource *resource = ghl_resource_for_table(rte->relid);
	const GhlWriteField **fields = write_fields(rel, resource);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	List	   *target_attrs = NIL;
	GhlWriteKind kind;

	/* the API has no conditional create: DO NOTHING would create duplicates */
	if (plan->onConflictAction != ONCONFLICT_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("INSERT with ON CONFLICT is not supported on foreign table \"%s\"",
						RelationGetRelationName(rel))));

	if (operation == CMD_INSERT)
	{
		kind = GHL_WRITE_CREATE;
		target_attrs = all_columns(rel);
	}
	else if (operation == CMD_UPDATE)
	{
		RelOptInfo *baserel = find_base_rel(root, resultRelation);
		Bitmapset  *updated = get_rel_all_updated_cols(root, baserel);
		bool		only_completed = true;
		int			col = -1;

		while ((col = bms_next_member(updated, col)) >= 0)
		{
			AttrNumber	attno = col + FirstLowInvalidHeapAttributeNumber;
			const GhlWriteField *wf;

			if (attno <= InvalidAttrNumber)
				elog(ERROR, "system-column update is not supported");
			wf = fields[attno - 1];
			if (wf == NULL || !wf->on_update)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot update column \"%s\" of foreign table \"%s\"",
								NameStr(TupleDescAttr(tupdesc, attno - 1)->attname),
								RelationGetRelationName(rel)),
						 errdetail("The GHL API cannot change %s once the record exists.",
								   ghl_get_column_field(rte->relid, attno)),
						 wf && wf->on_create ?
						 errhint("The API accepts it only when the record is created.") : 0));
			if (strcmp(wf->field, "completed") != 0)
				only_completed = false;
			target_attrs = lappend_int(target_attrs, attno);
		}
		/* a task's completed flag alone has an endpoint of its own */
		kind = GHL_WRITE_UPDATE;
		if (target_attrs != NIL && only_completed &&
			ghl_write_endpoint(resource->kind, GHL_WRITE_COMPLETE) != NULL)
			kind = GHL_WRITE_COMPLETE;
	}
	else
		kind = GHL_WRITE_DELETE;

	write_endpoint(resource, kind, rel);
	table_close(rel, NoLock);
	return list_make2(target_attrs, makeInteger(kind));
}

/*
 * Set up the writes of one table planned by ghlPlanForeignModify.
 */
static void
ghlBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
					  List *fdw_private, int subplan_index, int eflags)
{
	begin_modify(mtstate, rinfo, list_nth(fdw_private, GhlModifyTargetAttrs),
				 intVal(list_nth(fdw_private, GhlModifyWriteKind)), eflags);
}

/*
 * COPY into a foreign table, and rows routed into a foreign partition,
 * insert without a plan of their own: every column, like an INSERT.
 */
static void
ghlBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	begin_modify(mtstate, rinfo, all_columns(rinfo->ri_RelationDesc),
				 GHL_WRITE_CREATE, 0);
}

static void
ghlEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	/* the row context goes with the query; the connection stays cached */
}

/*
 * Set up the writes of one table.  The read_only option and the token's
 * scope are checked here, before the scan below runs its first request.
 * EXPLAIN stops before both and never touches the network.
 */
static void
begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
			 List *target_attrs, GhlWriteKind kind, int eflags)
{
	EState	   *estate = mtstate->ps.state;
	GhlFdwModifyState *fmstate = palloc0(sizeof(GhlFdwModifyState));
	Index		rtindex = rinfo->ri_RangeTableIndex;
	RangeTblEntry *rte;
	Oid			userid;
	Plan	   *subplan;
	int			search_attindex;

	rinfo->ri_FdwState = fmstate;
	fmstate->rel = rinfo->ri_RelationDesc;
	/* not mtstate's: an UPDATE that moves a row to a partition inserts it */
	fmstate->operation = kind == GHL_WRITE_CREATE ? CMD_INSERT :
		kind == GHL_WRITE_DELETE ? CMD_DELETE : CMD_UPDATE;
	fmstate->resource = ghl_resource_for_table(RelationGetRelid(fmstate->rel));
	fmstate->target_attrs = target_attrs;
	fmstate->endpoint = write_endpoint(fmstate->resource, kind, fmstate->rel);
	fmstate->fields = write_fields(fmstate->rel, fmstate->resource);

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	/* a routed partition has no range table entry: its root's user counts */
	if (rtindex == 0)
		rtindex = rinfo->ri_RootResultRelInfo->ri_RangeTableIndex;
	rte = exec_rt_fetch(rtindex, estate);
	userid = OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
	fmstate->options = ghl_get_options(GetForeignTable(RelationGetRelid(fmstate->rel))->serverid,
									   userid);
	check_writable(fmstate);

	/* a filter-only search column has nothing to write or return */
	fmstate->columns = ghl_build_column_maps(fmstate->rel, list_make1_int(0),
											 fmstate->resource,
											 &fmstate->ncolumns, &search_attindex);
	if (fmstate->operation == CMD_UPDATE || fmstate->operation == CMD_DELETE)
	{
		subplan = outerPlanState(mtstate)->plan;
		fmstate->id_junk = ExecFindJunkAttributeInTlist(subplan->targetlist,
														GHL_JUNK_ID);
		fmstate->contact_junk = ExecFindJunkAttributeInTlist(subplan->targetlist,
															 GHL_JUNK_CONTACT);
		fmstate->wholerow_junk = ExecFindJunkAttributeInTlist(subplan->targetlist,
															  GHL_JUNK_WHOLEROW);
		if (!AttributeNumberIsValid(fmstate->id_junk))
			elog(ERROR, "could not find junk column \"%s\"", GHL_JUNK_ID);
	}
	fmstate->tags_attno = tags_column(fmstate);
	if (fmstate->operation == CMD_UPDATE &&
		fmstate->tags_attno != InvalidAttrNumber)
	{
		int			n;

		if (!AttributeNumberIsValid(fmstate->wholerow_junk))
			elog(ERROR, "could not find junk column \"%s\"", GHL_JUNK_WHOLEROW);
		fmstate->tags_column = ghl_build_column_maps(fmstate->rel,
													 list_make1_int(fmstate->tags_attno),
													 fmstate->resource, &n,
													 &search_attindex);
	}

	fmstate->row_cxt = AllocSetContextCreate(estate->es_query_cxt,
											 "ghl_fdw modify",
											 ALLOCSET_DEFAULT_SIZES);
}

/*
 * The tags column among the columns an UPDATE assigns, or 0: tags travel
 * through endpoints of their own.
 */
static AttrNumber
tags_column(GhlFdwModifyState *fmstate)
{
	ListCell   *lc;

	if (fmstate->operation != CMD_UPDATE)
		return InvalidAttrNumber;
	foreach(lc, fmstate->target_attrs)
	{
		if (fmstate->fields[lfirst_int(lc) - 1]->kind == GHL_WF_TAGS)
			return lfirst_int(lc);
	}
	return InvalidAttrNumber;
}

/*
 * Refuse a write the server or the token does not allow, with nothing
 * sent yet.  Every write endpoint of a statement needs the same scope.
 */
static void
check_writable(GhlFdwModifyState *fmstate)
{
	GhlOptions *options = fmstate->options;

	if (options->read_only)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("GHL server \"%s\" is read-only", options->server_name),
				 errdetail("Foreign table \"%s\" cannot be written through it.",
						   RelationGetRelationName(fmstate->rel)),
				 errhint("ALTER SERVER %s OPTIONS (SET read_only 'false') to allow writes.",
						 quote_identifier(options->server_name))));
	fmstate->conn = ghl_get_connection(options);
	ghl_auth_require_scope(fmstate->conn, options, fmstate->endpoint->scope);
}

/*
 * Start on one row: a fresh row context, the row's identity (from the
 * junk columns) and an errcontext naming it.  Switches to the row context.
 */
static void
begin_row(GhlFdwModifyState *fmstate, TupleTableSlot *planSlot,
		  ErrorContextCallback *errcallback)
{
	bool		isnull;
	Datum		value;

	MemoryContextReset(fmstate->row_cxt);
	MemoryContextSwitchTo(fmstate->row_cxt);
	fmstate->rowno++;
	fmstate->row_id = NULL;
	fmstate->row_contact = NULL;

	if (AttributeNumberIsValid(fmstate->id_junk))
	{
		value = ExecGetJunkAttribute(planSlot, fmstate->id_junk, &isnull);
		if (!isnull)
			fmstate->row_id = TextDatumGetCString(value);
	}
	if (AttributeNumberIsValid(fmstate->contact_junk))
	{
		value = ExecGetJunkAttribute(planSlot, fmstate->contact_junk, &isnull);
		if (!isnull)
			fmstate->row_contact = TextDatumGetCString(value);
	}

	errcallback->callback = modify_error_callback;
	errcallback->arg = fmstate;
	errcallback->previous = error_context_stack;
	error_context_stack = errcallback;
}

/*
 * Name the row that failed: the API is not transactional, so the user
 * needs to know which rows before it were written.
 */
static void
modify_error_callback(void *arg)
{
	GhlFdwModifyState *fmstate = (GhlFdwModifyState *) arg;
	StringInfoData row;

	initStringInfo(&row);
	appendStringInfo(&row, "row " INT64_FORMAT, fmstate->rowno);
	if (fmstate->row_id != NULL)
		appendStringInfo(&row, " (id \"%s\"", fmstate->row_id);
	if (fmstate->row_id != NULL && fmstate->row_contact != NULL)
		appendStringInfo(&row, ", contact_id \"%s\"", fmstate->row_contact);
	if (fmstate->row_id != NULL)
		appendStringInfoChar(&row, ')');
	errcontext("%s of %s of foreign table \"%s\"%s",
			   fmstate->operation == CMD_INSERT ? "INSERT" :
			   fmstate->operation == CMD_UPDATE ? "UPDATE" : "DELETE",
			   row.data, RelationGetRelationName(fmstate->rel),
			   fmstate->rowno > 1 ? "; the rows before it were written" : "");
}

/*
 * Send one write.  Returns false when the API no longer has the row (a
 * 404 on a path that names it); *page receives the parsed response when
 * the caller wants it.  Creates are not retried once they may have reached
 * the API, so a retry cannot create a record twice.
 */
static bool
send_write(GhlFdwModifyState *fmstate, const GhlWriteEndpoint *wep,
		   const char *contact_id, const char *id, const char *body,
		   GhlJsonPage **page)
{
	const GhlEndpoint *ep = &wep->endpoint;
	GhlOptions *options = fmstate->options;
	GhlRequest request = {0};
	GhlResponse response;

	request.method = ep->method;
	request.path = ghl_request_path(ep, contact_id, id, options->server_name);
	request.api_version = ep->api_version ? ep->api_version : options->api_version;
	request.body = body;
	request.authenticated = true;
	request.idempotent = wep->idempotent;

	ghl_http_execute(fmstate->conn, &request, &response, &fmstate->stats);
	if (response.status == 404)
	{
		if (ep->not_found_is_empty)
			return false;
		ghl_report_http_error(fmstate->conn, &request, &response);
	}
	if (page != NULL)
		*page = ghl_json_parse_page(response.data, response.len,
									ep->response_key, true,
									options->server_name);
	return true;
}

/*
 * Put the row as written into the slot, overlaid with the fields of the
 * API's response.  The slot's own values are copied first: clearing a
 * heap slot frees the tuple they point into.
 */
static void
store_merged(GhlFdwModifyState *fmstate, TupleTableSlot *slot,
			 GhlJsonPage *page, GhlColumnMap *columns, int ncolumns)
{
	TupleDesc	tupdesc = slot->tts_tupleDescriptor;
	int			natts = tupdesc->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	int			i;

	slot_getallattrs(slot);
	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		nulls[i] = slot->tts_isnull[i];
		values[i] = nulls[i] ? (Datum) 0 :
			datumCopy(slot->tts_values[i], attr->attbyval, attr->attlen);
	}
	ghl_json_row_merge_values(page, 0, columns, ncolumns,
							  RelationGetRelationName(fmstate->rel),
							  values, nulls);

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * natts);
	ExecStoreVirtualTuple(slot);
	ExecMaterializeSlot(slot);
}

/*
 * One value as JSON text: booleans and JSON as themselves, arrays element
 * by element, timestamps in ISO 8601 at UTC, everything else as a string
 * of its text form.
 */
static char *
datum_to_json(Datum value, Oid typid)
{
	StringInfoData buf;
	Oid			elemtype;
	Oid			output;
	bool		isvarlena;

	initStringInfo(&buf);
	if (typid == BOOLOID)
		return pstrdup(DatumGetBool(value) ? "true" : "false");
	if (typid == TIMESTAMPTZOID)
	{
		const int	utc = 0;

		escape_json(&buf, JsonEncodeDateTime(NULL, value, typid, &utc));
		return buf.data;
	}
	getTypeOutputInfo(typid, &output, &isvarlena);
	if (typid == JSONBOID || typid == JSONOID)
		return OidOutputFunctionCall(output, value);

	elemtype = get_element_type(typid);
	if (OidIsValid(elemtype))
	{
		ArrayType  *array = DatumGetArrayTypeP(value);
		int16		elemlen;
		bool		elembyval;
		char		elemalign;
		Datum	   *elems;
		bool	   *elemnulls;
		int			n;
		int			i;

		get_typlenbyvalalign(elemtype, &elemlen, &elembyval, &elemalign);
		deconstruct_array(array, elemtype, elemlen, elembyval, elemalign,
						  &elems, &elemnulls, &n);
		appendStringInfoChar(&buf, '[');
		for (i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(&buf, ',');
			appendStringInfoString(&buf, elemnulls[i] ? "null" :
								   datum_to_json(elems[i], elemtype));
		}
		appendStringInfoChar(&buf, ']');
		return buf.data;
	}

	escape_json(&buf, OidOutputFunctionCall(output, value));
	return buf.data;
}

/*
 * INSERT: one create per row.  Required fields are checked before the
 * request; the response supplies the server-assigned id and dates.
 */
static TupleTableSlot *
ghlExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
					 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	GhlFdwModifyState *fmstate = (GhlFdwModifyState *) rinfo->ri_FdwState;
	const GhlWriteEndpoint *wep = fmstate->endpoint;
	TupleDesc	tupdesc = RelationGetDescr(fmstate->rel);
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorContextCallback errcallback;
	GhlJsonBody *body;
	GhlJsonPage *page;
	const char *contact_id = NULL;
	ListCell   *lc;

	begin_row(fmstate, planSlot, &errcallback);
	slot_getallattrs(slot);
	body = ghl_json_body_new();
	if (wep->location_key != NULL)
		ghl_json_body_add(body, wep->location_key,
						  datum_to_json(CStringGetTextDatum(fmstate->options->location_id),
										TEXTOID));

	foreach(lc, fmstate->target_attrs)
	{
		int			i = lfirst_int(lc) - 1;
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		const GhlWriteField *wf = fmstate->fields[i];

		if (wf == NULL || !wf->on_create)
		{
			if (!slot->tts_isnull[i])
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot set column \"%s\" of foreign table \"%s\"",
								NameStr(attr->attname),
								RelationGetRelationName(fmstate->rel)),
						 errdetail("The GHL API assigns or derives it."),
						 errhint("Leave the column out of the INSERT.")));
			continue;
		}
		if (slot->tts_isnull[i])
		{
			if (wf->required)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("null value in column \"%s\" of foreign table \"%s\"",
								NameStr(attr->attname),
								RelationGetRelationName(fmstate->rel)),
						 errdetail("The GHL API needs %s to create a record in %s.",
								   wf->field, fmstate->resource->name)));
			if (wf->create_default != NULL)
				ghl_json_body_add(body, wf->write_field, wf->create_default);
			continue;
		}
		switch (wf->kind)
		{
			case GHL_WF_PATH_CONTACT:
				contact_id = TextDatumGetCString(slot->tts_values[i]);
				break;
			case GHL_WF_CUSTOM_FIELDS:
				ghl_json_body_add_custom_fields(body, wf->write_field,
												datum_to_json(slot->tts_values[i],
															  attr->atttypid),
												RelationGetRelationName(fmstate->rel));
				break;
			case GHL_WF_VALUE:
			case GHL_WF_TAGS:
				ghl_json_body_add(body, wf->write_field,
								  datum_to_json(slot->tts_values[i],
												attr->atttypid));
				break;
		}
	}
	if (wep->endpoint.needs_contact && contact_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("foreign table \"%s\" needs a contact_id to create a record",
						RelationGetRelationName(fmstate->rel)),
				 errdetail("Records of %s live under their contact.",
						   fmstate->resource->name)));

	send_write(fmstate, wep, contact_id, NULL, ghl_json_body_text(body), &page);
	store_merged(fmstate, slot, page, fmstate->columns, fmstate->ncolumns);

	error_context_stack = errcallback.previous;
	MemoryContextSwitchTo(oldcxt);
	return slot;
}

/*
 * UPDATE: one request with only the columns the statement assigned, plus
 * the tag endpoints when tags changed.  A row the API no longer has is
 * not updated (zero rows), which is what an UPDATE of a vanished row
 * means in SQL too.
 */
static TupleTableSlot *
ghlExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
					 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	GhlFdwModifyState *fmstate = (GhlFdwModifyState *) rinfo->ri_FdwState;
	TupleDesc	tupdesc = RelationGetDescr(fmstate->rel);
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorContextCallback errcallback;
	GhlJsonBody *body;
	GhlJsonPage *page;
	bool		fields_sent = false;
	bool		found = true;
	ListCell   *lc;

	begin_row(fmstate, planSlot, &errcallback);
	slot_getallattrs(slot);
	body = ghl_json_body_new();
	foreach(lc, fmstate->target_attrs)
	{
		int			i = lfirst_int(lc) - 1;
		const GhlWriteField *wf = fmstate->fields[i];
		Oid			typid = TupleDescAttr(tupdesc, i)->atttypid;

		if (wf->kind == GHL_WF_TAGS)
			continue;			/* sent as a difference below */
		fields_sent = true;
		if (slot->tts_isnull[i])
			ghl_json_body_add(body, wf->write_field, "null");
		else if (wf->kind == GHL_WF_CUSTOM_FIELDS)
			ghl_json_body_add_custom_fields(body, wf->write_field,
											datum_to_json(slot->tts_values[i], typid),
											RelationGetRelationName(fmstate->rel));
		else
			ghl_json_body_add(body, wf->write_field,
							  datum_to_json(slot->tts_values[i], typid));
	}

	if (fields_sent)
	{
		found = send_write(fmstate, fmstate->endpoint, fmstate->row_contact,
						   fmstate->row_id, ghl_json_body_text(body), &page);
		if (found)
			store_merged(fmstate, slot, page, fmstate->columns,
						 fmstate->ncolumns);
	}
	if (found && fmstate->tags_attno != InvalidAttrNumber)
		found = change_tags(fmstate, slot, planSlot);

	error_context_stack = errcallback.previous;
	MemoryContextSwitchTo(oldcxt);
	return found ? slot : NULL;
}

/*
 * The row as the scan read it, from the whole-row junk column, into
 * *tuple (which points into planSlot).  False when there is none.
 */
static bool
old_row(GhlFdwModifyState *fmstate, TupleTableSlot *planSlot,
		HeapTuple tuple)
{
	bool		isnull;
	Datum		wholerow;
	HeapTupleHeader td;

	if (!AttributeNumberIsValid(fmstate->wholerow_junk))
		return false;
	wholerow = ExecGetJunkAttribute(planSlot, fmstate->wholerow_junk, &isnull);
	if (isnull)
		return false;
	td = DatumGetHeapTupleHeader(wholerow);
	tuple->t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = td;
	return true;
}

/*
 * The elements of an array as C strings, NULLs left out.
 */
static List *
array_strings(Datum array, Oid elemtype)
{
	List	   *result = NIL;
	int16		elemlen;
	bool		elembyval;
	char		elemalign;
	Datum	   *elems;
	bool	   *elemnulls;
	Oid			output;
	bool		isvarlena;
	int			n;
	int			i;

	get_typlenbyvalalign(elemtype, &elemlen, &elembyval, &elemalign);
	getTypeOutputInfo(elemtype, &output, &isvarlena);
	deconstruct_array(DatumGetArrayTypeP(array), elemtype, elemlen, elembyval,
					  elemalign, &elems, &elemnulls, &n);
	for (i = 0; i < n; i++)
	{
		if (!elemnulls[i])
			result = lappend(result, OidOutputFunctionCall(output, elems[i]));
	}
	return result;
}

/*
 * The tags of one list that are not in another, as the JSON array of a
 * tags request, or NULL when there are none.
 */
static char *
tags_json(List *tags, List *except)
{
	StringInfoData buf;
	List	   *seen = NIL;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, tags)
	{
		char	   *tag = lfirst(lc);
		ListCell   *lc2;
		bool		skip = false;

		foreach(lc2, except)
			skip |= strcmp(tag, lfirst(lc2)) == 0;
		foreach(lc2, seen)
			skip |= strcmp(tag, lfirst(lc2)) == 0;
		if (skip)
			continue;
		seen = lappend(seen, tag);
		appendStringInfoChar(&buf, buf.len == 0 ? '[' : ',');
		escape_json(&buf, tag);
	}
	if (buf.len == 0)
		return NULL;
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * Send a contact's tag change as the difference between the tags it had
 * when the scan read it and the new ones: PUT would overwrite tags that
 * someone else added in the meantime.  Returns false if the contact is
 * gone.
 */
static bool
change_tags(GhlFdwModifyState *fmstate, TupleTableSlot *slot,
			TupleTableSlot *planSlot)
{
	TupleDesc	tupdesc = RelationGetDescr(fmstate->rel);
	int			i = fmstate->tags_attno - 1;
	Oid			elemtype = get_element_type(TupleDescAttr(tupdesc, i)->atttypid);
	List	   *old_tags = NIL;
	List	   *new_tags = NIL;
	char	   *added;
	char	   *removed;
	bool		isnull;
	HeapTupleData tuple;
	GhlWriteKind kinds[2] = {GHL_WRITE_ADD_TAGS, GHL_WRITE_REMOVE_TAGS};
	int			k;

	if (!OidIsValid(elemtype))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("column \"%s\" of foreign table \"%s\" must be an array to change tags",
						NameStr(TupleDescAttr(tupdesc, i)->attname),
						RelationGetRelationName(fmstate->rel))));

	if (old_row(fmstate, planSlot, &tuple))
	{
		Datum		old = heap_getattr(&tuple, fmstate->tags_attno, tupdesc, &isnull);

		if (!isnull)
			old_tags = array_strings(old, elemtype);
	}
	slot_getallattrs(slot);
	if (!slot->tts_isnull[i])
		new_tags = array_strings(slot->tts_values[i], elemtype);

	added = tags_json(new_tags, old_tags);
	removed = tags_json(old_tags, new_tags);
	for (k = 0; k < lengthof(kinds); k++)
	{
		char	   *tags = kinds[k] == GHL_WRITE_ADD_TAGS ? added : removed;
		GhlJsonBody *body;
		GhlJsonPage *page;

		if (tags == NULL)
			continue;
		body = ghl_json_body_new();
		ghl_json_body_add(body, "tags", tags);
		if (!send_write(fmstate, write_endpoint(fmstate->resource, kinds[k], fmstate->rel),
						NULL, fmstate->row_id, ghl_json_body_text(body), &page))
			return false;
		/* the answer is the contact's tags after the change */
		store_merged(fmstate, slot, page, fmstate->tags_column, 1);
	}
	return true;
}

/*
 * DELETE: one request per row.  An id the API no longer has is zero rows
 * deleted, not an error.  RETURNING shows the row as the scan read it.
 */
static TupleTableSlot *
ghlExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
					 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	GhlFdwModifyState *fmstate = (GhlFdwModifyState *) rinfo->ri_FdwState;
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorContextCallback errcallback;
	HeapTupleData tuple;
	bool		found;

	begin_row(fmstate, planSlot, &errcallback);
	found = send_write(fmstate, fmstate->endpoint, fmstate->row_contact,
					   fmstate->row_id, NULL, NULL);

	if (found && old_row(fmstate, planSlot, &tuple))
	{
		ExecClearTuple(slot);
		heap_deform_tuple(&tuple, slot->tts_tupleDescriptor,
						  slot->tts_values, slot->tts_isnull);
		ExecStoreVirtualTuple(slot);
		ExecMaterializeSlot(slot);
	}

	error_context_stack = errcallback.previous;
	MemoryContextSwitchTo(oldcxt);
	return found ? slot : NULL;
}

static void
ghlEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	/* the row context goes with the query; the connection stays cached */
}

/*
 * Every resource takes all three statements; a read_only server refuses
 * them when they run, with an error that says why.
 */
static int
ghlIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

/*
 * Show the request each row makes, with the ids as placeholders.  Never
 * touches the network.
 */
static void
ghlExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						List *fdw_private, int subplan_index,
						ExplainState *es)
{
	GhlFdwModifyState *fmstate = (GhlFdwModifyState *) rinfo->ri_FdwState;
	const GhlEndpoint *ep = &fmstate->endpoint->endpoint;
	AttrNumber	tags_attno = tags_column(fmstate);
	List	   *fields = NIL;
	ListCell   *lc;

	if (fmstate->operation == CMD_UPDATE)
	{
		foreach(lc, fmstate->target_attrs)
		{
			if (lfirst_int(lc) != tags_attno)
				fields = lappend(fields,
								 ghl_get_column_field(RelationGetRelid(fmstate->rel),
													  lfirst_int(lc)));
		}
	}
	/* an UPDATE of tags alone sends only the tag requests */
	if (fmstate->operation != CMD_UPDATE || fields != NIL)
		ExplainPropertyText("GHL Request",
							psprintf("%s %s", ep->method,
									 ghl_endpoint_path(ep, "{contactId}", "{id}")),
							es);
	if (fields != NIL)
		ExplainPropertyList("GHL Fields", fields, es);
	if (tags_attno != InvalidAttrNumber)
	{
		const GhlEndpoint *add = &write_endpoint(fmstate->resource, GHL_WRITE_ADD_TAGS,
												 fmstate->rel)->endpoint;
		const GhlEndpoint *remove = &write_endpoint(fmstate->resource, GHL_WRITE_REMOVE_TAGS,
													fmstate->rel)->endpoint;

		ExplainPropertyText("GHL Tag Requests",
							psprintf("%s %s with the tags added, %s %s with the tags removed",
									 add->method, ghl_endpoint_path(add, NULL, "{id}"),
									 remove->method, ghl_endpoint_path(remove, NULL, "{id}")),
							es);
	}
	if (es->analyze)
		ExplainPropertyInteger("GHL Requests", NULL, fmstate->stats.requests, es);
}
