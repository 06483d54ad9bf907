/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		  The rate-limit governor and the request counters of each server.
 *
 * HighLevel allows a burst of requests per interval and a daily budget per
 * location, and reports both in X-RateLimit-* headers.  Every backend that
 * talks to one location spends the same budget, so the governor keeps, per
 * location, the send times of the requests of the last interval and makes
 * a request wait until the oldest of them has left the window: a sliding
 * window never lets more than the limit through in any interval, however
 * the API aligns its own windows.  What the headers say (a budget spent by
 * other clients, a 429) only ever makes the governor more careful.
 *
 * A location is known by the API host too (scheme, host and port of
 * base_url): whoever may create a server can point one at an API of its
 * own, and what that API answers must not throttle the real location.
 * Header values are believed only within sane bounds, and a wait that
 * would outlast the statement's statement_timeout fails at once.  The
 * tables never grow beyond their size (a shared table would otherwise eat
 * the shared memory other users of it need): when one is full, its least
 * recently used entry makes room.
 *
 * With ghl_fdw in shared_preload_libraries this state and the counters
 * live in shared memory, under one LWLock, and all backends and pg_cron
 * jobs of the cluster pace together.  Without it the same tables are kept
 * in each backend: a backend paces itself and learns from the headers
 * what the others spent, but concurrent backends can still meet 429s,
 * which the retries then absorb.
 *
 * IDENTIFICATION
 *		  src/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <ctype.h>

#include "access/xact.h"
#include "common/pg_prng.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* send times remembered per location (a larger limit is paced in proportion) */
#define GHL_RATE_SLOTS			128
/* locations the shared table holds: enough for an agency's sub-accounts */
#define GHL_MAX_LOCATIONS		1024
#define GHL_MAX_SERVERS			1024
/* "scheme://host:port location_id": a DNS name has at most 253 bytes */
#define GHL_LOCATION_KEYLEN		384
/* the longest rate interval or 429 block believed */
#define GHL_MAX_INTERVAL_MS		(3600 * 1000)

/*
 * What is known of one location's limits, and the send times of its last
 * GHL_RATE_SLOTS requests (a ring, oldest at "head").  They are kept after
 * they leave the window: a limit learned only now (the first answers of a
 * burst, or an API whose limit changed) then still counts the requests
 * sent before it was known.
 */
typedef struct GhlLocationState
{
	char		key[GHL_LOCATION_KEYLEN];	/* hash key, see location_key() */
	TimestampTz last_used;		/* see table_entry() */
	int32		limit;			/* X-RateLimit-Max, 0 while unknown */
	int32		interval_ms;	/* X-RateLimit-Interval-Milliseconds */
	int64		daily_remaining;	/* -1 while unknown */
	TimestampTz daily_seen;		/* when daily_remaining was learned */
	TimestampTz blocked_until;	/* after a 429: no request before this */
	int32		head;
	int32		nsent;
	TimestampTz sent[GHL_RATE_SLOTS];
} GhlLocationState;

/* counters are per server, and server OIDs are per database */
typedef struct GhlServerKey
{
	Oid			dbid;
	Oid			serverid;
} GhlServerKey;

typedef struct GhlServerCounters
{
	GhlServerKey key;
	TimestampTz last_used;		/* see table_entry() */
	int64		counts[GHL_NUM_COUNTERS];
} GhlServerCounters;

/* lock is NULL when the tables are the backend's own */
static LWLock *ghl_lock = NULL;
static HTAB *ghl_locations = NULL;
static HTAB *ghl_counters = NULL;
static bool ghl_shared = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void ghl_shmem_request(void);
static void ghl_shmem_startup(void);

PG_FUNCTION_INFO_V1(ghl_fdw_request_stats);
PG_FUNCTION_INFO_V1(ghl_fdw_request_stats_reset);

/*
 * Called from _PG_init: only a library loaded by shared_preload_libraries
 * can ask for shared memory, so only then are the hooks installed.
 */
void
ghl_ratelimit_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ghl_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ghl_shmem_startup;
}

/*
 * Reserve room for both tables and one lock.  The tables are sized for
 * their maxima, so a full table never takes memory from other users.
 */
static void
ghl_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(hash_estimate_size(GHL_MAX_LOCATIONS,
													   sizeof(GhlLocationState)),
									hash_estimate_size(GHL_MAX_SERVERS,
													   sizeof(GhlServerCounters))));
	RequestNamedLWLockTranche("ghl_fdw", 1);
}

