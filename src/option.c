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
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_MODULE_MAGIC;

bool		ghl_enable_pushdown = true;
int			ghl_max_response_bytes = 64 * 1024 * 1024;
char	   *ghl_allowed_hosts = NULL;

/* the hosts of HighLevel's API: base_url and token_url of every spec */
#define GHL_DEFAULT_ALLOWED_HOSTS	"services.leadconnectorhq.com"

/* what a host name or IPv4 address, and a bracketed IPv6 address, are made of */
#define GHL_HOST_CHARS	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
#define GHL_IPV6_CHARS	"0123456789abcdefABCDEF:."

int			ghl_webhook_max_age = 300;
bool		ghl_webhook_allow_unsigned = false;
int			ghl_webhook_retention = 7 * 24 * 3600;

/* How an option's value is checked by the validator. */
typedef enum GhlOptionKind
{
	GHL_OPT_TEXT,				/* any non-empty string */
	GHL_OPT_URL,				/* http(s) URL; see ghl_check_url */
	GHL_OPT_NONNEG_INT,			/* 0 .. INT_MAX */
	GHL_OPT_POS_INT,			/* 1 .. INT_MAX */
	GHL_OPT_PAGE_SIZE,			/* 1 .. GHL_SEARCH_MAX_PAGE */
	GHL_OPT_CONCURRENCY,		/* 1 .. GHL_MAX_CONCURRENCY */
	GHL_OPT_BOOL,
	GHL_OPT_RESOURCE,
	GHL_OPT_USER_TYPE,
	GHL_OPT_AGENCY_SERVER,		/* a ghl_fdw server the user may stand for */
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
	{"max_concurrency", ForeignServerRelationId, GHL_OPT_CONCURRENCY},
	{"read_only", ForeignServerRelationId, GHL_OPT_BOOL},
	{"sync_schema", ForeignServerRelationId, GHL_OPT_TEXT},
	{"webhook_catch_up", ForeignServerRelationId, GHL_OPT_BOOL},
	{"agency_server", ForeignServerRelationId, GHL_OPT_AGENCY_SERVER},
	{"app_id", ForeignServerRelationId, GHL_OPT_TEXT},

	{"access_token", UserMappingRelationId, GHL_OPT_SECRET},
	{"client_id", UserMappingRelationId, GHL_OPT_TEXT},
	{"client_secret", UserMappingRelationId, GHL_OPT_SECRET},
	{"refresh_token", UserMappingRelationId, GHL_OPT_SECRET},
	{"user_type", UserMappingRelationId, GHL_OPT_USER_TYPE},
	{"from_agency", UserMappingRelationId, GHL_OPT_BOOL},

	{"resource", ForeignTableRelationId, GHL_OPT_RESOURCE},
	{"fan_out", ForeignTableRelationId, GHL_OPT_BOOL},

	{"field", AttributeRelationId, GHL_OPT_TEXT},

	{NULL, InvalidOid, GHL_OPT_TEXT}
};

static const GhlValidOption *find_option(const char *name, Oid catalog);
static void check_option_value(const GhlValidOption *opt, DefElem *def);
static void check_auth_combination(List *options);
static ForeignServer *agency_server(const char *name, Oid owner,
									Oid validator, const char *server_name);
static void check_agency_server(const char *name, Oid validator);
static int	parse_int_option(DefElem *def, int min, int max);
static size_t url_host(const char *what, const char *authority, size_t len);
static const char *next_host_entry(const char **list, size_t *len);
static bool host_allowed(const char *host, size_t len);
static bool check_allowed_hosts(char **newval, void **extra, GucSource source);
static void hide_statement_callback(void *arg);
static void warn_if_logged(List *options);

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
	ErrorContextCallback hide_statement;

	/* a user mapping's statement may carry secrets: keep it out of the log */
	hide_statement.callback = hide_statement_callback;
	hide_statement.arg = &catalog;
	hide_statement.previous = error_context_stack;
	error_context_stack = &hide_statement;

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
		if (opt->kind == GHL_OPT_AGENCY_SERVER)
			check_agency_server(defGetString(def), fcinfo->flinfo->fn_oid);
	}

	if (catalog == UserMappingRelationId)
	{
		check_auth_combination(options);
		warn_if_logged(options);
	}

	error_context_stack = hide_statement.previous;
	PG_RETURN_VOID();
}

