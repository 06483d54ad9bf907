/*-------------------------------------------------------------------------
 *
 * webhookd.h
 *		  Declarations shared by the files of ghl_fdw_webhookd, the
 *		  receiver of HighLevel webhook deliveries.
 *
 * IDENTIFICATION
 *		  src/webhookd/webhookd.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKD_H
#define WEBHOOKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* seconds a sender is asked to wait after a 429 */
#define WEBHOOKD_RETRY_AFTER	60

/* The settings, from the command line and the config file. */
typedef struct WebhookdConfig
{
	char	   *listen;			/* HOST:PORT */
	char	   *dsn;			/* libpq connection string */
	char	   *path;			/* the path deliveries are posted to */
	int			pool;			/* database connections */
	int			pool_wait_ms;	/* longest wait for a free connection */
	long		max_body;		/* largest body accepted, in bytes */
	int			timeout;		/* idle seconds before a connection closes */
} WebhookdConfig;

/* in webhookd.c */
extern void log_line(const char *format,...) __attribute__((format(printf, 1, 2)));
extern int64_t monotonic_us(void);

/* in pool.c */

/* What became of one delivery handed to the database. */
typedef enum ApplyResult
{
	APPLY_DONE,					/* committed; the outcome says how */
	APPLY_REFUSED,				/* signature or age refused (SQLSTATE 28000) */
	APPLY_MALFORMED,			/* not a HighLevel event (class 22) */
	APPLY_BUSY,					/* no connection free in time */
	APPLY_UNAVAILABLE,			/* the database cannot be reached */
	APPLY_FAILED				/* the database failed it otherwise */
} ApplyResult;

typedef struct Pool Pool;

extern Pool *pool_create(const char *dsn, int size);
extern void pool_destroy(Pool *pool);
extern ApplyResult pool_apply(Pool *pool, int wait_ms, const char *body,
							  const char *headers_json,
							  char *outcome, size_t outcome_size,
							  char *reason, size_t reason_size);
extern bool pool_ping(Pool *pool);
extern void pool_describe(const char *dsn, char *out, size_t size);

/* in receiver.c */
typedef struct Receiver Receiver;

extern Receiver *receiver_start(const WebhookdConfig *config, Pool *pool,
								unsigned int *port);
extern void receiver_stop(Receiver *receiver, int grace_ms);

#endif							/* WEBHOOKD_H */
