/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		  ghl_fdw.apply_webhook: one HighLevel webhook delivery verified,
 *		  deduplicated, applied and recorded in the ledger
 *		  ghl_fdw.webhook_events; and the ledger's retention.
 *
 * A delivery is accepted only when an enabled trusted key verifies its
 * signature over the exact body bytes (webhook_keys.c) and its timestamp
 * lies within ghl_fdw.webhook_max_age of now.  Its webhookId then goes
 * into the ledger with INSERT ... ON CONFLICT DO NOTHING: of concurrent
 * deliveries of one id exactly one inserts, the others wait for its
 * transaction and find a duplicate.  Only the winner reaches the apply
 * hook (webhook_apply.c), whose outcome the ledger records.  A refused
 * delivery raises an error and so changes nothing.
 *
 * The ledger and the keys are closed to the roles that call
 * apply_webhook.  This file reads and writes them as their owner, in a
 * security-restricted operation with search_path pinned to pg_catalog,
 * pg_temp, so that nothing of the caller's (functions, operators, types)
 * can run with the owner's rights.  The apply hook runs as the caller.
 *
 * IDENTIFICATION
 *		  src/webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* longest id or type the ledger takes */
#define GHL_WEBHOOK_FIELD_MAX	255

/* each backend prunes the ledger at most this often, this much at a time */
#define GHL_PRUNE_INTERVAL_MS	(60 * 1000)
#define GHL_PRUNE_BATCH			1000

/* The headers that carry a signature, and the algorithm of each. */
typedef struct GhlSignatureHeader
{
	const char *name;			/* as HighLevel spells it */
	const char *algorithm;		/* webhook_keys.algorithm */
	const char *signature;		/* the kind of signature, as in messages */
} GhlSignatureHeader;

static const GhlSignatureHeader signature_headers[] = {
	{"X-GHL-Signature", "ed25519", "an Ed25519"},
	{"x-wh-signature", "rsa-sha256", "an RSA-SHA256"},
};

PG_FUNCTION_INFO_V1(ghl_fdw_apply_webhook);
PG_FUNCTION_INFO_V1(ghl_fdw_prune_webhook_events);

/*
 * One of the extension's webhook tables: its OID, and in *owner the role
 * that owns it (looked up each time, since the owner can change).
 */
Oid
ghl_webhook_table(const char *relname, Oid *owner)
{
	Oid			nspid = get_namespace_oid("ghl_fdw", false);
	Oid			relid = get_relname_relid(relname, nspid);
	HeapTuple	tp;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table ghl_fdw.%s does not exist", relname),
				 errhint("Update the ghl_fdw extension: ALTER EXTENSION ghl_fdw UPDATE.")));
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	*owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return relid;
}

/*
 * Run one statement on the webhook tables as their owner, preparing it on
 * first use into *plan, and return the number of rows it processed.  The
 * caller is connected to SPI.  search_path is pinned while the statement
 * is parsed and run (the saved plan is only reused under that same path),
 * and the caller's user, security context and settings come back even
 * when the statement fails.
 */
uint64
ghl_webhook_execute(Oid owner, SPIPlanPtr *plan, const char *sql,
					int nargs, Oid *argtypes, Datum *values, const char *nulls)
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			nestlevel;
	int			rc;

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(owner,
						   saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (*plan == NULL)
		{
			SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

			if (prepared == NULL)
				elog(ERROR, "could not prepare a webhook ledger statement: %s",
					 SPI_result_code_string(SPI_result));
			SPI_keepplan(prepared);
			*plan = prepared;
		}
		rc = SPI_execute_plan(*plan, values, nulls, false, 0);
		if (rc < 0)
			elog(ERROR, "webhook ledger statement failed: %s",
				 SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(false, nestlevel);
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
	}
	PG_END_TRY();
	return SPI_processed;
}

/* Error context callback: arg is a description of what was being read. */
static void
webhook_read_context(void *arg)
{
	errcontext("%s", (const char *) arg);
}

/* Error context callback: arg is the delivery being applied. */
static void
webhook_delivery_context(void *arg)
{
	const GhlWebhookEvent *event = (const GhlWebhookEvent *) arg;

	errcontext("webhook delivery \"%s\" of type \"%s\"",
			   event->webhook_id, event->type);
}

/*
 * The body as HighLevel sent it: UTF-8.  The text arrived converted to the
 * database encoding; converting back restores the signed bytes.
 */
