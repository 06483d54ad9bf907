/*-------------------------------------------------------------------------
 *
 * resource.c
 *		  The table-driven map of each GHL resource: its endpoints, its
 *		  standard columns and the JSON fields behind them.
 *
 * Adding a column is one line in a column table; adding an endpoint is one
 * line in the endpoint table.  Nothing else in the FDW knows a path.
 *
 * IDENTIFICATION
 *		  src/resource.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "utils/lsyscache.h"

static const GhlColumnDef contact_columns[] = {
	{"id", "text", "id", NULL},
	{"location_id", "text", "locationId", NULL},
	{"first_name", "text", "firstName", NULL},
	{"last_name", "text", "lastName", NULL},
	{"name", "text", "name", NULL},
	{"email", "text", "email", NULL},
	{"phone", "text", "phone", NULL},
	{"company_name", "text", "companyName", NULL},
	{"source", "text", "source", NULL},
	{"type", "text", "type", NULL},
	{"assigned_to", "text", "assignedTo", NULL},
	{"address1", "text", "address1", "address"},
	{"city", "text", "city", NULL},
	{"state", "text", "state", NULL},
	{"postal_code", "text", "postalCode", NULL},
	{"country", "text", "country", NULL},
	{"website", "text", "website", NULL},
	{"timezone", "text", "timezone", NULL},
	{"dnd", "boolean", "dnd", NULL},
	{"tags", "text[]", "tags", NULL},
	{"custom_fields", "jsonb", "customFields", NULL},
	{"business_id", "text", "businessId", NULL},
	{"date_added", "timestamptz", "dateAdded", NULL},
	{"date_updated", "timestamptz", "dateUpdated", NULL},
	{"raw", "jsonb", NULL, NULL},
};

static const GhlColumnDef task_columns[] = {
	{"id", "text", "id", NULL},
	{"contact_id", "text", "contactId", NULL},
	{"title", "text", "title", NULL},
	{"body", "text", "body", NULL},
	{"assigned_to", "text", "assignedTo", NULL},
	{"due_date", "timestamptz", "dueDate", NULL},
	{"completed", "boolean", "completed", NULL},
	{"raw", "jsonb", NULL, NULL},
};

static const GhlColumnDef note_columns[] = {
	{"id", "text", "id", NULL},
	{"contact_id", "text", "contactId", NULL},
	{"body", "text", "body", NULL},
	{"user_id", "text", "userId", NULL},
	{"date_added", "timestamptz", "dateAdded", NULL},
	{"raw", "jsonb", NULL, NULL},
};

static const GhlColumnDef appointment_columns[] = {
	{"id", "text", "id", NULL},
	{"contact_id", "text", "contactId", NULL},
	{"calendar_id", "text", "calendarId", NULL},
	{"location_id", "text", "locationId", NULL},
	{"title", "text", "title", NULL},
	{"status", "text", "status", NULL},
	{"appointment_status", "text", "appointmentStatus", NULL},
	{"assigned_user_id", "text", "assignedUserId", NULL},
	{"address", "text", "address", NULL},
	{"notes", "text", "notes", NULL},
	{"start_time", "timestamptz", "startTime", NULL},
	{"end_time", "timestamptz", "endTime", NULL},
	{"date_added", "timestamptz", "dateAdded", NULL},
	{"date_updated", "timestamptz", "dateUpdated", NULL},
	{"raw", "jsonb", NULL, NULL},
};

/*
 * kind, method, path, needs contact id, needs id, Version (NULL: the
 * server's), response key, one object, 404 is empty, paging, search fields,
 * location in path
 */
