/*-------------------------------------------------------------------------
 *
 * sync_target.c
 *		  The Rankr tables that sync and webhooks write: creating and
 *		  checking them, and writing batches of rows into them.
 *
 * There is one table per resource in a server's sync_schema, shared by
 * every server (location) that syncs into that schema.  Every row carries
 * its location_id and the primary key is (location_id, id); every
 * statement here names one location, so that one location's writes never
 * touch another's rows, and so that each statement routes to one shard
 * where the tables are distributed by location_id.
 *
 * Besides the resource's standard columns, a table has synced_at (when a
 * write last changed the row), deleted_at (the tombstone, NULL while the
 * record lives upstream) and as_of: the moment the row's values were
 * current upstream, that is the time of the request that read them or of
 * the webhook event that carried them.  A write never replaces values with
 * older ones, and every write of a row moves its as_of, so a sync pass can
 * tell the rows it saw from those it did not: what a completed pass did
 * not see is gone upstream.
 *
 * A batch is one prepared INSERT ... SELECT FROM ghl_fdw._sync_batch()
 * ON CONFLICT, which reads the batch's Datums as they are; a run's rows
 * that are all new take a plain INSERT.
 *
 * IDENTIFICATION
 *		  src/sync_target.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ghl_fdw_sync_batch);

/* the columns every target table has besides the resource's own */
#define GHL_COL_LOCATION	"location_id"
#define GHL_COL_CONTACT		"contact_id"

/* rows a run must change before it refreshes a table's statistics */
#define GHL_ANALYZE_MIN_CHANGES	1000

/* One column the writer fills, and how its values travel to the server. */
typedef struct GhlTargetColumn
{
	char	   *name;
	Oid			typid;			/* the table's type of the column */
} GhlTargetColumn;

/* A prepared upsert for one set of columns the source leaves out. */
typedef struct GhlUpsertPlan
{
	uint64		absent;			/* bit per column the source lacks */
	GhlRowsMode mode;
	bool		insert_only;	/* a plain INSERT, for rows none of which exist */
	SPIPlanPtr	plan;
} GhlUpsertPlan;

struct GhlTarget
{
	const GhlResource *resource;
	char	   *schema;
	char	   *qualified;		/* "schema"."table" */
	Oid			relid;
	int			ncolumns;
	GhlTargetColumn *columns;
	GhlColumnMap *maps;			/* JSON field → Datum, per column */
	int			id_column;
	int			location_column;
	int			contact_column; /* -1 for contacts */
	List	   *upserts;		/* GhlUpsertPlan */
	bool		insert_first;	/* see ghl_target_insert_first() */
	SPIPlanPtr	replace_plan;	/* tombstone a contact set's unseen children */
	SPIPlanPtr	tombstone_plan; /* tombstone rows by id */
	SPIPlanPtr	sweep_plan;		/* tombstone rows a pass did not see */
	MemoryContext cxt;
};

struct GhlRows
{
	GhlTarget  *target;
	const char *location_id;
	uint64		absent;
	GhlRowsMode mode;
	int			nrows;
	int			written;		/* by the last upsert, stale rows not */
	int			maxrows;
	Datum	   *values;			/* nrows x ncolumns */
	bool	   *nulls;
	TimestampTz *as_of;
};

static void target_create(const char *schema, const GhlResource *resource);
static void target_load_columns(GhlTarget *target, Relation rel);
static void target_check_owner(Form_pg_class form, const char *qualified);
static SPIPlanPtr target_prepare(GhlTarget *target, const char *sql,
								 int nargs, Oid *argtypes);
static SPIPlanPtr upsert_plan(GhlTarget *target, uint64 absent,
							  GhlRowsMode mode, bool insert_only);
static char *upsert_sql(GhlTarget *target, uint64 absent, GhlRowsMode mode,
						bool insert_only);
static bool insert_new_rows(GhlTarget *target, GhlRows *rows, List **changed);
static Datum text_array(List *strings);
static void rows_grow(GhlRows *rows);
static List *execute_returning_ids(SPIPlanPtr plan, Datum *values,
								   const char *nulls, List **flags);
static void rows_keep_last_of_each_id(GhlRows *rows);
static int	row_id_cmp(const void *a, const void *b);

/* a row of a batch by its id, for finding the ids a batch repeats */
typedef struct GhlRowId
{
	char	   *id;
	int			row;
} GhlRowId;

/*
 * The standard columns a resource's table holds: those of the resource map
 * without raw (the foreign tables keep the whole object), with location_id
 * second where the map has none (tasks and notes: the API's objects do not
 * name their location, the server does).
 */
