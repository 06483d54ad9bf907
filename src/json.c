/*-------------------------------------------------------------------------
 *
 * json.c
 *		  JSON in and out: the rows of response pages (parsed by
 *		  json_parse.c) as Datums, and json-c for request bodies, error
 *		  answers and token answers.
 *
 * json-c's json_object type collides with PostgreSQL's json_object() from
 * utils/builtins.h, so json-c stays in this file and builtins.h stays out.
 * json-c allocates with malloc: every json-c document here is freed on the
 * error path too.  Pages are json_parse.c's trees, in memory contexts.
 *
 * IDENTIFICATION
 *		  src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <limits.h>
#include <math.h>

#include <json.h>

#include "catalog/pg_type.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

struct GhlJsonPage
{
	GhlJson    *root;			/* the whole parsed document */
	GhlJson    *rows;			/* the row array, or the one row object */
	bool		single_object;
	int			nrows;
	const char *server_name;	/* for errors about the data */
};

/* What errcontext needs to name a value that does not fit its column. */
typedef struct ConversionContext
{
	const char *attname;
	const char *table_name;
} ConversionContext;

static GhlJson *row_object(GhlJsonPage *page, int row);
static void row_to_values(GhlJsonPage *page, int row,
						  GhlColumnMap *columns, int ncolumns,
						  bool use_search_fields, const char *table_name,
						  bool keep_missing, Datum *values, bool *nulls);
static Datum json_to_datum(GhlJson *value, GhlColumnMap *col,
						   const char *server_name, bool *isnull);
static Datum scalar_to_datum(GhlJson *value, Oid typid, FmgrInfo *input,
							 Oid ioparam, int32 typmod, bool is_timestamp,
							 const char *server_name);
static bool iso_timestamptz(const char *text, TimestampTz *result);
static Datum json_to_jsonb(GhlJson *value, const char *server_name);
static void jsonb_value(GhlJson *value, JsonbValue *out,
						const char *server_name);
static int	object_key_order(const JsonbPair *pairs, int n, int *order);
static const char *server_string(const char *s, int len,
								 const char *server_name, int *outlen);
static const char *json_text(GhlJson *value, const char *server_name);
static Datum epoch_ms_to_timestamp(GhlJson *value, const char *server_name);
static void conversion_error_callback(void *arg);
static const char *utc_if_zoneless(const char *text);
static GhlJson *custom_field_value(GhlJson *obj, const char *id);
static json_object *search_filter(GhlFilterValue *fv);
static json_object *filter_value(GhlFilterValue *fv);

/*
 * Parse one response body and find its rows.  The returned page and its
 * tree belong to CurrentMemoryContext.
 */
GhlJsonPage *
ghl_json_parse_page(const char *data, size_t len, const char *response_key,
					bool single_object, const char *server_name)
{
	GhlJsonPage *page = palloc0(sizeof(GhlJsonPage));
	GhlJson    *rows;

	page->root = ghl_json_parse(data, len, server_name);

	/* without a response key the document itself is the one row */
	rows = response_key ? ghl_json_get(page->root, response_key) : page->root;
	if (page->root->type != GHL_JSON_OBJECT || rows == NULL ||
		rows->type != (single_object ? GHL_JSON_OBJECT : GHL_JSON_ARRAY))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("GHL server \"%s\" returned an unexpected response", server_name),
				 response_key == NULL ?
				 errdetail("Expected a JSON object.") :
				 errdetail("Expected a JSON object with %s \"%s\".",
						   single_object ? "an object" : "an array", response_key)));

	page->rows = rows;
	page->server_name = server_name;
	page->single_object = single_object;
	page->nrows = single_object ? 1 : rows->len;
	return page;
}

int
ghl_json_page_rows(GhlJsonPage *page)
{
	return page->nrows;
}

/*
 * The "total" a search page reports (how many records match), or 0 when
 * it says none.
 */
int64
ghl_json_page_total(GhlJsonPage *page)
{
	GhlJson    *total = ghl_json_get(page->root, "total");
	int64		result;

	if (total == NULL || !ghl_json_int64(total, &result))
		return 0;
	return Max(result, 0);
}

static GhlJson *
row_object(GhlJsonPage *page, int row)
{
	Assert(row >= 0 && row < page->nrows);
	return page->single_object ? page->rows : page->rows->val.elems[row];
}

/*
 * Fill one tuple from one JSON row.  A missing or null field is SQL NULL; a
 * value that does not fit its column is an error naming column and table.
 */
void
ghl_json_row_to_values(GhlJsonPage *page, int row,
					   GhlColumnMap *columns, int ncolumns,
					   bool use_search_fields, const char *table_name,
					   Datum *values, bool *nulls)
{
	row_to_values(page, row, columns, ncolumns, use_search_fields, table_name,
				  false, values, nulls);
}

/*
 * Overlay the fields a write's response carries on the values of the row
 * as written: the API answers some writes with only part of the object
 * (a tag change returns the tags), and a field it did not mention keeps
 * the value the statement gave it.
 */
