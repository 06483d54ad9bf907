/*-------------------------------------------------------------------------
 *
 * option.c
 *		  Option tables per catalog, the validator, parsing of server and
 *		  user mapping options into one typed struct, GUCs and _PG_init.
 *
 * IDENTIFICATION
 *		  src/option.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <ctype.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_MODULE_MAGIC;

bool		ghl_enable_pushdown = true;
int			ghl_max_response_bytes = 64 * 1024 * 1024;
int			ghl_webhook_max_age = 300;
bool		ghl_webhook_allow_unsigned = false;
int			ghl_webhook_retention = 7 * 24 * 3600;

/* How an option's value is checked by the validator. */
typedef enum GhlOptionKind
{
	GHL_OPT_TEXT,				/* any non-empty string */
	GHL_OPT_URL,				/* http:// or https:// */
	GHL_OPT_NONNEG_INT,			/* 0 .. INT_MAX */
	GHL_OPT_POS_INT,			/* 1 .. INT_MAX */
	GHL_OPT_PAGE_SIZE,			/* 1 .. GHL_SEARCH_MAX_PAGE */
	GHL_OPT_BOOL,
	GHL_OPT_RESOURCE,
	GHL_OPT_USER_TYPE,
	GHL_OPT_SECRET				/* non-empty; never echoed back in errors */
} GhlOptionKind;

typedef struct GhlValidOption
{
	const char *name;
	Oid			catalog;
	GhlOptionKind kind;
} GhlValidOption;

/*
 * The one list of options.  Credentials are only valid on user mappings:
 * a user mapping is readable only by its owner and superusers, a server is
 * readable by everybody.
 */
static const GhlValidOption ghl_valid_options[] = {
	{"location_id", ForeignServerRelationId, GHL_OPT_TEXT},
	{"base_url", ForeignServerRelationId, GHL_OPT_URL},
	{"token_url", ForeignServerRelationId, GHL_OPT_URL},
	{"api_version", ForeignServerRelationId, GHL_OPT_TEXT},
	{"timeout_ms", ForeignServerRelationId, GHL_OPT_POS_INT},
	{"connect_timeout_ms", ForeignServerRelationId, GHL_OPT_POS_INT},
	{"max_retries", ForeignServerRelationId, GHL_OPT_NONNEG_INT},
	{"daily_budget_floor", ForeignServerRelationId, GHL_OPT_NONNEG_INT},
	{"page_size", ForeignServerRelationId, GHL_OPT_PAGE_SIZE},
	{"read_only", ForeignServerRelationId, GHL_OPT_BOOL},
	{"sync_schema", ForeignServerRelationId, GHL_OPT_TEXT},

	{"access_token", UserMappingRelationId, GHL_OPT_SECRET},
	{"client_id", UserMappingRelationId, GHL_OPT_TEXT},
	{"client_secret", UserMappingRelationId, GHL_OPT_SECRET},
	{"refresh_token", UserMappingRelationId, GHL_OPT_SECRET},
	{"user_type", UserMappingRelationId, GHL_OPT_USER_TYPE},

	{"resource", ForeignTableRelationId, GHL_OPT_RESOURCE},
	{"fan_out", ForeignTableRelationId, GHL_OPT_BOOL},

	{"field", AttributeRelationId, GHL_OPT_TEXT},

	{NULL, InvalidOid, GHL_OPT_TEXT}
};

static const GhlValidOption *find_option(const char *name, Oid catalog);
static void check_option_value(const GhlValidOption *opt, DefElem *def);
static void check_auth_combination(List *options);
static int	parse_int_option(DefElem *def, int min, int max);
static bool is_http_url(const char *value);

PG_FUNCTION_INFO_V1(ghl_fdw_validator);

/*
 * Validate the generic options given to a FOREIGN DATA WRAPPER, SERVER,
 * USER MAPPING or FOREIGN TABLE that uses ghl_fdw.  Misspelled options and
 * bad values are caught here, at DDL time, rather than on the first query.
 */
