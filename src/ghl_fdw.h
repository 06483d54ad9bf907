/*-------------------------------------------------------------------------
 *
 * ghl_fdw.h
 *		  Private declarations shared by the ghl_fdw source files.
 *
 * Each section lists what one source file offers the others; see
 * DESIGN.md for which file owns which concern.
 *
 * IDENTIFICATION
 *		  src/ghl_fdw.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef GHL_FDW_H
#define GHL_FDW_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pathnodes.h"
#include "nodes/pg_list.h"
#include "storage/lock.h"
#include "access/tupdesc.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/tuplestore.h"

#define GHL_FDW_VERSION			"1.1"
#define GHL_DEFAULT_BASE_URL	"https://services.leadconnectorhq.com"
#define GHL_DEFAULT_API_VERSION "2021-07-28"
#define GHL_CALENDAR_API_VERSION "2021-04-15"

/* largest page the search endpoint serves, and the classic list's cap */
#define GHL_SEARCH_MAX_PAGE		500
/* records the search pages through with "page"; its totals stop there too */
#define GHL_SEARCH_WINDOW		10000
#define GHL_DEFAULT_PAGE_SIZE	500

/* the API's error text is cut to this many bytes in errdetail */
#define GHL_ERRDETAIL_MAX		120

/* requests a scan or sync runs side by side: server option max_concurrency */
#define GHL_DEFAULT_CONCURRENCY	8
#define GHL_MAX_CONCURRENCY		32

/*
 * in option.c
 */
typedef enum GhlAuthMode
{
	GHL_AUTH_ACCESS_TOKEN,		/* static token (Private Integration Token) */
	GHL_AUTH_REFRESH_TOKEN,		/* OAuth, rotating refresh tokens */
	GHL_AUTH_CLIENT_CREDENTIALS /* OAuth client_credentials grant */
} GhlAuthMode;

/*
 * Every option of a server and of the current user's mapping for it,
 * parsed and defaulted.  Secrets live here only for the duration of the
 * request that needs them; they are never printed.
 */
typedef struct GhlOptions
{
	Oid			serverid;
	Oid			userid;			/* the user the mapping was looked up for */
	Oid			umid;			/* the user mapping's OID */
	char	   *server_name;
	bool		owner_is_superuser; /* the server's URLs are the admin's choice */

	/* server options */
	char	   *location_id;
	char	   *base_url;		/* without trailing slash */
	char	   *token_url;
	char	   *api_version;
	int			timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	int			daily_budget_floor; /* refuse requests below this many left */
	int			page_size;
	int			max_concurrency;	/* requests a scan or sync runs side by side */
	bool		read_only;
	char	   *sync_schema;

	/* user mapping options */
	GhlAuthMode auth_mode;
	char	   *access_token;
	char	   *client_id;
	char	   *client_secret;
	char	   *refresh_token;
	char	   *user_type;		/* "Location" or "Company" */

	/*
	 * A location server's mapping with from_agency: the credentials above
	 * are those of the agency server's mapping, and tokens are bought with
	 * its Company token.  InvalidOid otherwise.
	 */
	Oid			agency_serverid;
} GhlOptions;

extern bool ghl_enable_pushdown;
extern int	ghl_max_response_bytes;
extern char *ghl_allowed_hosts;

extern GhlOptions *ghl_get_options(Oid serverid, Oid userid);
extern char *ghl_get_table_option(Oid relid, const char *name);
extern char *ghl_get_column_field(Oid relid, AttrNumber attnum);
extern char *ghl_camel_case(const char *column_name);
extern void ghl_check_url(const char *option, const char *url, bool restricted,
						  const char *server_name);
extern void _PG_init(void);

/* webhook deliveries: see webhook.c */
extern int	ghl_webhook_max_age;
extern bool ghl_webhook_allow_unsigned;
extern int	ghl_webhook_retention;

/*
 * in resource.c
 */
typedef enum GhlResourceKind
{
	GHL_RESOURCE_CONTACTS,
	GHL_RESOURCE_TASKS,
	GHL_RESOURCE_NOTES,
	GHL_RESOURCE_APPOINTMENTS
} GhlResourceKind;

/* One standard column of a resource, as IMPORT FOREIGN SCHEMA creates it. */
typedef struct GhlColumnDef
{
	const char *name;			/* SQL column name */
	const char *sql_type;		/* SQL type, as written in DDL */
	const char *field;			/* JSON key in GET responses */
	const char *search_field;	/* spelling in search results, if different */
} GhlColumnDef;

/*
 * The ways rows can be fetched.  Each endpoint is one entry of the
 * endpoint table in resource.c: method, path, response key and paging.
 */
typedef enum GhlEndpointKind
{
	GHL_EP_CONTACTS_SEARCH,		/* POST /contacts/search, searchAfter paging */
	GHL_EP_CONTACT_BY_ID,		/* GET /contacts/{id} */
	GHL_EP_TASKS_OF_CONTACT,	/* GET /contacts/{contactId}/tasks */
	GHL_EP_TASK_BY_ID,			/* GET /contacts/{contactId}/tasks/{id} */
	GHL_EP_NOTES_OF_CONTACT,	/* GET /contacts/{contactId}/notes */
	GHL_EP_NOTE_BY_ID,			/* GET /contacts/{contactId}/notes/{id} */
	GHL_EP_APPOINTMENTS_OF_CONTACT, /* GET /contacts/{contactId}/appointments */
	GHL_EP_CONTACTS_OF_BUSINESS,	/* GET /contacts/business/{id}, limit/skip */
	GHL_EP_TASKS_SEARCH,		/* POST /locations/{locationId}/tasks/search */
	GHL_EP_CALENDARS,			/* GET /calendars/ of the location */
	GHL_EP_CALENDAR_EVENTS,		/* GET /calendars/events, one calendar, a window */
	GHL_EP_CUSTOM_FIELDS,		/* GET /locations/{locationId}/customFields */
	GHL_EP_APPOINTMENT_BY_ID,	/* GET /calendars/events/appointments/{id} */
	GHL_NUM_ENDPOINTS			/* also: "no such endpoint" */
} GhlEndpointKind;

