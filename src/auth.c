/*-------------------------------------------------------------------------
 *
 * auth.c
 *		  Bearer tokens for GHL requests: static tokens, rotating refresh
 *		  tokens, the client_credentials grant and Company → location
 *		  tokens, with their scopes.
 *
 * An OAuth token lives in three places.  Each backend caches it in memory
 * until shortly before it expires or until the API rejects it.  Behind
 * that, ghl_fdw.token_store (token_store.c) keeps the current tokens of
 * every user mapping; the refresh token of the USER MAPPING is only the
 * seed, used until the first refresh or again when ALTER USER MAPPING sets
 * different seed credentials.  Only a token worker (token_worker.c) asks
 * the token endpoint, so each rotated refresh token is committed the
 * moment it arrives.
 *
 * IDENTIFICATION
 *		  src/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* longest token lifetime believed: a larger expires_in is a broken answer */
#define GHL_TOKEN_MAX_LIFETIME	(366 * SECS_PER_DAY)

PG_FUNCTION_INFO_V1(ghl_fdw_token_status);
PG_FUNCTION_INFO_V1(ghl_fdw_require_scope);

/* A backend's copy of one user mapping's access token. */
typedef struct GhlCachedToken
{
	Oid			umid;			/* hash key */
	char		fingerprint[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	char	   *access_token;	/* in TopMemoryContext, or NULL */
	TimestampTz expires_at;
	char	   *scopes;			/* in TopMemoryContext, or NULL */
	bool		rejected;		/* the API answered 401 to access_token */
	TimestampTz last_refresh;	/* when the token endpoint issued it */
} GhlCachedToken;

static HTAB *TokenCache = NULL;

/* the Company token, while it is the bearer of a location token request */
static const char *bearer_override = NULL;

/*
 * A digest of the seed credentials of a mapping.  Stored next to the
 * tokens grown from them, it tells when ALTER USER MAPPING brought a new
 * seed that must replace them; the secrets themselves are not compared.
 */
char *
ghl_auth_seed_fingerprint(GhlOptions *options)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	const char *parts[4];
	int			i;

	parts[0] = options->auth_mode == GHL_AUTH_REFRESH_TOKEN ?
		"refresh_token" : "client_credentials";
	parts[1] = options->client_id ? options->client_id : "";
	parts[2] = options->refresh_token ? options->refresh_token : "";
	parts[3] = options->user_type;

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	for (i = 0; i < lengthof(parts); i++)
	{
		/* the NUL terminator separates the parts unambiguously */
		if (pg_cryptohash_update(ctx, (const uint8 *) parts[i],
								 strlen(parts[i]) + 1) < 0)
			elog(ERROR, "could not compute a SHA-256 digest");
	}
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);

	hex[hex_encode((const char *) digest, sizeof(digest), hex)] = '\0';
	return hex;
}

/*
 * Whether a stored token may be sent: present, not the one the API just
 * refused, valid for longer than the refresh margin (refreshing a little
 * early means no request races the expiry) and, in Company mode, bought
 * for the server's location.  rejected is NULL or "" when nothing was.
 */
bool
ghl_auth_token_usable(GhlOptions *options, const GhlToken *token,
					  const char *rejected)
{
	TimestampTz margin_end =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									GHL_TOKEN_REFRESH_MARGIN_MS);

	if (token->access_token == NULL || token->expires_at <= margin_end)
		return false;
	if (rejected != NULL && strcmp(token->access_token, rejected) == 0)
		return false;
	if (strcmp(options->user_type, "Company") == 0 &&
		(token->location_id == NULL ||
		 strcmp(token->location_id, options->location_id) != 0))
		return false;
	return true;
}

/* Append "&name=value" to a form body, percent-encoded. */
static void
append_form_field(StringInfo body, const char *name, const char *value)
{
	char	   *escaped = ghl_url_escape(value);

	appendStringInfo(body, "%s%s=%s", body->len > 0 ? "&" : "", name, escaped);
	explicit_bzero(escaped, strlen(escaped));
	pfree(escaped);
}

/*
 * POST a form to a token endpoint and parse the answer.  The body holds
 * secrets and so does the answer: both are wiped once used.  A refusal of
 * the grant itself (400 invalid_grant, 401 invalid_client) means a human
 * has to act, and says which credential; other failures keep the
 * transport's error.
 */