/*
 * Attach the shared tables; runs in the postmaster, and forked backends
 * inherit the pointers.
 */
static void
ghl_shmem_startup(void)
{
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl.keysize = GHL_LOCATION_KEYLEN;
	ctl.entrysize = sizeof(GhlLocationState);
	ghl_locations = ShmemInitHash("ghl_fdw locations",
								  GHL_MAX_LOCATIONS, GHL_MAX_LOCATIONS,
								  &ctl, HASH_ELEM | HASH_STRINGS);
	ctl.keysize = sizeof(GhlServerKey);
	ctl.entrysize = sizeof(GhlServerCounters);
	ghl_counters = ShmemInitHash("ghl_fdw counters",
								 GHL_MAX_SERVERS, GHL_MAX_SERVERS,
								 &ctl, HASH_ELEM | HASH_BLOBS);
	ghl_lock = &(GetNamedLWLockTranche("ghl_fdw"))->lock;
	ghl_shared = true;
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Make sure the tables exist: without preloading they are created in this
 * backend on first use.
 */
static void
ghl_ensure_tables(void)
{
	HASHCTL		ctl;

	if (ghl_locations != NULL)
		return;
	ctl.keysize = GHL_LOCATION_KEYLEN;
	ctl.entrysize = sizeof(GhlLocationState);
	ctl.hcxt = TopMemoryContext;
	ghl_locations = hash_create("ghl_fdw locations", 8, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctl.keysize = sizeof(GhlServerKey);
	ctl.entrysize = sizeof(GhlServerCounters);
	ghl_counters = hash_create("ghl_fdw counters", 8, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Take the lock of the shared tables; the backend's own tables need none,
 * since nothing else touches them.
 */
static void
ghl_lock_tables(LWLockMode mode)
{
	ghl_ensure_tables();
	if (ghl_lock != NULL)
		LWLockAcquire(ghl_lock, mode);
}

/* Release what ghl_lock_tables took. */
static void
ghl_unlock_tables(void)
{
	if (ghl_lock != NULL)
		LWLockRelease(ghl_lock);
}

/*
 * The governor's key of the server's location: the API it talks to
 * (scheme, host and port of base_url, lowercased, the port made explicit,
 * any user info dropped) and the location_id.  Two servers share a budget
 * exactly when they send to the same API for the same location.
 */
static void
location_key(const GhlOptions *options, char *key)
{
	const char *url = options->base_url;
	const char *sep = strstr(url, "://");
	int			schemelen = sep ? (int) (sep - url) : 0;
	const char *host = sep ? sep + 3 : url;
	int			authlen = (int) strcspn(host, "/?#");
	int			hostlen;
	const char *port;
	int			portlen;
	const char *at;
	int			n;

	/* user info, if any, ends at the last '@' of the authority */
	while ((at = memchr(host, '@', authlen)) != NULL)
	{
		authlen -= at + 1 - host;
		host = at + 1;
	}
	/* a port is the digits after the last ':' ("[::1]" has none) */
	hostlen = authlen;
	while (hostlen > 0 && isdigit((unsigned char) host[hostlen - 1]))
		hostlen--;
	if (hostlen > 0 && hostlen < authlen && host[hostlen - 1] == ':')
	{
		port = host + hostlen;
		portlen = authlen - hostlen;
		hostlen--;
	}
	else
	{
		hostlen = authlen;
		port = (schemelen == 4 && pg_strncasecmp(url, "http", 4) == 0) ?
			"80" : "443";
		portlen = (int) strlen(port);
	}

	n = snprintf(key, GHL_LOCATION_KEYLEN, "%.*s://%.*s:%.*s %s",
				 schemelen, url, hostlen, host, portlen, port,
				 options->location_id);
	if (n >= GHL_LOCATION_KEYLEN)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("location_id of GHL server \"%s\" is too long",
						options->server_name),
				 errhint("Check the server options location_id and base_url.")));
	/* host names and schemes ignore case, location ids do not */
	for (n = 0; key[n] != ' '; n++)
		key[n] = pg_ascii_tolower((unsigned char) key[n]);
}

/*
 * The entry of key in a table of at most max_entries entries, created if
 * need be (*found tells), and marked used at "now".  A full table first
 * forgets its least recently used entry: an idle location has left every
 * window it was in, an idle server's counters are the least missed.  The
 * entry's last_used lies at last_used_offset.  NULL only if even then no
 * entry can be had.  Call with the lock held exclusively.
 */
static void *
table_entry(HTAB *table, const void *key, int max_entries,
			size_t last_used_offset, TimestampTz now, bool *found)
{
	char	   *entry = hash_search(table, key, HASH_FIND, found);

	if (entry == NULL)
	{
		if (hash_get_num_entries(table) >= max_entries)
		{
			HASH_SEQ_STATUS scan;
			char	   *candidate;
			char	   *oldest = NULL;

			hash_seq_init(&scan, table);
			while ((candidate = hash_seq_search(&scan)) != NULL)
			{
				if (oldest == NULL ||
					*(TimestampTz *) (candidate + last_used_offset) <
					*(TimestampTz *) (oldest + last_used_offset))
					oldest = candidate;
			}
			/* an entry begins with its key */
			(void) hash_search(table, oldest, HASH_REMOVE, NULL);
		}
		entry = hash_search(table, key, HASH_ENTER_NULL, found);
		if (entry == NULL)
			return NULL;
	}
	*(TimestampTz *) (entry + last_used_offset) = now;
	return entry;
}

/*
 * The state of the server's location, created on first use; NULL only if
 * the table cannot take an entry at all, and then the location is not
 * paced.  Call with the lock held exclusively.
 */
static GhlLocationState *
ghl_location(const GhlOptions *options, TimestampTz now)
{
	char		key[GHL_LOCATION_KEYLEN];
	GhlLocationState *loc;
	bool		found;

	memset(key, 0, sizeof(key));
	location_key(options, key);
	loc = table_entry(ghl_locations, key, GHL_MAX_LOCATIONS,
					  offsetof(GhlLocationState, last_used), now, &found);
	if (loc != NULL && !found)
	{
		loc->limit = 0;
		loc->interval_ms = 0;
		loc->daily_remaining = -1;
		loc->daily_seen = 0;
		loc->blocked_until = 0;
		loc->head = 0;
		loc->nsent = 0;
	}
	return loc;
}

/*
 * The sliding window is the interval plus a margin, so that a request
 * sent just after the oldest one left our window cannot still land in the
 * API's window through network jitter.
 */
static long
ghl_window_ms(const GhlLocationState *loc)
{
	long		window = loc->interval_ms + loc->interval_ms / 40 + 25;

	/*
	 * A limit larger than the ring is paced proportionally: the ring's
	 * GHL_RATE_SLOTS sends must span their share of the window.
	 */
	if (loc->limit > GHL_RATE_SLOTS)
		window = (long) ((double) window * GHL_RATE_SLOTS / loc->limit);
	return window;
}

/*
 * How many of the remembered sends are inside the window that ends now;
 * *first is the position (from the oldest) of the first of them.
 */
static int
ghl_sent_in_window(const GhlLocationState *loc, TimestampTz now, int *first)
{
	TimestampTz horizon = TimestampTzPlusMilliseconds(now, -ghl_window_ms(loc));
	int			skip = 0;

	while (skip < loc->nsent &&
		   loc->sent[(loc->head + skip) % GHL_RATE_SLOTS] <= horizon)
		skip++;
	*first = skip;
	return loc->nsent - skip;
}

/*
 * Remember a request as sent at "when".  A full ring drops its oldest
 * entry; ghl_window_ms() shrinks the window to match.
 */
static void
ghl_record_sent(GhlLocationState *loc, TimestampTz when)
{
	if (loc->nsent == GHL_RATE_SLOTS)
	{
		loc->head = (loc->head + 1) % GHL_RATE_SLOTS;
		loc->nsent--;
	}
	loc->sent[(loc->head + loc->nsent) % GHL_RATE_SLOTS] = when;
	loc->nsent++;
}

/* the daily count is only trusted on the UTC day it was learned */
static bool
ghl_daily_known(const GhlLocationState *loc, TimestampTz now)
{
	const int64 usecs_per_day = INT64CONST(86400000000);

	return loc->daily_remaining >= 0 &&
		loc->daily_seen / usecs_per_day == now / usecs_per_day;
}

/*
 * Ask for one request of the location's budget without waiting: returns 0
 * when it may be sent now (it is then counted as sent), else how many
 * milliseconds to wait before asking again.  Refuses, without sending,
 * once the daily budget is down to the server's daily_budget_floor.  The
 * transport keeps its transfers moving while it waits (http_multi.c).
 */
long
ghl_governor_try_acquire(const GhlOptions *options)
{
	GhlLocationState *loc;
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms = 0;
	int64		daily_left = -1;

	ghl_lock_tables(LW_EXCLUSIVE);
	loc = ghl_location(options, now);
	if (loc == NULL)
	{
		ghl_unlock_tables();
		return 0;
	}
	if (options->daily_budget_floor > 0 && ghl_daily_known(loc, now) &&
		loc->daily_remaining <= options->daily_budget_floor)
		daily_left = loc->daily_remaining;
	else if (loc->blocked_until > now)
		wait_ms = TimestampDifferenceMilliseconds(now, loc->blocked_until);
	else if (loc->limit > 0 && loc->interval_ms > 0)
	{
		int			allowed = Min(loc->limit, GHL_RATE_SLOTS);
		int			first;
		int			in_window = ghl_sent_in_window(loc, now, &first);

		/* wait until enough of them have left for one more */
		if (in_window >= allowed)
		{
			TimestampTz leaves = loc->sent[(loc->head + first + in_window - allowed) %
										   GHL_RATE_SLOTS];

			wait_ms = TimestampDifferenceMilliseconds(now,
													  TimestampTzPlusMilliseconds(leaves,
																				  ghl_window_ms(loc)));
		}
	}
	if (daily_left < 0 && wait_ms <= 0)
	{
		ghl_record_sent(loc, now);
		if (ghl_daily_known(loc, now) && loc->daily_remaining > 0)
			loc->daily_remaining--;
	}
	ghl_unlock_tables();

	if (daily_left >= 0)
	{
		ghl_count(options, GHL_COUNT_BUDGET_REFUSALS, 1);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("daily request budget of GHL server \"%s\" is down to %lld requests",
						options->server_name, (long long) daily_left),
				 errdetail("The server option daily_budget_floor keeps the last %d requests of the day in reserve.",
						   options->daily_budget_floor),
				 errhint("Wait for the daily budget to reset, or lower daily_budget_floor.")));
	}
	if (wait_ms <= 0)
		return 0;

	/* a little jitter, so that waiting backends do not wake together */
	return wait_ms + (long) pg_prng_uint64_range(&pg_global_prng_state, 0,
												 Min(50, wait_ms / 10 + 1));
}