typedef enum GhlPaging
{
	GHL_PAGING_NONE,			/* one response holds everything */
	GHL_PAGING_SEARCH_AFTER,	/* cursor taken from the last row */
	GHL_PAGING_SKIP				/* limit and skip */
} GhlPaging;

typedef struct GhlEndpoint
{
	GhlEndpointKind kind;
	const char *method;
	const char *path;			/* printf format: contact id, then id */
	bool		needs_contact;	/* path takes the contact id */
	bool		needs_id;		/* path takes the row's id */
	const char *api_version;	/* NULL: the server's api_version */
	const char *response_key;	/* key of the row array, or of one object */
	bool		single_object;	/* response_key names one object, not array */
	bool		not_found_is_empty; /* 404 means zero rows */
	GhlPaging	paging;
	bool		uses_search_fields; /* rows use GhlColumnDef.search_field */
	bool		location_in_path;	/* path's only parameter is the location */
} GhlEndpoint;

/*
 * A condition on a column that an endpoint can answer.  The planner pushes
 * a clause down when its column's JSON field, the shape of the clause and
 * the endpoint match one entry of the pushable table in resource.c.
 */
typedef enum GhlQualShape
{
	GHL_QUAL_TEXT_EQ,			/* text column = value */
	GHL_QUAL_BOOL_EQ,			/* boolean column = value, col, NOT col */
	GHL_QUAL_RANGE,				/* timestamptz column <, <=, =, >=, > value */
	GHL_QUAL_ARRAY_HAS			/* 'x' = ANY(col), col @> ARRAY[...] */
} GhlQualShape;

/*
 * The "field" of a filter-only column: "col = 'text'" becomes the search's
 * free-text query, and the column reads back the query.
 */
#define GHL_QUERY_FIELD			"@query"

/* "customFields.<id>": the value of one custom field of a contact */
#define GHL_CUSTOM_FIELD_PREFIX	"customFields."

typedef struct GhlPushable
{
	GhlResourceKind resource;
	const char *field;			/* JSON field of the column */
	GhlQualShape shape;
	GhlEndpointKind endpoint;	/* the endpoint that takes the condition */
	const char *api_field;		/* its name in the request */
} GhlPushable;

typedef struct GhlResource
{
	GhlResourceKind kind;
	const char *name;			/* value of the table option "resource" */
	const GhlColumnDef *columns;
	int			ncolumns;
	GhlEndpointKind scan_endpoint;	/* the endpoint that lists everything */
	GhlEndpointKind by_id_endpoint; /* the endpoint that fetches one row */
	GhlEndpointKind by_contact_endpoint;	/* rows of one contact */
	double		rows_estimate;	/* planner's guess at the table size */
} GhlResource;

extern const GhlResource *ghl_resource_by_name(const char *name);
extern const GhlResource *ghl_resource_for_table(Oid relid);
extern const GhlEndpoint *ghl_endpoint(GhlEndpointKind kind);
extern char *ghl_endpoint_path(const GhlEndpoint *ep, const char *contact_id,
							   const char *id);
extern char *ghl_request_path(const GhlEndpoint *ep, const char *contact_id,
							  const char *id, const char *server_name);
extern const char *ghl_resource_names(void);
extern const char *ghl_search_field_for(const GhlResource *resource,
										const char *field);
extern const GhlPushable *ghl_pushable(GhlResourceKind resource,
									   const char *field, GhlQualShape shape);
extern bool ghl_sortable(GhlResourceKind resource, const char *field);

/*
 * The write side of a resource: which endpoint each kind of write uses and
 * which fields a request body may carry.  Kept apart from the read tables.
 */
typedef enum GhlWriteKind
{
	GHL_WRITE_CREATE,			/* INSERT */
	GHL_WRITE_UPDATE,			/* UPDATE */
	GHL_WRITE_DELETE,			/* DELETE */
	GHL_WRITE_COMPLETE,			/* UPDATE of tasks.completed alone */
	GHL_WRITE_ADD_TAGS,			/* tags an UPDATE adds to a contact */
	GHL_WRITE_REMOVE_TAGS		/* tags an UPDATE removes from a contact */
} GhlWriteKind;

typedef struct GhlWriteEndpoint
{
	GhlResourceKind resource;
	GhlWriteKind kind;
	GhlEndpoint endpoint;		/* method, path, Version, response key */
	bool		idempotent;		/* safe to retry even if it reached the API */
	const char *scope;			/* OAuth scope the write needs */
	const char *location_key;	/* body key for the server's location_id */
} GhlWriteEndpoint;