static void
token_request(GhlConnection *conn, GhlOptions *options, GhlRequest *request,
			  StringInfo body, GhlTokenResponse *answer)
{
	MemoryContext cxt = CurrentMemoryContext;
	GhlResponse response;

	request->method = "POST";
	request->body = body->data;
	request->token_request = true;
	request->content_type = "application/x-www-form-urlencoded";

	PG_TRY();
	{
		ghl_http_execute(conn, request, &response, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		client;

		explicit_bzero(body->data, body->len);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (request->authenticated ||
			(edata->sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE &&
			 edata->sqlerrcode != ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION))
			PG_RE_THROW();
		FlushErrorState();
		/* a 401 names the client; a 400 (invalid_grant) the refresh token */
		client = edata->sqlerrcode == ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION ||
			options->auth_mode != GHL_AUTH_REFRESH_TOKEN;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 client ?
				 errmsg("GHL server \"%s\" refused the OAuth client credentials",
						options->server_name) :
				 errmsg("GHL server \"%s\" refused the refresh token: re-authorization is needed",
						options->server_name),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 client ?
				 errhint("Check client_id and client_secret in the user mapping for server \"%s\".",
						 options->server_name) :
				 errhint("Authorize the app again, then set the new refresh token with ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (SET refresh_token '...'); the stored tokens were left unchanged.",
						 options->server_name)));
	}
	PG_END_TRY();
	explicit_bzero(body->data, body->len);

	if (response.status == 404)
		ghl_report_http_error(conn, request, &response);
	ghl_json_token_response(response.data, response.len, answer);
	explicit_bzero(response.data, response.len);
	if (!answer->is_object)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("the token endpoint of GHL server \"%s\" did not answer with a JSON object",
						options->server_name),
				 errhint("Check the server option token_url.")));
}

/*
 * Judge a token answer once whatever must be kept of it is kept: it must
 * carry an access token and a believable expires_in, and nothing of the
 * wrong form.  Only member names are ever quoted, never values.  Returns
 * the access token's expiry.
 */
static TimestampTz
check_token_answer(GhlOptions *options, const GhlTokenResponse *answer,
				   TimestampTz now)
{
	const char *missing = answer->access_token == NULL ? "access_token" :
		answer->expires_in < 0 ? "expires_in" : NULL;
	const char *invalid = answer->malformed;

	if (invalid == NULL && missing == NULL &&
		(answer->expires_in < 1 || answer->expires_in > GHL_TOKEN_MAX_LIFETIME))
		invalid = "expires_in";
	if (invalid != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("the token endpoint of GHL server \"%s\" answered with an invalid \"%s\"",
						options->server_name, invalid),
				 errdetail("Tokens, scopes and ids must be printable ASCII strings, expires_in a number of seconds from 1 to %d.",
						   GHL_TOKEN_MAX_LIFETIME),
				 errhint("Check the server option token_url.")));
	if (missing != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("the token endpoint of GHL server \"%s\" answered without \"%s\"",
						options->server_name, missing),
				 errhint("Check the server option token_url.")));
	return TimestampTzPlusMilliseconds(now, answer->expires_in * 1000);
}

/*
 * Ask /oauth/token for a token: the refresh_token grant with the current
 * refresh token, or the client_credentials grant.  Runs in the token
 * worker only.  A refresh spends the refresh token it sends, so the new
 * one in the answer is put into *token before anything else of the answer
 * is looked at: the worker commits it, then ghl_auth_accept_grant() takes
 * the rest.  An answer without one leaves *token as it was.
 */
