/*-------------------------------------------------------------------------
 *
 * pool.c
 *		  ghl_fdw_webhookd's bounded pool of libpq connections, and the
 *		  one statement it runs: SELECT ghl_fdw.apply_webhook($1, $2).
 *
 * A delivery borrows a connection for one statement.  The statement runs
 * outside any transaction block, so the server commits it before it
 * answers: a result in hand means the delivery is stored.  Connections
 * are opened on first use and opened again (PQreset) after the database
 * went away; while it stays away, new attempts are spaced out so that a
 * burst of deliveries is answered at once instead of each waiting for a
 * connection to fail.  A connection lost in the middle of a statement
 * leaves it unknown whether the delivery was stored; running it again on
 * a fresh connection is safe because apply_webhook recognizes a webhookId
 * it has stored as a duplicate.
 *
 * IDENTIFICATION
 *		  src/webhookd/pool.c
 *
 *-------------------------------------------------------------------------
 */
#include "webhookd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define APPLY_STATEMENT		"ghl_fdw_apply"
#define APPLY_SQL			"SELECT ghl_fdw.apply_webhook($1, $2)"
#define TEXT_OID			25
#define JSONB_OID			3802

/* after a failed connection attempt, the next one waits this long */
#define RECONNECT_DELAY_MS	1000

typedef struct PoolSlot
{
	PGconn	   *conn;			/* NULL until first used */
	bool		busy;			/* lent to a delivery */
	bool		prepared;		/* APPLY_STATEMENT exists on conn */
} PoolSlot;

struct Pool
{
	pthread_mutex_t mutex;
	pthread_cond_t freed;		/* a slot was given back */
	const char *keywords[5];	/* connection parameters */
	const char *values[5];
	int			size;
	PoolSlot   *slots;
	int64_t		next_attempt_us;	/* no connection attempt before this */
};

/*
 * The connection parameters: the DSN, with a default connect timeout and
 * application name it may override, and the client encoding it may not:
 * the body must reach the server as the UTF-8 it was signed in.
 */
static void
set_parameters(Pool *pool, const char *dsn)
{
	pool->keywords[0] = "connect_timeout";
	pool->values[0] = "5";
	pool->keywords[1] = "fallback_application_name";
	pool->values[1] = "ghl_fdw_webhookd";
	pool->keywords[2] = "dbname";
	pool->values[2] = dsn;
	pool->keywords[3] = "client_encoding";
	pool->values[3] = "UTF8";
	pool->keywords[4] = NULL;
	pool->values[4] = NULL;
}

/*
 * A pool of size slots; no connection is opened until a delivery needs
 * one, so the receiver starts while the database is still away.
 */
Pool *
pool_create(const char *dsn, int size)
{
	Pool	   *pool = calloc(1, sizeof(Pool));
	pthread_condattr_t attr;

	if (pool == NULL || (pool->slots = calloc(size, sizeof(PoolSlot))) == NULL)
	{
		free(pool);
		return NULL;
	}
	pool->size = size;
	set_parameters(pool, dsn);
	pthread_mutex_init(&pool->mutex, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->freed, &attr);
	pthread_condattr_destroy(&attr);
	return pool;
}

/* Close every connection; no delivery may be running. */
void
pool_destroy(Pool *pool)
{
	int			i;

	for (i = 0; i < pool->size; i++)
	{
		if (pool->slots[i].conn)
			PQfinish(pool->slots[i].conn);
	}
	pthread_cond_destroy(&pool->freed);
	pthread_mutex_destroy(&pool->mutex);
	free(pool->slots);
	free(pool);
}

/*
 * Borrow a slot, waiting up to wait_ms for one to be given back.  A slot
 * with an open connection is preferred, so connections get reused rather
 * than opened.  NULL when none became free in time.
 */
static PoolSlot *
acquire(Pool *pool, int wait_ms)
{
	struct timespec deadline;
	PoolSlot   *slot = NULL;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (long) (wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&pool->mutex);
	for (;;)
	{
		int			i;

		for (i = 0; i < pool->size; i++)
		{
			PoolSlot   *s = &pool->slots[i];

			if (s->busy)
				continue;
			if (slot == NULL || (slot->conn == NULL && s->conn != NULL))
				slot = s;
		}
		if (slot != NULL ||
			pthread_cond_timedwait(&pool->freed, &pool->mutex, &deadline) == ETIMEDOUT)
			break;
	}
	if (slot)
		slot->busy = true;
	pthread_mutex_unlock(&pool->mutex);
	return slot;
}

/* Give a slot back and wake one delivery waiting for it. */
static void
release(Pool *pool, PoolSlot *slot)
{
	pthread_mutex_lock(&pool->mutex);
	slot->busy = false;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->mutex);
}

/* Copy the first line of a libpq message into reason. */
static void
copy_reason(char *reason, size_t size, const char *message)
{
	size_t		len = strcspn(message ? message : "", "\n");

	if (len >= size)
		len = size - 1;
	memcpy(reason, message ? message : "", len);
	reason[len] = '\0';
}