/* How a column's value travels to the API. */
typedef enum GhlWriteFieldKind
{
	GHL_WF_VALUE,				/* the value as JSON, under write_field */
	GHL_WF_TAGS,				/* in the body on create, tag endpoints on update */
	GHL_WF_CUSTOM_FIELDS,		/* read {id, value}, written {id|key, field_value} */
	GHL_WF_PATH_CONTACT			/* the contact id in the path */
} GhlWriteFieldKind;

/* One JSON field a write may set. */
typedef struct GhlWriteField
{
	GhlResourceKind resource;
	const char *field;			/* the column's JSON key when read */
	const char *write_field;	/* its key in request bodies */
	GhlWriteFieldKind kind;
	bool		on_create;		/* INSERT may set it */
	bool		on_update;		/* UPDATE may change it */
	bool		required;		/* INSERT must set it */
	const char *create_default; /* JSON sent when INSERT leaves it NULL */
} GhlWriteField;

extern const GhlWriteEndpoint *ghl_write_endpoint(GhlResourceKind resource,
												  GhlWriteKind kind);
extern const GhlWriteField *ghl_write_field(GhlResourceKind resource,
											const char *field);

/*
 * in http.c
 */
typedef struct GhlConnection GhlConnection;

/* Counters of one scan, shown by EXPLAIN ANALYZE. */
typedef struct GhlRequestStats
{
	int64		requests;
	int64		retries;
	int64		bytes;
	int64		rate_limited;
} GhlRequestStats;

typedef struct GhlRequest
{
	const char *method;			/* "GET", "POST", ... */
	const char *path;			/* path and query, relative to base_url */
	const char *url;			/* absolute URL instead of path, or NULL */
	const char *api_version;	/* Version header value, or NULL for none */
	const char *body;			/* request body, or NULL */
	const char *content_type;	/* NULL: application/json */
	bool		authenticated;	/* send the Bearer token */
	bool		idempotent;		/* safe to retry even if it reached the API */
	bool		token_request;	/* to a token endpoint: the answer is secret */
} GhlRequest;

typedef struct GhlResponse
{
	long		status;
	char	   *data;			/* body, NUL-terminated, palloc'd */
	size_t		len;
} GhlResponse;

extern GhlConnection *ghl_get_connection(GhlOptions *options);
extern void ghl_report_http_error(GhlConnection *conn,
								  const GhlRequest *request,
								  const GhlResponse *response) pg_attribute_noreturn();
extern char *ghl_url_escape(const char *value);
struct GhlRateLimit;
extern void ghl_http_last_response(GhlConnection *conn, long *status,
								   struct GhlRateLimit *rate, TimestampTz *date);

/*
 * One attempt of a request, on an easy handle pooled by the connection:
 * built, collected and judged by http.c, scheduled by http_multi.c (the
 * only user of what follows).
 */
typedef struct GhlAttempt GhlAttempt;

/* Where a request stands in its retries; zeroed before its first attempt. */
typedef struct GhlRetryState
{
	int			retries;		/* retries spent, of max_retries */
	bool		auth_retried;	/* the one retry after a 401 is spent */
} GhlRetryState;

extern GhlOptions *ghl_connection_options(GhlConnection *conn);
extern void ghl_connection_wait(GhlConnection *conn, long timeout_ms);
extern GhlAttempt *ghl_attempt_start(GhlConnection *conn,
									 const GhlRequest *request,
									 GhlRequestStats *stats);
extern uint64 ghl_attempt_finished(const GhlAttempt *attempt);
extern bool ghl_attempt_retry(GhlConnection *conn, GhlAttempt *attempt,
							  const GhlRequest *request, GhlRetryState *state,
							  GhlRequestStats *stats, long *delay_ms);
extern void ghl_attempt_response(GhlConnection *conn, GhlAttempt *attempt,
								 const GhlRequest *request,
								 GhlResponse *response);
extern void ghl_attempt_release(GhlConnection *conn, GhlAttempt *attempt);
extern void ghl_request_context(void *arg);

/*
 * in http_multi.c
 */

/*
 * A set of requests run side by side on one connection, at most
 * max_concurrency (1 to GHL_MAX_CONCURRENCY) at a time, paced by the
 * governor and retried like any request.  It lives in the memory context
 * current at ghl_multi_start and is finished (its transfers aborted) when
 * that context is reset or deleted, on error too; stats, if given, must
 * live as long.  ghl_multi_add queues a copy of a request, with a tag that
 * comes back with its response, also between calls of ghl_multi_next;
 * ghl_multi_next returns the requests in the order they finish, false
 * when none is left, and like ghl_http_execute returns only 2xx and 404
 * responses (palloc'd in the current memory context) and raises every
 * other outcome's error, naming that request.
 */
typedef struct GhlMulti GhlMulti;

extern GhlMulti *ghl_multi_start(GhlConnection *conn, int max_concurrency,
								 GhlRequestStats *stats);
extern void ghl_multi_add(GhlMulti *multi, const GhlRequest *request,
						  void *tag);
extern bool ghl_multi_next(GhlMulti *multi, GhlResponse *response,
						   void **tag);
extern void ghl_multi_finish(GhlMulti *multi);
extern void ghl_http_execute(GhlConnection *conn, const GhlRequest *request,
							 GhlResponse *response, GhlRequestStats *stats);

/*
 * in ratelimit.c
 */

/*
 * The rate-limit headers of a response; -1 where a header was absent.
 */
typedef struct GhlRateLimit
{
	int64		max;
	int64		remaining;
	int64		interval_ms;
	int64		daily_limit;
	int64		daily_remaining;
} GhlRateLimit;