void
ghl_auth_grant(GhlConnection *conn, GhlOptions *options, GhlToken *token,
			   GhlTokenResponse *answer)
{
	GhlRequest	request = {0};
	StringInfoData body;

	initStringInfo(&body);
	if (options->auth_mode == GHL_AUTH_REFRESH_TOKEN)
	{
		if (token->refresh_token == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("no refresh token is left for GHL server \"%s\": re-authorization is needed",
							options->server_name),
					 errhint("Authorize the app again, then set the new refresh token with ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (SET refresh_token '...').",
							 options->server_name)));
		append_form_field(&body, "grant_type", "refresh_token");
		append_form_field(&body, "refresh_token", token->refresh_token);
	}
	else
		append_form_field(&body, "grant_type", "client_credentials");
	append_form_field(&body, "client_id", options->client_id);
	append_form_field(&body, "client_secret", options->client_secret);
	append_form_field(&body, "user_type", options->user_type);

	request.url = options->token_url;
	request.authenticated = false;
	request.idempotent = false; /* a refresh spends the refresh token */
	token_request(conn, options, &request, &body, answer);

	/* the client_credentials grant issues no refresh token */
	if (options->auth_mode != GHL_AUTH_REFRESH_TOKEN)
		return;
	if (answer->refresh_token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the token endpoint of GHL server \"%s\" answered a refresh without a usable refresh token",
						options->server_name),
				 errdetail("HighLevel spends a refresh token on every refresh; the stored one was kept in case this endpoint does not."),
				 errhint("Check the server option token_url.  If the next query fails with \"re-authorization is needed\", authorize the app again and set the new refresh token with ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (SET refresh_token '...').",
						 options->server_name)));
	token->refresh_token = answer->refresh_token;
}

/*
 * Take the rest of an answer of ghl_auth_grant() into *token, once its
 * refresh token is safe.  In Company mode the answer is the agency token,
 * to be exchanged for a location token.
 */
void
ghl_auth_accept_grant(GhlOptions *options, GhlToken *token,
					  const GhlTokenResponse *answer)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expires_at = check_token_answer(options, answer, now);

	if (strcmp(options->user_type, "Company") == 0)
	{
		token->agency_token = answer->access_token;
		token->agency_expires_at = expires_at;
	}
	else
	{
		token->access_token = answer->access_token;
		token->expires_at = expires_at;
		token->location_id = answer->location_id;
	}
	token->scopes = answer->scope;
	token->user_type = answer->user_type ? answer->user_type : options->user_type;
	token->company_id = answer->company_id;
	token->last_refresh = now;
}

/*
 * Exchange the Company token for a token of the server's location
 * (POST /oauth/locationToken, the Company token as Bearer).  Runs in the
 * token worker, after ghl_auth_grant when the Company token needed one.
 */
void
ghl_auth_location_token(GhlConnection *conn, GhlOptions *options,
						GhlToken *token)
{
	GhlRequest	request = {0};
	StringInfoData body;
	GhlTokenResponse answer;
	TimestampTz now = GetCurrentTimestamp();

	if (token->company_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("the token endpoint of GHL server \"%s\" did not name the company of the Company token",
						options->server_name),
				 errhint("Use user_type 'Company' only with an agency-level app.")));

	initStringInfo(&body);
	append_form_field(&body, "companyId", token->company_id);
	append_form_field(&body, "locationId", options->location_id);

	request.path = "/oauth/locationToken";
	request.api_version = GHL_DEFAULT_API_VERSION;
	request.authenticated = true;
	request.idempotent = true;	/* asking twice costs only a token */
	bearer_override = token->agency_token;
	PG_TRY();
	{
		token_request(conn, options, &request, &body, &answer);
	}
	PG_FINALLY();
	{
		bearer_override = NULL;
	}
	PG_END_TRY();

	token->expires_at = check_token_answer(options, &answer, now);
	token->access_token = answer.access_token;
	token->location_id = answer.location_id ? answer.location_id
		: options->location_id;
	if (answer.scope != NULL)
		token->scopes = answer.scope;
	token->last_refresh = now;
}

/* Replace a cached string, wiping the old one: it may be a token. */
static void
cache_set_string(char **field, const char *value)
{
	if (*field != NULL)
	{
		explicit_bzero(*field, strlen(*field));
		pfree(*field);
	}
	*field = value ? MemoryContextStrdup(TopMemoryContext, value) : NULL;
}

/*
 * This backend's cache entry for the mapping.  An entry grown from other
 * seed credentials (ALTER USER MAPPING) is emptied first.
 */