Datum
ghl_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *cell;

	foreach(cell, options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);
		const GhlValidOption *opt = find_option(def->defname, catalog);

		if (opt == NULL)
		{
			StringInfoData valid;
			const GhlValidOption *o;
			bool		secret = find_option(def->defname, UserMappingRelationId) != NULL &&
				catalog != UserMappingRelationId;

			initStringInfo(&valid);
			for (o = ghl_valid_options; o->name; o++)
			{
				if (o->catalog != catalog)
					continue;
				appendStringInfo(&valid, "%s%s", valid.len > 0 ? ", " : "", o->name);
			}
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 secret ?
					 errhint("Credentials belong in a USER MAPPING for the server.") :
					 valid.len > 0 ?
					 errhint("Valid options in this context are: %s.", valid.data) :
					 errhint("There are no valid options in this context.")));
		}
		check_option_value(opt, def);
	}

	if (catalog == UserMappingRelationId)
		check_auth_combination(options);

	PG_RETURN_VOID();
}

static const GhlValidOption *
find_option(const char *name, Oid catalog)
{
	const GhlValidOption *opt;

	for (opt = ghl_valid_options; opt->name; opt++)
	{
		if (opt->catalog == catalog && strcmp(opt->name, name) == 0)
			return opt;
	}
	return NULL;
}

/*
 * Check one option's value.  Secrets are never quoted in the message, so a
 * mistyped token cannot end up in the server log.
 */
static void
check_option_value(const GhlValidOption *opt, DefElem *def)
{
	char	   *value = defGetString(def);

	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not be empty", def->defname)));

	switch (opt->kind)
	{
		case GHL_OPT_TEXT:
		case GHL_OPT_SECRET:
			break;
		case GHL_OPT_URL:
			if (!is_http_url(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must be an http or https URL", def->defname),
						 errhint("For example: %s", GHL_DEFAULT_BASE_URL)));
			break;
		case GHL_OPT_NONNEG_INT:
			(void) parse_int_option(def, 0, INT_MAX);
			break;
		case GHL_OPT_POS_INT:
			(void) parse_int_option(def, 1, INT_MAX);
			break;
		case GHL_OPT_PAGE_SIZE:
			(void) parse_int_option(def, 1, GHL_SEARCH_MAX_PAGE);
			break;
		case GHL_OPT_BOOL:
			(void) defGetBoolean(def);
			break;
		case GHL_OPT_RESOURCE:
			if (ghl_resource_by_name(value) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"resource\": \"%s\"", value),
						 errhint("Valid resources are: %s.", ghl_resource_names())));
			break;
		case GHL_OPT_USER_TYPE:
			if (strcmp(value, "Location") != 0 && strcmp(value, "Company") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"user_type\": \"%s\"", value),
						 errhint("Valid values are Location and Company.")));
			break;
	}
}

/*
 * A user mapping must name exactly one way to get a token: a static
 * access_token, a client with a refresh token, or a client alone (the
 * client_credentials grant).
 */
static void
check_auth_combination(List *options)
{
	bool		has_access = false;
	bool		has_id = false;
	bool		has_secret = false;
	bool		has_refresh = false;
	ListCell   *cell;

	foreach(cell, options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);

		if (strcmp(def->defname, "access_token") == 0)
			has_access = true;
		else if (strcmp(def->defname, "client_id") == 0)
			has_id = true;
		else if (strcmp(def->defname, "client_secret") == 0)
			has_secret = true;
		else if (strcmp(def->defname, "refresh_token") == 0)
			has_refresh = true;
	}

	if (has_access && (has_id || has_secret || has_refresh))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"access_token\" and \"%s\" cannot be used together",
						has_id ? "client_id" : has_secret ? "client_secret" : "refresh_token"),
				 errhint("Use either access_token, or client_id and client_secret (with refresh_token for OAuth installs).")));
	if (!has_access && !has_id && !has_secret && !has_refresh)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("user mapping for a ghl_fdw server needs credentials"),
				 errhint("Set access_token, or client_id and client_secret (with refresh_token for OAuth installs).")));
	if (!has_access && (!has_id || !has_secret))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("option \"%s\" is required with \"%s\"",
						has_id ? "client_secret" : "client_id",
						has_id ? "client_id" : has_secret ? "client_secret" : "refresh_token"),
				 errhint("OAuth needs both client_id and client_secret.")));
}