static List *
standard_columns(const GhlResource *resource)
{
	List	   *columns = NIL;
	bool		has_location = false;
	int			i;

	for (i = 0; i < resource->ncolumns; i++)
	{
		if (resource->columns[i].field == NULL)
			continue;
		if (strcmp(resource->columns[i].name, GHL_COL_LOCATION) == 0)
			has_location = true;
		columns = lappend(columns, (void *) &resource->columns[i]);
	}
	if (!has_location)
	{
		static const GhlColumnDef location = {GHL_COL_LOCATION, "text", "locationId", NULL};

		columns = list_insert_nth(columns, 1, (void *) &location);
	}
	return columns;
}

/*
 * Run a statement of the writer with search_path pinned: a caller's own
 * schemas must not change what a name or an operator in it means.
 */
static void
pin_search_path(int *nestlevel)
{
	*nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Open (and on first use create) the table of a resource in schema, and
 * check that it can take what sync writes: a table owned by a role the
 * current user is a member of (sync must never write into a table another
 * role prepared, with that role's triggers), with every column the writer
 * fills and a key on (location_id, id).  The result lives in cxt.
 */
GhlTarget *
ghl_target_open(const char *schema, const GhlResource *resource, bool create,
				MemoryContext cxt)
{
	MemoryContext oldcxt;
	GhlTarget  *target;
	Oid			nspid = get_namespace_oid(schema, true);
	Oid			relid = OidIsValid(nspid) ?
		get_relname_relid(resource->name, nspid) : InvalidOid;
	char	   *qualified = quote_qualified_identifier(schema, resource->name);
	HeapTuple	tp;
	Relation	rel;

	if (!OidIsValid(relid))
	{
		if (!create)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("sync table %s does not exist", qualified),
					 errhint("Run ghl_fdw.sync() for the server first.")));
		ghl_sync_lock_creation(schema);
		nspid = get_namespace_oid(schema, true);
		relid = OidIsValid(nspid) ? get_relname_relid(resource->name, nspid) : InvalidOid;
		if (!OidIsValid(relid))
		{
			target_create(schema, resource);
			nspid = get_namespace_oid(schema, false);
			relid = get_relname_relid(resource->name, nspid);
		}
	}

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	if (((Form_pg_class) GETSTRUCT(tp))->relkind != RELKIND_RELATION &&
		((Form_pg_class) GETSTRUCT(tp))->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("sync target %s is not a table", qualified),
				 errhint("Drop or rename it, or set the server option sync_schema to another schema.")));
	target_check_owner((Form_pg_class) GETSTRUCT(tp), qualified);
	ReleaseSysCache(tp);

	oldcxt = MemoryContextSwitchTo(cxt);
	target = palloc0(sizeof(GhlTarget));
	target->cxt = cxt;
	target->resource = resource;
	target->schema = pstrdup(schema);
	target->qualified = pstrdup(qualified);
	target->relid = relid;
	rel = relation_open(relid, AccessShareLock);
	target_load_columns(target, rel);
	relation_close(rel, AccessShareLock);
	MemoryContextSwitchTo(oldcxt);
	return target;
}

/*
 * Whoever runs sync writes only into tables owned by a role they are a
 * member of: otherwise a role that prepared the table (with triggers of its
 * own) would get its code run by, and its table filled with the data of,
 * someone else.
 */
static void
target_check_owner(Form_pg_class form, const char *qualified)
{
	if (!has_privs_of_role(GetUserId(), form->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("sync table %s is owned by role \"%s\"",
						qualified, GetUserNameFromId(form->relowner, false)),
				 errdetail("Sync writes only into tables owned by the role that runs it or by a role it is a member of."),
				 errhint("Run the sync as a member of that role, or set the server option sync_schema to a schema of your own.")));
}

/*
 * CREATE the table of a resource (and its schema), owned by the current
 * user: the standard columns, location_id, synced_at, deleted_at and
 * as_of, the key (location_id, id) and, for the children of contacts, an
 * index on (location_id, contact_id).
 */
static void
target_create(const char *schema, const GhlResource *resource)
{
	StringInfoData sql;
	ListCell   *lc;
	int			nestlevel;
	const char *qualified = quote_qualified_identifier(schema, resource->name);

	initStringInfo(&sql);
	if (!OidIsValid(get_namespace_oid(schema, true)))
		appendStringInfo(&sql, "CREATE SCHEMA %s; ", quote_identifier(schema));
	appendStringInfo(&sql, "CREATE TABLE %s (", qualified);
	foreach(lc, standard_columns(resource))
	{
		const GhlColumnDef *col = lfirst(lc);

		appendStringInfo(&sql, "%s %s%s, ", quote_identifier(col->name),
						 col->sql_type,
						 strcmp(col->name, "id") == 0 ||
						 strcmp(col->name, GHL_COL_LOCATION) == 0 ? " NOT NULL" : "");
	}
	appendStringInfo(&sql,
					 "synced_at timestamptz NOT NULL DEFAULT now(), "
					 "deleted_at timestamptz, as_of timestamptz, "
					 "PRIMARY KEY (location_id, id)); "
					 "COMMENT ON TABLE %s IS %s",
					 qualified,
					 quote_literal_cstr(psprintf("GHL %s synced by ghl_fdw; deleted_at marks rows gone upstream",
												 resource->name)));
	if (resource->kind != GHL_RESOURCE_CONTACTS)
		appendStringInfo(&sql, "; CREATE INDEX ON %s (location_id, contact_id)",
						 qualified);

	pin_search_path(&nestlevel);
	SPI_connect();
	if (SPI_execute(sql.data, false, 0) < 0)
		elog(ERROR, "could not create sync table %s", qualified);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	CommandCounterIncrement();
}