static const char *
body_as_sent(text *body, size_t *len)
{
	const char *data = VARDATA_ANY(body);
	int			data_len = VARSIZE_ANY_EXHDR(body);
	const char *utf8 = pg_server_to_any(data, data_len, PG_UTF8);

	*len = utf8 == data ? (size_t) data_len : strlen(utf8);
	return utf8;
}

/*
 * The signature header a header name denotes (HTTP header names ignore
 * case), as an index into signature_headers, or -1.
 */
static int
signature_header(const char *name, int len)
{
	int			i;

	for (i = 0; i < lengthof(signature_headers); i++)
	{
		if (len == strlen(signature_headers[i].name) &&
			pg_strncasecmp(name, signature_headers[i].name, len) == 0)
			return i;
	}
	return -1;
}

/*
 * Refuse a delivery whose signature header did not verify.  The header's
 * value is never quoted.
 */
static void report_bad_signature(const GhlSignatureHeader *header,
								 GhlSignatureCheck check) pg_attribute_noreturn();

static void
report_bad_signature(const GhlSignatureHeader *header, GhlSignatureCheck check)
{
	switch (check)
	{
		case GHL_SIGNATURE_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("webhook signature is malformed"),
					 errdetail("The %s header is not the base64 of %s signature.",
							   header->name, header->signature)));
			break;
		case GHL_SIGNATURE_NO_KEY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("webhook signature cannot be verified"),
					 errdetail("ghl_fdw.webhook_keys has no enabled %s key for the %s header.",
							   header->algorithm, header->name),
					 errhint("Add HighLevel's current public key to ghl_fdw.webhook_keys, or enable it.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("webhook signature does not verify"),
					 errdetail("No enabled %s key in ghl_fdw.webhook_keys verifies the %s header over the body.",
							   header->algorithm, header->name),
					 errhint("Pass the body exactly as received.  If HighLevel has rotated its key, add the new public key to ghl_fdw.webhook_keys.")));
			break;
	}
}

/*
 * Check the signatures among the delivery's headers.  One that verifies is
 * enough; a present signature that does not verify is never overlooked in
 * favour of accepting the delivery as unsigned.  Returns the key that
 * verified it, or NULL for an unsigned delivery that the settings allow.
 */
static char *
authenticate_delivery(text *body, Jsonb *headers)
{
	const char *data = NULL;
	size_t		len = 0;
	int			failed = -1;	/* the foremost signature header that failed */
	GhlSignatureCheck failure = GHL_SIGNATURE_MALFORMED;

	if (headers != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken token;

		if (!JB_ROOT_IS_OBJECT(headers))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers of a webhook delivery must be a JSON object"),
					 errhint("Pass the request's headers as {\"X-GHL-Signature\": \"...\"}.")));
		it = JsonbIteratorInit(&headers->root);
		while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			int			i;
			GhlSignatureCheck check = GHL_SIGNATURE_MALFORMED;
			char	   *key_id;

			if (token != WJB_KEY)
				continue;
			i = signature_header(v.val.string.val, v.val.string.len);
			(void) JsonbIteratorNext(&it, &v, true);	/* its value */
			if (i < 0)
				continue;
			if (v.type == jbvString)
			{
				if (data == NULL)
					data = body_as_sent(body, &len);
				check = ghl_webhook_verify(signature_headers[i].algorithm,
										   pnstrdup(v.val.string.val, v.val.string.len),
										   data, len, &key_id);
				if (check == GHL_SIGNATURE_VERIFIED)
					return key_id;
			}
			if (failed < 0 || i < failed)
			{
				failed = i;
				failure = check;
			}
		}
	}

	if (failed >= 0)
		report_bad_signature(&signature_headers[failed], failure);
	if (!ghl_webhook_allow_unsigned)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook delivery is not signed"),
				 errdetail("It has neither an X-GHL-Signature nor an x-wh-signature header."),
				 errhint("Pass the request's headers as the second argument.")));
	return NULL;
}

/*
 * A string member of the delivery, or NULL when it is absent, null or
 * empty and not required.  Ids and types go into the ledger, so their
 * length is bounded.
 */
static char *
delivery_string(Jsonb *body, const char *key, bool required)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&body->root, key, strlen(key), &v) == NULL ||
		v.type == jbvNull ||
		(v.type == jbvString && v.val.string.len == 0))
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("webhook delivery lacks \"%s\"", key),
					 errhint("HighLevel's deliveries carry \"type\", \"webhookId\" and \"timestamp\".")));
		return NULL;
	}
	if (v.type != jbvString || v.val.string.len > GHL_WEBHOOK_FIELD_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of a webhook delivery must be a string of at most %d bytes",
						key, GHL_WEBHOOK_FIELD_MAX)));
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * The delivery's timestamp: ISO 8601, as HighLevel writes it.  Words the
 * timestamp type would accept ("now", "infinity") are no times a sender
 * can vouch for.
 */