/* the counters of each server, in the column order of request_stats() */
typedef enum GhlCounter
{
	GHL_COUNT_REQUESTS,
	GHL_COUNT_RETRIES,
	GHL_COUNT_RATE_LIMITED,
	GHL_COUNT_THROTTLE_WAITS,
	GHL_COUNT_THROTTLE_MS,
	GHL_COUNT_BYTES,
	GHL_COUNT_BUDGET_REFUSALS,
	GHL_NUM_COUNTERS
} GhlCounter;

extern void ghl_ratelimit_init(void);
extern long ghl_governor_try_acquire(const GhlOptions *options);
extern void ghl_governor_count_wait(const GhlOptions *options, long wait_ms,
									bool first);
extern void ghl_governor_observe(const GhlOptions *options,
								 const GhlRateLimit *rate,
								 long status, long wait_ms);
extern void ghl_count(const GhlOptions *options, GhlCounter which, int64 n);
extern long ghl_statement_ms_left(void);
extern void ghl_governor_check_deadline(const GhlOptions *options,
										long wait_ms);

/*
 * in auth.c
 */
extern const char *ghl_auth_bearer(GhlConnection *conn, GhlOptions *options);
extern bool ghl_auth_forget(GhlOptions *options);
extern void ghl_auth_require_scope(GhlConnection *conn, GhlOptions *options,
								   const char *scope);

/* a token may be used until this long before it expires */
#define GHL_TOKEN_REFRESH_MARGIN_MS	(300 * 1000)
/* longest token, scope list or id auth.c accepts from the token endpoint */
#define GHL_TOKEN_MAX			8192

/*
 * One user mapping's OAuth state, as kept in ghl_fdw.token_store.  In
 * Company mode access_token is the location token and agency_token the
 * Company token it was bought with.  Strings are NULL when unknown.
 */
typedef struct GhlToken
{
	char	   *seed_fingerprint;	/* of the seed credentials it grew from */
	char	   *access_token;
	TimestampTz expires_at;
	char	   *refresh_token;
	char	   *agency_token;
	TimestampTz agency_expires_at;
	char	   *scopes;			/* space separated */
	char	   *user_type;
	char	   *company_id;
	char	   *location_id;
	TimestampTz last_refresh;
} GhlToken;

extern char *ghl_auth_seed_fingerprint(GhlOptions *options);
extern bool ghl_auth_token_usable(GhlOptions *options, const GhlToken *token,
								  const char *rejected);
struct GhlTokenResponse;
extern void ghl_auth_grant(GhlConnection *conn, GhlOptions *options,
						   GhlToken *token, struct GhlTokenResponse *answer);
extern void ghl_auth_accept_grant(GhlOptions *options, GhlToken *token,
								  const struct GhlTokenResponse *answer);
extern void ghl_auth_location_token(GhlConnection *conn, GhlOptions *options,
									GhlToken *token);
extern void ghl_auth_describe(GhlConnection *conn, GhlOptions *options,
							  bool renew, GhlToken *state);
extern bool ghl_scope_listed(const char *scopes, const char *scope);
extern bool ghl_auth_agency_usable(const GhlToken *token);
extern char *ghl_auth_agency_token(GhlOptions *options, char **company_id);
extern void ghl_auth_agency_execute(GhlConnection *conn, const char *agency_token,
									GhlRequest *request, GhlResponse *response);
extern GhlOptions *ghl_caller_options(text *server_name);

/*
 * in token_store.c
 */

/* what one of a mapping's locks serializes */
typedef enum GhlStoreLock
{
	GHL_STORE_LOCK_LAUNCH = 1,	/* backends about to start a token worker */
	GHL_STORE_LOCK_REFRESH = 2	/* token workers asking the token endpoint */
} GhlStoreLock;

struct LOCKTAG;
extern bool ghl_store_read(Oid umid, GhlToken *token);
extern void ghl_store_write(Oid umid, const GhlToken *token);
extern Oid	ghl_store_owner(void);
extern void ghl_store_lock(Oid umid, GhlStoreLock purpose, struct LOCKTAG *tag);
extern void ghl_store_unlock(const struct LOCKTAG *tag);

/*
 * in token_worker.c
 */
extern void ghl_token_worker_run(GhlOptions *options, const char *rejected,
								 bool agency, GhlToken *token);
extern PGDLLEXPORT void ghl_token_worker_main(Datum arg);

/*
 * in json_parse.c
 */
typedef enum GhlJsonType
{
	GHL_JSON_NULL,
	GHL_JSON_BOOL,
	GHL_JSON_NUMBER,
	GHL_JSON_STRING,
	GHL_JSON_ARRAY,
	GHL_JSON_OBJECT
} GhlJsonType;

typedef struct GhlJson GhlJson;

typedef struct GhlJsonMember
{
	const char *key;			/* decoded, NUL-terminated */
	int			keylen;			/* bytes, NULs from "\u0000" included */
	uint32		hash;			/* of the key, see json_parse.c */
	GhlJson    *value;
} GhlJsonMember;

/* One parsed JSON value; a tree of them is one memory context's. */
struct GhlJson
{
	GhlJsonType type;
	bool		nonfinite;		/* NaN, Infinity or -Infinity */
	int			len;			/* bytes of a string or number, elements, members */
	union
	{
		bool		boolean;
		const char *text;		/* a decoded string, a number as written */
		GhlJson   **elems;
		GhlJsonMember *members;
	}			val;
};