static GhlCachedToken *
cache_entry(GhlOptions *options)
{
	GhlCachedToken *entry;
	char	   *fingerprint = ghl_auth_seed_fingerprint(options);
	bool		found;

	if (TokenCache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(GhlCachedToken);
		TokenCache = hash_create("ghl_fdw tokens", 8, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(TokenCache, &options->umid, HASH_ENTER, &found);
	if (!found)
	{
		entry->access_token = NULL;
		entry->scopes = NULL;
		entry->fingerprint[0] = '\0';
	}
	if (strcmp(entry->fingerprint, fingerprint) != 0)
	{
		cache_set_string(&entry->access_token, NULL);
		cache_set_string(&entry->scopes, NULL);
		entry->expires_at = 0;
		entry->rejected = false;
		entry->last_refresh = 0;
		strlcpy(entry->fingerprint, fingerprint, sizeof(entry->fingerprint));
	}
	pfree(fingerprint);
	return entry;
}

/*
 * Read the store's row of the mapping; false when there is none, or its
 * tokens grew from other seed credentials than the mapping's.
 */
static bool
stored_token(GhlOptions *options, GhlToken *token)
{
	char	   *fingerprint = ghl_auth_seed_fingerprint(options);

	return ghl_store_read(options->umid, token) &&
		token->seed_fingerprint != NULL &&
		strcmp(token->seed_fingerprint, fingerprint) == 0;
}

/*
 * Whether the store already holds a token this backend may use; fills
 * *token when it does.  Reading is cheap, so this is tried before any
 * token worker is started.
 */
static bool
stored_token_usable(GhlOptions *options, const char *rejected,
					GhlToken *token)
{
	return stored_token(options, token) &&
		ghl_auth_token_usable(options, token, rejected);
}

/*
 * Fill the cache entry with a usable token: the stored one if it will do,
 * else one from a token worker.  Backends queue on a lock of the mapping
 * and look at the store again once they hold it, so when many need a new
 * token at once, one worker refreshes and the others reuse its result.
 */
static void
obtain_token(GhlOptions *options, GhlCachedToken *entry)
{
	char	   *rejected = entry->rejected && entry->access_token ?
		pstrdup(entry->access_token) : NULL;
	GhlToken	token;

	if (!stored_token_usable(options, rejected, &token))
	{
		LOCKTAG		tag;

		ghl_store_lock(options->umid, GHL_STORE_LOCK_LAUNCH, &tag);
		PG_TRY();
		{
			if (!stored_token_usable(options, rejected, &token))
				ghl_token_worker_run(options, rejected, false, &token);
		}
		PG_FINALLY();
		{
			ghl_store_unlock(&tag);
		}
		PG_END_TRY();
	}

	cache_set_string(&entry->access_token, token.access_token);
	cache_set_string(&entry->scopes, token.scopes);
	entry->expires_at = token.expires_at;
	entry->rejected = false;
	entry->last_refresh = token.last_refresh;
	if (rejected != NULL)
	{
		explicit_bzero(rejected, strlen(rejected));
		pfree(rejected);
	}
	if (token.access_token != NULL)
		explicit_bzero(token.access_token, strlen(token.access_token));
}

/* Whether a stored Company token is there and outlives the refresh margin. */
bool
ghl_auth_agency_usable(const GhlToken *token)
{
	return token->agency_token != NULL &&
		token->agency_expires_at >
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									GHL_TOKEN_REFRESH_MARGIN_MS);
}

/* Whether the store holds a Company token the mapping may use. */
static bool
stored_agency_usable(GhlOptions *options, GhlToken *token)
{
	return stored_token(options, token) && ghl_auth_agency_usable(token);
}

/*
 * The Company token of a Company mapping, for requests only an agency may
 * make (GET /oauth/installedLocations), renewed single flight like any
 * token when it is about to expire; *company_id is the company it belongs
 * to, which such requests name.  Send it with ghl_auth_agency_execute()
 * and wipe it after.
 */
char *
ghl_auth_agency_token(GhlOptions *options, char **company_id)
{
	GhlToken	token;

	if (options->auth_mode == GHL_AUTH_ACCESS_TOKEN ||
		strcmp(options->user_type, "Company") != 0 ||
		OidIsValid(options->agency_serverid))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("the user mapping for GHL server \"%s\" has no Company OAuth credentials",
						options->server_name),
				 errhint("Set client_id and client_secret (with refresh_token for OAuth installs) and user_type 'Company' in the user mapping.")));

	if (!stored_agency_usable(options, &token))
	{
		LOCKTAG		tag;

		ghl_store_lock(options->umid, GHL_STORE_LOCK_LAUNCH, &tag);
		PG_TRY();
		{
			if (!stored_agency_usable(options, &token))
			{
				ghl_token_worker_run(options, NULL, true, &token);
				token.agency_token = token.access_token;
			}
		}
		PG_FINALLY();
		{
			ghl_store_unlock(&tag);
		}
		PG_END_TRY();
	}
	*company_id = token.company_id;
	return token.agency_token;
}