static TimestampTz
delivery_timestamp(const char *text)
{
	ErrorContextCallback errcallback;
	TimestampTz result;

	if (!isdigit((unsigned char) text[0]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("invalid timestamp in webhook delivery: \"%s\"", text),
				 errhint("HighLevel writes ISO 8601 times, such as 2026-07-01T12:00:00.000Z.")));

	errcallback.callback = webhook_read_context;
	errcallback.arg = "timestamp of a webhook delivery";
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	result = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													 CStringGetDatum(text),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	error_context_stack = errcallback.previous;
	return result;
}

/*
 * Parse the body into an event.  It has been verified already: what
 * fails here is a delivery HighLevel would not send.
 */
static void
parse_delivery(text *body, GhlWebhookEvent *event)
{
	ErrorContextCallback errcallback;

	errcallback.callback = webhook_read_context;
	errcallback.arg = "body of a webhook delivery";
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	event->body = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(text_to_cstring(body))));
	error_context_stack = errcallback.previous;

	if (!JB_ROOT_IS_OBJECT(event->body))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook delivery is not a JSON object")));
	event->webhook_id = delivery_string(event->body, "webhookId", true);
	event->type = delivery_string(event->body, "type", true);
	event->location_id = delivery_string(event->body, "locationId", false);
	event->company_id = delivery_string(event->body, "companyId", false);
	event->timestamp = delivery_timestamp(delivery_string(event->body,
														  "timestamp", true));
}

/*
 * Refuse a delivery sent longer ago than ghl_fdw.webhook_max_age (a
 * replay), or as far ahead of this server's clock.
 */
static void
check_delivery_age(TimestampTz sent)
{
	int64		limit = (int64) ghl_webhook_max_age * USECS_PER_SEC;
	int64		age = GetCurrentTimestamp() - sent;

	if (age > limit || age < -limit)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook delivery is outside the accepted time window"),
				 errdetail("It was sent at %s, %lld seconds %s; ghl_fdw.webhook_max_age is %d seconds.",
						   timestamptz_to_str(sent),
						   (long long) ((age > 0 ? age : -age) / USECS_PER_SEC),
						   age > 0 ? "ago" : "ahead of this server's clock",
						   ghl_webhook_max_age),
				 errhint("An old delivery is refused as a possible replay.  Check the clocks, or raise ghl_fdw.webhook_max_age.")));
}

/* One text parameter of a ledger statement, NULL for a NULL string. */
static void
ledger_arg(Datum *values, char *nulls, int i, const char *value)
{
	values[i] = value ? CStringGetTextDatum(value) : (Datum) 0;
	nulls[i] = value ? ' ' : 'n';
}

/*
 * Remember the delivery's webhookId.  False when the ledger has it
 * already: a duplicate, which must change nothing.  A concurrent delivery
 * of the same id makes this wait until its transaction ends.
 */
static bool
ledger_insert(const GhlWebhookEvent *event, const char *key_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TEXTOID};
	Datum		values[6];
	char		nulls[6];
	Oid			owner;
	uint64		inserted;

	ledger_arg(values, nulls, 0, event->webhook_id);
	ledger_arg(values, nulls, 1, event->type);
	ledger_arg(values, nulls, 2, event->location_id);
	ledger_arg(values, nulls, 3, event->company_id);
	values[4] = TimestampTzGetDatum(event->timestamp);
	nulls[4] = ' ';
	ledger_arg(values, nulls, 5, key_id);

	(void) ghl_webhook_table("webhook_events", &owner);
	SPI_connect();
	inserted = ghl_webhook_execute(owner, &plan,
								   "INSERT INTO ghl_fdw.webhook_events"
								   " (webhook_id, type, location_id, company_id, event_time, key_id)"
								   " VALUES ($1, $2, $3, $4, $5, $6)"
								   " ON CONFLICT (webhook_id) DO NOTHING",
								   6, argtypes, values, nulls);
	SPI_finish();
	return inserted == 1;
}

/* Record what the apply hook made of the delivery. */
static void
ledger_record_outcome(const GhlWebhookEvent *event, const char *outcome)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2];
	Oid			owner;

	ledger_arg(values, nulls, 0, event->webhook_id);
	ledger_arg(values, nulls, 1, outcome);
	(void) ghl_webhook_table("webhook_events", &owner);
	SPI_connect();
	(void) ghl_webhook_execute(owner, &plan,
							   "UPDATE ghl_fdw.webhook_events SET outcome = $2"
							   " WHERE webhook_id OPERATOR(pg_catalog.=) $1",
							   2, argtypes, values, nulls);
	SPI_finish();
}