/*
 * Make the slot's connection usable: open or reset it and prepare the
 * statement.  While the database is known to be away, answer at once.
 */
static bool
connect_slot(Pool *pool, PoolSlot *slot, char *reason, size_t reason_size)
{
	PGresult   *res;
	Oid			types[2] = {TEXT_OID, JSONB_OID};
	bool		ok;
	int64_t		now = monotonic_us();

	if (slot->conn != NULL && PQstatus(slot->conn) == CONNECTION_OK &&
		slot->prepared)
		return true;

	if (slot->conn == NULL || PQstatus(slot->conn) != CONNECTION_OK)
	{
		pthread_mutex_lock(&pool->mutex);
		ok = now >= pool->next_attempt_us;
		pthread_mutex_unlock(&pool->mutex);
		if (!ok)
		{
			copy_reason(reason, reason_size, "database unavailable");
			return false;
		}
		slot->prepared = false;
		if (slot->conn == NULL)
			slot->conn = PQconnectdbParams(pool->keywords, pool->values, 1);
		else
			PQreset(slot->conn);
		if (slot->conn == NULL || PQstatus(slot->conn) != CONNECTION_OK)
		{
			copy_reason(reason, reason_size,
						slot->conn ? PQerrorMessage(slot->conn) : "out of memory");
			pthread_mutex_lock(&pool->mutex);
			pool->next_attempt_us = monotonic_us() + RECONNECT_DELAY_MS * 1000;
			pthread_mutex_unlock(&pool->mutex);
			return false;
		}
	}

	res = PQprepare(slot->conn, APPLY_STATEMENT, APPLY_SQL, 2, types);
	slot->prepared = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!slot->prepared)
		copy_reason(reason, reason_size, PQresultErrorMessage(res));
	PQclear(res);
	return slot->prepared;
}

/* Sort a finished statement into an ApplyResult. */
static ApplyResult
classify(PGresult *res, char *outcome, size_t outcome_size,
		 char *reason, size_t reason_size)
{
	const char *sqlstate;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 0))
	{
		copy_reason(outcome, outcome_size, PQgetvalue(res, 0, 0));
		return APPLY_DONE;
	}
	copy_reason(reason, reason_size,
				PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
				PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
				PQresultErrorMessage(res));
	sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (sqlstate && strcmp(sqlstate, "28000") == 0)
		return APPLY_REFUSED;
	if (sqlstate && strncmp(sqlstate, "22", 2) == 0)
		return APPLY_MALFORMED;
	return APPLY_FAILED;
}

/*
 * Hand one delivery to apply_webhook.  APPLY_DONE only once the server
 * has committed it.
 */
ApplyResult
pool_apply(Pool *pool, int wait_ms, const char *body, const char *headers_json,
		   char *outcome, size_t outcome_size, char *reason, size_t reason_size)
{
	PoolSlot   *slot = acquire(pool, wait_ms);
	const char *params[2] = {body, headers_json};
	ApplyResult result = APPLY_UNAVAILABLE;
	int			attempt;

	if (slot == NULL)
	{
		copy_reason(reason, reason_size, "no database connection free");
		return APPLY_BUSY;
	}
	for (attempt = 0; attempt < 2; attempt++)
	{
		PGresult   *res;

		if (!connect_slot(pool, slot, reason, reason_size))
		{
			/* a statement that failed to prepare is not the database's absence */
			result = slot->conn && PQstatus(slot->conn) == CONNECTION_OK ?
				APPLY_FAILED : APPLY_UNAVAILABLE;
			break;
		}
		res = PQexecPrepared(slot->conn, APPLY_STATEMENT, 2, params,
							 NULL, NULL, 0);
		if (PQstatus(slot->conn) != CONNECTION_OK)
		{
			/* lost, e.g. to a restart: once more on a new connection */
			copy_reason(reason, reason_size, PQerrorMessage(slot->conn));
			PQclear(res);
			continue;
		}
		result = classify(res, outcome, outcome_size, reason, reason_size);
		PQclear(res);
		break;
	}
	release(pool, slot);
	return result;
}

/* Whether the database accepts connections (for /healthz). */
bool
pool_ping(Pool *pool)
{
	return PQpingParams(pool->keywords, pool->values, 1) == PQPING_OK;
}

/*
 * The DSN's host, port, database and user, for the log: never its
 * password or other options.
 */
void
pool_describe(const char *dsn, char *out, size_t size)
{
	static const char *const shown[] = {"host", "port", "dbname", "user"};
	PQconninfoOption *options = PQconninfoParse(dsn, NULL);
	PQconninfoOption *o;
	size_t		len = 0;

	out[0] = '\0';
	if (options == NULL)
		return;
	for (o = options; o->keyword; o++)
	{
		size_t		i;

		for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
		{
			if (o->val && o->val[0] && strcmp(o->keyword, shown[i]) == 0 &&
				len < size)
				len += snprintf(out + len, size - len, "%s%s=%s",
								len > 0 ? " " : "", o->keyword, o->val);
		}
	}
	PQconninfoFree(options);
}