void
ghl_json_row_merge_values(GhlJsonPage *page, int row,
						  GhlColumnMap *columns, int ncolumns,
						  const char *table_name,
						  Datum *values, bool *nulls)
{
	row_to_values(page, row, columns, ncolumns, false, table_name,
				  true, values, nulls);
}

/*
 * The conversion behind both: keep_missing leaves a column whose field
 * the row lacks untouched instead of making it NULL.
 */
static void
row_to_values(GhlJsonPage *page, int row, GhlColumnMap *columns, int ncolumns,
			  bool use_search_fields, const char *table_name,
			  bool keep_missing, Datum *values, bool *nulls)
{
	GhlJson    *obj = row_object(page, row);
	ConversionContext convctx;
	ErrorContextCallback errcallback;
	int			i;

	if (obj->type != GHL_JSON_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("row %d of a GHL response for foreign table \"%s\" is not a JSON object",
						row + 1, table_name)));

	convctx.table_name = table_name;
	errcallback.callback = conversion_error_callback;
	errcallback.arg = &convctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	for (i = 0; i < ncolumns; i++)
	{
		GhlColumnMap *col = &columns[i];
		GhlJson    *value = NULL;

		convctx.attname = col->attname;
		if (col->is_raw)
			value = obj;
		else if (strncmp(col->field, GHL_CUSTOM_FIELD_PREFIX,
						 strlen(GHL_CUSTOM_FIELD_PREFIX)) == 0)
			value = custom_field_value(obj, col->field + strlen(GHL_CUSTOM_FIELD_PREFIX));
		else
		{
			if (use_search_fields && col->search_field)
				value = ghl_json_get_at(obj, col->search_field, &col->search_field_at);
			if (value == NULL)
				value = ghl_json_get_at(obj, col->field, &col->field_at);
		}

		if (value == NULL && keep_missing)
			continue;
		values[col->attindex] = json_to_datum(value, col, page->server_name,
											  &nulls[col->attindex]);
	}

	error_context_stack = errcallback.previous;
}

/*
 * A contact's custom fields are an array of {"id", "value"}: the value of
 * the one with this id, or NULL.
 */
static GhlJson *
custom_field_value(GhlJson *obj, const char *id)
{
	GhlJson    *fields = ghl_json_get(obj, "customFields");
	int			i;

	if (fields == NULL || fields->type != GHL_JSON_ARRAY)
		return NULL;
	for (i = 0; i < fields->len; i++)
	{
		GhlJson    *field_id = ghl_json_get(fields->val.elems[i], "id");

		/* the whole id: one with "\u0000" in it is no prefix's match */
		if (field_id != NULL && field_id->type == GHL_JSON_STRING &&
			field_id->len == (int) strlen(id) && strcmp(field_id->val.text, id) == 0)
			return ghl_json_get(fields->val.elems[i], "value");
	}
	return NULL;
}

static void
conversion_error_callback(void *arg)
{
	ConversionContext *convctx = (ConversionContext *) arg;

	errcontext("column \"%s\" of foreign table \"%s\"",
			   convctx->attname, convctx->table_name);
}

/*
 * One JSON value into a Datum of the column's type.  json and jsonb take
 * any value; arrays take a JSON array element by element; everything else
 * goes through the type's input function, so SQL's own parsing rules (and
 * errors) apply.
 */
static Datum
json_to_datum(GhlJson *value, GhlColumnMap *col, const char *server_name,
			  bool *isnull)
{
	*isnull = false;

	if (value == NULL || value->type == GHL_JSON_NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}

	if (col->typid == JSONBOID &&
		(value->type == GHL_JSON_OBJECT || value->type == GHL_JSON_ARRAY))
		return json_to_jsonb(value, server_name);
	if (col->is_json)
		return InputFunctionCall(&col->input,
								 (char *) json_text(value, server_name),
								 col->ioparam, col->typmod);

	if (OidIsValid(col->elemtypid))
	{
		int			n;
		int			i;
		Datum	   *elems;
		bool	   *elemnulls;
		int			dims[1];
		int			lbs[1] = {1};

		if (value->type != GHL_JSON_ARRAY)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("expected a JSON array, got %s",
							ghl_json_type_name(value))));
		n = value->len;
		elems = palloc(sizeof(Datum) * Max(n, 1));
		elemnulls = palloc(sizeof(bool) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			GhlJson    *elem = value->val.elems[i];

			elemnulls[i] = (elem->type == GHL_JSON_NULL);
			elems[i] = elemnulls[i] ? (Datum) 0 :
				scalar_to_datum(elem, col->elemtypid, &col->input, col->ioparam, -1,
								col->is_timestamp, server_name);
		}
		dims[0] = n;
		return PointerGetDatum(construct_md_array(elems, elemnulls, 1, dims, lbs,
												  col->elemtypid, col->elemlen,
												  col->elembyval, col->elemalign));
	}

	return scalar_to_datum(value, col->typid, &col->input, col->ioparam, col->typmod,
						   col->is_timestamp, server_name);
}

/*
 * Some endpoints write times without a zone ("2021-07-16 11:00:00", the
 * per-contact appointments).  Read them as UTC, so a value never depends
 * on the session's TimeZone setting.
 */