/*
 * Every message raised while a user mapping is validated (arg points to
 * the catalog) leaves the statement out of the server log, where
 * log_min_error_statement would add it to an error: its text may carry
 * the secrets.
 */
static void
hide_statement_callback(void *arg)
{
	if (*(Oid *) arg == UserMappingRelationId)
		errhidestmt(true);
}

/* Append "name = 'value'" of a setting to a list of them. */
static void
append_setting(StringInfo list, const char *name)
{
	appendStringInfo(list, "%s%s = '%s'", list->len > 0 ? ", " : "", name,
					 GetConfigOptionByName(name, NULL, false));
}

/*
 * Warn when the server log records the statement that sets a secret of a
 * user mapping: PostgreSQL writes statement texts to it by its own
 * settings, some before any validator runs, so all ghl_fdw can do is say
 * so.  Only a statement whose text holds one of the secrets warns (ALTER
 * USER MAPPING ... SET client_id does not), and the secret is never
 * quoted.
 */
static void
warn_if_logged(List *options)
{
	StringInfoData settings;
	bool		carries_secret = false;
	ListCell   *cell;

	if (debug_query_string == NULL)
		return;
	foreach(cell, options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);
		const GhlValidOption *opt = find_option(def->defname,
												UserMappingRelationId);

		if (opt != NULL && opt->kind == GHL_OPT_SECRET &&
			strstr(debug_query_string, defGetString(def)) != NULL)
			carries_secret = true;
	}
	if (!carries_secret)
		return;

	initStringInfo(&settings);
	if (log_statement >= LOGSTMT_DDL)
		append_setting(&settings, "log_statement");
	if (log_min_duration_statement >= 0)
		append_setting(&settings, "log_min_duration_statement");
	if (log_min_duration_sample >= 0 && log_statement_sample_rate > 0)
		append_setting(&settings, "log_min_duration_sample");
	if (log_xact_sample_rate > 0)
		append_setting(&settings, "log_transaction_sample_rate");
	if (log_min_error_statement < ERROR)
		append_setting(&settings, "log_min_error_statement");
	if (settings.len == 0)
		return;

	ereport(WARNING,
			(errmsg("the server log may keep this statement, secrets included"),
			 errdetail("Statements are logged because of %s.", settings.data),
			 errhint("Set credentials in a session where a superuser has turned these settings off, for example with SET log_statement = 'none'; replace a secret that reached the log.")));
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
		case GHL_OPT_AGENCY_SERVER:
			break;
		case GHL_OPT_URL:
			ghl_check_url(def->defname, value, !superuser(), NULL);
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
		case GHL_OPT_CONCURRENCY:
			(void) parse_int_option(def, 1, GHL_MAX_CONCURRENCY);
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
	bool		from_agency = false;
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
		else if (strcmp(def->defname, "from_agency") == 0)
			from_agency = defGetBoolean(def);
	}

	/* the credentials are those of the role's mapping on the agency server */
	if (from_agency)
	{
		if (has_access || has_id || has_secret || has_refresh)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"from_agency\" cannot be used with credentials"),
					 errhint("Credentials belong in the user mapping on the agency server.")));
		return;
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

/*
 * Check a base_url or token_url.  What curl could read differently from
 * us (user information, a query or fragment, whitespace, backslashes,
 * control and non-ASCII characters, an odd host or port) is refused for
 * everybody.  A restricted URL, set by or used on a server of a
 * non-superuser, must also be https and name a host of
 * ghl_fdw.allowed_hosts: where the database connects to is the
 * administrator's decision, not that of a role allowed to create servers.
 * The validator passes no server_name; the transport, which checks again
 * because the setting may have changed since, passes the server's.
 */
