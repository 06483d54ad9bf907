/*-------------------------------------------------------------------------
 *
 * auth.c
 *		  Bearer tokens for GHL requests.
 *
 * IDENTIFICATION
 *		  src/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

/*
 * The token to send with a request.  A Private Integration Token is used
 * as it is; the OAuth modes are not available yet.
 */
const char *
ghl_auth_bearer(GhlConnection *conn, GhlOptions *options)
{
	if (options->auth_mode != GHL_AUTH_ACCESS_TOKEN)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("OAuth user mappings are not supported yet on GHL server \"%s\"",
						options->server_name),
				 errhint("Use a Private Integration Token as access_token.")));
	return options->access_token;
}

/*
 * Forget a cached token after the API rejected it.  Returns whether asking
 * again can bring a different token; a static token cannot.
 */
bool
ghl_auth_forget(GhlOptions *options)
{
	return false;
}

/*
 * Fail before any request when the token is known to lack a scope the
 * request needs (writes need contacts.write).  Scopes of a static token
 * are unknown, so the API decides for those.
 */
void
ghl_auth_require_scope(GhlConnection *conn, GhlOptions *options,
					   const char *scope)
{
}