static int
parse_int_option(DefElem *def, int min, int max)
{
	char	   *value = defGetString(def);
	char	   *end;
	long		result;

	errno = 0;
	result = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || result < min || result > max)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", def->defname, value),
				 max == INT_MAX ?
				 errhint("Use an integer of at least %d.", min) :
				 errhint("Use an integer from %d to %d.", min, max)));
	return (int) result;
}

static bool
is_http_url(const char *value)
{
	return (pg_strncasecmp(value, "http://", 7) == 0 && value[7] != '\0') ||
		(pg_strncasecmp(value, "https://", 8) == 0 && value[8] != '\0');
}

/*
 * Find the user mapping for userid on the server, falling back to PUBLIC,
 * with a message that says what to do when there is none.
 */
static UserMapping *
find_user_mapping(Oid userid, ForeignServer *server)
{
	HeapTuple	tp;
	UserMapping *um;
	Datum		datum;
	bool		isnull;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER,
						 ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER,
							 ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no user mapping for role \"%s\" on GHL server \"%s\"",
						GetUserNameFromId(userid, false), server->servername),
				 errhint("Create one with CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (access_token '...').",
						 quote_identifier(server->servername))));

	um = palloc0(sizeof(UserMapping));
	um->umid = ((Form_pg_user_mapping) GETSTRUCT(tp))->oid;
	um->userid = userid;
	um->serverid = server->serverid;
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
							Anum_pg_user_mapping_umoptions, &isnull);
	um->options = isnull ? NIL : untransformRelOptions(datum);
	ReleaseSysCache(tp);
	return um;
}

/*
 * Gather a server's options and the user's mapping into one struct, with
 * defaults filled in, so no other file reads the catalogs for options.
 */
GhlOptions *
ghl_get_options(Oid serverid, Oid userid)
{
	ForeignServer *server = GetForeignServer(serverid);
	UserMapping *um = find_user_mapping(userid, server);
	GhlOptions *opts = palloc0(sizeof(GhlOptions));
	ListCell   *cell;

	opts->serverid = serverid;
	opts->userid = userid;
	opts->umid = um->umid;
	opts->server_name = pstrdup(server->servername);
	opts->base_url = GHL_DEFAULT_BASE_URL;
	opts->api_version = GHL_DEFAULT_API_VERSION;
	opts->timeout_ms = 30000;
	opts->connect_timeout_ms = 10000;
	opts->max_retries = 3;
	opts->daily_budget_floor = 0;
	opts->page_size = GHL_DEFAULT_PAGE_SIZE;
	opts->read_only = false;
	opts->sync_schema = "rankr";
	opts->user_type = "Location";

	foreach(cell, server->options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);
		char	   *value = defGetString(def);

		if (strcmp(def->defname, "location_id") == 0)
			opts->location_id = value;
		else if (strcmp(def->defname, "base_url") == 0)
			opts->base_url = value;
		else if (strcmp(def->defname, "token_url") == 0)
			opts->token_url = value;
		else if (strcmp(def->defname, "api_version") == 0)
			opts->api_version = value;
		else if (strcmp(def->defname, "timeout_ms") == 0)
			opts->timeout_ms = parse_int_option(def, 1, INT_MAX);
		else if (strcmp(def->defname, "connect_timeout_ms") == 0)
			opts->connect_timeout_ms = parse_int_option(def, 1, INT_MAX);
		else if (strcmp(def->defname, "max_retries") == 0)
			opts->max_retries = parse_int_option(def, 0, INT_MAX);
		else if (strcmp(def->defname, "daily_budget_floor") == 0)
			opts->daily_budget_floor = parse_int_option(def, 0, INT_MAX);
		else if (strcmp(def->defname, "page_size") == 0)
			opts->page_size = parse_int_option(def, 1, GHL_SEARCH_MAX_PAGE);
		else if (strcmp(def->defname, "read_only") == 0)
			opts->read_only = defGetBoolean(def);
		else if (strcmp(def->defname, "sync_schema") == 0)
			opts->sync_schema = value;
	}

	foreach(cell, um->options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);
		char	   *value = defGetString(def);

		if (strcmp(def->defname, "access_token") == 0)
			opts->access_token = value;
		else if (strcmp(def->defname, "client_id") == 0)
			opts->client_id = value;
		else if (strcmp(def->defname, "client_secret") == 0)
			opts->client_secret = value;
		else if (strcmp(def->defname, "refresh_token") == 0)
			opts->refresh_token = value;
		else if (strcmp(def->defname, "user_type") == 0)
			opts->user_type = value;
	}

	/* strip trailing slashes so paths can always start with one */
	opts->base_url = pstrdup(opts->base_url);
	while (strlen(opts->base_url) > 0 &&
		   opts->base_url[strlen(opts->base_url) - 1] == '/')
		opts->base_url[strlen(opts->base_url) - 1] = '\0';
	if (opts->token_url == NULL)
		opts->token_url = psprintf("%s/oauth/token", opts->base_url);

	if (opts->access_token)
		opts->auth_mode = GHL_AUTH_ACCESS_TOKEN;
	else if (opts->refresh_token)
		opts->auth_mode = GHL_AUTH_REFRESH_TOKEN;
	else
		opts->auth_mode = GHL_AUTH_CLIENT_CREDENTIALS;

	if (opts->location_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("GHL server \"%s\" has no location_id", opts->server_name),
				 errhint("ALTER SERVER %s OPTIONS (ADD location_id '...').",
						 quote_identifier(opts->server_name))));
	return opts;
}

