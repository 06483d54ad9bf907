/*-------------------------------------------------------------------------
 *
 * webhook_apply.c
 *		  What a verified, first-seen webhook delivery does to the Rankr
 *		  tables.
 *
 * apply_webhook (webhook.c) calls ghl_webhook_apply once per webhookId,
 * after the delivery's signature and age have been checked and its
 * ledger row inserted, in the caller's transaction.  The outcome goes into
 * the ledger and back to the receiver: "applied", "stale" (every table
 * holds newer data) or "ignored" (an event type, or a location, that no
 * server syncs).  An error rolls the whole delivery back, ledger row
 * included, so that a redelivery can try again.
 *
 * A change event is written into the sync tables of every ghl_fdw server
 * whose location_id is the event's, with the column mapping sync uses
 * (sync_target.c): fields the payload lacks keep their stored values, and
 * the event's timestamp is the row's as_of, so an event older than the
 * row's data changes nothing, and a change to a tombstoned record leaves
 * the tombstone (only a newer Create brings it back).  Deletions tombstone,
 * and are recorded as tombstones when the record is unknown, so that an
 * older event arriving later cannot bring it back.
 *
 * The receiver's role needs no privilege on those tables: each table is
 * written as its owner (the role whose syncs fill it), in a
 * security-restricted operation, and only for servers that owner may use
 * and whose own owner holds the table owner's rights.
 * What the payloads do not carry (a note's author, an appointment's
 * per-contact status) the next incremental sync reads: events of notes and
 * appointments queue their contact in ghl_fdw.sync_pending.  A server with
 * webhook_catch_up reads a contact it does not have at once, through the
 * API, as refresh_contact does.
 *
 * App installs and uninstalls, and every applied change, are announced on
 * the channel ghl_fdw_webhook (appointments on ghl_fdw_appointments too),
 * when the delivery's transaction commits.
 *
 * IDENTIFICATION
 *		  src/webhook_apply.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* HighLevel's names of app (un)install events, old and new */
static const char *const app_lifecycle_types[] = {
	"INSTALL", "UNINSTALL", "AppInstall", "AppUninstall"
};

/* What a change event says about its record. */
typedef enum GhlEventAction
{
	GHL_EVENT_CREATE,			/* it exists, new or again */
	GHL_EVENT_CHANGE,			/* it changed, unless deleted since */
	GHL_EVENT_DELETE			/* it is gone */
} GhlEventAction;

/*
 * The fields of a record that its events always carry when they have a
 * value (HighLevel leaves out what is empty): a field missing from such a
 * payload was cleared.  Fields outside these lists (a contact's type or
 * timezone, a note's author) are not in the payloads at all and keep their
 * stored values; so does whatever a task event lacks, since TaskCreate
 * may arrive without contactId or body.
 */
static const char *const contact_fields[] = {
	"firstName", "lastName", "name", "email", "phone", "companyName", "source",
	"assignedTo", "address1", "city", "state", "postalCode", "country",
	"website", "dnd", "tags", "customFields", "dateAdded", NULL
};
static const char *const note_fields[] = {"body", NULL};
static const char *const appointment_fields[] = {
	"calendarId", "contactId", "title", "appointmentStatus", "assignedUserId",
	"address", "notes", "startTime", "endTime", "dateAdded", "dateUpdated", NULL
};

typedef struct GhlEventKind
{
	const char *type;
	GhlResourceKind resource;
	GhlEventAction action;
	const char *const *carried; /* see above; NULL: none */
	const char *completes;		/* a boolean field the event sets true */
} GhlEventKind;