/*
 * Find the table's columns for the resource's standard columns and the
 * bookkeeping columns, and how each travels.  A table may have more
 * columns of its own; it may not lack one the writer fills.
 */
static void
target_load_columns(GhlTarget *target, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *columns = standard_columns(target->resource);
	static const char *const bookkeeping[] = {"synced_at", "deleted_at", "as_of"};
	ListCell   *lc;
	int			i;

	target->ncolumns = list_length(columns);
	target->columns = palloc0(sizeof(GhlTargetColumn) * target->ncolumns);
	target->maps = palloc0(sizeof(GhlColumnMap) * target->ncolumns);
	target->contact_column = -1;

	foreach(lc, columns)
	{
		const GhlColumnDef *def = lfirst(lc);
		int			c = foreach_current_index(lc);
		GhlTargetColumn *col = &target->columns[c];
		GhlColumnMap *map = &target->maps[c];
		AttrNumber	attnum = get_attnum(target->relid, def->name);
		Form_pg_attribute attr;

		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("sync table %s lacks column \"%s\"",
							target->qualified, def->name),
					 errhint("ALTER TABLE %s ADD COLUMN %s %s;", target->qualified,
							 quote_identifier(def->name), def->sql_type)));
		attr = TupleDescAttr(desc, attnum - 1);
		col->name = pstrdup(def->name);
		col->typid = attr->atttypid;

		map->attindex = c;
		map->attname = col->name;
		map->field = def->field;
		map->search_field = def->search_field;
		ghl_column_map_set_type(map, col->typid, attr->atttypmod);

		if (strcmp(def->name, "id") == 0)
			target->id_column = c;
		else if (strcmp(def->name, GHL_COL_LOCATION) == 0)
			target->location_column = c;
		else if (strcmp(def->name, GHL_COL_CONTACT) == 0)
			target->contact_column = c;
	}

	for (i = 0; i < lengthof(bookkeeping); i++)
	{
		if (get_attnum(target->relid, bookkeeping[i]) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("sync table %s lacks column \"%s\"",
							target->qualified, bookkeeping[i]),
					 errhint("Tables created by ghl_fdw 1.0 are brought up to date by ALTER EXTENSION ghl_fdw UPDATE.")));
	}
}

/*
 * Prepare a statement of the writer, with search_path pinned, and keep it
 * for the life of the backend.
 */
static SPIPlanPtr
target_prepare(GhlTarget *target, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;
	int			nestlevel;

	pin_search_path(&nestlevel);
	SPI_connect();
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare a statement on sync table %s: %s",
			 target->qualified, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return plan;
}

/*
 * INSERT ... ON CONFLICT of a batch: new rows go in; an existing row takes
 * the batch's values unless its own are newer (as_of); columns the source
 * does not carry ("absent") keep their stored values.  By mode, a
 * tombstoned row comes back (a read found the record), stays a tombstone
 * (a change to a record deleted since), or the rows are deletions:
 * tombstoned, and inserted as tombstones when unknown, so that an older
 * event arriving later cannot bring them back.  synced_at moves only when
 * a value changed, and RETURNING says which rows did.
 */