void
ghl_check_url(const char *option, const char *url, bool restricted,
			  const char *server_name)
{
	char	   *what = server_name ?
		psprintf("option \"%s\" of GHL server \"%s\"", option, server_name) :
		psprintf("option \"%s\"", option);
	const char *p;
	const char *authority;
	size_t		authlen;
	size_t		hostlen;
	bool		https;

	for (p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f || *p == '\\')
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("%s must not contain whitespace, backslashes, control or non-ASCII characters",
							what),
					 errhint("Percent-encode them in the path.")));
	}
	if (strpbrk(url, "?#") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("%s must not contain a query string or fragment", what),
				 errhint("Give the root of the API, for example %s.",
						 GHL_DEFAULT_BASE_URL)));

	https = pg_strncasecmp(url, "https://", 8) == 0;
	if (!https && pg_strncasecmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("%s must be an http or https URL", what),
				 errhint("For example: %s", GHL_DEFAULT_BASE_URL)));
	authority = url + (https ? 8 : 7);
	authlen = strcspn(authority, "/");
	if (memchr(authority, '@', authlen) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("%s must not contain a user name or password", what),
				 errhint("Credentials belong in a USER MAPPING for the server.")));
	hostlen = url_host(what, authority, authlen);

	if (!restricted)
		return;
	if (!https)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s must be an https URL", what),
				 server_name ?
				 errdetail("The owner of the server is not a superuser.") :
				 errdetail("Only a superuser may set an http URL."),
				 errhint("Use https, or have a superuser create the server.")));
	if (!host_allowed(authority, hostlen))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s names host \"%.*s\", which is not in ghl_fdw.allowed_hosts",
						what, (int) hostlen, authority),
				 server_name ?
				 errdetail("The owner of the server is not a superuser, and ghl_fdw.allowed_hosts is \"%s\".",
						   ghl_allowed_hosts) :
				 errdetail("Only a superuser may set a host outside ghl_fdw.allowed_hosts, which is \"%s\".",
						   ghl_allowed_hosts),
				 errhint("A superuser can add the host to ghl_fdw.allowed_hosts, or create the server.")));
}

/*
 * The length of the host at the start of a URL's authority, after checking
 * that the authority is a host name, an IPv4 address or a bracketed IPv6
 * address, with an optional port.  Nothing else may hide in it: the host
 * compared with ghl_fdw.allowed_hosts must be the one curl connects to.
 */
static size_t
url_host(const char *what, const char *authority, size_t len)
{
	size_t		hostlen;
	size_t		i;
	long		port = 0;

	if (len > 0 && authority[0] == '[')
	{
		hostlen = 1 + strspn(authority + 1, GHL_IPV6_CHARS);
		if (hostlen >= len || authority[hostlen] != ']' || hostlen == 1)
			hostlen = 0;
		else
			hostlen++;
	}
	else
		hostlen = Min(strspn(authority, GHL_HOST_CHARS), len);

	i = hostlen;
	if (hostlen > 0 && i < len && authority[i] == ':')
	{
		for (i++; i < len && isdigit((unsigned char) authority[i]) && port <= 65535; i++)
			port = port * 10 + (authority[i] - '0');
		if (port < 1 || port > 65535)
			hostlen = 0;
	}
	if (hostlen == 0 || i != len)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("%s has an invalid host or port", what),
				 errhint("For example: %s", GHL_DEFAULT_BASE_URL)));
	return hostlen;
}

/*
 * The next entry of a ghl_fdw.allowed_hosts list, its length in *len, or
 * NULL at the end of the list; entries are separated by commas and blanks.
 */
static const char *
next_host_entry(const char **list, size_t *len)
{
	const char *entry = *list + strspn(*list, ", \t");

	*len = strcspn(entry, ", \t");
	*list = entry + *len;
	return *len > 0 ? entry : NULL;
}

