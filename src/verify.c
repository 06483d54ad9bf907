/*-------------------------------------------------------------------------
 *
 * verify.c
 *		  ghl_fdw.verify(): does the Rankr data still equal the API's?
 *
 * A daily check that catches drift nobody else would notice (a missed
 * webhook, an edit the watermark could not see, a row changed by hand).
 * It re-reads from the API, by id, a random sample of the synced contacts,
 * and the contacts updated most recently upstream (where new records
 * appear); then the tasks, notes and appointments of all those contacts,
 * through their per-contact lists.  Every record seen on either side is
 * compared column by column, with the same conversion sync uses: it
 * matches, differs (and in which columns), or is missing on one side.
 *
 * A column some endpoint does not carry (the "status" of an appointment
 * read through the calendars) is not a difference while the table does
 * not know it, and an appointment upstream beyond the sync horizon is not
 * missing from a table that syncs through the calendars.
 *
 * IDENTIFICATION
 *		  src/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* the most records verify() samples per resource */
#define GHL_VERIFY_MAX_SAMPLE	10000

/* what verify() found for one resource */
typedef struct GhlVerifyTally
{
	int64		checked;
	int64		matching;
	int64		differing;
	int64		missing_here;	/* upstream, not in the table */
	int64		missing_there;	/* in the table, gone upstream */
	List	   *columns;		/* names of columns that differed */
} GhlVerifyTally;

/* A request's purpose, as its tag. */
typedef struct GhlVerifyRequest
{
	GhlResourceKind resource;	/* contacts by id or by search; children */
	bool		search;			/* the contacts updated most recently */
	char	   *contact_id;		/* whose children, or which contact */
} GhlVerifyRequest;

/* the endpoint listing a contact's rows of each child resource */
static const GhlEndpointKind child_endpoints[GHL_NUM_RESOURCES] = {
	GHL_NUM_ENDPOINTS, GHL_EP_TASKS_OF_CONTACT, GHL_EP_NOTES_OF_CONTACT,
	GHL_EP_APPOINTMENTS_OF_CONTACT
};

/* fields an endpoint may lack: a table that does not know them is not wrong */
static const char *const sometimes_absent[] = {"status"};

PG_FUNCTION_INFO_V1(ghl_fdw_verify);

/*
 * Compare row i of "there" (the API's) with row j of "here" (the
 * table's), column by column, and count the result.
 */
static void
compare_rows(GhlVerifyTally *tally, GhlTarget *target, GhlRows *there, int i,
			 GhlRows *here, int j)
{
	bool		differs = false;
	int			c;
	int			k;

	for (c = 0; c < ghl_target_ncolumns(target); c++)
	{
		bool		known_there;
		bool		known_here;
		char	   *a = ghl_rows_text(there, i, c, &known_there);
		char	   *b = ghl_rows_text(here, j, c, &known_here);
		const char *name = ghl_target_column(target, c);
		bool		unknown_here = false;

		for (k = 0; k < lengthof(sometimes_absent); k++)
			unknown_here |= b == NULL && strcmp(name, sometimes_absent[k]) == 0;
		if (!known_there || unknown_here)
			continue;
		if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
		{
			differs = true;
			if (!list_member(tally->columns, makeString((char *) name)))
				tally->columns = lappend(tally->columns, makeString((char *) name));
		}
	}
	tally->checked++;
	if (differs)
		tally->differing++;
	else
		tally->matching++;
}

/*
 * The time window outside of which an upstream record the table lacks is
 * not missing, because syncs do not keep it: appointments beyond the sync
 * horizon.  column NULL: no window.
 */
typedef struct GhlVerifyWindow
{
	const char *column;
	TimestampTz from;
	TimestampTz to;
} GhlVerifyWindow;

/*
 * Compare two sets of rows of one resource by id: a row on one side only
 * is missing on the other.  there_complete says the API side lists every
 * record the here side could hold (a contact's children), so that a row
 * only here is gone upstream.
 */