static const char *
utc_if_zoneless(const char *text)
{
	size_t		len = strlen(text);

	/* "YYYY-MM-DD" alone, or followed by a time without Z or an offset */
	if (len == 10 && text[4] == '-' && text[7] == '-')
		return psprintf("%s 00:00:00+00", text);
	if (len > 10 && text[4] == '-' && text[7] == '-' &&
		(text[10] == ' ' || text[10] == 'T') &&
		strpbrk(text + 10, "Zz+-") == NULL)
		return psprintf("%s+00", text);
	return text;
}

/*
 * One scalar (or, for a column of another type, any JSON value) as a Datum
 * of typid.  The types a scan fills most (text, boolean, timestamptz) are
 * built directly; everything else, and every text the direct paths do not
 * recognize, goes through the type's input function.
 */
static Datum
scalar_to_datum(GhlJson *value, Oid typid, FmgrInfo *input, Oid ioparam,
				int32 typmod, bool is_timestamp, const char *server_name)
{
	switch (value->type)
	{
		case GHL_JSON_STRING:
			{
				int			len;
				const char *str = server_string(value->val.text, value->len,
												server_name, &len);

				if (typid == TEXTOID)
				{
					text	   *result = (text *) palloc(len + VARHDRSZ);

					SET_VARSIZE(result, len + VARHDRSZ);
					memcpy(VARDATA(result), str, len);
					return PointerGetDatum(result);
				}
				if (is_timestamp)
				{
					TimestampTz ts;

					if (typid == TIMESTAMPTZOID && typmod < 0 && iso_timestamptz(str, &ts))
						return TimestampTzGetDatum(ts);
					str = utc_if_zoneless(str);
				}
				return InputFunctionCall(input, (char *) str, ioparam, typmod);
			}
		case GHL_JSON_BOOL:
			if (typid == BOOLOID)
				return BoolGetDatum(value->val.boolean);
			break;
		case GHL_JSON_NUMBER:
			/* the API writes some dates as epoch milliseconds */
			if (is_timestamp)
				return epoch_ms_to_timestamp(value, server_name);
			break;
		case GHL_JSON_OBJECT:
		case GHL_JSON_ARRAY:
			break;
		case GHL_JSON_NULL:
			elog(ERROR, "unexpected JSON null");
	}
	return InputFunctionCall(input, (char *) json_text(value, server_name),
							 ioparam, typmod);
}