/*
 * Whether ghl_fdw.allowed_hosts lets non-superusers use a host: an entry
 * equal to it, or a "*.suffix" entry it ends in (a subdomain, not the
 * suffix itself).  Host names compare without case and a trailing dot.
 */
static bool
host_allowed(const char *host, size_t len)
{
	const char *list = ghl_allowed_hosts ? ghl_allowed_hosts : "";
	const char *entry;
	size_t		n;

	if (len > 1 && host[len - 1] == '.')
		len--;
	while ((entry = next_host_entry(&list, &n)) != NULL)
	{
		if (n > 2 && entry[0] == '*' && entry[1] == '.')
		{
			if (len > n - 1 &&
				pg_strncasecmp(host + len - (n - 1), entry + 1, n - 1) == 0)
				return true;
		}
		else if (n == len && pg_strncasecmp(host, entry, n) == 0)
			return true;
	}
	return false;
}

/*
 * GUC check hook of ghl_fdw.allowed_hosts: a comma-separated list whose
 * entries are host names, IP addresses (IPv6 in brackets) or "*.suffix".
 * A typo is caught when the setting is made, not when a server is refused.
 */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	const char *list = *newval;
	const char *entry;
	size_t		n;

	while ((entry = next_host_entry(&list, &n)) != NULL)
	{
		const char *name = entry;
		size_t		namelen = n;
		bool		valid;

		if (n > 2 && entry[0] == '*' && entry[1] == '.')
		{
			name += 2;
			namelen -= 2;
		}
		if (name[0] == '[')
			valid = name == entry && namelen > 2 && name[namelen - 1] == ']' &&
				strspn(name + 1, GHL_IPV6_CHARS) == namelen - 2;
		else
			valid = strspn(name, GHL_HOST_CHARS) >= namelen;
		if (!valid)
		{
			GUC_check_errdetail("\"%.*s\" is not a host name or \"*.\" followed by one.",
								(int) n, entry);
			return false;
		}
	}
	return true;
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
 * The agency server a location server's tokens are bought through, checked
 * so that nobody spends credentials that are not theirs: it must be a
 * server of this wrapper (the same validator), not a location server
 * itself, and owner (the location server's owner, or the role about to
 * become it) must have the privileges of its owner.  A role that may only
 * use the agency server could otherwise point a server of its own at any
 * location of the company.  server_name is NULL in the validator, which
 * has made sure that the server exists.
 */
static ForeignServer *
agency_server(const char *name, Oid owner, Oid validator,
			  const char *server_name)
{
	ForeignServer *agency = GetForeignServerByName(name, true);
	ListCell   *cell;

	if (agency == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agency server \"%s\" of GHL server \"%s\" does not exist",
						name, server_name),
				 errhint("ALTER SERVER %s OPTIONS (SET agency_server '...').",
						 quote_identifier(server_name))));
	if (GetForeignDataWrapper(agency->fdwid)->fdwvalidator != validator)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 server_name ?
				 errmsg("agency server \"%s\" of GHL server \"%s\" is not a ghl_fdw server",
						name, server_name) :
				 errmsg("agency server \"%s\" is not a ghl_fdw server", name),
				 errhint("Name the server whose user mappings hold the Company credentials.")));
	foreach(cell, agency->options)
	{
		if (strcmp(lfirst_node(DefElem, cell)->defname, "agency_server") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("agency server \"%s\" has an agency_server of its own", name),
					 errhint("Name the server whose user mappings hold the Company credentials.")));
	}
	if (!has_privs_of_role(owner, agency->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to use GHL server \"%s\" as an agency server", name),
				 errdetail("Only roles with the privileges of its owner \"%s\" may own its location servers.",
						   GetUserNameFromId(agency->owner, false)),
				 errhint("Ask the owner of server \"%s\" to create the location servers.",
						 name)));
	return agency;
}