static void
compare_sets(GhlVerifyTally *tally, GhlTarget *target, GhlRows *there,
			 GhlRows *here, bool there_complete, const GhlVerifyWindow *window)
{
	HTAB	   *index;
	HASHCTL		ctl;
	bool	   *matched = palloc0(sizeof(bool) * Max(ghl_rows_count(here), 1));
	int			i;

	ctl.keysize = NAMEDATALEN * 2;
	ctl.entrysize = NAMEDATALEN * 2 + sizeof(int);
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("ghl_fdw verify", Max(ghl_rows_count(here), 16), &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (i = 0; i < ghl_rows_count(here); i++)
	{
		char		key[NAMEDATALEN * 2] = {0};
		char	   *entry;

		strlcpy(key, ghl_rows_id(here, i), sizeof(key));
		entry = hash_search(index, key, HASH_ENTER, NULL);
		*(int *) (entry + NAMEDATALEN * 2) = i;
	}
	for (i = 0; i < ghl_rows_count(there); i++)
	{
		char		key[NAMEDATALEN * 2] = {0};
		char	   *entry;

		strlcpy(key, ghl_rows_id(there, i), sizeof(key));
		entry = hash_search(index, key, HASH_FIND, NULL);
		if (entry == NULL)
		{
			if (window->column != NULL)
			{
				TimestampTz at = ghl_rows_time(there, i, window->column);

				if (at != 0 && (at < window->from || at > window->to))
					continue;
			}
			tally->checked++;
			tally->missing_here++;
			continue;
		}
		matched[*(int *) (entry + NAMEDATALEN * 2)] = true;
		compare_rows(tally, target, there, i, here, *(int *) (entry + NAMEDATALEN * 2));
	}
	for (i = 0; there_complete && i < ghl_rows_count(here); i++)
	{
		if (!matched[i])
		{
			tally->checked++;
			tally->missing_there++;
		}
	}
	hash_destroy(index);
}

/* list_sort() comparator of String nodes */
static int
compare_names(const ListCell *a, const ListCell *b)
{
	return strcmp(strVal(lfirst(a)), strVal(lfirst(b)));
}

/*
 * ghl_fdw.verify(server_name, sample): one row per resource, what a
 * sample of up to "sample" contacts (and their children) shows.
 */
Datum
ghl_fdw_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			serverid;
	int			sample;
	GhlOptions *options;
	GhlTarget  *targets[GHL_NUM_RESOURCES];
	GhlRows    *there[GHL_NUM_RESOURCES];
	GhlRows    *sampled;
	GhlVerifyTally tally[GHL_NUM_RESOURCES];
	GhlConnection *conn;
	GhlMulti   *multi;
	GhlRequestStats stats = {0};
	GhlResponse response;
	void	   *tag;
	List	   *contacts = NIL;	/* whose children are compared */
	List	   *sampled_ids = NIL;	/* String nodes */
	int			r;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server_name and sample must not be NULL")));
	serverid = ghl_sync_server(PG_GETARG_TEXT_PP(0));
	sample = PG_GETARG_INT32(1);
	if (sample < 1 || sample > GHL_VERIFY_MAX_SAMPLE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample must be between 1 and %d", GHL_VERIFY_MAX_SAMPLE)));
	options = ghl_get_options(serverid, GetUserId());
	memset(tally, 0, sizeof(tally));
	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		targets[r] = ghl_target_open(options->sync_schema,
									 ghl_resource_by_name(ghl_sync_resource_name(r)),
									 false, CurrentMemoryContext);
		there[r] = ghl_rows_new(targets[r], options->location_id, NULL);
	}

	conn = ghl_get_connection(options);
	multi = ghl_multi_start(conn, options->max_concurrency, &stats);

	/* a random sample of the table's contacts, each read again by id */
	sampled = ghl_target_read(targets[GHL_RESOURCE_CONTACTS], options->location_id,
							  NULL, NIL, sample);
	for (i = 0; i < ghl_rows_count(sampled); i++)
	{
		GhlVerifyRequest *vreq = palloc0(sizeof(GhlVerifyRequest));
		GhlRequest	request = {0};
		const GhlEndpoint *ep = ghl_endpoint(GHL_EP_CONTACT_BY_ID);

		vreq->resource = GHL_RESOURCE_CONTACTS;
		vreq->contact_id = ghl_rows_id(sampled, i);
		sampled_ids = lappend(sampled_ids, makeString(vreq->contact_id));
		request.method = ep->method;
		request.path = ghl_request_path(ep, NULL, vreq->contact_id, options->server_name);
		request.api_version = options->api_version;
		request.authenticated = true;
		request.idempotent = true;
		ghl_multi_add(multi, &request, vreq);
	}
	/* ... and the contacts updated most recently upstream */
	{
		GhlVerifyRequest *vreq = palloc0(sizeof(GhlVerifyRequest));
		GhlRequest	request = {0};

		vreq->resource = GHL_RESOURCE_CONTACTS;
		vreq->search = true;
		request.method = "POST";
		request.path = ghl_endpoint(GHL_EP_CONTACTS_SEARCH)->path;
		request.api_version = options->api_version;
		request.body = ghl_json_search_body(options->location_id,
											Min(sample, GHL_SEARCH_MAX_PAGE), NULL,
											NIL, NULL, "dateUpdated", true);
		request.authenticated = true;
		request.idempotent = true;
		ghl_multi_add(multi, &request, vreq);
	}

	while (ghl_multi_next(multi, &response, &tag))
	{
		GhlVerifyRequest *vreq = tag;
		const GhlEndpoint *ep;
		GhlJsonPage *page;
		List	   *ids;

		if (vreq->resource != GHL_RESOURCE_CONTACTS)
		{
			/* a contact's children: all of them, or none when it is gone */
			ep = ghl_endpoint(child_endpoints[vreq->resource]);
			if (response.status == 404)
				continue;
			page = ghl_json_parse_page(response.data, response.len, ep->response_key,
									   false, options->server_name);
			for (i = 0; i < ghl_json_page_rows(page); i++)
				ghl_rows_add_json(there[vreq->resource], page, i, false,
								  vreq->contact_id, 0);
			continue;
		}

		ep = ghl_endpoint(vreq->search ? GHL_EP_CONTACTS_SEARCH : GHL_EP_CONTACT_BY_ID);
		if (response.status == 404)
		{
			tally[GHL_RESOURCE_CONTACTS].checked++;
			tally[GHL_RESOURCE_CONTACTS].missing_there++;
			continue;
		}
		page = ghl_json_parse_page(response.data, response.len, ep->response_key,
								   ep->single_object, options->server_name);
		ids = ghl_json_page_strings(page, "id");
		for (i = 0; i < ghl_json_page_rows(page); i++)
		{
			char	   *id = list_nth(ids, i);

			/*
			 * Each contact once, however it was found.  The answers come in
			 * any order, so a sampled contact is always taken from its own
			 * answer by id, never from the search: the search index lags
			 * behind, and a contact gone by id stays gone.
			 */
			if (id == NULL || list_member(contacts, makeString(id)) ||
				(vreq->search && list_member(sampled_ids, makeString(id))))
				continue;
			ghl_rows_add_json(there[GHL_RESOURCE_CONTACTS], page, i, vreq->search, NULL, 0);
			{
				/* a contact seen upstream: compare its children too */
				contacts = lappend(contacts, makeString(id));
				for (r = GHL_RESOURCE_TASKS; r < GHL_NUM_RESOURCES; r++)
				{
					GhlVerifyRequest *child = palloc0(sizeof(GhlVerifyRequest));
					GhlRequest	request = {0};

					child->resource = r;
					child->contact_id = id;
					ep = ghl_endpoint(child_endpoints[r]);
					request.method = ep->method;
					request.path = ghl_request_path(ep, id, NULL, options->server_name);
					request.api_version = ep->api_version ? ep->api_version :
						options->api_version;
					request.authenticated = true;
					request.idempotent = true;
					ghl_multi_add(multi, &request, child);
				}
			}
		}
	}
	ghl_multi_finish(multi);

	/*
	 * The contacts read upstream against the table's (a sampled contact the
	 * API no longer has was counted already); their children against the
	 * table's children of the same contacts.
	 */
	{
		List	   *ids = NIL;
		ListCell   *lc;
		GhlSyncSettings settings;
		GhlVerifyWindow no_window = {0};
		GhlVerifyWindow horizon = {0};
		TimestampTz now = GetCurrentTimestamp();

		ghl_sync_settings(options->server_name, &settings);
		if (!settings.appointments_by_contact)
		{
			horizon.column = "start_time";
			horizon.from = now - settings.appointments_back_ms * 1000;
			horizon.to = now + settings.appointments_ahead_ms * 1000;
		}
		foreach(lc, contacts)
			ids = lappend(ids, strVal(lfirst(lc)));
		compare_sets(&tally[GHL_RESOURCE_CONTACTS], targets[GHL_RESOURCE_CONTACTS],
					 there[GHL_RESOURCE_CONTACTS],
					 ghl_target_read(targets[GHL_RESOURCE_CONTACTS], options->location_id,
									 "id", ids, 0),
					 false, &no_window);
		for (r = GHL_RESOURCE_TASKS; r < GHL_NUM_RESOURCES && ids != NIL; r++)
			compare_sets(&tally[r], targets[r], there[r],
						 ghl_target_read(targets[r], options->location_id,
										 "contact_id", ids, 0),
						 true, r == GHL_RESOURCE_APPOINTMENTS ? &horizon : &no_window);
	}

	InitMaterializedSRF(fcinfo, 0);
	for (r = 0; r < GHL_NUM_RESOURCES; r++)
	{
		Datum		values[7];
		bool		nulls[7] = {0};
		Datum	   *names = palloc(sizeof(Datum) * Max(list_length(tally[r].columns), 1));
		ListCell   *lc;

		list_sort(tally[r].columns, compare_names);
		foreach(lc, tally[r].columns)
			names[foreach_current_index(lc)] = CStringGetTextDatum(strVal(lfirst(lc)));
		values[0] = CStringGetTextDatum(ghl_sync_resource_name(r));
		values[1] = Int64GetDatum(tally[r].checked);
		values[2] = Int64GetDatum(tally[r].matching);
		values[3] = Int64GetDatum(tally[r].differing);
		values[4] = Int64GetDatum(tally[r].missing_here);
		values[5] = Int64GetDatum(tally[r].missing_there);
		values[6] = PointerGetDatum(construct_array(names, list_length(tally[r].columns),
													TEXTOID, -1, false, TYPALIGN_INT));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