static char *
upsert_sql(GhlTarget *target, uint64 absent, GhlRowsMode mode, bool insert_only)
{
	StringInfoData sql;
	StringInfoData changed;
	int			c;

	initStringInfo(&sql);
	initStringInfo(&changed);
	appendStringInfo(&sql, "INSERT INTO %s AS t (", target->qualified);
	for (c = 0; c < target->ncolumns; c++)
		appendStringInfo(&sql, "%s, ", quote_identifier(target->columns[c].name));
	appendStringInfoString(&sql, "as_of, synced_at, deleted_at) SELECT ");
	for (c = 0; c < target->ncolumns; c++)
		appendStringInfo(&sql, "u.c%d, ", c);
	appendStringInfo(&sql, "u.as_of, pg_catalog.now(), %s FROM ghl_fdw._sync_batch() AS u(",
					 mode == GHL_ROWS_DELETED ? "pg_catalog.now()" : "NULL");
	for (c = 0; c < target->ncolumns; c++)
		appendStringInfo(&sql, "c%d %s, ", c,
						 format_type_be_qualified(target->columns[c].typid));
	appendStringInfoString(&sql, "as_of pg_catalog.timestamptz) ");
	if (insert_only)
		return sql.data;
	appendStringInfoString(&sql, "ON CONFLICT (location_id, id) DO UPDATE SET ");
	if (mode == GHL_ROWS_DELETED)
	{
		appendStringInfoString(&sql,
							   "as_of = EXCLUDED.as_of, "
							   "deleted_at = COALESCE(t.deleted_at, pg_catalog.now()) "
							   "WHERE t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<=) EXCLUDED.as_of "
							   "RETURNING t.id, t.deleted_at OPERATOR(pg_catalog.=) pg_catalog.now()");
		return sql.data;
	}
	for (c = 0; c < target->ncolumns; c++)
	{
		const char *name = quote_identifier(target->columns[c].name);

		if (c == target->id_column || c == target->location_column ||
			(absent & (UINT64CONST(1) << c)))
			continue;
		appendStringInfo(&sql, "%s = EXCLUDED.%s, ", name, name);
		appendStringInfo(&changed, " OR t.%s IS DISTINCT FROM EXCLUDED.%s", name, name);
	}
	appendStringInfo(&sql,
					 "as_of = EXCLUDED.as_of, deleted_at = NULL, "
					 "synced_at = CASE WHEN t.deleted_at IS NOT NULL%s"
					 " THEN EXCLUDED.synced_at ELSE t.synced_at END "
					 "WHERE (t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<=) EXCLUDED.as_of)%s "
					 "RETURNING t.id, t.synced_at OPERATOR(pg_catalog.=) pg_catalog.now()",
					 changed.data,
					 mode == GHL_ROWS_CHANGED ? " AND t.deleted_at IS NULL" : "");
	return sql.data;
}

/* The prepared upsert for a set of absent columns and a mode, made on first use. */
static SPIPlanPtr
upsert_plan(GhlTarget *target, uint64 absent, GhlRowsMode mode, bool insert_only)
{
	ListCell   *lc;
	GhlUpsertPlan *entry;
	MemoryContext oldcxt;

	foreach(lc, target->upserts)
	{
		entry = lfirst(lc);
		if (entry->absent == absent && entry->mode == mode &&
			entry->insert_only == insert_only)
			return entry->plan;
	}
	oldcxt = MemoryContextSwitchTo(target->cxt);
	entry = palloc(sizeof(GhlUpsertPlan));
	entry->absent = absent;
	entry->mode = mode;
	entry->insert_only = insert_only;
	entry->plan = target_prepare(target, upsert_sql(target, absent, mode, insert_only),
								 0, NULL);
	target->upserts = lappend(target->upserts, entry);
	MemoryContextSwitchTo(oldcxt);
	return entry->plan;
}

/*
 * A batch of rows for a target, read from one location's API responses,
 * in CurrentMemoryContext.  absent_fields names JSON fields the source
 * does not carry (the calendar events endpoint has no "status"): the
 * upsert keeps their stored values.
 */
GhlRows *
ghl_rows_new(GhlTarget *target, const char *location_id,
			 const char *const *absent_fields)
{
	GhlRows    *rows = palloc0(sizeof(GhlRows));
	int			c;

	rows->target = target;
	rows->location_id = pstrdup(location_id);
	for (; absent_fields && *absent_fields; absent_fields++)
	{
		for (c = 0; c < target->ncolumns; c++)
		{
			if (strcmp(target->maps[c].field, *absent_fields) == 0)
				rows->absent |= UINT64CONST(1) << c;
		}
	}
	return rows;
}

int
ghl_rows_count(GhlRows *rows)
{
	return rows->nrows;
}

/* Make room for one more row. */
static void
rows_grow(GhlRows *rows)
{
	int			n = rows->target->ncolumns;
	int			newmax;

	if (rows->nrows < rows->maxrows)
		return;
	newmax = Max(16, rows->maxrows * 2);
	if (rows->maxrows == 0)
	{
		rows->values = palloc(sizeof(Datum) * n * newmax);
		rows->nulls = palloc(sizeof(bool) * n * newmax);
		rows->as_of = palloc(sizeof(TimestampTz) * newmax);
	}
	else
	{
		rows->values = repalloc(rows->values, sizeof(Datum) * n * newmax);
		rows->nulls = repalloc(rows->nulls, sizeof(bool) * n * newmax);
		rows->as_of = repalloc(rows->as_of, sizeof(TimestampTz) * newmax);
	}
	rows->maxrows = newmax;
}

/* How many columns a target's rows have, and the name of one. */
int
ghl_target_ncolumns(GhlTarget *target)
{
	return target->ncolumns;
}

const char *
ghl_target_column(GhlTarget *target, int column)
{
	return target->columns[column].name;
}

/*
 * Column c of row i as text (its type's output), or NULL when it is NULL
 * or the rows' source does not carry it (*known is then false).
 */