/*
 * Refuse to wait wait_ms for the governor when the wait would end after
 * statement_timeout: the statement fails at once, saying why, instead of
 * waiting into the cancel.  Shorter waits are the caller's to wait out,
 * moving its transfers along meanwhile (http_multi.c).
 */
void
ghl_governor_check_deadline(const GhlOptions *options, long wait_ms)
{
	long		left_ms = ghl_statement_ms_left();

	if (left_ms >= 0 && wait_ms >= left_ms)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("rate limit of GHL server \"%s\" allows no request before statement_timeout",
						options->server_name),
				 errdetail("The next request may be sent in %ld ms; statement_timeout ends the statement in %ld ms.",
						   wait_ms, left_ms),
				 errhint("Raise statement_timeout, or run fewer queries against the location at once.")));
}

/*
 * Count a wait the governor imposed: one throttled request (first is true
 * for its first wait) and the milliseconds it waits.
 */
void
ghl_governor_count_wait(const GhlOptions *options, long wait_ms, bool first)
{
	if (first)
		ghl_count(options, GHL_COUNT_THROTTLE_WAITS, 1);
	ghl_count(options, GHL_COUNT_THROTTLE_MS, wait_ms);
}

/*
 * Learn from a response: the limits in its headers, a budget spent by
 * clients the governor does not see (the API counting more requests than
 * we sent is taken as requests sent just now), and a 429, which blocks
 * the location for wait_ms.  A limit below one request or an interval
 * beyond GHL_MAX_INTERVAL_MS is no limit an API could mean, and is
 * ignored; a block is cut to GHL_MAX_INTERVAL_MS.
 */