extern GhlJson *ghl_json_parse(const char *data, size_t len,
							   const char *server_name);
extern GhlJson *ghl_json_get(const GhlJson *object, const char *key);
extern GhlJson *ghl_json_get_at(const GhlJson *object, const char *key, int *at);
extern void ghl_json_remove(GhlJson *object, const char *key);
extern void ghl_json_put(GhlJson *object, const char *key, GhlJson *value,
						 MemoryContext cxt);
extern GhlJson *ghl_json_scalar(GhlJsonType type, bool boolean);
extern void ghl_json_write(StringInfo buf, const GhlJson *value);
extern bool ghl_json_int64(const GhlJson *value, int64 *result);
extern const char *ghl_json_type_name(const GhlJson *value);

/*
 * in json.c
 */
typedef struct GhlJsonPage GhlJsonPage;

/*
 * How one column of a scanned table is filled from a JSON row.  Built once
 * per scan; the conversion itself happens in json.c.
 */
typedef struct GhlColumnMap
{
	int			attindex;		/* 0-based index into the tuple */
	const char *attname;
	const char *field;			/* JSON key, NULL for the raw column */
	const char *search_field;	/* alternative key in search results */
	bool		is_raw;			/* the whole object as jsonb */
	Oid			typid;
	int32		typmod;
	Oid			elemtypid;		/* element type for arrays, else InvalidOid */
	FmgrInfo	input;			/* input function of typid or elemtypid */
	Oid			ioparam;
	int16		elemlen;
	bool		elembyval;
	char		elemalign;
	bool		is_timestamp;	/* accepts epoch milliseconds too */
	bool		is_json;		/* json/jsonb: any JSON value fits */
	int			field_at;		/* where field was in the last row, a hint */
	int			search_field_at;	/* the same for search_field */
} GhlColumnMap;

extern GhlJsonPage *ghl_json_parse_page(const char *data, size_t len,
										const char *response_key,
										bool single_object,
										const char *server_name);
extern int	ghl_json_page_rows(GhlJsonPage *page);
extern int64 ghl_json_page_total(GhlJsonPage *page);
extern void ghl_json_row_to_values(GhlJsonPage *page, int row,
								   GhlColumnMap *columns, int ncolumns,
								   bool use_search_fields,
								   const char *table_name,
								   Datum *values, bool *nulls);
extern void ghl_json_row_merge_values(GhlJsonPage *page, int row,
									  GhlColumnMap *columns, int ncolumns,
									  const char *table_name,
									  Datum *values, bool *nulls);
extern char *ghl_json_row_cursor(GhlJsonPage *page, int row);
extern bool ghl_json_row_has_field(GhlJsonPage *page, int row,
								   const char *field);
extern void ghl_json_row_remove_field(GhlJsonPage *page, int row,
									  const char *field);
extern void ghl_json_row_set_bool(GhlJsonPage *page, int row,
								  const char *field, bool value);
extern void ghl_json_row_null_if_absent(GhlJsonPage *page, int row,
										const char *field);
extern void ghl_json_error_info(const char *data, size_t len,
								char **message, char **trace_id);

/* One pushed-down condition with its value computed, ready for a request. */
typedef struct GhlFilterValue
{
	const char *field;			/* API field */
	const char *op;				/* "eq", "gte" or "lte" */
	bool		is_ms;			/* value is epoch milliseconds */
	bool		is_bool;
	const char *text;			/* text value */
	bool		boolean;
	int64		ms;
} GhlFilterValue;

extern char *ghl_json_search_body(const char *location_id, int page_limit,
								  const char *search_after, List *filters,
								  const char *query, const char *sort_field,
								  bool sort_desc);
extern char *ghl_json_task_search_body(List *filters, int limit, int skip);
extern List *ghl_json_page_strings(GhlJsonPage *page, const char *key);

/*
 * The members of a token endpoint's answer that auth.c uses; NULL or -1
 * when absent or malformed.
 */
typedef struct GhlTokenResponse
{
	bool		is_object;		/* the answer was a JSON object */
	const char *malformed;		/* first member of the wrong form, or NULL */
	char	   *access_token;
	char	   *refresh_token;
	int64		expires_in;		/* seconds, not negative */
	char	   *scope;			/* space separated */
	char	   *user_type;
	char	   *company_id;
	char	   *location_id;
} GhlTokenResponse;

extern void ghl_json_token_response(const char *data, size_t len,
									GhlTokenResponse *out);

/* a request body of a write, built field by field */
typedef struct GhlJsonBody GhlJsonBody;

extern GhlJsonBody *ghl_json_body_new(void);
extern void ghl_json_body_add(GhlJsonBody *body, const char *key,
							  const char *json_text);
extern void ghl_json_body_add_custom_fields(GhlJsonBody *body, const char *key,
											const char *json_text,
											const char *table_name);
extern char *ghl_json_body_text(GhlJsonBody *body);

/*
 * in sync_target.c
 */
typedef struct GhlTarget GhlTarget;
typedef struct GhlRows GhlRows;

/* What a batch's rows say about their records, and so how they are written. */
typedef enum GhlRowsMode
{
	GHL_ROWS_FOUND,				/* read from the API: they exist */
	GHL_ROWS_CHANGED,			/* changed: a tombstone stays one */
	GHL_ROWS_DELETED			/* deleted */
} GhlRowsMode;

extern GhlTarget *ghl_target_open(const char *schema,
								  const GhlResource *resource, bool create,
								  MemoryContext cxt);