/* n decimal digits at s as a number, or -1 if they are not all digits */
static int
iso_digits(const char *s, int n)
{
	int			v = 0;

	for (; n > 0; n--, s++)
	{
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

/*
 * The times the API writes, "2021-11-26T12:41:02.193Z" or with an offset
 * ("+05:30"), or without a zone (UTC, as utc_if_zoneless reads them), read
 * without timestamptz_in's general parser: a scan reads several per row.
 * False for anything else (other forms, leap seconds, 24:00, more than six
 * fractional digits), which the input function then reads with its own
 * rules; true results equal what it would return.
 */
static bool
iso_timestamptz(const char *text, TimestampTz *result)
{
	int			year = iso_digits(text, 4);
	int			month = iso_digits(text + 5, 2);
	int			day = iso_digits(text + 8, 2);
	int			hour = 0;
	int			minute = 0;
	int			second = 0;
	int64		fraction = 0;
	int			offset = 0;		/* seconds east of UTC */
	const char *p = text + 10;
	int64		days;

	if (year < 1 || text[4] != '-' || text[7] != '-' || month < 1 || month > 12 ||
		day < 1 || day > day_tab[isleap(year)][month - 1])
		return false;
	if (*p == 'T' || *p == ' ')
	{
		hour = iso_digits(p + 1, 2);
		minute = iso_digits(p + 4, 2);
		second = iso_digits(p + 7, 2);
		if (hour < 0 || hour > 23 || p[3] != ':' || minute < 0 || minute > 59 ||
			p[6] != ':' || second < 0 || second > 59)
			return false;
		p += 9;
		if (*p == '.')
		{
			int64		scale = USECS_PER_SEC;
			int			digits = 0;

			for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			{
				if (digits == 6)
					return false;
				scale /= 10;
				fraction += (*p - '0') * scale;
			}
			if (digits == 0)
				return false;
		}
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-')
		{
			int			oh = iso_digits(p + 1, 2);
			int			om = 0;
			const char *end = p + 3;

			if (*end == ':')
				end++;
			if (*end != '\0')
			{
				om = iso_digits(end, 2);
				end += 2;
			}
			if (oh < 0 || oh > 15 || om < 0 || om > 59 || *end != '\0')
				return false;
			offset = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
			p = end;
		}
	}
	if (*p != '\0')
		return false;

	days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE;
	*result = ((days * HOURS_PER_DAY + hour) * MINS_PER_HOUR + minute) * SECS_PER_MINUTE;
	*result = (*result + second - offset) * USECS_PER_SEC + fraction;
	return IS_VALID_TIMESTAMP(*result);
}

/*
 * A JSON object or array as jsonb, built from the parsed tree: no text in
 * between to write and parse again.  Strings are checked like
 * server_string's; numbers keep the text they came as.
 */
static Datum
json_to_jsonb(GhlJson *value, const char *server_name)
{
	JsonbValue	root;

	jsonb_value(value, &root, server_name);
	return PointerGetDatum(JsonbValueToJsonb(&root));
}

/*
 * Build the JsonbValue of a parsed value, containers included, in
 * CurrentMemoryContext.  An object's pairs are put in the order jsonb
 * keeps (see object_key_order()), so that the tree is ready to serialize.
 */
static void
jsonb_value(GhlJson *value, JsonbValue *out, const char *server_name)
{
	int			len;
	int			i;

	check_stack_depth();
	switch (value->type)
	{
		case GHL_JSON_OBJECT:
			{
				int			n = value->len;
				JsonbPair  *pairs = palloc(sizeof(JsonbPair) * Max(n, 1));
				int		   *order = palloc(sizeof(int) * Max(n, 1));
				int			kept;

				for (i = 0; i < n; i++)
				{
					const GhlJsonMember *member = &value->val.members[i];

					pairs[i].key.type = jbvString;
					pairs[i].key.val.string.val =
						(char *) server_string(member->key, member->keylen,
											   server_name, &len);
					pairs[i].key.val.string.len = len;
				}
				kept = object_key_order(pairs, n, order);

				out->type = jbvObject;
				out->val.object.nPairs = kept;
				out->val.object.pairs = palloc(sizeof(JsonbPair) * Max(kept, 1));
				for (i = 0; i < kept; i++)
				{
					JsonbPair  *pair = &out->val.object.pairs[i];

					pair->key = pairs[order[i]].key;
					pair->order = i;
					jsonb_value(value->val.members[order[i]].value, &pair->value,
								server_name);
				}
				pfree(pairs);
				pfree(order);
				return;
			}
		case GHL_JSON_ARRAY:
			out->type = jbvArray;
			out->val.array.rawScalar = false;
			out->val.array.nElems = value->len;
			out->val.array.elems = palloc(sizeof(JsonbValue) * Max(value->len, 1));
			for (i = 0; i < value->len; i++)
				jsonb_value(value->val.elems[i], &out->val.array.elems[i], server_name);
			return;
		case GHL_JSON_NULL:
			out->type = jbvNull;
			return;
		case GHL_JSON_BOOL:
			out->type = jbvBool;
			out->val.boolean = value->val.boolean;
			return;
		case GHL_JSON_STRING:
			out->type = jbvString;
			out->val.string.val = (char *) server_string(value->val.text, value->len,
														 server_name, &len);
			out->val.string.len = len;
			return;
		case GHL_JSON_NUMBER:
			out->type = jbvNumeric;
			out->val.numeric = DatumGetNumeric(OidInputFunctionCall(F_NUMERIC_IN,
																	(char *) json_text(value, server_name),
																	InvalidOid, -1));
			return;
	}
}

/* jsonb's order of object keys: shorter first, then bytewise */
static int
jsonb_key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/* qsort order of key positions: by key, then later first */
static int
key_position_cmp(const void *a, const void *b, void *arg)
{
	const JsonbPair *pairs = arg;
	int			x = *(const int *) a;
	int			y = *(const int *) b;
	int			c = jsonb_key_cmp(&pairs[x].key, &pairs[y].key);

	return c != 0 ? c : (x < y) - (x > y);
}

/* the order of the keys of an object of nkeys keys, as last found */
#define GHL_KEY_ORDER_CACHE 16
/* objects larger than these are sorted but not remembered */
#define GHL_KEY_ORDER_MAX_KEYS 256
#define GHL_KEY_ORDER_MAX_BYTES 8192

typedef struct GhlKeyOrder
{
	int			nkeys;			/* 0: unused */
	char	   *keys;			/* the keys, each NUL-terminated, in sequence */
	int		   *lens;
	int		   *order;
	int			kept;
} GhlKeyOrder;

/*
 * The positions of an object's n keys in jsonb's order, into order; a key
 * that comes more than once keeps its last value (as jsonb_in does).
 * Returns how many keys remain.
 *
 * The API writes the objects of one kind with the same keys in the same
 * order, so the order found last for an object of n keys is remembered
 * (one per n, modulo the cache's size) and, when the next object of n
 * keys has the same keys in the same sequence, used again without a sort:
 * sorting every contact's keys was a tenth of a scan's time.
 */
static int
object_key_order(const JsonbPair *pairs, int n, int *order)
{
	static GhlKeyOrder cache[GHL_KEY_ORDER_CACHE];
	GhlKeyOrder *entry = &cache[n % GHL_KEY_ORDER_CACHE];
	const char *cached;
	int			kept = 0;
	int			i;
	Size		size;
	char	   *keys;
	char	   *p;
	int		   *lens;
	int		   *kept_order;

	if (n <= 1)
	{
		if (n == 1)
			order[0] = 0;
		return n;
	}

	/* the same keys as the object the entry remembers? */
	if (entry->nkeys == n)
	{
		cached = entry->keys;
		for (i = 0; i < n; i++)
		{
			if (pairs[i].key.val.string.len != entry->lens[i] ||
				memcmp(pairs[i].key.val.string.val, cached, entry->lens[i]) != 0)
				break;
			cached += entry->lens[i] + 1;
		}
		if (i == n)
		{
			memcpy(order, entry->order, sizeof(int) * entry->kept);
			return entry->kept;
		}
	}

	/* sort, then drop the earlier values of repeated keys */
	for (i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int), key_position_cmp, (void *) pairs);
	for (i = 0; i < n; i++)
	{
		if (kept > 0 &&
			jsonb_key_cmp(&pairs[order[kept - 1]].key, &pairs[order[i]].key) == 0)
			continue;
		order[kept++] = order[i];
	}

	/*
	 * Remember it, unless the object is larger than the API's objects: a
	 * hostile API's object of a million keys must not stay in every
	 * backend that read it.  The old entry is dropped only once the new
	 * one is allocated, so a failed allocation leaves a valid entry.
	 */
	size = 0;
	for (i = 0; i < n; i++)
		size += pairs[i].key.val.string.len + 1;
	if (n > GHL_KEY_ORDER_MAX_KEYS || size > GHL_KEY_ORDER_MAX_BYTES)
		return kept;
	keys = p = MemoryContextAlloc(TopMemoryContext, size);
	lens = MemoryContextAlloc(TopMemoryContext, sizeof(int) * n);
	kept_order = MemoryContextAlloc(TopMemoryContext, sizeof(int) * n);
	for (i = 0; i < n; i++)
	{
		lens[i] = pairs[i].key.val.string.len;
		memcpy(p, pairs[i].key.val.string.val, lens[i]);
		p[lens[i]] = '\0';
		p += lens[i] + 1;
	}
	memcpy(kept_order, order, sizeof(int) * kept);
	if (entry->nkeys != 0)
	{
		pfree(entry->keys);
		pfree(entry->lens);
		pfree(entry->order);
	}
	entry->keys = keys;
	entry->lens = lens;
	entry->order = kept_order;
	entry->kept = kept;
	entry->nkeys = n;
	return kept;
}

/*
 * A string the API sent, ready for an input function: valid UTF-8 without
 * NUL characters (json-c passes invalid bytes and "\u0000" on as they
 * came, and a NUL would silently cut the value short), in the database
 * encoding.  In a UTF-8 database that is one verifying pass and no copy:
 * a scan runs it on every value of every row.
 */
static const char *
server_string(const char *s, int len, const char *server_name, int *outlen)
{
	int			valid = pg_encoding_verifymbstr(PG_UTF8, s, len);
	const char *converted;

	if (valid < len && s[valid] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("GHL server \"%s\" returned a string containing \\u0000",
						server_name),
				 errdetail("Text cannot hold the NUL character.")));
	if (valid < len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("GHL server \"%s\" returned invalid UTF-8", server_name),
				 errdetail("Byte %d of the value (0x%02x) is not part of a valid UTF-8 character.",
						   valid + 1, (unsigned char) s[valid])));
	converted = GetDatabaseEncoding() == PG_UTF8 ? s : pg_any_to_server(s, len, PG_UTF8);
	if (outlen != NULL)
		*outlen = converted == s ? len : (int) strlen(converted);
	return converted;
}

