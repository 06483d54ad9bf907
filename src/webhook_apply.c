/*-------------------------------------------------------------------------
 *
 * webhook_apply.c
 *		  What a verified, first-seen webhook delivery does.
 *
 * apply_webhook (webhook.c) calls ghl_webhook_apply once per webhookId,
 * after the delivery's signature and age have been checked and its
 * ledger row inserted, in the caller's transaction and as the calling
 * role.  The outcome it returns goes into the ledger and back to the
 * receiver: "applied", "stale" (older than what the tables hold) or
 * "ignored" (an event type or location that is not synced).  An error
 * rolls the whole delivery back, ledger row included, so a redelivery
 * can try again.
 *
 * App installs and uninstalls are announced on the channel
 * ghl_fdw_webhook, for an operator or a job that creates or retires
 * servers.  Change events are not applied to the sync tables yet.
 *
 * IDENTIFICATION
 *		  src/webhook_apply.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "commands/async.h"
#include "utils/json.h"

/* HighLevel's names of app (un)install events, old and new */
static const char *const app_lifecycle_types[] = {
	"INSTALL", "UNINSTALL", "AppInstall", "AppUninstall"
};

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
 * NOTIFY ghl_fdw_webhook with the event's type and ids; delivered when the
 * delivery's transaction commits, so a rolled-back delivery announces
 * nothing.
 */
static void
announce_app_lifecycle(const GhlWebhookEvent *event)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoChar(&payload, '{');
	append_json_member(&payload, "type", event->type);
	append_json_member(&payload, "webhook_id", event->webhook_id);
	append_json_member(&payload, "location_id", event->location_id);
	append_json_member(&payload, "company_id", event->company_id);
	appendStringInfoChar(&payload, '}');
	Async_Notify("ghl_fdw_webhook", payload.data);
}

/*
 * Apply one delivery and say what came of it: "applied", "stale" or
 * "ignored".
 */
const char *
ghl_webhook_apply(const GhlWebhookEvent *event)
{
	int			i;

	for (i = 0; i < lengthof(app_lifecycle_types); i++)
	{
		if (strcmp(event->type, app_lifecycle_types[i]) == 0)
		{
			announce_app_lifecycle(event);
			return "applied";
		}
	}
	return "ignored";
}