extern const char *ghl_target_name(GhlTarget *target);
extern GhlRows *ghl_rows_new(GhlTarget *target, const char *location_id,
							 const char *const *absent_fields);
extern void ghl_rows_add_json(GhlRows *rows, GhlJsonPage *page, int row,
							  bool use_search_fields, const char *contact_id,
							  TimestampTz as_of);
extern void ghl_rows_set_mode(GhlRows *rows, GhlRowsMode mode);
extern void ghl_rows_add_event(GhlRows *rows, GhlJsonPage *page,
							   TimestampTz as_of);
extern int	ghl_rows_written(GhlRows *rows);
extern int	ghl_rows_count(GhlRows *rows);
extern char *ghl_rows_id(GhlRows *rows, int row);
extern TimestampTz ghl_rows_time(GhlRows *rows, int row, const char *column);
extern char *ghl_rows_text(GhlRows *rows, int row, int column, bool *known);
extern int	ghl_target_ncolumns(GhlTarget *target);
extern const char *ghl_target_column(GhlTarget *target, int column);
extern GhlRows *ghl_target_read(GhlTarget *target, const char *location_id,
								const char *column, List *keys, int limit);
extern List *ghl_target_upsert(GhlTarget *target, GhlRows *rows);
extern void ghl_target_insert_first(GhlTarget *target);
extern bool ghl_target_stale_statistics(GhlTarget *target, int64 changed);
extern Oid	ghl_target_relid(GhlTarget *target);
extern void ghl_target_analyze(Oid relid);
extern List *ghl_target_replace_children(GhlTarget *target,
										 const char *location_id,
										 List *contact_ids, List *seen_ids,
										 TimestampTz fetched);
extern List *ghl_target_tombstone(GhlTarget *target, const char *location_id,
								  List *ids, TimestampTz as_of);
extern List *ghl_target_sweep(GhlTarget *target, const char *location_id,
							  TimestampTz before);
extern List *ghl_target_unseen(GhlTarget *target, const char *location_id,
							   TimestampTz before, const char *window_column,
							   TimestampTz lo, TimestampTz hi);

/*
 * in sync.c
 */
#define GHL_NUM_RESOURCES		4	/* GhlResourceKind values */

/* Where a sync run executes, which decides how it commits its steps. */
typedef enum GhlSyncHost
{
	GHL_HOST_WORKER,			/* a background worker: its own transactions */
	GHL_HOST_PROCEDURE,			/* CALL in a non-atomic context: SPI_commit */
	GHL_HOST_TRANSACTION		/* one step in the caller's transaction */
} GhlSyncHost;

extern void ghl_sync_analyze_later(void);
extern bool ghl_sync_execute(GhlSyncHost host, Oid serverid, int64 run_id,
							 const bool *resources, bool full,
							 const char *contact_id);
extern const char *ghl_sync_resource_name(int resource);

/*
 * in sync_ledger.c
 */

/* A slice of a contacts pass as committed: its range and position. */
typedef struct GhlSliceState
{
	bool		bounded;		/* lo and hi apply */
	int64		lo;				/* dateAdded range in ms, inclusive */
	int64		hi;
	char	   *after;			/* searchAfter cursor, or NULL: from the start */
	int64		read;			/* contacts read up to the cursor */
	bool		done;
} GhlSliceState;

/* How far a pass over a location has got, as its last step committed. */
typedef struct GhlPassState
{
	TimestampTz started;		/* what it has not seen since is gone */
	TimestampTz since;			/* incremental: dateUpdated lower bound */
	TimestampTz newest_update;	/* newest dateUpdated seen */
	int64		total;			/* records the API reported */
	int64		done;			/* records written */
	int64		pages;
	int64		skip;			/* paging by skip: rows read */
	List	   *slices;			/* GhlSliceState */
} GhlPassState;

/* Per-server settings of ghl_fdw.sync_settings, with their defaults. */
typedef struct GhlSyncSettings
{
	int64		overlap_ms;
	int64		appointments_back_ms;
	int64		appointments_ahead_ms;
	bool		appointments_by_contact;	/* not through the calendars */
} GhlSyncSettings;

extern int64 ghl_ledger_next_run_id(void);
extern void ghl_ledger_start(int64 run_id, const char *server_name,
							 const char *location_id, const char *mode,
							 const bool *wanted, TimestampTz started,
							 const char *progress);
extern void ghl_ledger_update(int64 run_id, const bool *wanted,
							  const int64 *upserted, const int64 *deleted,
							  const int64 *requests, const char *progress,
							  const char *status, const char *error,
							  const TimestampTz *watermark);
extern void ghl_ledger_skipped(int64 run_id, const char *server_name,
							   const char *location_id, const char *mode,
							   const bool *wanted, const char *reason);
extern void ghl_ledger_interrupted(const char *server_name, int64 run_id);
extern bool ghl_ledger_rows(int64 run_id, Tuplestorestate *store,
							TupleDesc desc);
extern char *ghl_ledger_error(int64 run_id);
extern int64 ghl_ledger_requests(int64 run_id);
extern void ghl_ledger_prune(const char *server_name);
extern TimestampTz ghl_state_watermark(const char *server_name,
									   const char *location_id,
									   const char *resource);
extern void ghl_state_set_watermark(const char *server_name,
									const char *location_id,
									const char *resource,
									TimestampTz watermark);
extern bool ghl_pass_load(const char *server_name, const char *pass,
						  const char *location_id, const bool *wanted,
						  GhlPassState *state);
