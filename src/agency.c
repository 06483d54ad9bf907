/*-------------------------------------------------------------------------
 *
 * agency.c
 *		  The installs of an agency's app: one page of
 *		  GET /oauth/installedLocations, for create_location_servers().
 *
 * An agency server holds the Company credentials once; its location
 * servers (server option agency_server, user mappings with from_agency)
 * buy their tokens with its Company token (auth.c, token_worker.c).  The
 * list of locations where the app is installed needs the Company token
 * itself, which never leaves this backend: only the API's answer does.
 *
 * IDENTIFICATION
 *		  src/agency.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

/* the largest page asked for; the API's default is 20 */
#define GHL_INSTALLS_MAX_PAGE	100

PG_FUNCTION_INFO_V1(ghl_fdw_installed_locations_page);

/*
 * The app's id, which the API wants besides the company: the agency
 * server's option app_id.
 */
static char *
agency_app_id(GhlOptions *options)
{
	ListCell   *cell;

	foreach(cell, GetForeignServer(options->serverid)->options)
	{
		DefElem    *def = lfirst_node(DefElem, cell);

		if (strcmp(def->defname, "app_id") == 0)
			return defGetString(def);
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
			 errmsg("GHL server \"%s\" has no app_id", options->server_name),
			 errhint("ALTER SERVER %s OPTIONS (ADD app_id '...'), the id of the marketplace app whose installs to list.",
					 quote_identifier(options->server_name))));
	return NULL;				/* keep the compiler quiet */
}

/*
 * SQL: ghl_fdw._installed_locations_page(agency_server, skip, page_size).
 * One page of the locations where the agency's app is installed, as the
 * API answers it (GetInstalledLocationsSuccessfulResponseDto: locations
 * and count), for the current user's Company mapping on the server.  Like
 * token_status(), it needs USAGE on the server and a user mapping.
 */
Datum
ghl_fdw_installed_locations_page(PG_FUNCTION_ARGS)
{
	GhlOptions *options = ghl_caller_options(PG_GETARG_TEXT_PP(0));
	int32		skip = PG_GETARG_INT32(1);
	int32		page_size = PG_GETARG_INT32(2);
	char	   *app_id = agency_app_id(options);
	GhlConnection *conn;
	GhlRequest	request = {0};
	GhlResponse response;
	char	   *company_id;
	char	   *token;

	if (skip < 0 || page_size < 1 || page_size > GHL_INSTALLS_MAX_PAGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skip must be at least 0 and page_size from 1 to %d",
						GHL_INSTALLS_MAX_PAGE)));

	conn = ghl_get_connection(options);
	token = ghl_auth_agency_token(options, &company_id);
	if (company_id == NULL || company_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("the token endpoint of GHL server \"%s\" did not name the company of the Company token",
						options->server_name),
				 errhint("Use user_type 'Company' only with an agency-level app.")));

	request.method = "GET";
	request.path = psprintf("/oauth/installedLocations?companyId=%s&appId=%s"
							"&isInstalled=true&skip=%d&limit=%d",
							ghl_url_escape(company_id), ghl_url_escape(app_id),
							skip, page_size);
	request.api_version = GHL_DEFAULT_API_VERSION;
	request.idempotent = true;
	PG_TRY();
	{
		ghl_auth_agency_execute(conn, token, &request, &response);
	}
	PG_FINALLY();
	{
		explicit_bzero(token, strlen(token));
	}
	PG_END_TRY();
	if (response.status != 200)
		ghl_report_http_error(conn, &request, &response);

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(response.data)));
}