char *
ghl_rows_text(GhlRows *rows, int i, int c, bool *known)
{
	GhlTarget  *target = rows->target;
	int			at = i * target->ncolumns + c;
	Oid			outfunc;
	bool		varlena;

	*known = !(rows->absent & (UINT64CONST(1) << c));
	if (!*known || rows->nulls[at])
		return NULL;
	getTypeOutputInfo(target->columns[c].typid, &outfunc, &varlena);
	return OidOutputFunctionCall(outfunc, rows->values[at]);
}

/*
 * Live rows of a location, as a batch: those whose "column" is one of
 * keys (when column is given), else a random sample of up to "limit".
 * They are copied into CurrentMemoryContext.
 */
GhlRows *
ghl_target_read(GhlTarget *target, const char *location_id, const char *column,
				List *keys, int limit)
{
	MemoryContext cxt = CurrentMemoryContext;
	GhlRows    *rows = ghl_rows_new(target, location_id, NULL);
	StringInfoData sql;
	Oid			argtypes[3] = {TEXTOID, TEXTARRAYOID, INT4OID};
	Datum		args[3];
	int			nestlevel;
	int			c;
	uint64		i;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (c = 0; c < target->ncolumns; c++)
		appendStringInfo(&sql, "%st.%s", c > 0 ? ", " : "",
						 quote_identifier(target->columns[c].name));
	appendStringInfo(&sql, " FROM %s AS t WHERE t.location_id OPERATOR(pg_catalog.=) $1"
					 " AND t.deleted_at IS NULL", target->qualified);
	if (column != NULL)
		appendStringInfo(&sql, " AND t.%s OPERATOR(pg_catalog.=) ANY ($2)",
						 quote_identifier(column));
	else
		appendStringInfoString(&sql, " ORDER BY pg_catalog.random() LIMIT $3");
	args[0] = CStringGetTextDatum(location_id);
	args[1] = column != NULL ? text_array(keys) : (Datum) 0;
	args[2] = Int32GetDatum(limit);

	pin_search_path(&nestlevel);
	SPI_connect();
	if (SPI_execute_with_args(sql.data, 3, argtypes, args,
							  column != NULL ? "   " : " n ", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read sync table %s", target->qualified);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext spicxt = MemoryContextSwitchTo(cxt);

		rows_grow(rows);
		for (c = 0; c < target->ncolumns; c++)
		{
			int			at = rows->nrows * target->ncolumns + c;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  c + 1, &rows->nulls[at]);
			Form_pg_attribute attr = TupleDescAttr(SPI_tuptable->tupdesc, c);

			rows->values[at] = rows->nulls[at] ? (Datum) 0 :
				datumCopy(d, attr->attbyval, attr->attlen);
		}
		rows->as_of[rows->nrows++] = 0;
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return rows;
}

/*
 * Add one row of an API response.  location_id is always the server's:
 * the key of a row is its location's, whatever the object says.  A
 * contact's child read through its contact gets that contact as
 * contact_id (contact_id, else NULL to keep the object's).
 */
void
ghl_rows_add_json(GhlRows *rows, GhlJsonPage *page, int row,
				  bool use_search_fields, const char *contact_id,
				  TimestampTz as_of)
{
	GhlTarget  *target = rows->target;
	int			n = target->ncolumns;
	Datum	   *values;
	bool	   *nulls;

	rows_grow(rows);
	values = &rows->values[rows->nrows * n];
	nulls = &rows->nulls[rows->nrows * n];
	memset(nulls, true, sizeof(bool) * n);
	ghl_json_row_to_values(page, row, target->maps, n, use_search_fields,
						   target->qualified, values, nulls);
	if (nulls[target->id_column])
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("a row of GHL %s for sync table %s has no id",
						target->resource->name, target->qualified)));
	values[target->location_column] = CStringGetTextDatum(rows->location_id);
	nulls[target->location_column] = false;
	if (contact_id != NULL && target->contact_column >= 0)
	{
		values[target->contact_column] = CStringGetTextDatum(contact_id);
		nulls[target->contact_column] = false;
	}
	rows->as_of[rows->nrows] = as_of;
	rows->nrows++;
}

/*
 * A batch's rows are what a write through a webhook said: a change or a
 * deletion (see upsert_sql).  Rows read from the API are GHL_ROWS_FOUND.
 */
void
ghl_rows_set_mode(GhlRows *rows, GhlRowsMode mode)
{
	rows->mode = mode;
}

/*
 * Add a webhook's record, the only row of its batch: the columns whose
 * fields its payload lacks keep their stored values.
 */
void
ghl_rows_add_event(GhlRows *rows, GhlJsonPage *page, TimestampTz as_of)
{
	GhlTarget  *target = rows->target;
	int			c;

	Assert(rows->nrows == 0);
	for (c = 0; c < target->ncolumns; c++)
	{
		GhlColumnMap *map = &target->maps[c];

		if (!map->is_raw && c != target->location_column &&
			!ghl_json_row_has_field(page, 0, map->field))
			rows->absent |= UINT64CONST(1) << c;
	}
	ghl_rows_add_json(rows, page, 0, false, NULL, as_of);
}