static const GhlEndpoint endpoints[GHL_NUM_ENDPOINTS] = {
	[GHL_EP_CONTACTS_SEARCH] = {
		GHL_EP_CONTACTS_SEARCH, "POST", "/contacts/search", false, false, NULL,
		"contacts", false, false, GHL_PAGING_SEARCH_AFTER, true
	},
	[GHL_EP_CONTACT_BY_ID] = {
		GHL_EP_CONTACT_BY_ID, "GET", "/contacts/%s", false, true, NULL,
		"contact", true, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_TASKS_OF_CONTACT] = {
		GHL_EP_TASKS_OF_CONTACT, "GET", "/contacts/%s/tasks", true, false, NULL,
		"tasks", false, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_TASK_BY_ID] = {
		GHL_EP_TASK_BY_ID, "GET", "/contacts/%s/tasks/%s", true, true, NULL,
		"task", true, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_NOTES_OF_CONTACT] = {
		GHL_EP_NOTES_OF_CONTACT, "GET", "/contacts/%s/notes", true, false, NULL,
		"notes", false, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_NOTE_BY_ID] = {
		GHL_EP_NOTE_BY_ID, "GET", "/contacts/%s/notes/%s", true, true, NULL,
		"note", true, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_APPOINTMENTS_OF_CONTACT] = {
		GHL_EP_APPOINTMENTS_OF_CONTACT, "GET", "/contacts/%s/appointments", true, false, NULL,
		"events", false, true, GHL_PAGING_NONE, false
	},
	[GHL_EP_CONTACTS_OF_BUSINESS] = {
		GHL_EP_CONTACTS_OF_BUSINESS, "GET", "/contacts/business/%s", false, true, NULL,
		"contacts", false, false, GHL_PAGING_SKIP, false
	},
	[GHL_EP_TASKS_SEARCH] = {
		GHL_EP_TASKS_SEARCH, "POST", "/locations/%s/tasks/search", false, false, NULL,
		"tasks", false, false, GHL_PAGING_SKIP, false, true
	},
	[GHL_EP_CALENDARS] = {
		GHL_EP_CALENDARS, "GET", "/calendars/", false, false, GHL_CALENDAR_API_VERSION,
		"calendars", false, false, GHL_PAGING_NONE, false
	},
	[GHL_EP_CALENDAR_EVENTS] = {
		GHL_EP_CALENDAR_EVENTS, "GET", "/calendars/events", false, false, GHL_CALENDAR_API_VERSION,
		"events", false, false, GHL_PAGING_NONE, false
	},
	[GHL_EP_CUSTOM_FIELDS] = {
		GHL_EP_CUSTOM_FIELDS, "GET", "/locations/%s/customFields", false, false, NULL,
		"customFields", false, false, GHL_PAGING_NONE, false, true
	},
	[GHL_EP_APPOINTMENT_BY_ID] = {
		GHL_EP_APPOINTMENT_BY_ID, "GET", "/calendars/events/appointments/%s", false, true,
		GHL_CALENDAR_API_VERSION, "event", true, true, GHL_PAGING_NONE, false
	},
};

/*
 * The conditions each endpoint answers: resource, JSON field of the column,
 * shape of the clause, endpoint, and the field's name in the request.
 * Everything else is filtered locally.
 */
static const GhlPushable pushables[] = {
	{GHL_RESOURCE_CONTACTS, "email", GHL_QUAL_TEXT_EQ, GHL_EP_CONTACTS_SEARCH, "email"},
	{GHL_RESOURCE_CONTACTS, "phone", GHL_QUAL_TEXT_EQ, GHL_EP_CONTACTS_SEARCH, "phone"},
	{GHL_RESOURCE_CONTACTS, "assignedTo", GHL_QUAL_TEXT_EQ, GHL_EP_CONTACTS_SEARCH, "assignedTo"},
	{GHL_RESOURCE_CONTACTS, "businessId", GHL_QUAL_TEXT_EQ, GHL_EP_CONTACTS_SEARCH, "businessId"},
	{GHL_RESOURCE_CONTACTS, "tags", GHL_QUAL_ARRAY_HAS, GHL_EP_CONTACTS_SEARCH, "tags"},
	{GHL_RESOURCE_CONTACTS, "dateAdded", GHL_QUAL_RANGE, GHL_EP_CONTACTS_SEARCH, "dateAdded"},
	{GHL_RESOURCE_CONTACTS, "dateUpdated", GHL_QUAL_RANGE, GHL_EP_CONTACTS_SEARCH, "dateUpdated"},
	{GHL_RESOURCE_TASKS, "completed", GHL_QUAL_BOOL_EQ, GHL_EP_TASKS_SEARCH, "completed"},
	{GHL_RESOURCE_TASKS, "assignedTo", GHL_QUAL_TEXT_EQ, GHL_EP_TASKS_SEARCH, "assignedTo"},
	{GHL_RESOURCE_APPOINTMENTS, "startTime", GHL_QUAL_RANGE, GHL_EP_CALENDAR_EVENTS, "startTime"},
};

/*
 * name, columns, endpoint listing everything, by id, by contact, and the
 * planner's guess at the number of rows (per location, or per contact)
 */