/* Perform a request with a token of ghl_auth_agency_token() as Bearer. */
void
ghl_auth_agency_execute(GhlConnection *conn, const char *agency_token,
						GhlRequest *request, GhlResponse *response)
{
	request->authenticated = true;
	bearer_override = agency_token;
	PG_TRY();
	{
		ghl_http_execute(conn, request, response, NULL);
	}
	PG_FINALLY();
	{
		bearer_override = NULL;
	}
	PG_END_TRY();
}

/*
 * The token to send with a request.  A Private Integration Token is used
 * as it is; an OAuth token comes from this backend's cache while it is
 * fresh, else from the store or a refresh.
 */
const char *
ghl_auth_bearer(GhlConnection *conn, GhlOptions *options)
{
	GhlCachedToken *entry;
	TimestampTz margin_end;

	if (bearer_override != NULL)
		return bearer_override;
	if (options->auth_mode == GHL_AUTH_ACCESS_TOKEN)
		return options->access_token;

	entry = cache_entry(options);
	margin_end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 GHL_TOKEN_REFRESH_MARGIN_MS);
	if (entry->access_token == NULL || entry->rejected ||
		entry->expires_at <= margin_end)
		obtain_token(options, entry);
	return entry->access_token;
}

/*
 * Forget a cached token after the API rejected it.  Returns whether asking
 * again can bring a different token: an OAuth token can be refreshed, a
 * static token cannot, and neither can the Company token of a location
 * token request.
 */
bool
ghl_auth_forget(GhlOptions *options)
{
	GhlCachedToken *entry;

	if (options->auth_mode == GHL_AUTH_ACCESS_TOKEN || bearer_override != NULL)
		return false;
	entry = cache_entry(options);
	if (entry->access_token == NULL)
		return false;
	entry->rejected = true;
	return true;
}

/*
 * What this backend knows of the mapping's OAuth token, without the token
 * itself: its expiry, scopes and last refresh, for ghl_fdw.check().  With
 * "renew", a new token is obtained even while the current one is good,
 * which proves that refreshing works; if that fails, the current token
 * stays in use, since it still works until it expires.
 */
void
ghl_auth_describe(GhlConnection *conn, GhlOptions *options, bool renew,
				  GhlToken *state)
{
	GhlCachedToken *entry;

	Assert(options->auth_mode != GHL_AUTH_ACCESS_TOKEN);
	(void) ghl_auth_bearer(conn, options);
	entry = cache_entry(options);
	if (renew)
	{
		entry->rejected = true;
		PG_TRY();
		{
			obtain_token(options, entry);
		}
		PG_CATCH();
		{
			entry->rejected = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	memset(state, 0, sizeof(GhlToken));
	state->expires_at = entry->expires_at;
	state->scopes = entry->scopes ? pstrdup(entry->scopes) : NULL;
	state->last_refresh = entry->last_refresh;
}

/* Whether a space-separated scope list names scope. */
bool
ghl_scope_listed(const char *scopes, const char *scope)
{
	size_t		len = strlen(scope);
	const char *p = scopes;

	while (*p)
	{
		size_t		n = strcspn(p, " ");

		if (n == len && strncmp(p, scope, len) == 0)
			return true;
		p += n;
		p += strspn(p, " ");
	}
	return false;
}

/*
 * Fail before any request when the token is known to lack a scope the
 * request needs (writes need contacts.write), or it is a write scope and
 * the server is read_only.
 * Scopes of a static token are unknown, so the API decides for those.
 */
void
ghl_auth_require_scope(GhlConnection *conn, GhlOptions *options,
					   const char *scope)
{
	GhlCachedToken *entry;
	size_t		len = strlen(scope);

	if (options->read_only && len >= 6 && strcmp(scope + len - 6, ".write") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("GHL server \"%s\" is read_only", options->server_name),
				 errhint("ALTER SERVER %s OPTIONS (SET read_only 'false') to allow writes.",
						 options->server_name)));
	if (options->auth_mode == GHL_AUTH_ACCESS_TOKEN)
		return;

	(void) ghl_auth_bearer(conn, options);
	entry = cache_entry(options);
	if (entry->scopes != NULL && !ghl_scope_listed(entry->scopes, scope))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the token for GHL server \"%s\" lacks the scope \"%s\"",
						options->server_name, scope),
				 errdetail("The token's scopes are: %s.", entry->scopes),
				 errhint("Add the scope to the app, authorize it again and set the new credentials in the user mapping.")));
}