/*
 * How many rows of a batch the last upsert wrote: the others were older
 * than what the table holds (or changes to tombstones).
 */
int
ghl_rows_written(GhlRows *rows)
{
	return rows->written;
}

/* The id of row i of a batch. */
char *
ghl_rows_id(GhlRows *rows, int i)
{
	return TextDatumGetCString(rows->values[i * rows->target->ncolumns +
											rows->target->id_column]);
}

/*
 * A timestamp column of row i of a batch (the row's dateAdded, say), or 0
 * when it is NULL.
 */
TimestampTz
ghl_rows_time(GhlRows *rows, int i, const char *column)
{
	GhlTarget  *target = rows->target;
	int			c;

	for (c = 0; c < target->ncolumns; c++)
	{
		int			at = i * target->ncolumns + c;

		if (strcmp(target->columns[c].name, column) != 0)
			continue;
		if (target->columns[c].typid != TIMESTAMPTZOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of sync table %s must be of type timestamptz",
							column, target->qualified)));
		return rows->nulls[at] ? 0 : DatumGetTimestampTz(rows->values[at]);
	}
	elog(ERROR, "sync table %s has no column \"%s\"", target->qualified, column);
	return 0;
}

/* A text[] of C strings. */
static Datum
text_array(List *strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(strings), 1));
	ListCell   *lc;

	foreach(lc, strings)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, list_length(strings),
										   TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Run a prepared statement whose first output column is an id; return the
 * ids, and in *flags (if given) whether the second, boolean column was
 * true, as a list of ids where it was.  A statement without RETURNING
 * returns none.
 */
static List *
execute_returning_ids(SPIPlanPtr plan, Datum *values, const char *nulls,
					  List **flags)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *ids = NIL;
	int			nestlevel;
	uint64		i;

	pin_search_path(&nestlevel);
	SPI_connect();
	if (SPI_execute_plan(plan, values, nulls, false, 0) < 0)
		elog(ERROR, "could not write a sync table");
	for (i = 0; SPI_tuptable != NULL && i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		Datum		id = SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext spicxt = MemoryContextSwitchTo(cxt);
		char	   *idtext = TextDatumGetCString(id);

		ids = lappend(ids, idtext);
		if (flags != NULL &&
			DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull)))
			*flags = lappend(*flags, idtext);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return ids;
}

/* the batch an upsert is writing, for ghl_fdw._sync_batch() */
static GhlRows *batch_in_writing = NULL;

/*
 * Write a batch: upsert every row whose values are not older than the
 * stored ones.  Returns the ids of the rows that changed (inserted, a
 * value changed, or back from a tombstone).  Duplicate ids in one batch
 * keep their last occurrence.
 */
List *
ghl_target_upsert(GhlTarget *target, GhlRows *rows)
{
	GhlRows    *outer = batch_in_writing;
	List	   *changed = NIL;

	if (rows->nrows == 0)
		return NIL;

	rows_keep_last_of_each_id(rows);
	batch_in_writing = rows;
	PG_TRY();
	{
		if (!(target->insert_first && rows->mode == GHL_ROWS_FOUND &&
			  insert_new_rows(target, rows, &changed)))
		{
			target->insert_first = false;
			rows->written = list_length(execute_returning_ids(upsert_plan(target, rows->absent,
																		  rows->mode, false),
															  NULL, NULL, &changed));
		}
	}
	PG_FINALLY();
	{
		batch_in_writing = outer;
	}
	PG_END_TRY();
	return changed;
}

/*
 * ghl_fdw._sync_batch(): the rows of the batch being written, as the
 * upsert's column definition list names them (the target's columns, then
 * as_of).  Rows travel to the statement this way, as the Datums they are:
 * no array per column to build and unnest, no text form of array values.
 * Outside an upsert of this backend there is nothing to return.
 */