static const GhlResource resources[] = {
	{
		GHL_RESOURCE_CONTACTS, "contacts",
		contact_columns, lengthof(contact_columns),
		GHL_EP_CONTACTS_SEARCH, GHL_EP_CONTACT_BY_ID, GHL_NUM_ENDPOINTS, 10000.0
	},
	{
		GHL_RESOURCE_TASKS, "tasks",
		task_columns, lengthof(task_columns),
		GHL_EP_TASKS_SEARCH, GHL_EP_TASK_BY_ID, GHL_EP_TASKS_OF_CONTACT, 50000.0
	},
	{
		GHL_RESOURCE_NOTES, "notes",
		note_columns, lengthof(note_columns),
		GHL_NUM_ENDPOINTS, GHL_EP_NOTE_BY_ID, GHL_EP_NOTES_OF_CONTACT, 10000.0
	},
	{
		GHL_RESOURCE_APPOINTMENTS, "appointments",
		appointment_columns, lengthof(appointment_columns),
		GHL_EP_CALENDAR_EVENTS, GHL_NUM_ENDPOINTS, GHL_EP_APPOINTMENTS_OF_CONTACT, 10000.0
	},
};

const GhlResource *
ghl_resource_by_name(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(resources); i++)
	{
		if (strcmp(resources[i].name, name) == 0)
			return &resources[i];
	}
	return NULL;
}

/*
 * The resource a foreign table reads.  Without the "resource" option the
 * table's own name decides, which is what IMPORT FOREIGN SCHEMA creates.
 */
const GhlResource *
ghl_resource_for_table(Oid relid)
{
	char	   *name = ghl_get_table_option(relid, "resource");
	const GhlResource *resource;

	if (name == NULL)
		name = get_rel_name(relid);
	resource = ghl_resource_by_name(name);
	if (resource == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("foreign table \"%s\" does not name a GHL resource",
						get_rel_name(relid)),
				 errhint("ALTER FOREIGN TABLE ... OPTIONS (ADD resource '...') with one of: %s.",
						 ghl_resource_names())));
	return resource;
}

const GhlEndpoint *
ghl_endpoint(GhlEndpointKind kind)
{
	Assert(kind >= 0 && kind < GHL_NUM_ENDPOINTS);
	return &endpoints[kind];
}

const char *
ghl_resource_names(void)
{
	return "contacts, tasks, notes, appointments";
}

/*
 * Search results spell a few fields differently from GET responses; a
 * column whose field is one of them reads the search spelling there.
 */
const char *
ghl_search_field_for(const GhlResource *resource, const char *field)
{
	int			i;

	if (field == NULL)
		return NULL;
	for (i = 0; i < resource->ncolumns; i++)
	{
		const GhlColumnDef *col = &resource->columns[i];

		if (col->field && col->search_field && strcmp(col->field, field) == 0)
			return col->search_field;
	}
	return NULL;
}

/*
 * An endpoint's path with its parameters filled in as they are: escaped
 * values, or placeholders for EXPLAIN.
 */
char *
ghl_endpoint_path(const GhlEndpoint *ep, const char *contact_id, const char *id)
{
	if (ep->needs_contact && ep->needs_id)
		return psprintf(ep->path, contact_id, id);
	if (ep->needs_contact)
		return psprintf(ep->path, contact_id);
	if (ep->needs_id)
		return psprintf(ep->path, id);
	return pstrdup(ep->path);
}

/*
 * One id as a path segment, percent-encoded.  A missing or empty id is
 * refused: "/contacts/" is the list endpoint and "/contacts//tasks" no
 * endpoint at all, so an empty segment would ask the API something else
 * than the query did.
 */
static char *
path_segment(const GhlEndpoint *ep, const char *what, const char *value,
			 const char *server_name)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s in a request to GHL server \"%s\"",
						value == NULL ? "missing" : "empty", what, server_name),
				 errdetail("%s %s needs it as a path segment.", ep->method,
						   ghl_endpoint_path(ep, "{contactId}", "{id}")),
				 errhint("Every GHL record has a non-empty id; give one.")));
	return ghl_url_escape(value);
}

/*
 * The path of one request to an endpoint that takes a contact id and/or
 * an id, each percent-encoded completely.  The encoded copies are freed:
 * a scan with keys builds a path per key, thousands in a fan-out.
 */