void
ghl_governor_observe(const GhlOptions *options, const GhlRateLimit *rate,
					 long status, long wait_ms)
{
	GhlLocationState *loc;
	TimestampTz now = GetCurrentTimestamp();
	int			in_window;
	int			first;

	ghl_lock_tables(LW_EXCLUSIVE);
	loc = ghl_location(options, now);
	if (loc != NULL)
	{
		if (rate->max >= 1)
			loc->limit = (int32) Min(rate->max, PG_INT32_MAX);
		if (rate->interval_ms >= 1 && rate->interval_ms <= GHL_MAX_INTERVAL_MS)
			loc->interval_ms = (int32) rate->interval_ms;
		if (rate->daily_remaining >= 0)
		{
			loc->daily_remaining = rate->daily_remaining;
			loc->daily_seen = now;
		}
		if (loc->limit > 0 && loc->interval_ms > 0 && rate->remaining >= 0)
		{
			int64		spent = loc->limit - rate->remaining;

			/* a limit larger than the ring counts in proportion, as it paces */
			if (loc->limit > GHL_RATE_SLOTS)
				spent = spent * GHL_RATE_SLOTS / loc->limit;
			spent = Min(spent, GHL_RATE_SLOTS);
			for (in_window = ghl_sent_in_window(loc, now, &first);
				 in_window < spent; in_window++)
				ghl_record_sent(loc, now);
		}
		if (status == 429 && wait_ms > 0)
			loc->blocked_until =
				Max(loc->blocked_until,
					TimestampTzPlusMilliseconds(now, Min(wait_ms,
														 GHL_MAX_INTERVAL_MS)));
	}
	ghl_unlock_tables();
}