extern void ghl_pass_save(const char *server_name, const char *pass,
						  const char *location_id, const bool *wanted,
						  const GhlPassState *state);
extern void ghl_pass_drop(const char *server_name, const char *pass);
extern List *ghl_pending_load(const char *server_name, const char *location_id,
							  int limit);
extern void ghl_pending_done(const char *server_name, List *contact_ids,
							 TimestampTz read);
extern void ghl_sync_settings(const char *server_name,
							  GhlSyncSettings *settings);
extern bool ghl_sync_lock(const char *schema, const char *location_id,
						  LOCKTAG *tag);
extern void ghl_sync_unlock(const LOCKTAG *tag);
extern void ghl_sync_lock_creation(const char *schema);
extern void ghl_notify(const char *channel, const char *payload);

/*
 * in sync.c and sync_pass.c: a run in progress, shared by its life
 * (sync.c) and its passes (sync_pass.c)
 */
typedef enum GhlSyncRequestKind
{
	GHL_SREQ_FIRST_PAGE,		/* a full pass's first page, oldest first */
	GHL_SREQ_NEWEST,			/* the newest contact: where slices end */
	GHL_SREQ_SLICE_PAGE,		/* the next page of a slice */
	GHL_SREQ_CHILDREN,			/* the tasks, notes or appointments of a contact */
	GHL_SREQ_CONTACT,			/* one contact by id (refresh_contact) */
	GHL_SREQ_TASKS_PAGE,		/* a page of the location's task search */
	GHL_SREQ_CALENDARS,			/* the location's calendars */
	GHL_SREQ_WINDOW,			/* a calendar's events within a time window */
	GHL_SREQ_CONFIRM			/* a record a pass did not see, by id */
} GhlSyncRequestKind;

struct GhlPageBatch;

/* A stretch of contacts read page by page, and where it has got to. */
typedef struct GhlSlice
{
	GhlSliceState state;		/* as last committed */
	char	   *next_after;		/* where the next request starts */
	bool		received_all;	/* its last page has arrived */
	int64		received;		/* contacts of the slice received */
	bool		in_flight;
	struct GhlPageBatch *head;	/* pages received, not yet written */
	struct GhlPageBatch *tail;
} GhlSlice;

/*
 * A page of contacts with the children of its contacts: written in one
 * step, once every child request has been answered.
 */
typedef struct GhlPageBatch
{
	MemoryContext cxt;
	GhlSlice   *slice;			/* NULL for refresh_contact */
	GhlRows    *contacts;
	List	   *contact_ids;
	char	   *cursor;			/* the slice's position after this page */
	bool		last;			/* the slice ends with this page */
	int64		read;			/* the slice's contacts up to this page */
	int			waiting;		/* child requests not answered yet */
	GhlRows    *children[GHL_NUM_RESOURCES];
	TimestampTz fetched;		/* when its first child request was queued */
	bool		contact_gone;	/* refresh_contact: no such contact upstream */
	struct GhlPageBatch *next;
} GhlPageBatch;

/* What a request was for: its tag in the transport. */
typedef struct GhlSyncRequest
{
	GhlSyncRequestKind kind;
	GhlResourceKind resource;	/* what its rows are */
	GhlSlice   *slice;
	GhlPageBatch *batch;
	char	   *contact_id;
	char	   *id;
	TimestampTz queued;			/* the as_of of what it reads */
} GhlSyncRequest;

/* A run in progress. */
typedef struct GhlSyncRun
{
	MemoryContext cxt;			/* lives as long as the run */
	MemoryContext iter_cxt;		/* one answer */
	GhlSyncHost host;
	Oid			serverid;
	GhlOptions *options;
	GhlSyncSettings settings;
	int64		run_id;
	const char *mode;			/* "full", "incremental" or "contact" */
	const char *contact_id;		/* the contact of refresh_contact */
	bool		wanted[GHL_NUM_RESOURCES];
	GhlTarget  *targets[GHL_NUM_RESOURCES];
	int64		upserted[GHL_NUM_RESOURCES];
	int64		deleted[GHL_NUM_RESOURCES];
	int64		requests[GHL_NUM_RESOURCES];
	TimestampTz started;
	bool		locked;
	LOCKTAG		lock;			/* the location's sync lock, when locked */
	bool		in_ledger;		/* its "running" rows are committed */
	GhlConnection *conn;
	GhlMulti   *multi;
	GhlRequestStats stats;

	/* contacts */
	bool		contacts_pass;	/* running */
	bool		contacts_pass_ran;	/* ... in this run */
	bool		full_pass;
	bool		planning;		/* the slices are not known yet */
	bool		child[GHL_NUM_RESOURCES];	/* read per contact */
	GhlPassState pass;
	List	   *slices;			/* GhlSlice */
	int			pages_held;		/* received or requested, not written */
	int			max_pages;

	/* tasks */
	bool		tasks_pass;
	GhlPassState tasks;

	/* appointments through the calendars */
	bool		appointments_pass;
	TimestampTz appointments_started;
	int64		horizon_lo;		/* epoch ms */
	int64		horizon_hi;
	int			windows_pending;

	/* records a pass did not see, being confirmed one by one */
	int			confirming[GHL_NUM_RESOURCES];
	List	   *gone[GHL_NUM_RESOURCES];

	/* the request rate, for the progress report */
	TimestampTz rate_since;
	int64		rate_base;
	double		rate;
} GhlSyncRun;