Datum
ghl_fdw_sync_batch(PG_FUNCTION_ARGS)
{
	GhlRows    *rows = batch_in_writing;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	GhlTarget  *target;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int			c;
	int			i;

	if (rows == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ghl_fdw._sync_batch() can only be called by a sync's own statements")));
	target = rows->target;
	n = target->ncolumns;
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	desc = rsinfo->setDesc;
	/* the Datums are of the target's types: a call must expect exactly those */
	for (c = 0; c <= n; c++)
	{
		Oid			expected = c < n ? target->columns[c].typid : TIMESTAMPTZOID;

		if (desc->natts != n + 1 || TupleDescAttr(desc, c)->atttypid != expected)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("ghl_fdw._sync_batch() called with columns of other types than its batch's")));
	}

	values = palloc(sizeof(Datum) * (n + 1));
	nulls = palloc(sizeof(bool) * (n + 1));
	for (i = 0; i < rows->nrows; i++)
	{
		memcpy(values, &rows->values[i * n], sizeof(Datum) * n);
		memcpy(nulls, &rows->nulls[i * n], sizeof(bool) * n);
		values[n] = TimestampTzGetDatum(rows->as_of[i]);
		nulls[n] = false;
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * A run that fills a table with rows it does not hold yet (the first sync
 * of a location, hours of requests for a large one) writes them with a
 * plain INSERT: ON CONFLICT probes the key's index once more per row and
 * takes a speculative insertion lock, a fifth of the write's time.  A
 * batch of which any row exists already fails on it; the batch is then
 * written by the upsert, as is every later batch of the run.
 */
void
ghl_target_insert_first(GhlTarget *target)
{
	target->insert_first = true;
}

/*
 * Insert a batch, all of it new, in a subtransaction: true if it was (and
 * every row's id is in *changed), false (and nothing written) if a row's
 * key exists already.
 */
static bool
insert_new_rows(GhlTarget *target, GhlRows *rows, List **changed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool inserted = true;
	int			i;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		(void) execute_returning_ids(upsert_plan(target, rows->absent, rows->mode, true),
									 NULL, NULL, NULL);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
		inserted = false;
	}
	PG_END_TRY();

	if (inserted)
	{
		for (i = 0; i < rows->nrows; i++)
			*changed = lappend(*changed, ghl_rows_id(rows, i));
		rows->written = rows->nrows;
	}
	return inserted;
}

/*
 * ON CONFLICT cannot touch one row twice: drop every row of a batch whose
 * id comes again later in it, keeping the order of the others.  Sorting
 * the ids keeps this cheap for pages of hundreds of rows.
 */
static void
rows_keep_last_of_each_id(GhlRows *rows)
{
	int			n = rows->target->ncolumns;
	GhlRowId   *ids = palloc(sizeof(GhlRowId) * rows->nrows);
	bool	   *repeated = palloc0(sizeof(bool) * rows->nrows);
	int			keep = 0;
	int			i;

	for (i = 0; i < rows->nrows; i++)
	{
		ids[i].id = ghl_rows_id(rows, i);
		ids[i].row = i;
	}
	qsort(ids, rows->nrows, sizeof(GhlRowId), row_id_cmp);
	for (i = 0; i + 1 < rows->nrows; i++)
		repeated[ids[i].row] = strcmp(ids[i].id, ids[i + 1].id) == 0;

	for (i = 0; i < rows->nrows; i++)
	{
		if (repeated[i])
			continue;
		if (keep != i)
		{
			memcpy(&rows->values[keep * n], &rows->values[i * n], sizeof(Datum) * n);
			memcpy(&rows->nulls[keep * n], &rows->nulls[i * n], sizeof(bool) * n);
			rows->as_of[keep] = rows->as_of[i];
		}
		keep++;
	}
	rows->nrows = keep;
	pfree(ids);
	pfree(repeated);
}

/* qsort order of GhlRowId: by id, then by position in the batch */
static int
row_id_cmp(const void *a, const void *b)
{
	const GhlRowId *x = a;
	const GhlRowId *y = b;
	int			c = strcmp(x->id, y->id);

	return c != 0 ? c : (x->row > y->row) - (x->row < y->row);
}

/*
 * The children of a set of contacts were read anew at "fetched": tombstone
 * those of their live rows the answers did not list (seen_ids), unless a
 * newer write (a webhook event after the read) vouches for them.  Returns
 * the ids tombstoned.
 */
List *
ghl_target_replace_children(GhlTarget *target, const char *location_id,
							List *contact_ids, List *seen_ids,
							TimestampTz fetched)
{
	Datum		args[4];

	if (contact_ids == NIL)
		return NIL;
	if (target->replace_plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID};

		target->replace_plan = target_prepare(target, psprintf(
			"UPDATE %s AS t SET deleted_at = pg_catalog.now(), as_of = $4 "
			"WHERE t.location_id OPERATOR(pg_catalog.=) $1 AND t.deleted_at IS NULL "
			"AND t.contact_id OPERATOR(pg_catalog.=) ANY ($2) "
			"AND NOT t.id OPERATOR(pg_catalog.=) ANY ($3) "
			"AND (t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<) $4) "
			"RETURNING t.id", target->qualified), 4, argtypes);
	}
	args[0] = CStringGetTextDatum(location_id);
	args[1] = text_array(contact_ids);
	args[2] = text_array(seen_ids);
	args[3] = TimestampTzGetDatum(fetched);
	return execute_returning_ids(target->replace_plan, args, NULL, NULL);
}

/*
 * Tombstone rows of a location by id, as of the moment their absence was
 * learned (unless newer values arrived since).  Returns the ids
 * tombstoned.
 */