/*
 * The options of a server for the SQL functions below, which act for the
 * current user: only a role that may use the server, with a user mapping
 * for it, gets to look at its token or make it refresh.
 */
GhlOptions *
ghl_caller_options(text *server_name)
{
	ForeignServer *server = GetForeignServerByName(text_to_cstring(server_name),
												   false);
	AclResult	aclresult = pg_foreign_server_aclcheck(server->serverid,
													   GetUserId(), ACL_USAGE);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);
	return ghl_get_options(server->serverid, GetUserId());
}

/*
 * SQL: ghl_fdw.require_scope(server_name, scope).  The check writes make
 * before their first request, callable on its own so scripts can find a
 * token without the scope before they start.
 */
Datum
ghl_fdw_require_scope(PG_FUNCTION_ARGS)
{
	GhlOptions *options = ghl_caller_options(PG_GETARG_TEXT_PP(0));

	ghl_auth_require_scope(ghl_get_connection(options), options,
						   text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

/* A space-separated list as text[]. */
static Datum
scopes_array(const char *scopes)
{
	List	   *items = NIL;
	Datum	   *elems;
	const char *p = scopes;
	int			n = 0;
	ListCell   *lc;

	while (*p)
	{
		size_t		len = strcspn(p, " ");

		if (len > 0)
			items = lappend(items, cstring_to_text_with_len(p, len));
		p += len;
		p += strspn(p, " ");
	}
	elems = palloc(sizeof(Datum) * Max(list_length(items), 1));
	foreach(lc, items)
		elems[n++] = PointerGetDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * SQL: ghl_fdw.token_status(server_name).  What an operator needs to know
 * about the current user's token on a server, and never a secret: the
 * mode, user type, location and company, scopes, expiry and last refresh.
 * It only reads; it never asks the API for a token.
 */
Datum
ghl_fdw_token_status(PG_FUNCTION_ARGS)
{
	GhlOptions *options = ghl_caller_options(PG_GETARG_TEXT_PP(0));
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};
	GhlToken	token;
	bool		stored = false;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (options->auth_mode != GHL_AUTH_ACCESS_TOKEN)
		stored = stored_token(options, &token);

	values[0] = CStringGetTextDatum(options->auth_mode == GHL_AUTH_ACCESS_TOKEN ?
									"access_token" :
									options->auth_mode == GHL_AUTH_REFRESH_TOKEN ?
									"refresh_token" : "client_credentials");
	values[1] = CStringGetTextDatum(stored && token.user_type ?
									token.user_type : options->user_type);
	values[2] = CStringGetTextDatum(stored && token.location_id ?
									token.location_id : options->location_id);
	nulls[3] = !stored || token.company_id == NULL;
	if (!nulls[3])
		values[3] = CStringGetTextDatum(token.company_id);
	nulls[4] = !stored || token.scopes == NULL;
	if (!nulls[4])
		values[4] = scopes_array(token.scopes);
	nulls[5] = !stored || token.expires_at == 0;
	if (!nulls[5])
		values[5] = TimestampTzGetDatum(token.expires_at);
	nulls[6] = !stored || token.last_refresh == 0;
	if (!nulls[6])
		values[6] = TimestampTzGetDatum(token.last_refresh);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