/* in sync.c */
extern void ghl_sync_step_end(GhlSyncRun *run);
extern void ghl_sync_report(GhlSyncRun *run, const char *status,
							const char *error, const TimestampTz *watermark);

/* in sync_pass.c */
extern void ghl_sync_start_passes(GhlSyncRun *run);
extern void ghl_sync_handle(GhlSyncRun *run, GhlSyncRequest *sreq,
							GhlResponse *response);

/*
 * in sync_worker.c
 */
extern Oid	ghl_sync_server(text *name);
extern Oid	ghl_sync_server_arg(FunctionCallInfo fcinfo);
extern int64 ghl_sync_refresh(Oid serverid, const char *contact_id,
							  ErrorData **edata_out);
extern void ghl_sync_record_failure(Oid serverid, int64 run_id,
									const char *mode, ErrorData *edata);
extern PGDLLEXPORT void ghl_sync_worker_main(Datum arg);

/*
 * in ghl_fdw.c
 */
extern GhlColumnMap *ghl_build_column_maps(Relation rel, List *attnums,
										   const GhlResource *resource,
										   int *ncolumns, int *query_attindex);
extern void ghl_column_map_set_type(GhlColumnMap *col, Oid typid, int32 typmod);

/*
 * in modify.c
 */
struct FdwRoutine;
extern void ghl_modify_routine(struct FdwRoutine *routine);

/*
 * in pushdown.c
 */

/* Which path parameter of the endpoint an array of values iterates. */
typedef enum GhlArraySlot
{
	GHL_ARRAY_NONE,
	GHL_ARRAY_ID,				/* id = ANY(...): one request per id */
	GHL_ARRAY_CONTACT,			/* contact_id = ANY(...): one per contact */
	GHL_ARRAY_EVERY_CONTACT		/* fan-out: one per contact of the location */
} GhlArraySlot;

/* One condition sent to the API; its value is fdw_exprs[expr]. */
typedef struct GhlPushedFilter
{
	char	   *field;			/* API field */
	char	   *op;				/* "eq", "gte" or "lte" */
	int			expr;			/* index into fdw_exprs */
} GhlPushedFilter;

/*
 * What a scan will ask the API for: the endpoint, its parameters, filters,
 * sort and first page size.  The planner builds one per path from the
 * clauses; it is flattened into fdw_private for the executor, with values
 * to be computed at run time (Params) in fdw_exprs.
 */
typedef struct GhlRequestPlan
{
	GhlEndpointKind endpoint;	/* GHL_NUM_ENDPOINTS: no endpoint can answer */
	int			id_expr;		/* index into fdw_exprs of the id, or -1 */
	int			contact_expr;	/* same for the contact id */
	GhlArraySlot array_slot;	/* which of the two repeats, and why */
	List	   *filters;		/* GhlPushedFilter */
	int			query_expr;		/* free-text search, or -1 */
	char	   *sort_field;		/* API sort field, or NULL */
	bool		sort_desc;
	int			limit;			/* rows the first page asks for, 0: a page */
	double		estimated_rows;
	double		estimated_requests;
} GhlRequestPlan;

extern GhlRequestPlan *ghl_plan_request(PlannerInfo *root, RelOptInfo *baserel,
										const GhlResource *resource,
										List *clauses, List *pathkeys,
										double limit_tuples, List **fdw_exprs);
extern bool ghl_pathkeys_pushable(PlannerInfo *root, RelOptInfo *baserel,
								  const GhlResource *resource, List *pathkeys);
extern void ghl_plan_require_endpoint(GhlRequestPlan *plan,
									  const GhlResource *resource);
extern List *ghl_request_plan_to_list(GhlRequestPlan *plan);
extern GhlRequestPlan *ghl_request_plan_from_list(List *list);
extern char *ghl_request_plan_describe(GhlRequestPlan *plan,
									   const GhlResource *resource);

/*
 * in webhook.c
 */

/* One verified webhook delivery, as the apply hook sees it. */
typedef struct GhlWebhookEvent
{
	const char *webhook_id;
	const char *type;			/* as sent: ContactCreate, INSTALL, ... */
	const char *location_id;	/* NULL when absent (agency-level installs) */
	const char *company_id;		/* NULL when absent */
	TimestampTz timestamp;		/* when HighLevel sent it */
	Jsonb	   *body;			/* the whole delivery */
} GhlWebhookEvent;

extern Oid	ghl_webhook_table(const char *relname, Oid *owner);
extern uint64 ghl_webhook_execute(Oid owner, SPIPlanPtr *plan, const char *sql,
								  int nargs, Oid *argtypes, Datum *values,
								  const char *nulls);

/*
 * in webhook_keys.c
 */
typedef enum GhlSignatureCheck
{
	GHL_SIGNATURE_VERIFIED,		/* an enabled key verified it */
	GHL_SIGNATURE_MALFORMED,	/* not base64, or of the wrong length */
	GHL_SIGNATURE_NO_KEY,		/* no enabled key of its algorithm */
	GHL_SIGNATURE_MISMATCH		/* no enabled key verifies it */
} GhlSignatureCheck;

extern GhlSignatureCheck ghl_webhook_verify(const char *algorithm,
											const char *signature,
											const char *data, size_t len,
											char **key_id);

/*
 * in webhook_apply.c
 */
extern const char *ghl_webhook_apply(const GhlWebhookEvent *event);

#endif							/* GHL_FDW_H */