static const GhlEventKind event_kinds[] = {
	{"ContactCreate", GHL_RESOURCE_CONTACTS, GHL_EVENT_CREATE, contact_fields, NULL},
	{"ContactUpdate", GHL_RESOURCE_CONTACTS, GHL_EVENT_CHANGE, contact_fields, NULL},
	{"ContactDndUpdate", GHL_RESOURCE_CONTACTS, GHL_EVENT_CHANGE, contact_fields, NULL},
	{"ContactTagUpdate", GHL_RESOURCE_CONTACTS, GHL_EVENT_CHANGE, contact_fields, NULL},
	{"ContactDelete", GHL_RESOURCE_CONTACTS, GHL_EVENT_DELETE, contact_fields, NULL},
	{"TaskCreate", GHL_RESOURCE_TASKS, GHL_EVENT_CREATE, NULL, NULL},
	{"TaskComplete", GHL_RESOURCE_TASKS, GHL_EVENT_CHANGE, NULL, "completed"},
	{"TaskDelete", GHL_RESOURCE_TASKS, GHL_EVENT_DELETE, NULL, NULL},
	{"NoteCreate", GHL_RESOURCE_NOTES, GHL_EVENT_CREATE, note_fields, NULL},
	{"NoteUpdate", GHL_RESOURCE_NOTES, GHL_EVENT_CHANGE, note_fields, NULL},
	{"NoteDelete", GHL_RESOURCE_NOTES, GHL_EVENT_DELETE, note_fields, NULL},
	{"AppointmentCreate", GHL_RESOURCE_APPOINTMENTS, GHL_EVENT_CREATE, appointment_fields, NULL},
	{"AppointmentUpdate", GHL_RESOURCE_APPOINTMENTS, GHL_EVENT_CHANGE, appointment_fields, NULL},
	{"AppointmentDelete", GHL_RESOURCE_APPOINTMENTS, GHL_EVENT_DELETE, appointment_fields, NULL},
};

/*
 * Members of a flat delivery that are the delivery's, not the record's:
 * "type" is the event type, never a contact's type.
 */
static const char *const envelope_fields[] = {"type", "webhookId", "timestamp"};

/* appointment events carry the record as an object of its own */
#define GHL_APPOINTMENT_MEMBER	"appointment"

/* A server that syncs the event's location. */
typedef struct GhlEventServer
{
	Oid			serverid;
	Oid			owner;			/* who chose its sync_schema */
	char	   *name;
	char	   *schema;			/* its sync_schema */
	bool		catch_up;		/* webhook_catch_up */
} GhlEventServer;

/* One change event being applied. */
typedef struct GhlEventApply
{
	const GhlWebhookEvent *event;
	const GhlEventKind *kind;
	const char *resource;		/* the table's name */
	GhlJsonPage *record;
	char	   *id;
	char	   *contact_id;		/* the record's contact, NULL if unsaid */
	Oid			saved_userid;	/* the caller, to come back to */
	int			saved_sec_context;
	bool		written;		/* into some table */
	bool		targeted;		/* some table could take it */
} GhlEventApply;

/* Append "key": value to a JSON object under construction; NULL is null. */
static void
append_json_member(StringInfo buf, const char *key, const char *value)
{
	if (buf->len > 1)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/*
 * NOTIFY ghl_fdw_webhook with the event's type and ids (and the record's,
 * for a change); delivered when the delivery's transaction commits, so a
 * rolled-back delivery announces nothing.
 */
static void
announce(const GhlWebhookEvent *event, const GhlEventApply *apply)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoChar(&payload, '{');
	append_json_member(&payload, "type", event->type);
	append_json_member(&payload, "webhook_id", event->webhook_id);
	append_json_member(&payload, "location_id", event->location_id);
	if (apply == NULL)
		append_json_member(&payload, "company_id", event->company_id);
	else
	{
		append_json_member(&payload, "resource", apply->resource);
		append_json_member(&payload, "id", apply->id);
		append_json_member(&payload, "contact_id", apply->contact_id);
	}
	appendStringInfoChar(&payload, '}');
	ghl_notify("ghl_fdw_webhook", payload.data);
}

/* Appointment ids on ghl_fdw_appointments, in the shape sync sends. */
static void
announce_appointment(const GhlEventServer *server, const GhlEventApply *apply)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"server\": ");
	escape_json(&payload, server->name);
	appendStringInfoString(&payload, ", \"webhook_id\": ");
	escape_json(&payload, apply->event->webhook_id);
	appendStringInfoString(&payload, ", \"ids\": [");
	escape_json(&payload, apply->id);
	appendStringInfoString(&payload, "]}");
	ghl_notify("ghl_fdw_appointments", payload.data);
}