char *
ghl_request_path(const GhlEndpoint *ep, const char *contact_id,
				 const char *id, const char *server_name)
{
	char	   *contact_segment = NULL;
	char	   *id_segment = NULL;
	char	   *path;

	if (ep->needs_contact)
		contact_segment = path_segment(ep, "contact id", contact_id, server_name);
	if (ep->needs_id)
		id_segment = path_segment(ep, "id", id, server_name);
	path = ghl_endpoint_path(ep, contact_segment, id_segment);
	if (contact_segment != NULL)
		pfree(contact_segment);
	if (id_segment != NULL)
		pfree(id_segment);
	return path;
}

/*
 * The entry of the pushable table that lets a clause of this shape on a
 * column reading this field go to the API, or NULL.
 */
const GhlPushable *
ghl_pushable(GhlResourceKind resource, const char *field, GhlQualShape shape)
{
	int			i;

	for (i = 0; i < lengthof(pushables); i++)
	{
		if (pushables[i].resource == resource && pushables[i].shape == shape &&
			strcmp(pushables[i].field, field) == 0)
			return &pushables[i];
	}
	return NULL;
}

/*
 * Whether the search endpoint can sort a resource by a field.  It sorts by
 * more (names, email), but its order of text differs from the collation's,
 * so only the timestamps, whose order is the same, are pushed.
 */
bool
ghl_sortable(GhlResourceKind resource, const char *field)
{
	return resource == GHL_RESOURCE_CONTACTS &&
		(strcmp(field, "dateAdded") == 0 || strcmp(field, "dateUpdated") == 0);
}

/*
 * The write endpoints.  They live apart from the read endpoints above:
 * a write answers with its own response shape, and each one names the
 * OAuth scope it needs.  An endpoint whose path names the row answers
 * 404 when the API no longer has it, which a write reports as zero rows;
 * a 404 on a create (say, of a task under an unknown contact) is an error.
 */
#define WRITE_EP(method_, path_, contact_, id_, version_, key_) \
	{GHL_NUM_ENDPOINTS, method_, path_, contact_, id_, version_, key_, true, \
	 id_, GHL_PAGING_NONE, false}

static const GhlWriteEndpoint write_endpoints[] = {
	{GHL_RESOURCE_CONTACTS, GHL_WRITE_CREATE,
	 WRITE_EP("POST", "/contacts/", false, false, NULL, "contact"),
	 false, "contacts.write", "locationId"},
	{GHL_RESOURCE_CONTACTS, GHL_WRITE_UPDATE,
	 WRITE_EP("PUT", "/contacts/%s", false, true, NULL, "contact"),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_CONTACTS, GHL_WRITE_DELETE,
	 WRITE_EP("DELETE", "/contacts/%s", false, true, NULL, NULL),
	 true, "contacts.write", NULL},
	/* adding a tag twice or removing a missing one changes nothing */
	{GHL_RESOURCE_CONTACTS, GHL_WRITE_ADD_TAGS,
	 WRITE_EP("POST", "/contacts/%s/tags", false, true, NULL, NULL),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_CONTACTS, GHL_WRITE_REMOVE_TAGS,
	 WRITE_EP("DELETE", "/contacts/%s/tags", false, true, NULL, NULL),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_TASKS, GHL_WRITE_CREATE,
	 WRITE_EP("POST", "/contacts/%s/tasks", true, false, NULL, "task"),
	 false, "contacts.write", NULL},
	{GHL_RESOURCE_TASKS, GHL_WRITE_UPDATE,
	 WRITE_EP("PUT", "/contacts/%s/tasks/%s", true, true, NULL, "task"),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_TASKS, GHL_WRITE_COMPLETE,
	 WRITE_EP("PUT", "/contacts/%s/tasks/%s/completed", true, true, NULL, "task"),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_TASKS, GHL_WRITE_DELETE,
	 WRITE_EP("DELETE", "/contacts/%s/tasks/%s", true, true, NULL, NULL),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_NOTES, GHL_WRITE_CREATE,
	 WRITE_EP("POST", "/contacts/%s/notes", true, false, NULL, "note"),
	 false, "contacts.write", NULL},
	{GHL_RESOURCE_NOTES, GHL_WRITE_UPDATE,
	 WRITE_EP("PUT", "/contacts/%s/notes/%s", true, true, NULL, "note"),
	 true, "contacts.write", NULL},
	{GHL_RESOURCE_NOTES, GHL_WRITE_DELETE,
	 WRITE_EP("DELETE", "/contacts/%s/notes/%s", true, true, NULL, NULL),
	 true, "contacts.write", NULL},
	/* the calendars API answers creates and updates with the bare object */
	{GHL_RESOURCE_APPOINTMENTS, GHL_WRITE_CREATE,
	 WRITE_EP("POST", "/calendars/events/appointments", false, false,
			  GHL_CALENDAR_API_VERSION, NULL),
	 false, "calendars/events.write", "locationId"},
	{GHL_RESOURCE_APPOINTMENTS, GHL_WRITE_UPDATE,
	 WRITE_EP("PUT", "/calendars/events/appointments/%s", false, true,
			  GHL_CALENDAR_API_VERSION, NULL),
	 true, "calendars/events.write", NULL},
	{GHL_RESOURCE_APPOINTMENTS, GHL_WRITE_DELETE,
	 WRITE_EP("DELETE", "/calendars/events/%s", false, true,
			  GHL_CALENDAR_API_VERSION, NULL),
	 true, "calendars/events.write", NULL},
};