/*
 * A JSON value as JSON text, with its strings checked like server_string's
 * (the parser keeps invalid bytes as they came): for json and jsonb
 * columns, and for objects, arrays, numbers and booleans read into other
 * types.  One pass over the text, however deep the value.
 */
static const char *
json_text(GhlJson *value, const char *server_name)
{
	StringInfoData buf;

	if (value->nonfinite)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("GHL server \"%s\" returned a number JSON does not allow",
						server_name),
				 errdetail("NaN and Infinity are not JSON numbers.")));
	if (value->type == GHL_JSON_NUMBER)
		return value->val.text;
	initStringInfo(&buf);
	ghl_json_write(&buf, value);
	return server_string(buf.data, buf.len, server_name, NULL);
}

/*
 * Epoch milliseconds, as the API writes some dates, as a timestamp.
 * Integers convert exactly, and a value whose microseconds overflow or
 * that lies outside PostgreSQL's timestamp range is an error, never a
 * wrapped or invalid timestamp.
 */
static Datum
epoch_ms_to_timestamp(GhlJson *value, const char *server_name)
{
	int64		ms;
	int64		us = 0;
	TimestampTz ts = 0;
	bool		ok;

	if (ghl_json_int64(value, &ms))
		ok = !pg_mul_s64_overflow(ms, 1000, &us);
	else
	{
		double		d = rint(strtod(value->val.text, NULL) * 1000.0);

		ok = !isnan(d) && FLOAT8_FITS_IN_INT64(d);
		if (ok)
			us = (int64) d;
	}
	ok = ok &&
		!pg_sub_s64_overflow(us, (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY,
							 &ts) &&
		IS_VALID_TIMESTAMP(ts);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("GHL server \"%s\" returned a timestamp out of range: %s epoch milliseconds",
						server_name, value->val.text)));
	return TimestampTzGetDatum(ts);
}

/*
 * Whether a row carries a field at all (null counts): a webhook's payload
 * says nothing about the fields it lacks.
 */
bool
ghl_json_row_has_field(GhlJsonPage *page, int row, const char *field)
{
	return ghl_json_get(row_object(page, row), field) != NULL;
}