/*
 * Add to one counter of the server.  A table that cannot take the server
 * drops the count rather than fail the request.
 */
void
ghl_count(const GhlOptions *options, GhlCounter which, int64 n)
{
	GhlServerKey key;
	GhlServerCounters *entry;
	bool		found;

	if (n == 0)
		return;
	key.dbid = MyDatabaseId;
	key.serverid = options->serverid;
	ghl_lock_tables(LW_EXCLUSIVE);
	entry = table_entry(ghl_counters, &key, GHL_MAX_SERVERS,
						offsetof(GhlServerCounters, last_used),
						GetCurrentTimestamp(), &found);
	if (entry != NULL)
	{
		if (!found)
			memset(entry->counts, 0, sizeof(entry->counts));
		entry->counts[which] += n;
	}
	ghl_unlock_tables();
}

/*
 * How many milliseconds are left before statement_timeout cancels the
 * current statement; -1 when no timeout is set.
 */
long
ghl_statement_ms_left(void)
{
	TimestampTz deadline;

	if (StatementTimeout <= 0)
		return -1;
	deadline = TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline),
			   0);
}

/*
 * ghl_fdw.request_stats(): the counters of the servers of this database
 * that the current user may use; the others are none of its business.
 * They are copied out under the lock and named after it, since a catalog
 * lookup must not run while an LWLock is held.
 */
Datum
ghl_fdw_request_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS scan;
	GhlServerCounters *entry;
	GhlServerCounters *copy;
	int			n = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	ghl_lock_tables(LW_SHARED);
	copy = palloc(sizeof(GhlServerCounters) * (hash_get_num_entries(ghl_counters) + 1));
	hash_seq_init(&scan, ghl_counters);
	while ((entry = hash_seq_search(&scan)) != NULL)
		if (entry->key.dbid == MyDatabaseId)
			copy[n++] = *entry;
	ghl_unlock_tables();

	for (i = 0; i < n; i++)
	{
		ForeignServer *server = GetForeignServerExtended(copy[i].key.serverid,
														 FSV_MISSING_OK);
		Datum		values[GHL_NUM_COUNTERS + 2];
		bool		nulls[GHL_NUM_COUNTERS + 2];
		int			c;

		if (server == NULL ||
			pg_foreign_server_aclcheck(server->serverid, GetUserId(),
									   ACL_USAGE) != ACLCHECK_OK)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(server->servername);
		for (c = 0; c < GHL_NUM_COUNTERS; c++)
			values[c + 1] = Int64GetDatum(copy[i].counts[c]);
		values[GHL_NUM_COUNTERS + 1] = BoolGetDatum(ghl_shared);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * ghl_fdw.request_stats_reset(): zero the counters of this database's
 * servers, e.g. before measuring a workload.
 */
Datum
ghl_fdw_request_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS scan;
	GhlServerCounters *entry;

	ghl_lock_tables(LW_EXCLUSIVE);
	hash_seq_init(&scan, ghl_counters);
	while ((entry = hash_seq_search(&scan)) != NULL)
		if (entry->key.dbid == MyDatabaseId)
			memset(entry->counts, 0, sizeof(entry->counts));
	ghl_unlock_tables();
	PG_RETURN_VOID();
}