List *
ghl_target_tombstone(GhlTarget *target, const char *location_id, List *ids,
					 TimestampTz as_of)
{
	Datum		args[3];

	if (ids == NIL)
		return NIL;
	if (target->tombstone_plan == NULL)
	{
		Oid			argtypes[3] = {TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID};

		target->tombstone_plan = target_prepare(target, psprintf(
			"UPDATE %s AS t SET deleted_at = pg_catalog.now(), as_of = $3 "
			"WHERE t.location_id OPERATOR(pg_catalog.=) $1 AND t.deleted_at IS NULL "
			"AND t.id OPERATOR(pg_catalog.=) ANY ($2) "
			"AND (t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<=) $3) "
			"RETURNING t.id", target->qualified), 3, argtypes);
	}
	args[0] = CStringGetTextDatum(location_id);
	args[1] = text_array(ids);
	args[2] = TimestampTzGetDatum(as_of);
	return execute_returning_ids(target->tombstone_plan, args, NULL, NULL);
}

/*
 * A pass over every record of the location, started at "before", has
 * completed: tombstone the live rows it did not see (no write has touched
 * them since).  Returns the ids tombstoned.
 */
List *
ghl_target_sweep(GhlTarget *target, const char *location_id, TimestampTz before)
{
	Datum		args[2];

	if (target->sweep_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};

		target->sweep_plan = target_prepare(target, psprintf(
			"UPDATE %s AS t SET deleted_at = pg_catalog.now(), as_of = $2 "
			"WHERE t.location_id OPERATOR(pg_catalog.=) $1 AND t.deleted_at IS NULL "
			"AND (t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<) $2) "
			"RETURNING t.id", target->qualified), 2, argtypes);
	}
	args[0] = CStringGetTextDatum(location_id);
	args[1] = TimestampTzGetDatum(before);
	return execute_returning_ids(target->sweep_plan, args, NULL, NULL);
}

/*
 * Whether a run that changed this many rows of a table should refresh its
 * planner statistics: when it changed many, or the table has none yet.
 * Right after a first sync, reports and enrich() would otherwise be
 * planned for an empty table, and autovacuum may come only a minute
 * later.
 */
bool
ghl_target_stale_statistics(GhlTarget *target, int64 changed)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(target->relid));
	float4		reltuples;

	if (!HeapTupleIsValid(tp))
		return false;
	reltuples = ((Form_pg_class) GETSTRUCT(tp))->reltuples;
	ReleaseSysCache(tp);
	return changed >= GHL_ANALYZE_MIN_CHANGES || reltuples < 0;
}

Oid
ghl_target_relid(GhlTarget *target)
{
	return target->relid;
}

/* ANALYZE a sync table, unless it is gone meanwhile. */
void
ghl_target_analyze(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(relid));
	int			nestlevel;

	if (relname == NULL || nspname == NULL)
		return;
	pin_search_path(&nestlevel);
	SPI_connect();
	if (SPI_execute(psprintf("ANALYZE %s", quote_qualified_identifier(nspname, relname)),
					false, 0) < 0)
		elog(ERROR, "could not analyze sync table %s.%s", nspname, relname);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The live rows of a location that no write has touched since "before"
 * (optionally only those whose window_column lies in [lo, hi]): what a
 * pass that started at "before" and has just completed did not see.  Each
 * is returned as "id" (contact_column NULL) or as a two-element list of
 * id and contact id.
 */
List *
ghl_target_unseen(GhlTarget *target, const char *location_id,
				  TimestampTz before, const char *window_column,
				  TimestampTz lo, TimestampTz hi)
{
	MemoryContext cxt = CurrentMemoryContext;
	StringInfoData sql;
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[4];
	List	   *result = NIL;
	int			nestlevel;
	uint64		i;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT t.id, %s FROM %s AS t "
					 "WHERE t.location_id OPERATOR(pg_catalog.=) $1 AND t.deleted_at IS NULL "
					 "AND (t.as_of IS NULL OR t.as_of OPERATOR(pg_catalog.<) $2)",
					 target->contact_column >= 0 ? "t.contact_id" : "NULL::text",
					 target->qualified);
	if (window_column != NULL)
		appendStringInfo(&sql, " AND t.%s OPERATOR(pg_catalog.>=) $3"
						 " AND t.%s OPERATOR(pg_catalog.<=) $4",
						 quote_identifier(window_column),
						 quote_identifier(window_column));
	appendStringInfoString(&sql, " ORDER BY t.id");
	args[0] = CStringGetTextDatum(location_id);
	args[1] = TimestampTzGetDatum(before);
	args[2] = TimestampTzGetDatum(lo);
	args[3] = TimestampTzGetDatum(hi);

	pin_search_path(&nestlevel);
	SPI_connect();
	if (SPI_execute_with_args(sql.data, window_column ? 4 : 2, argtypes, args,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read sync table %s", target->qualified);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *contact = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		MemoryContext spicxt = MemoryContextSwitchTo(cxt);

		result = lappend(result, list_make2(pstrdup(id),
											contact ? pstrdup(contact) : NULL));
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return result;
}

/* The target's name, quoted and qualified, for messages. */
const char *
ghl_target_name(GhlTarget *target)
{
	return target->qualified;
}