/*
 * Remove a field from a row, or set it: a webhook's envelope
 * is not part of its record ("type" is the event's, not the contact's),
 * and an event can say what its payload leaves out (TaskComplete:
 * completed).  Rows that are no objects have no fields to change.
 */
void
ghl_json_row_remove_field(GhlJsonPage *page, int row, const char *field)
{
	GhlJson    *obj = row_object(page, row);

	if (obj->type == GHL_JSON_OBJECT)
		ghl_json_remove(obj, field);
}

void
ghl_json_row_set_bool(GhlJsonPage *page, int row, const char *field, bool value)
{
	GhlJson    *obj = row_object(page, row);

	if (obj->type == GHL_JSON_OBJECT)
		ghl_json_put(obj, field, ghl_json_scalar(GHL_JSON_BOOL, value),
					 GetMemoryChunkContext(page));
}

/*
 * Make a field the row lacks an explicit null: a payload that always
 * carries the field leaves it out when it has no value.
 */
void
ghl_json_row_null_if_absent(GhlJsonPage *page, int row, const char *field)
{
	GhlJson    *obj = row_object(page, row);

	if (obj->type == GHL_JSON_OBJECT && ghl_json_get(obj, field) == NULL)
		ghl_json_put(obj, field, ghl_json_scalar(GHL_JSON_NULL, false),
					 GetMemoryChunkContext(page));
}

/*
 * The paging cursor of a row, as JSON text (search results carry
 * "searchAfter": [sortValue, id]), or NULL if the row has none.
 */
char *
ghl_json_row_cursor(GhlJsonPage *page, int row)
{
	GhlJson    *cursor = ghl_json_get(row_object(page, row), "searchAfter");
	StringInfoData buf;

	if (cursor == NULL || cursor->type != GHL_JSON_ARRAY)
		return NULL;
	initStringInfo(&buf);
	ghl_json_write(&buf, cursor);
	return buf.data;
}

/*
 * Pull the API's error text and trace id out of an error body.  The API
 * says "message": "..." or, on 422, "message": ["...", ...]; the OAuth
 * endpoint says "error_description".  Never fails: a body that is not an
 * error object yields NULLs.
 */