/*
 * resource, JSON field, body key, kind, on create, on update, required on
 * create, JSON sent when INSERT leaves it NULL.  A column whose field is
 * not listed is read-only: the API computes it (ids, dates, name) or
 * cannot change it (companyName after creation, a task's contact).
 */
static const GhlWriteField write_fields[] = {
	{GHL_RESOURCE_CONTACTS, "firstName", "firstName", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "lastName", "lastName", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "name", "name", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "email", "email", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "phone", "phone", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "companyName", "companyName", GHL_WF_VALUE, true, false, false, NULL},
	{GHL_RESOURCE_CONTACTS, "source", "source", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "assignedTo", "assignedTo", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "address1", "address1", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "city", "city", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "state", "state", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "postalCode", "postalCode", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "country", "country", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "website", "website", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "timezone", "timezone", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "dnd", "dnd", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "tags", "tags", GHL_WF_TAGS, true, true, false, NULL},
	{GHL_RESOURCE_CONTACTS, "customFields", "customFields", GHL_WF_CUSTOM_FIELDS, true, true, false, NULL},
	{GHL_RESOURCE_TASKS, "contactId", NULL, GHL_WF_PATH_CONTACT, true, false, true, NULL},
	{GHL_RESOURCE_TASKS, "title", "title", GHL_WF_VALUE, true, true, true, NULL},
	{GHL_RESOURCE_TASKS, "body", "body", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_TASKS, "assignedTo", "assignedTo", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_TASKS, "dueDate", "dueDate", GHL_WF_VALUE, true, true, true, NULL},
	{GHL_RESOURCE_TASKS, "completed", "completed", GHL_WF_VALUE, true, true, false, "false"},
	{GHL_RESOURCE_NOTES, "contactId", NULL, GHL_WF_PATH_CONTACT, true, false, true, NULL},
	{GHL_RESOURCE_NOTES, "body", "body", GHL_WF_VALUE, true, true, true, NULL},
	{GHL_RESOURCE_NOTES, "userId", "userId", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "contactId", "contactId", GHL_WF_VALUE, true, false, true, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "calendarId", "calendarId", GHL_WF_VALUE, true, true, true, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "title", "title", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "appointmentStatus", "appointmentStatus", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "assignedUserId", "assignedUserId", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "address", "address", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "notes", "description", GHL_WF_VALUE, true, true, false, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "startTime", "startTime", GHL_WF_VALUE, true, true, true, NULL},
	{GHL_RESOURCE_APPOINTMENTS, "endTime", "endTime", GHL_WF_VALUE, true, true, false, NULL},
};

/*
 * The endpoint a write of this kind uses, or NULL when the resource has
 * none (the caller reports that).
 */
const GhlWriteEndpoint *
ghl_write_endpoint(GhlResourceKind resource, GhlWriteKind kind)
{
	int			i;

	for (i = 0; i < lengthof(write_endpoints); i++)
	{
		if (write_endpoints[i].resource == resource &&
			write_endpoints[i].kind == kind)
			return &write_endpoints[i];
	}
	return NULL;
}

/*
 * How a write sends the column read from this JSON field, or NULL when
 * the API offers no way to set it.
 */
const GhlWriteField *
ghl_write_field(GhlResourceKind resource, const char *field)
{
	int			i;

	if (field == NULL)
		return NULL;
	for (i = 0; i < lengthof(write_fields); i++)
	{
		if (write_fields[i].resource == resource &&
			strcmp(write_fields[i].field, field) == 0)
			return &write_fields[i];
	}
	return NULL;
}