/*
 * A foreign table's option, or NULL when it is not set.
 */
char *
ghl_get_table_option(Oid relid, const char *name)
{
	ForeignTable *table = GetForeignTable(relid);
	ListCell   *cell;

	foreach(cell, table->options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/*
 * The JSON key a column reads: its "field" option, or its name in
 * camelCase, so that date_updated maps to dateUpdated without options.
 */
char *
ghl_get_column_field(Oid relid, AttrNumber attnum)
{
	List	   *options = GetForeignColumnOptions(relid, attnum);
	ListCell   *cell;

	foreach(cell, options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);

		if (strcmp(def->defname, "field") == 0)
			return defGetString(def);
	}
	return ghl_camel_case(get_attname(relid, attnum, false));
}

char *
ghl_camel_case(const char *column_name)
{
	char	   *result = palloc(strlen(column_name) + 1);
	char	   *out = result;
	bool		upper_next = false;
	const char *in;

	for (in = column_name; *in; in++)
	{
		if (*in == '_' && out != result)
		{
			upper_next = true;
			continue;
		}
		*out++ = upper_next ? pg_toupper((unsigned char) *in) : *in;
		upper_next = false;
	}
	*out = '\0';
	return result;
}

/*
 * Module load: define the GUCs, and ask for the governor's shared memory
 * when preloaded.
 */
void
_PG_init(void)
{
	DefineCustomBoolVariable("ghl_fdw.enable_pushdown",
							 "Sends WHERE, ORDER BY and LIMIT to the GHL API where it can answer them.",
							 "When off, every scan reads whole resources and PostgreSQL filters locally; results are the same.",
							 &ghl_enable_pushdown,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ghl_fdw.max_response_bytes",
							"Largest HTTP response body ghl_fdw accepts.",
							NULL,
							&ghl_max_response_bytes,
							64 * 1024 * 1024,
							1024,
							512 * 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	/* superuser only: the daemon's role must not be able to loosen them */
	DefineCustomIntVariable("ghl_fdw.webhook_max_age",
							"Largest age of a webhook delivery's timestamp that apply_webhook accepts.",
							"Older deliveries, and deliveries as far in the future, are refused as possible replays.",
							&ghl_webhook_max_age,
							300,
							1,
							7 * 24 * 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ghl_fdw.webhook_allow_unsigned",
							 "Lets apply_webhook accept deliveries that carry no signature.",
							 "For local tests only: anyone who reaches the receiver could then forge events.",
							 &ghl_webhook_allow_unsigned,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ghl_fdw.webhook_retention",
							"How long the webhook ledger keeps deliveries.",
							"Deliveries younger than twice ghl_fdw.webhook_max_age are always kept.",
							&ghl_webhook_retention,
							7 * 24 * 3600,
							60,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ghl_fdw");

	ghl_ratelimit_init();
}