/*
 * The validator's check of agency_server, for the role about to own the
 * server.  A server that does not exist yet is only a warning: pg_restore
 * may create a location server before its agency server, and every use
 * checks again.
 */
static void
check_agency_server(const char *name, Oid validator)
{
	if (GetForeignServerByName(name, true) == NULL)
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agency server \"%s\" does not exist", name),
				 errhint("Create it before using this server.")));
	else
		(void) agency_server(name, GetUserId(), validator, NULL);
}

/*
 * Take a user mapping's credentials into opts; returns the mapping's
 * from_agency.
 */
static bool
read_mapping_options(GhlOptions *opts, List *options)
{
	bool		from_agency = false;
	ListCell   *cell;

	foreach(cell, options)
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
		else if (strcmp(def->defname, "from_agency") == 0)
			from_agency = defGetBoolean(def);
	}
	return from_agency;
}

/*
 * A location server's mapping with from_agency: its tokens are bought with
 * the Company token of the same role's mapping on the agency server (or
 * that server's PUBLIC mapping), the one place that holds the agency's
 * refresh token.  A role thus gets no credentials it was not given, like
 * any user mapping lookup; the ownership rule of agency_server() is
 * checked again, since servers change owners.
 */
static void
use_agency_mapping(GhlOptions *opts, ForeignServer *server, const char *agency,
				   Oid userid)
{
	ForeignServer *agency_srv;
	UserMapping *um;

	if (agency == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("GHL server \"%s\" has no agency_server for a user mapping with from_agency",
						server->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD agency_server '...'), or give the user mapping credentials of its own.",
						 quote_identifier(server->servername))));
	agency_srv = agency_server(agency, server->owner,
							   GetForeignDataWrapper(server->fdwid)->fdwvalidator,
							   server->servername);
	um = find_user_mapping(userid, agency_srv);
	if (read_mapping_options(opts, um->options) || opts->access_token ||
		strcmp(opts->user_type, "Company") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("the user mapping on agency server \"%s\" of GHL server \"%s\" has no Company OAuth credentials",
						agency, server->servername),
				 errhint("Set client_id and client_secret (with refresh_token for OAuth installs) and user_type 'Company' in that user mapping.")));
	opts->agency_serverid = agency_srv->serverid;
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
	const char *agency = NULL;
	ListCell   *cell;

	opts->serverid = serverid;
	opts->userid = userid;
	opts->umid = um->umid;
	opts->server_name = pstrdup(server->servername);
	opts->owner_is_superuser = superuser_arg(server->owner);
	opts->base_url = GHL_DEFAULT_BASE_URL;
	opts->api_version = GHL_DEFAULT_API_VERSION;
	opts->timeout_ms = 30000;
	opts->connect_timeout_ms = 10000;
	opts->max_retries = 3;
	opts->daily_budget_floor = 0;
	opts->page_size = GHL_DEFAULT_PAGE_SIZE;
	opts->max_concurrency = GHL_DEFAULT_CONCURRENCY;
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
		else if (strcmp(def->defname, "max_concurrency") == 0)
			opts->max_concurrency = parse_int_option(def, 1, GHL_MAX_CONCURRENCY);
		else if (strcmp(def->defname, "read_only") == 0)
			opts->read_only = defGetBoolean(def);
		else if (strcmp(def->defname, "sync_schema") == 0)
			opts->sync_schema = value;
		else if (strcmp(def->defname, "agency_server") == 0)
			agency = value;
	}

	if (read_mapping_options(opts, um->options))
		use_agency_mapping(opts, server, agency, userid);

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

	DefineCustomStringVariable("ghl_fdw.allowed_hosts",
							   "Hosts that servers owned by non-superusers may connect to.",
							   "A comma-separated list of host names and \"*.suffix\" patterns; base_url and token_url of such servers must be https URLs of these hosts.",
							   &ghl_allowed_hosts,
							   GHL_DEFAULT_ALLOWED_HOSTS,
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   check_allowed_hosts, NULL, NULL);

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