/*
 * The ghl_fdw servers whose location_id is the event's, by name: each
 * with its sync_schema and whether it catches up on unknown contacts.
 */
static List *
location_servers(const char *location_id)
{
	List	   *servers = NIL;
	Relation	rel = table_open(ForeignServerRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		ForeignServer *server = GetForeignServer(((Form_pg_foreign_server) GETSTRUCT(tuple))->oid);
		GhlEventServer *entry;
		const char *location = NULL;
		ListCell   *lc;

		if (strcmp(GetForeignDataWrapper(server->fdwid)->fdwname, "ghl_fdw") != 0)
			continue;
		entry = palloc0(sizeof(GhlEventServer));
		entry->serverid = server->serverid;
		entry->owner = server->owner;
		entry->name = server->servername;
		entry->schema = "rankr";
		foreach(lc, server->options)
		{
			DefElem    *def = lfirst(lc);

			if (strcmp(def->defname, "location_id") == 0)
				location = defGetString(def);
			else if (strcmp(def->defname, "sync_schema") == 0)
				entry->schema = defGetString(def);
			else if (strcmp(def->defname, "webhook_catch_up") == 0)
				entry->catch_up = defGetBoolean(def);
		}
		if (location != NULL && strcmp(location, location_id) == 0)
			servers = lappend(servers, entry);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return servers;
}

/*
 * The owner of a server's sync table of a resource, if it exists, its
 * owner may use the server, and the server's owner holds the table
 * owner's rights; else InvalidOid.  The last condition is the table
 * owner's consent: the server's owner names the tables (sync_schema) and
 * may grant USAGE on the server to anyone, so USAGE alone would let any
 * role that may create servers have webhooks, and catch-up requests on
 * the table owner's account, write into any role's tables.
 */
static Oid
sync_table_owner(const GhlEventServer *server, const char *resource)
{
	Oid			nspid = get_namespace_oid(server->schema, true);
	Oid			relid = OidIsValid(nspid) ? get_relname_relid(resource, nspid) : InvalidOid;
	HeapTuple	tp;
	Oid			owner;

	if (!OidIsValid(relid))
		return InvalidOid;
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	if (pg_foreign_server_aclcheck(server->serverid, owner, ACL_USAGE) != ACLCHECK_OK ||
		!has_privs_of_role(server->owner, owner))
		return InvalidOid;
	return owner;
}

/*
 * Act as the owner of a sync table, in a security-restricted operation:
 * what runs on the table (its triggers) runs with the owner's rights, as
 * in the owner's syncs, and cannot leave anything in the caller's session.
 * The caller's identity comes back with as_caller, or at the end of
 * ghl_webhook_apply, on error too.
 */
static void
as_owner(GhlEventApply *apply, Oid owner)
{
	SetUserIdAndSecContext(owner, apply->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
as_caller(GhlEventApply *apply)
{
	SetUserIdAndSecContext(apply->saved_userid, apply->saved_sec_context);
}

/*
 * A string member of an object of the delivery (NULL: the delivery
 * itself), or NULL when it is absent or not a non-empty string.
 */
static char *
member_string(Jsonb *body, const char *object, const char *key)
{
	JsonbValue	v;
	JsonbContainer *container = &body->root;

	if (object != NULL)
	{
		if (getKeyJsonValueFromContainer(container, object, strlen(object), &v) == NULL ||
			v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			return NULL;
		container = v.val.binary.data;
	}
	if (getKeyJsonValueFromContainer(container, key, strlen(key), &v) == NULL ||
		v.type != jbvString || v.val.string.len == 0)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * Find the record in a change event: the delivery itself without its
 * envelope, or its "appointment" object.  A record without an id is not a
 * delivery HighLevel sends.
 */
static void
read_record(GhlEventApply *apply, const char *server_name)
{
	const GhlWebhookEvent *event = apply->event;
	const char *object = apply->kind->resource == GHL_RESOURCE_APPOINTMENTS ?
		GHL_APPOINTMENT_MEMBER : NULL;
	const char *const *carried;
	char	   *text;
	int			i;

	apply->id = member_string(event->body, object, "id");
	if (apply->id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook delivery of type \"%s\" names no record", event->type),
				 object ?
				 errdetail("It has no \"%s\" object with a string \"id\".", object) :
				 errdetail("It has no string \"id\".")));
	apply->contact_id = apply->kind->resource == GHL_RESOURCE_CONTACTS ?
		apply->id : member_string(event->body, object, "contactId");

	text = JsonbToCString(NULL, &event->body->root, VARSIZE(event->body));
	apply->record = ghl_json_parse_page(text, strlen(text), object, true, server_name);
	if (object == NULL)
	{
		for (i = 0; i < lengthof(envelope_fields); i++)
			ghl_json_row_remove_field(apply->record, 0, envelope_fields[i]);
	}
	for (carried = apply->kind->carried; carried && *carried; carried++)
		ghl_json_row_null_if_absent(apply->record, 0, *carried);
	if (apply->kind->completes != NULL)
		ghl_json_row_set_bool(apply->record, 0, apply->kind->completes, true);
}

/*
 * Write the event's record into one sync table as its owner.  True when
 * written; false when the table holds newer data.
 */
static bool
write_record(GhlEventApply *apply, const GhlEventServer *server, Oid owner)
{
	GhlTarget  *target;
	GhlRows    *rows;
	static const GhlRowsMode modes[] = {
		[GHL_EVENT_CREATE] = GHL_ROWS_FOUND,
		[GHL_EVENT_CHANGE] = GHL_ROWS_CHANGED,
		[GHL_EVENT_DELETE] = GHL_ROWS_DELETED,
	};

	as_owner(apply, owner);
	target = ghl_target_open(server->schema, ghl_resource_by_name(apply->resource),
							 false, CurrentMemoryContext);
	rows = ghl_rows_new(target, apply->event->location_id, NULL);
	ghl_rows_set_mode(rows, modes[apply->kind->action]);
	ghl_rows_add_event(rows, apply->record, apply->event->timestamp);
	(void) ghl_target_upsert(target, rows);
	as_caller(apply);
	return ghl_rows_written(rows) > 0;
}

/*
 * A contact is gone: so are its tasks, notes and appointments, in the
 * tables of each that the server syncs (unless newer data says
 * otherwise).
 */
static void
delete_children(GhlEventApply *apply, const GhlEventServer *server)
{
	int			r;

	for (r = GHL_RESOURCE_TASKS; r <= GHL_RESOURCE_APPOINTMENTS; r++)
	{
		const char *name = ghl_sync_resource_name(r);
		Oid			owner = sync_table_owner(server, name);
		GhlTarget  *target;

		if (!OidIsValid(owner))
			continue;
		as_owner(apply, owner);
		target = ghl_target_open(server->schema, ghl_resource_by_name(name), false,
								 CurrentMemoryContext);
		(void) ghl_target_replace_children(target, apply->event->location_id,
										   list_make1(apply->contact_id), NIL,
										   apply->event->timestamp);
		as_caller(apply);
	}
}

/*
 * Whether a server with webhook_catch_up should read the event's contact
 * through the API: its contacts table does not have it (live), and the
 * event does not say it is gone.  Asked before the event is written.
 */
static bool
needs_catch_up(GhlEventApply *apply, const GhlEventServer *server)
{
	Oid			owner;
	GhlTarget  *target;
	GhlRows    *rows;

	if (!server->catch_up || apply->contact_id == NULL ||
		apply->kind->action == GHL_EVENT_DELETE)
		return false;
	owner = sync_table_owner(server, "contacts");
	if (!OidIsValid(owner))
		return false;
	as_owner(apply, owner);
	target = ghl_target_open(server->schema, ghl_resource_by_name("contacts"), false,
							 CurrentMemoryContext);
	rows = ghl_target_read(target, apply->event->location_id, "id",
						   list_make1(apply->contact_id), 0);
	as_caller(apply);
	return ghl_rows_count(rows) == 0;
}

/*
 * Read the event's contact through the API, with its children, as the
 * owner of the server's contacts table (whose user mapping pays for it),
 * as refresh_contact does.  A failure is recorded in the sync ledger and
 * leaves the event applied as far as its payload goes.
 */
static bool
catch_up(GhlEventApply *apply, const GhlEventServer *server)
{
	ErrorData  *edata;

	as_owner(apply, sync_table_owner(server, "contacts"));
	(void) ghl_sync_refresh(server->serverid, apply->contact_id, &edata);
	as_caller(apply);
	return edata == NULL;
}

/*
 * Queue the record's contact for the server's next incremental sync, which
 * reads that contact's notes and appointments: their events lack fields
 * only those reads return.
 */
static void
queue_contact(GhlEventApply *apply, const GhlEventServer *server)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	Oid			owner;

	values[0] = CStringGetTextDatum(server->name);
	values[1] = CStringGetTextDatum(apply->event->location_id);
	values[2] = CStringGetTextDatum(apply->contact_id);
	(void) ghl_webhook_table("sync_pending", &owner);
	SPI_connect();
	(void) ghl_webhook_execute(owner, &plan,
							   "INSERT INTO ghl_fdw.sync_pending"
							   " (server_name, location_id, contact_id)"
							   " VALUES ($1, $2, $3)"
							   " ON CONFLICT (server_name, contact_id) DO UPDATE"
							   " SET location_id = EXCLUDED.location_id,"
							   " queued_at = pg_catalog.now()",
							   3, argtypes, values, NULL);
	SPI_finish();
}

/*
 * Apply a change event to the tables of one server that syncs its
 * location.  Servers sharing a sync_schema share its tables: written once.
 */
static void
apply_to_server(GhlEventApply *apply, const GhlEventServer *server,
				List **schemas_written)
{
	const GhlEventKind *kind = apply->kind;
	Oid			owner = sync_table_owner(server, apply->resource);
	bool		catching_up;
	bool		written;

	if (!OidIsValid(owner))
		return;
	apply->targeted = true;
	if (list_member(*schemas_written, makeString(server->schema)))
		return;

	if (apply->record == NULL)
		read_record(apply, server->name);
	catching_up = needs_catch_up(apply, server);
	written = write_record(apply, server, owner);
	if (kind->resource == GHL_RESOURCE_CONTACTS && kind->action == GHL_EVENT_DELETE)
		delete_children(apply, server);
	if (catching_up && catch_up(apply, server))
		written = true;
	else if (written && apply->contact_id != NULL && kind->action != GHL_EVENT_DELETE &&
			 (kind->resource == GHL_RESOURCE_NOTES ||
			  kind->resource == GHL_RESOURCE_APPOINTMENTS))
		queue_contact(apply, server);

	if (!written)
		return;
	apply->written = true;
	*schemas_written = lappend(*schemas_written, makeString(server->schema));
	if (kind->resource == GHL_RESOURCE_APPOINTMENTS)
		announce_appointment(server, apply);
}

/*
 * Apply one delivery and say what came of it: "applied", "stale" or
 * "ignored".
 */
const char *
ghl_webhook_apply(const GhlWebhookEvent *event)
{
	GhlEventApply apply = {0};
	List	   *schemas_written = NIL;
	ListCell   *lc;
	int			i;

	for (i = 0; i < lengthof(app_lifecycle_types); i++)
	{
		if (strcmp(event->type, app_lifecycle_types[i]) == 0)
		{
			announce(event, NULL);
			return "applied";
		}
	}
	for (i = 0; i < lengthof(event_kinds); i++)
	{
		if (strcmp(event->type, event_kinds[i].type) == 0)
			apply.kind = &event_kinds[i];
	}
	if (apply.kind == NULL || event->location_id == NULL)
		return "ignored";

	apply.event = event;
	apply.resource = ghl_sync_resource_name(apply.kind->resource);
	GetUserIdAndSecContext(&apply.saved_userid, &apply.saved_sec_context);
	PG_TRY();
	{
		foreach(lc, location_servers(event->location_id))
			apply_to_server(&apply, lfirst(lc), &schemas_written);
	}
	PG_FINALLY();
	{
		as_caller(&apply);
	}
	PG_END_TRY();

	if (!apply.targeted)
		return "ignored";
	if (!apply.written)
		return "stale";
	announce(event, &apply);
	return "applied";
}