/*
 * Delete ledger rows received before cutoff, at most limit of them (0: no
 * limit), and return how many.  Rows another transaction holds are
 * skipped rather than waited for.  Rows younger than twice
 * ghl_fdw.webhook_max_age are always kept: a replay is refused by its
 * timestamp only after that, and must be recognized by its id until then.
 */
static int64
prune_ledger(TimestampTz cutoff, int64 limit)
{
	static SPIPlanPtr plan = NULL;
	TimestampTz keep_from = GetCurrentTimestamp() -
		2 * (int64) ghl_webhook_max_age * USECS_PER_SEC;
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT8OID};
	Datum		values[2];
	char		nulls[2] = {' ', limit > 0 ? ' ' : 'n'};
	Oid			owner;
	uint64		deleted;

	values[0] = TimestampTzGetDatum(Min(cutoff, keep_from));
	values[1] = Int64GetDatum(limit);
	(void) ghl_webhook_table("webhook_events", &owner);
	SPI_connect();
	deleted = ghl_webhook_execute(owner, &plan,
								  "DELETE FROM ghl_fdw.webhook_events"
								  " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
								  "SELECT ctid FROM ghl_fdw.webhook_events"
								  " WHERE received_at OPERATOR(pg_catalog.<) $1"
								  " ORDER BY received_at LIMIT $2"
								  " FOR UPDATE SKIP LOCKED))",
								  2, argtypes, values, nulls);
	SPI_finish();
	return (int64) deleted;
}

/*
 * Keep the ledger within ghl_fdw.webhook_retention without a scheduled
 * job: now and then a delivery prunes a batch of old rows.
 */
static void
prune_ledger_now_and_then(void)
{
	static TimestampTz last_prune = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last_prune, now, GHL_PRUNE_INTERVAL_MS))
		return;
	last_prune = now;
	(void) prune_ledger(now - (int64) ghl_webhook_retention * USECS_PER_SEC,
						GHL_PRUNE_BATCH);
}

/*
 * ghl_fdw.apply_webhook(body text, headers jsonb) RETURNS text
 *
 * What every receiver calls for one delivery: 'applied', 'stale' or
 * 'ignored' as the apply hook decides, or 'duplicate' for a webhookId seen
 * before.  A delivery that is not signed by a trusted key, or is too old,
 * fails with SQLSTATE 28000; one that is not a HighLevel event, with a
 * data exception (class 22).  Either way nothing changes.
 */
Datum
ghl_fdw_apply_webhook(PG_FUNCTION_ARGS)
{
	text	   *body;
	Jsonb	   *headers = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	GhlWebhookEvent event;
	char	   *key_id;
	const char *outcome = "duplicate";
	ErrorContextCallback errcallback;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook delivery body must not be NULL")));
	body = PG_GETARG_TEXT_PP(0);

	key_id = authenticate_delivery(body, headers);
	parse_delivery(body, &event);
	check_delivery_age(event.timestamp);

	errcallback.callback = webhook_delivery_context;
	errcallback.arg = &event;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	if (ledger_insert(&event, key_id))
	{
		outcome = ghl_webhook_apply(&event);
		if (outcome == NULL ||
			(strcmp(outcome, "applied") != 0 && strcmp(outcome, "stale") != 0 &&
			 strcmp(outcome, "ignored") != 0))
			elog(ERROR, "webhook apply hook returned an invalid outcome");
		ledger_record_outcome(&event, outcome);
		prune_ledger_now_and_then();
	}
	error_context_stack = errcallback.previous;

	PG_RETURN_TEXT_P(cstring_to_text(outcome));
}

/*
 * ghl_fdw.prune_webhook_events(older_than interval DEFAULT NULL)
 * RETURNS bigint
 *
 * Delete ledger rows older than older_than, or than
 * ghl_fdw.webhook_retention; returns how many went.
 */
Datum
ghl_fdw_prune_webhook_events(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz cutoff;

	if (PG_ARGISNULL(0))
		cutoff = now - (int64) ghl_webhook_retention * USECS_PER_SEC;
	else
	{
		cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(now),
														 PG_GETARG_DATUM(0)));
		if (cutoff > now)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("older_than must not be negative")));
	}
	PG_RETURN_INT64(prune_ledger(cutoff, 0));
}