void
ghl_json_error_info(const char *data, size_t len, char **message, char **trace_id)
{
	json_object *root;
	json_object *value;
	json_tokener *tok;

	*message = NULL;
	*trace_id = NULL;
	if (data == NULL || len == 0 || len > INT_MAX)
		return;

	tok = json_tokener_new();
	if (tok == NULL)
		return;
	root = json_tokener_parse_ex(tok, data, (int) len);
	json_tokener_free(tok);
	if (root == NULL)
		return;

	PG_TRY();
	{
		if (json_object_is_type(root, json_type_object))
		{
			if ((json_object_object_get_ex(root, "message", &value) ||
				 json_object_object_get_ex(root, "error_description", &value) ||
				 json_object_object_get_ex(root, "error", &value)) &&
				value != NULL)
			{
				if (json_object_is_type(value, json_type_array))
				{
					StringInfoData buf;
					size_t		i;

					initStringInfo(&buf);
					for (i = 0; i < json_object_array_length(value); i++)
						appendStringInfo(&buf, "%s%s", i > 0 ? "; " : "",
										 json_object_get_string(json_object_array_get_idx(value, i)));
					*message = buf.data;
				}
				else
					*message = pstrdup(json_object_get_string(value));
			}
			if (json_object_object_get_ex(root, "traceId", &value) && value != NULL)
				*trace_id = pstrdup(json_object_get_string(value));
		}
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
}

/*
 * The body of POST /contacts/search for one page.  search_after is the
 * JSON cursor of the previous page's last row, or NULL for the first page;
 * filters are GhlFilterValues, query the free text, sort_field the one
 * sort key (or NULL for the API's default).
 */
char *
ghl_json_search_body(const char *location_id, int page_limit,
					 const char *search_after, List *filters,
					 const char *query, const char *sort_field, bool sort_desc)
{
	json_object *body = json_object_new_object();
	char	   *result = NULL;

	PG_TRY();
	{
		json_object_object_add(body, "locationId", json_object_new_string(location_id));
		json_object_object_add(body, "pageLimit", json_object_new_int(page_limit));
		if (filters != NIL)
		{
			json_object *array = json_object_new_array();
			ListCell   *lc;

			json_object_object_add(body, "filters", array);
			foreach(lc, filters)
				json_object_array_add(array, search_filter(lfirst(lc)));
		}
		if (query)
			json_object_object_add(body, "query", json_object_new_string(query));
		if (sort_field)
		{
			json_object *sort = json_object_new_array();
			json_object *key = json_object_new_object();

			json_object_object_add(key, "field", json_object_new_string(sort_field));
			json_object_object_add(key, "direction",
								   json_object_new_string(sort_desc ? "desc" : "asc"));
			json_object_array_add(sort, key);
			json_object_object_add(body, "sort", sort);
		}
		if (search_after)
		{
			json_object *cursor = json_tokener_parse(search_after);

			if (cursor == NULL)
				elog(ERROR, "invalid search cursor");
			json_object_object_add(body, "searchAfter", cursor);
		}
		result = pstrdup(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
	}
	PG_FINALLY();
	{
		json_object_put(body);
	}
	PG_END_TRY();

	return result;
}

/*
 * One search filter: {"field", "operator": "eq", "value"} or, for a
 * bound, {"field", "operator": "range", "value": {"gte"|"lte": ms}}.
 */
static json_object *
search_filter(GhlFilterValue *fv)
{
	json_object *filter = json_object_new_object();

	json_object_object_add(filter, "field", json_object_new_string(fv->field));
	if (strcmp(fv->op, "eq") == 0)
	{
		json_object_object_add(filter, "operator", json_object_new_string("eq"));
		json_object_object_add(filter, "value", filter_value(fv));
	}
	else
	{
		json_object *range = json_object_new_object();

		json_object_object_add(range, fv->op, filter_value(fv));
		json_object_object_add(filter, "operator", json_object_new_string("range"));
		json_object_object_add(filter, "value", range);
	}
	return filter;
}

static json_object *
filter_value(GhlFilterValue *fv)
{
	if (fv->is_bool)
		return json_object_new_boolean(fv->boolean);
	if (fv->is_ms)
		return json_object_new_int64(fv->ms);
	return json_object_new_string(fv->text);
}

/*
 * The body of POST /locations/{locationId}/tasks/search for one page:
 * "completed" takes a boolean, "assignedTo" an array of user ids.
 */
char *
ghl_json_task_search_body(List *filters, int limit, int skip)
{
	json_object *body = json_object_new_object();
	char	   *result = NULL;

	PG_TRY();
	{
		ListCell   *lc;

		foreach(lc, filters)
		{
			GhlFilterValue *fv = lfirst(lc);

			/* one condition per field is enough: the rest is rechecked */
			if (json_object_object_get_ex(body, fv->field, NULL))
				continue;
			if (fv->is_bool)
				json_object_object_add(body, fv->field, filter_value(fv));
			else
			{
				json_object *array = json_object_new_array();

				json_object_object_add(body, fv->field, array);
				json_object_array_add(array, filter_value(fv));
			}
		}
		json_object_object_add(body, "limit", json_object_new_int(limit));
		json_object_object_add(body, "skip", json_object_new_int(skip));
		result = pstrdup(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
	}
	PG_FINALLY();
	{
		json_object_put(body);
	}
	PG_END_TRY();

	return result;
}

/*
 * The string values of one key across the rows of a page (the ids of the
 * calendars a location lists), with NULL for a row without one.
 */
List *
ghl_json_page_strings(GhlJsonPage *page, const char *key)
{
	List	   *result = NIL;
	int			i;

	for (i = 0; i < page->nrows; i++)
	{
		GhlJson    *value = ghl_json_get(row_object(page, i), key);

		if (value != NULL && value->type == GHL_JSON_STRING)
			result = lappend(result,
							 pstrdup(server_string(value->val.text, value->len,
												   page->server_name, NULL)));
		else
			result = lappend(result, NULL);
	}
	return result;
}

/*
 * A string member of a token answer, copied; NULL when it is absent, null
 * or "".  OAuth's tokens and scopes are printable ASCII (RFC 6749,
 * appendix A) and so are HighLevel's ids: any other value (another type,
 * a control character or NUL, more than max_len bytes when max_len > 0)
 * is malformed, and the first such key goes to *malformed.
 */
static char *
token_string(json_object *root, const char *key, int max_len,
			 const char **malformed)
{
	json_object *value;
	const char *str;
	int			len;
	int			i;

	if (!json_object_object_get_ex(root, key, &value) || value == NULL)
		return NULL;
	if (json_object_is_type(value, json_type_string))
	{
		str = json_object_get_string(value);
		len = json_object_get_string_len(value);
		if (len == 0)
			return NULL;
		for (i = 0; i < len; i++)
		{
			if ((unsigned char) str[i] < 0x20 || (unsigned char) str[i] > 0x7e)
				break;
		}
		if (i == len && (max_len <= 0 || len <= max_len))
			return pnstrdup(str, len);
	}
	if (*malformed == NULL)
		*malformed = key;
	return NULL;
}

/*
 * Pick the members auth.c uses out of an answer of /oauth/token or
 * /oauth/locationToken, whatever Content-Type it came with.  Nothing is
 * judged here beyond form, and nothing raised: auth.c first keeps a new
 * refresh token, then decides what the rest is worth.  The answer holds
 * secrets, so it is never quoted.
 */
void
ghl_json_token_response(const char *data, size_t len, GhlTokenResponse *out)
{
	json_object *root = NULL;
	json_tokener *tok;

	memset(out, 0, sizeof(GhlTokenResponse));
	out->expires_in = -1;
	if (data != NULL && len > 0 && len <= INT_MAX &&
		(tok = json_tokener_new()) != NULL)
	{
		root = json_tokener_parse_ex(tok, data, (int) len);
		json_tokener_free(tok);
	}

	PG_TRY();
	{
		json_object *value;

		if (root != NULL && json_object_is_type(root, json_type_object))
		{
			const char **malformed = &out->malformed;

			out->is_object = true;
			/* a refresh token of any length is kept: it may be the only one */
			out->refresh_token = token_string(root, "refresh_token", 0, malformed);
			out->access_token = token_string(root, "access_token",
											 GHL_TOKEN_MAX - 1, malformed);
			out->scope = token_string(root, "scope", GHL_TOKEN_MAX - 1, malformed);
			out->user_type = token_string(root, "userType", GHL_TOKEN_MAX - 1,
										  malformed);
			out->company_id = token_string(root, "companyId", GHL_TOKEN_MAX - 1,
										   malformed);
			out->location_id = token_string(root, "locationId",
											GHL_TOKEN_MAX - 1, malformed);
			if (json_object_object_get_ex(root, "expires_in", &value) &&
				value != NULL)
			{
				/* json-c saturates what does not fit in int64 */
				if (json_object_is_type(value, json_type_int) &&
					json_object_get_int64(value) >= 0)
					out->expires_in = json_object_get_int64(value);
				else if (out->malformed == NULL)
					out->malformed = "expires_in";
			}
		}
	}
	PG_FINALLY();
	{
		if (root != NULL)
			json_object_put(root);
	}
	PG_END_TRY();
}

/*
 * A request body under construction: one JSON object, released with the
 * memory context it was made in, so an error half-way leaks nothing.
 */
struct GhlJsonBody
{
	json_object *root;
	MemoryContextCallback release;
};

static json_object *parse_value(const char *json_text);

/*
 * Memory context reset callback: release the json-c document whose root
 * pointer arg points to.
 */
static void
release_json(void *arg)
{
	json_object **root = (json_object **) arg;

	if (*root)
		json_object_put(*root);
	*root = NULL;
}

/*
 * An empty body that belongs to CurrentMemoryContext.
 */
GhlJsonBody *
ghl_json_body_new(void)
{
	GhlJsonBody *body = palloc0(sizeof(GhlJsonBody));

	body->root = json_object_new_object();
	if (body->root == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	body->release.func = release_json;
	body->release.arg = &body->root;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &body->release);
	return body;
}

/*
 * Parse one JSON value the caller serialized.  JSON null is a NULL
 * json_object, so success is told by the tokener, not by the result.  The
 * terminating NUL is part of the input: without it a bare number or
 * literal at the end could still continue.
 */
static json_object *
parse_value(const char *json_text)
{
	json_tokener *tok = json_tokener_new();
	json_object *value;
	enum json_tokener_error jerr;

	if (tok == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	value = json_tokener_parse_ex(tok, json_text, (int) strlen(json_text) + 1);
	jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (jerr != json_tokener_success)
	{
		if (value)
			json_object_put(value);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("invalid JSON in a request body: %s",
						json_tokener_error_desc(jerr))));
	}
	return value;
}

/*
 * Set key to a JSON value given as text (a string, number, array, ...).
 */
void
ghl_json_body_add(GhlJsonBody *body, const char *key, const char *json_text)
{
	json_object_object_add(body->root, key, parse_value(json_text));
}

/*
 * Set key to custom fields in the form the API writes them.  They are
 * read as [{id, value}] and written as [{id|key, field_value}]; both
 * spellings of the value are accepted, so a value read from one contact
 * can be written to another as it is.
 */
void
ghl_json_body_add_custom_fields(GhlJsonBody *body, const char *key,
								const char *json_text, const char *table_name)
{
	json_object *input = parse_value(json_text);
	json_object *output = json_object_new_array();

	PG_TRY();
	{
		size_t		i;
		size_t		n;

		if (!json_object_is_type(input, json_type_array))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("custom fields of foreign table \"%s\" must be a JSON array",
							table_name),
					 errhint("Write [{\"id\": \"...\", \"value\": ...}], or \"key\" instead of \"id\".")));
		n = json_object_array_length(input);
		for (i = 0; i < n; i++)
		{
			json_object *item = json_object_array_get_idx(input, i);
			json_object *out;
			json_object *ref = NULL;
			json_object *value = NULL;
			const char *ref_key = "id";

			if (!json_object_object_get_ex(item, "id", &ref) &&
				json_object_object_get_ex(item, "key", &ref))
				ref_key = "key";
			if (!json_object_is_type(ref, json_type_string))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("custom field %zu of foreign table \"%s\" names no field",
								i + 1, table_name),
						 errhint("Each element needs a string \"id\" or \"key\", and a \"value\".")));
			if (!json_object_object_get_ex(item, "field_value", &value))
				json_object_object_get_ex(item, "value", &value);

			out = json_object_new_object();
			json_object_array_add(output, out);
			json_object_object_add(out, ref_key, json_object_get(ref));
			json_object_object_add(out, "field_value", json_object_get(value));
		}
		json_object_object_add(body->root, key, output);
		output = NULL;
	}
	PG_FINALLY();
	{
		json_object_put(input);
		json_object_put(output);
	}
	PG_END_TRY();
}

/*
 * The body as compact JSON text, palloc'd.
 */
char *
ghl_json_body_text(GhlJsonBody *body)
{
	return pstrdup(json_object_to_json_string_ext(body->root,
												  JSON_C_TO_STRING_PLAIN));
}
