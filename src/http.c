/*-------------------------------------------------------------------------
 *
 * http.c
 *		  HTTP transport to the GHL API: connections, and one attempt of a
 *		  request from its first header to the verdict on its outcome.
 *
 * One connection per user mapping is cached for the life of the backend:
 * a libcurl multi handle, whose connection cache keeps sockets alive
 * across pages, queries and transfers that run side by side, and a pool
 * of easy handles that attempts reuse.  An attempt is one try of a
 * request on a pooled handle: it is built here (token, headers, timeouts),
 * its response headers and body are collected here, and here it is
 * judged: what it counts, whether the request is retried and after how
 * long, and which error it ends in, with a real SQLSTATE.  When attempts
 * run, how they are paced by the rate-limit governor and how the wait
 * for them is interrupted is http_multi.c's concern.
 *
 * Nothing raises an error inside a curl callback: callbacks only collect
 * data and set flags, and errors are raised once the transfer is over.
 *
 * A server owned by a non-superuser may only reach what the administrator
 * allowed: its URLs are checked again before each attempt, and the address
 * curl is about to connect to, after DNS resolution, must not be loopback,
 * private, link-local or otherwise internal.
 *
 * IDENTIFICATION
 *		  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

/* backoff between retries: base doubling per retry, capped */
#define GHL_BACKOFF_BASE_MS		250
#define GHL_BACKOFF_MAX_MS		10000
/* longest wait a Retry-After or a rate window may impose on one retry */
#define GHL_MAX_WAIT_MS			60000
/* initial size of an attempt's response buffer, and the most a pooled one keeps */
#define GHL_INITIAL_BUFFER		(64 * 1024)
#define GHL_KEPT_BUFFER			(1024 * 1024)

/*
 * One easy handle of a connection's pool, with what an attempt on it
 * collects.  Allocated once and never moved, so curl may keep pointers to
 * it; reused by attempt after attempt, and so is its response buffer.
 */
struct GhlAttempt
{
	CURL	   *easy;
	GhlAttempt *next_idle;		/* in the connection's pool */
	struct curl_slist *headers; /* of the attempt, NULL between attempts */
	bool		running;		/* added to the connection's multi handle */
	uint64		finished;		/* completion order, 0 until finished */
	uint32		auth_epoch;		/* the connection's when the token was taken */
	bool		secret;			/* the answer holds a token: wipe it */
	CURLcode	rc;				/* how the transfer ended */
	long		status;			/* its HTTP status, 0 without a response */
	curl_off_t	connect_time;	/* 0 if it never connected */

	/* response body, malloc'd: curl callbacks must not palloc */
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		overflow;		/* body exceeded ghl_max_response_bytes */
	bool		oom;			/* realloc failed */

	/* the address the attempt refused to connect to, and why */
	char		refused_address[INET6_ADDRSTRLEN];
	const char *refused_kind;

	char		content_type[128];	/* "" if none */
	int64		retry_after;	/* Retry-After in seconds, or -1 */
	GhlRateLimit rate;			/* X-RateLimit-* headers */
	time_t		date;			/* Date header, or -1 */
	char		errbuf[CURL_ERROR_SIZE];
};

/*
 * A cached connection: the hash entry itself, so pointers handed out stay
 * valid for the life of the backend (dynahash never moves entries).
 */
struct GhlConnection
{
	Oid			umid;			/* hash key: user mapping OID */
	CURLM	   *multi;			/* NULL until (re)opened */
	MemoryContext cxt;			/* holds options */
	GhlOptions *options;		/* copy taken when the handle was opened */
	bool		invalidated;	/* server or mapping changed: rebuild */
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;

	GhlAttempt *idle;			/* pooled handles not in use */
	int			nbusy;			/* attempts taken and not yet released */
	int			nrunning;		/* of those, transfers in the multi handle */
	uint64		nfinished;		/* transfers finished so far */
	uint32		auth_epoch;		/* bumped whenever a rejected token is dropped */

	/* the last answer to an authenticated request: ghl_http_last_response */
	long		last_status;	/* 0: the attempt got no answer */
	GhlRateLimit last_rate;
	time_t		last_date;		/* 0 or less: no Date header */
};

/* the numeric response headers, and where each is kept */
static const struct
{
	const char *name;
	size_t		offset;
}			numeric_headers[] =
{
	{"Retry-After", offsetof(GhlAttempt, retry_after)},
	{"X-RateLimit-Max", offsetof(GhlAttempt, rate.max)},
	{"X-RateLimit-Remaining", offsetof(GhlAttempt, rate.remaining)},
	{"X-RateLimit-Interval-Milliseconds", offsetof(GhlAttempt, rate.interval_ms)},
	{"X-RateLimit-Limit-Daily", offsetof(GhlAttempt, rate.daily_limit)},
	{"X-RateLimit-Daily-Remaining", offsetof(GhlAttempt, rate.daily_remaining)},
};

#define GHL_HEADER_FIELD(attempt, i) \
	((int64 *) ((char *) (attempt) + numeric_headers[i].offset))

static HTAB *ConnectionHash = NULL;
static bool curl_initialized = false;

/*
 * Clear what the headers of one response told, so that nothing of an
 * earlier response (a stale X-RateLimit-Remaining above all) is taken for
 * the current one's.
 */
static void
ghl_forget_headers(GhlAttempt *attempt)
{
	int			i;

	attempt->content_type[0] = '\0';
	attempt->date = -1;
	for (i = 0; i < lengthof(numeric_headers); i++)
		*GHL_HEADER_FIELD(attempt, i) = -1;
}

/*
 * libcurl must be initialized once per process before any handle exists,
 * and that is not free: do it on first use, not at load time.
 */
static void
ghl_curl_global_init(void)
{
	if (curl_initialized)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_initialized = true;
}

/*
 * Mark connections stale when their server or user mapping changes, so the
 * next use rebuilds them from the new options.  Only a flag: a scan may
 * still hold the connection.
 */
static void
ghl_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	GhlConnection *conn;

	hash_seq_init(&scan, ConnectionHash);
	while ((conn = (GhlConnection *) hash_seq_search(&scan)) != NULL)
	{
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && conn->server_hashvalue == hashvalue) ||
			(cacheid == USERMAPPINGOID && conn->mapping_hashvalue == hashvalue))
			conn->invalidated = true;
	}
}

/*
 * Deep-copy the options into the current context: the caller's copy dies
 * with its query, the connection's must live as long as the handle.
 */
static GhlOptions *
ghl_copy_options(const GhlOptions *src)
{
	GhlOptions *dst = palloc(sizeof(GhlOptions));

	memcpy(dst, src, sizeof(GhlOptions));
#define GHL_COPY_STRING(field) \
	(dst->field = src->field ? pstrdup(src->field) : NULL)
	GHL_COPY_STRING(server_name);
	GHL_COPY_STRING(location_id);
	GHL_COPY_STRING(base_url);
	GHL_COPY_STRING(token_url);
	GHL_COPY_STRING(api_version);
	GHL_COPY_STRING(sync_schema);
	GHL_COPY_STRING(access_token);
	GHL_COPY_STRING(client_id);
	GHL_COPY_STRING(client_secret);
	GHL_COPY_STRING(refresh_token);
	GHL_COPY_STRING(user_type);
#undef GHL_COPY_STRING
	return dst;
}

/*
 * Build the long-lived state of a connection.  Everything that can fail
 * with an ereport comes before curl_multi_init, so a failure leaves nothing
 * that ghl_close_connection cannot release.  The connection cache is as
 * large as the most transfers that may run at once, so that sockets opened
 * by a concurrent batch stay open for the next one.
 */
static void
ghl_open_connection(GhlConnection *conn, GhlOptions *options)
{
	MemoryContext oldcxt;

	conn->cxt = AllocSetContextCreate(CacheMemoryContext,
									  "ghl_fdw connection",
									  ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(conn->cxt);
	conn->options = ghl_copy_options(options);
	MemoryContextSwitchTo(oldcxt);

	conn->server_hashvalue =
		GetSysCacheHashValue1(FOREIGNSERVEROID,
							  ObjectIdGetDatum(options->serverid));
	conn->mapping_hashvalue =
		GetSysCacheHashValue1(USERMAPPINGOID,
							  ObjectIdGetDatum(options->umid));
	conn->invalidated = false;

	conn->multi = curl_multi_init();
	if (conn->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle for GHL server \"%s\"",
						options->server_name)));
	curl_multi_setopt(conn->multi, CURLMOPT_MAXCONNECTS,
					  (long) GHL_MAX_CONCURRENCY);
}

/*
 * Release the handles (closing their kept-alive sockets) and the options.
 * Only called with no attempt in use.  The old options may still be
 * referenced by a running scan, so inside a transaction they are handed to
 * it to be freed at its end.
 */
static void
ghl_close_connection(GhlConnection *conn)
{
	Assert(conn->nbusy == 0);
	while (conn->idle != NULL)
	{
		GhlAttempt *attempt = conn->idle;

		conn->idle = attempt->next_idle;
		curl_easy_cleanup(attempt->easy);
		free(attempt->buf);
		pfree(attempt);
	}
	if (conn->multi != NULL)
	{
		curl_multi_cleanup(conn->multi);
		conn->multi = NULL;
	}
	if (conn->cxt != NULL)
	{
		if (IsTransactionState())
			MemoryContextSetParent(conn->cxt, TopTransactionContext);
		else
			MemoryContextDelete(conn->cxt);
		conn->cxt = NULL;
		conn->options = NULL;
	}
}

/*
 * Return the cached connection for this user mapping, opening it (or
 * reopening it after ALTER SERVER / ALTER USER MAPPING) as needed.  Keyed by
 * the mapping, like postgres_fdw, because the credentials live there.  A
 * connection with transfers in flight is rebuilt only once they are over.
 */
GhlConnection *
ghl_get_connection(GhlOptions *options)
{
	GhlConnection *conn;
	bool		found;

	if (ConnectionHash == NULL)
	{
		HASHCTL		ctl;

		ghl_curl_global_init();
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(GhlConnection);
		ConnectionHash = hash_create("ghl_fdw connections", 8, &ctl,
									 HASH_ELEM | HASH_BLOBS);
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID,
									  ghl_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID,
									  ghl_inval_callback, (Datum) 0);
	}

	conn = hash_search(ConnectionHash, &options->umid, HASH_ENTER, &found);
	if (!found)
	{
		Oid			umid = conn->umid;

		MemSet(conn, 0, sizeof(GhlConnection));
		conn->umid = umid;
	}

	if (conn->multi == NULL || (conn->invalidated && conn->nbusy == 0))
	{
		ghl_close_connection(conn);
		ghl_open_connection(conn, options);
	}
	return conn;
}

/* The options the connection was opened with. */
GhlOptions *
ghl_connection_options(GhlConnection *conn)
{
	return conn->options;
}

/*
 * A handle of the pool for a new attempt, created when all are in use.
 * The pool only grows to the most transfers that ran at once.
 */
static GhlAttempt *
ghl_take_handle(GhlConnection *conn)
{
	GhlAttempt *attempt = conn->idle;

	if (attempt != NULL)
		conn->idle = attempt->next_idle;
	else
	{
		attempt = MemoryContextAllocZero(TopMemoryContext, sizeof(GhlAttempt));
		attempt->easy = curl_easy_init();
		if (attempt->easy == NULL)
		{
			pfree(attempt);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle for GHL server \"%s\"",
							conn->options->server_name)));
		}
	}
	attempt->next_idle = NULL;
	conn->nbusy++;
	return attempt;
}

/*
 * Give an attempt's handle back to the pool, stopping its transfer if it
 * still runs.  Never raises an error: it runs on error paths and from
 * memory context reset callbacks.  A token endpoint's answer is wiped from
 * the buffer, which outlives the attempt; a buffer grown large by one big
 * page is freed, so a pool of many handles does not hold many big pages.
 */
void
ghl_attempt_release(GhlConnection *conn, GhlAttempt *attempt)
{
	if (attempt->running)
	{
		curl_multi_remove_handle(conn->multi, attempt->easy);
		attempt->running = false;
		conn->nrunning--;
	}
	/* the handle must not keep pointers to what is freed here */
	curl_easy_setopt(attempt->easy, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(attempt->headers);
	attempt->headers = NULL;
	if (attempt->secret && attempt->buf != NULL)
		explicit_bzero(attempt->buf, attempt->len);
	if (attempt->cap > GHL_KEPT_BUFFER)
	{
		free(attempt->buf);
		attempt->buf = NULL;
		attempt->cap = 0;
	}
	attempt->secret = false;
	attempt->len = 0;
	attempt->next_idle = conn->idle;
	conn->idle = attempt;
	conn->nbusy--;
}

/*
 * Collect the body into the attempt's malloc'd buffer.  Returning less
 * than was offered makes curl abort with CURLE_WRITE_ERROR; the flags tell
 * the caller why, since no error may be raised here.
 */
static size_t
ghl_write_callback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	GhlAttempt *attempt = (GhlAttempt *) userdata;
	size_t		n = size * nmemb;

	if (ghl_max_response_bytes > 0 &&
		attempt->len + n > (size_t) ghl_max_response_bytes)
	{
		attempt->overflow = true;
		return 0;
	}
	if (attempt->len + n + 1 > attempt->cap)
	{
		size_t		newcap = Max(attempt->cap, GHL_INITIAL_BUFFER);
		char	   *newbuf;

		while (newcap < attempt->len + n + 1)
			newcap *= 2;
		newbuf = realloc(attempt->buf, newcap);
		if (newbuf == NULL)
		{
			attempt->oom = true;
			return 0;
		}
		attempt->buf = newbuf;
		attempt->cap = newcap;
	}
	memcpy(attempt->buf + attempt->len, ptr, n);
	attempt->len += n;
	return n;
}

/*
 * Pick Content-Type, Date, Retry-After and the rate-limit headers out of
 * each response.  A status line starts a new response (e.g. after a 100
 * Continue): what describes only one response is cleared there.
 */
static size_t
ghl_header_callback(char *ptr, size_t size, size_t nitems, void *userdata)
{
	GhlAttempt *attempt = (GhlAttempt *) userdata;
	size_t		n = size * nitems;
	const char *colon = memchr(ptr, ':', n);
	size_t		namelen;
	const char *value;
	size_t		valuelen;
	char		number[32];
	char	   *end;
	long long	parsed;
	int			i;

	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
	{
		ghl_forget_headers(attempt);
		return n;
	}
	if (colon == NULL)
		return n;

	namelen = colon - ptr;
	value = colon + 1;
	valuelen = n - namelen - 1;
	while (valuelen > 0 && (*value == ' ' || *value == '\t'))
	{
		value++;
		valuelen--;
	}
	while (valuelen > 0 && strchr(" \t\r\n", value[valuelen - 1]) != NULL)
		valuelen--;

	if (namelen == strlen("Content-Type") &&
		pg_strncasecmp(ptr, "Content-Type", namelen) == 0)
	{
		valuelen = Min(valuelen, sizeof(attempt->content_type) - 1);
		memcpy(attempt->content_type, value, valuelen);
		attempt->content_type[valuelen] = '\0';
		return n;
	}

	/* an HTTP date; curl_getdate() parses it without allocating */
	if (namelen == strlen("Date") && pg_strncasecmp(ptr, "Date", namelen) == 0)
	{
		char		date[64];

		if (valuelen < sizeof(date))
		{
			memcpy(date, value, valuelen);
			date[valuelen] = '\0';
			attempt->date = curl_getdate(date, NULL);
		}
		return n;
	}

	for (i = 0; i < lengthof(numeric_headers); i++)
	{
		if (namelen != strlen(numeric_headers[i].name) ||
			pg_strncasecmp(ptr, numeric_headers[i].name, namelen) != 0)
			continue;
		if (valuelen == 0 || valuelen >= sizeof(number))
			break;
		memcpy(number, value, valuelen);
		number[valuelen] = '\0';
		errno = 0;
		parsed = strtoll(number, &end, 10);
		if (errno == 0 && *end == '\0' && parsed >= 0)
			*GHL_HEADER_FIELD(attempt, i) = parsed;
		break;
	}
	return n;
}

/*
 * Address blocks a non-superuser's server may not connect to: they reach
 * the database host itself, the internal network or a cloud's metadata
 * service (169.254.169.254) rather than a public API.
 */
static const struct
{
	uint8		prefix[16];
	int			bits;
	const char *kind;
}			refused_ipv6[] =
{
	{{0}, 128, "unspecified"},
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
	{{0xfe, 0x80}, 10, "link-local"},
	{{0xfe, 0xc0}, 10, "site-local"},
	{{0xfc}, 7, "unique local"},
	{{0xff}, 8, "multicast"},
},
			refused_ipv4[] =
{
	{{0}, 8, "unspecified"},
	{{10}, 8, "private"},
	{{100, 64}, 10, "shared (carrier-grade NAT)"},
	{{127}, 8, "loopback"},
	{{169, 254}, 16, "link-local"},
	{{172, 16}, 12, "private"},
	{{192, 168}, 16, "private"},
	{{224}, 4, "multicast"},
	{{240}, 4, "reserved or broadcast"},
};

/* IPv6 forms that carry an IPv4 address in their last 32 bits */
static const struct
{
	uint8		prefix[12];
}			ipv4_in_ipv6[] =
{
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}},	/* mapped ::ffff:a.b.c.d */
	{{0}},						/* compatible ::a.b.c.d */
	{{0, 0x64, 0xff, 0x9b}},	/* NAT64 64:ff9b::a.b.c.d */
};

/* Whether the first "bits" bits of addr equal those of prefix. */
static bool
prefix_match(const uint8 *addr, const uint8 *prefix, int bits)
{
	int			bytes = bits / 8;

	return memcmp(addr, prefix, bytes) == 0 &&
		(bits % 8 == 0 ||
		 ((addr[bytes] ^ prefix[bytes]) & (0xff << (8 - bits % 8))) == 0);
}

/*
 * Why a non-superuser's server may not connect to this address, or NULL
 * when it may.  IPv4 addresses wrapped in IPv6 are judged as IPv4.
 */
static const char *
refused_address_kind(const struct sockaddr *sa)
{
	const uint8 *addr;
	int			i;

	if (sa->sa_family == AF_INET6)
	{
		addr = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		for (i = 0; i < lengthof(refused_ipv6); i++)
			if (prefix_match(addr, refused_ipv6[i].prefix, refused_ipv6[i].bits))
				return refused_ipv6[i].kind;
		for (i = 0; i < lengthof(ipv4_in_ipv6); i++)
			if (memcmp(addr, ipv4_in_ipv6[i].prefix, 12) == 0)
				break;
		if (i == lengthof(ipv4_in_ipv6))
			return NULL;
		addr += 12;
	}
	else if (sa->sa_family == AF_INET)
		addr = (const uint8 *) &((const struct sockaddr_in *) sa)->sin_addr;
	else
		return "non-IP";

	for (i = 0; i < lengthof(refused_ipv4); i++)
		if (prefix_match(addr, refused_ipv4[i].prefix, refused_ipv4[i].bits))
			return refused_ipv4[i].kind;
	return NULL;
}

/*
 * libcurl's hook for creating a connection's socket, installed for servers
 * of non-superusers: it sees the address curl resolved and is about to
 * connect to, so a host name that resolves (or is rebound) to an internal
 * address is refused before anything is sent.  Only a flag and the
 * address are kept in the attempt; the error is raised once the transfer
 * is over.
 */
static curl_socket_t
ghl_open_socket(void *clientp, curlsocktype purpose,
				struct curl_sockaddr *address)
{
	GhlAttempt *attempt = (GhlAttempt *) clientp;
	const char *kind = refused_address_kind(&address->addr);

	if (kind != NULL)
	{
		const void *raw = address->family == AF_INET6 ?
			(const void *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr :
			(const void *) &((struct sockaddr_in *) &address->addr)->sin_addr;

		attempt->refused_kind = kind;
		if ((address->family != AF_INET && address->family != AF_INET6) ||
			inet_ntop(address->family, raw, attempt->refused_address,
					  sizeof(attempt->refused_address)) == NULL)
			strlcpy(attempt->refused_address, "?",
					sizeof(attempt->refused_address));
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * Name the request in every error raised while it runs: method and path,
 * without the query string (it may carry search terms) and without the
 * base URL (it may carry credentials).  arg is the GhlRequest.
 */
void
ghl_request_context(void *arg)
{
	const GhlRequest *request = (const GhlRequest *) arg;
	const char *path = request->path ? request->path : "";

	if (request->url != NULL)
	{
		const char *scheme = strstr(request->url, "://");
		const char *host = scheme ? scheme + 3 : request->url;

		path = host + strcspn(host, "/?#");
	}
	errcontext("HTTP request: %s %.*s", request->method,
			   (int) strcspn(path, "?#"), path);
}

/*
 * Append one header line.  Values come from options, so refuse line breaks
 * (header injection); the name alone is reported, since the value may be
 * the token.  Our palloc'd copy of the line is wiped for the same reason.
 */
static struct curl_slist *
ghl_add_header(struct curl_slist *list, const char *name, const char *value)
{
	char	   *line;
	struct curl_slist *newlist;

	if (strpbrk(value, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("value for HTTP header \"%s\" contains a line break",
						name)));
	line = psprintf("%s: %s", name, value);
	newlist = curl_slist_append(list, line);
	explicit_bzero(line, strlen(line));
	pfree(line);
	if (newlist == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return newlist;
}

/*
 * The request headers of an attempt, built into attempt->headers, so that
 * a list left half-built by an error is still freed with the attempt.
 */
static void
ghl_set_headers(GhlAttempt *attempt, const GhlRequest *request,
				const char *token, bool has_body)
{
	attempt->headers = ghl_add_header(attempt->headers, "Accept",
									  "application/json");
	if (token != NULL)
	{
		char	   *bearer = psprintf("Bearer %s", token);

		attempt->headers = ghl_add_header(attempt->headers, "Authorization",
										  bearer);
		explicit_bzero(bearer, strlen(bearer));
		pfree(bearer);
	}
	if (request->api_version != NULL)
		attempt->headers = ghl_add_header(attempt->headers, "Version",
										  request->api_version);
	if (has_body)
	{
		attempt->headers = ghl_add_header(attempt->headers, "Content-Type",
										  request->content_type ? request->content_type
										  : "application/json");
		/* no "Expect: 100-continue" round trip for larger bodies */
		attempt->headers = ghl_add_header(attempt->headers, "Expect", "");
	}
}

/*
 * Point a pooled handle at the request, from a clean slate: nothing of
 * the previous attempt on it (body, method, headers) may carry over.
 */
static void
ghl_configure_handle(GhlAttempt *attempt, const GhlRequest *request,
					 const GhlOptions *options, const char *url,
					 const char *body)
{
	CURL	   *curl = attempt->easy;

	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_PRIVATE, (char *) attempt);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, attempt->headers);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "ghl_fdw/" GHL_FDW_VERSION);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, attempt->errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ghl_write_callback);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, attempt);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, ghl_header_callback);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, attempt);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
					 (long) options->connect_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) options->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR,
					 options->owner_is_superuser ? "http,https" : "https");
#else
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS,
					 options->owner_is_superuser ?
					 (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS) :
					 (long) CURLPROTO_HTTPS);
#endif
	if (!options->owner_is_superuser)
	{
		curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, ghl_open_socket);
		curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, attempt);
	}
	if (ghl_max_response_bytes > 0)
		curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
						 (curl_off_t) ghl_max_response_bytes);
	if (body != NULL)
	{
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) strlen(body));
	}
	if (strcmp(request->method, "GET") == 0)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	else
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request->method);

	attempt->len = 0;
	attempt->overflow = false;
	attempt->oom = false;
	attempt->finished = 0;
	attempt->rc = CURLE_OK;
	attempt->status = 0;
	attempt->connect_time = 0;
	ghl_forget_headers(attempt);
	attempt->errbuf[0] = '\0';
	attempt->refused_kind = NULL;
}

/*
 * Start one attempt of a request: it is sent as the connection's transfers
 * are driven (ghl_connection_wait).  The bearer token is fetched first,
 * because getting one may take a while (a refresh), and the rest cannot
 * fail half-way without the handle going back to the pool.  The request
 * (and its body) must outlive the attempt.  Counted as a request as soon
 * as it is on its way.
 */
GhlAttempt *
ghl_attempt_start(GhlConnection *conn, const GhlRequest *request,
				  GhlRequestStats *stats)
{
	const char *token = NULL;
	const char *body = request->body;
	GhlAttempt *attempt;
	GhlOptions *options;
	char	   *url;
	uint32		auth_epoch = conn->auth_epoch;

	/* ghl_fdw.allowed_hosts may have changed since the server was made */
	if (!conn->options->owner_is_superuser)
		ghl_check_url(request->url ? "token_url" : "base_url",
					  request->url ? request->url : conn->options->base_url,
					  true, conn->options->server_name);

	if (request->authenticated)
		token = ghl_auth_bearer(conn, conn->options);
	options = conn->options;

	/* POST, PUT and PATCH always send a body, so Content-Length is set */
	if (body == NULL && (strcmp(request->method, "POST") == 0 ||
						 strcmp(request->method, "PUT") == 0 ||
						 strcmp(request->method, "PATCH") == 0))
		body = "";

	url = request->url ? pstrdup(request->url)
		: psprintf("%s%s", options->base_url, request->path);

	attempt = ghl_take_handle(conn);
	PG_TRY();
	{
		ghl_set_headers(attempt, request, token, body != NULL);
		ghl_configure_handle(attempt, request, options, url, body);
		if (curl_multi_add_handle(conn->multi, attempt->easy) != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not start a request to GHL server \"%s\"",
							options->server_name)));
	}
	PG_CATCH();
	{
		ghl_attempt_release(conn, attempt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(url);

	attempt->running = true;
	attempt->auth_epoch = auth_epoch;
	attempt->secret = request->token_request;
	conn->nrunning++;
	ghl_count(options, GHL_COUNT_REQUESTS, 1);
	if (stats != NULL)
		stats->requests++;
	return attempt;
}

/*
 * Take the transfers curl reports finished out of the multi handle, which
 * hands their connection back to its cache, and stamp them in the order
 * they finished.  Any attempt of the connection may finish here, whichever
 * batch waits: its owner finds it finished later.
 */
static void
ghl_collect_finished(GhlConnection *conn)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(conn->multi, &left)) != NULL)
	{
		CURL	   *easy = msg->easy_handle;
		CURLcode	rc = msg->data.result;
		char	   *owner = NULL;
		GhlAttempt *attempt;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &owner);
		attempt = (GhlAttempt *) owner;
		attempt->rc = rc;
		if (rc == CURLE_OK)
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &attempt->status);
		curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &attempt->connect_time);
		curl_multi_remove_handle(conn->multi, easy);
		attempt->running = false;
		conn->nrunning--;
		attempt->finished = ++conn->nfinished;
	}
}

/*
 * Move the connection's transfers along: wait up to timeout_ms for one of
 * their sockets (or curl's own timers), then let curl read and write what
 * it can.  Without transfers it just waits on the latch.  Returns early on
 * a signal, so a cancel or statement_timeout is seen at once; the caller
 * checks for interrupts.
 */
void
ghl_connection_wait(GhlConnection *conn, long timeout_ms)
{
	int			still_running;
	CURLMcode	mrc = CURLM_OK;

	if (conn->nrunning == 0)
	{
		if (timeout_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		return;
	}
	if (timeout_ms > 0)
		mrc = curl_multi_poll(conn->multi, NULL, 0, (int) timeout_ms, NULL);
	if (mrc == CURLM_OK)
		mrc = curl_multi_perform(conn->multi, &still_running);
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("HTTP transfer to GHL server \"%s\" failed",
						conn->options->server_name),
				 errdetail("%s", curl_multi_strerror(mrc))));
	ghl_collect_finished(conn);
}

/* Whether the attempt is over; then its rank in the order they finished. */
uint64
ghl_attempt_finished(const GhlAttempt *attempt)
{
	return attempt->finished;
}

/*
 * Whether an attempt may be retried.  A 429 and a failed connect or name
 * lookup mean the API never acted on the request, so any request may be
 * repeated; other failures may have reached it and are retried only when
 * repeating the request is harmless: GET, PUT and DELETE by their HTTP
 * semantics, other methods (a search by POST) when the caller says so.
 */
static bool
ghl_retryable(const GhlRequest *request, CURLcode rc, long status)
{
	bool		idempotent = request->idempotent ||
		strcmp(request->method, "GET") == 0 ||
		strcmp(request->method, "PUT") == 0 ||
		strcmp(request->method, "DELETE") == 0;

	switch (rc)
	{
		case CURLE_OK:
			if (status == 429)
				return true;
			return idempotent &&
				(status == 500 || status == 502 ||
				 status == 503 || status == 504);
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
			return true;
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_PARTIAL_FILE:
		case CURLE_GOT_NOTHING:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return idempotent;
		default:
			return false;
	}
}

/*
 * How long the API asked us to stay away after a 429 or 503: its
 * Retry-After (in seconds; the HTTP-date form is ignored), else, for a
 * 429, one rate interval, by which the window has surely rolled over.
 * 0 when it said nothing.
 */
static long
ghl_server_wait(GhlAttempt *attempt, long status)
{
	if ((status == 429 || status == 503) && attempt->retry_after > 0)
		return (long) Min(attempt->retry_after, GHL_MAX_WAIT_MS / 1000) * 1000;
	if (status == 429 && attempt->rate.interval_ms > 0)
		return (long) Min(attempt->rate.interval_ms, GHL_MAX_WAIT_MS);
	return 0;
}

/*
 * How long to wait before retry number "retry" (0-based): what the server
 * asked for, else an exponential backoff; with jitter either way, so that
 * backends hitting the same limit do not retry in lockstep (up to a
 * quarter of the wait: backends that do not share the governor all learn
 * of a full window at the same moment).
 */
static long
ghl_retry_delay(long server_wait, int retry)
{
	long		backoff;

	if (server_wait > 0)
		return server_wait +
			(long) pg_prng_uint64_range(&pg_global_prng_state, 0,
										Max(GHL_BACKOFF_BASE_MS, server_wait / 4));

	backoff = Min((long) GHL_BACKOFF_BASE_MS << Min(retry, 10),
				  GHL_BACKOFF_MAX_MS);
	return backoff / 2 +
		(long) pg_prng_uint64_range(&pg_global_prng_state, 0, backoff / 2);
}

/*
 * After a 401: whether trying again can send a different token.  Requests
 * that ran side by side with one token all come back 401; the first one
 * drops the token, and the others just retry with whatever replaced it
 * instead of rejecting the fresh token too.
 */
static bool
ghl_token_replaceable(GhlConnection *conn, GhlAttempt *attempt)
{
	if (attempt->auth_epoch != conn->auth_epoch)
		return true;
	if (!ghl_auth_forget(conn->options))
		return false;
	conn->auth_epoch++;
	return true;
}

/*
 * Judge a finished attempt: count it, let the governor learn from its
 * headers, and decide whether the request is tried again.  Returns true
 * with *delay_ms, the wait before the next attempt (0 for a 401 with a
 * token to replace), or false when this attempt is the request's outcome.
 * The same rules for every request, alone or side by side: retries only
 * of what is safe to repeat, at most max_retries of them (a 401 may add
 * one), and none whose backoff would outlast statement_timeout.
 */
bool
ghl_attempt_retry(GhlConnection *conn, GhlAttempt *attempt,
				  const GhlRequest *request, GhlRetryState *state,
				  GhlRequestStats *stats, long *delay_ms)
{
	GhlOptions *options = conn->options;
	long		status = attempt->status;
	long		server_wait = ghl_server_wait(attempt, status);
	long		delay;

	if (request->authenticated)
	{
		ghl_governor_observe(options, &attempt->rate, status, server_wait);
		conn->last_status = status;
		conn->last_rate = attempt->rate;
		conn->last_date = attempt->date;
	}
	ghl_count(options, GHL_COUNT_BYTES, attempt->len);
	if (status == 429)
		ghl_count(options, GHL_COUNT_RATE_LIMITED, 1);
	if (stats != NULL)
	{
		stats->bytes += attempt->len;
		if (status == 429)
			stats->rate_limited++;
	}

	/* a rejected token: forget it and try once more with a fresh one */
	if (status == 401 && request->authenticated && !state->auth_retried &&
		ghl_token_replaceable(conn, attempt))
	{
		state->auth_retried = true;
		delay = 0;
	}
	else
	{
		long		left_ms;

		/* a refused address stays refused */
		if (!ghl_retryable(request, attempt->rc, status) ||
			(attempt->rc == CURLE_COULDNT_CONNECT &&
			 attempt->refused_kind != NULL) ||
			state->retries >= options->max_retries)
			return false;
		delay = ghl_retry_delay(server_wait, state->retries);
		left_ms = ghl_statement_ms_left();
		if (left_ms >= 0 && delay >= left_ms)
		{
			elog(DEBUG1, "GHL server \"%s\": no retry, %ld ms of backoff would outlast statement_timeout",
				 options->server_name, delay);
			return false;
		}
		state->retries++;
		elog(DEBUG1, "GHL server \"%s\": %s, retry %d of %d in %ld ms",
			 options->server_name,
			 attempt->rc == CURLE_OK ? psprintf("HTTP %ld", status) :
			 curl_easy_strerror(attempt->rc),
			 state->retries, options->max_retries, delay);
	}
	if (stats != NULL)
		stats->retries++;
	ghl_count(options, GHL_COUNT_RETRIES, 1);
	*delay_ms = delay;
	return true;
}

/*
 * Cut text from the network to a short excerpt for an errdetail: at most
 * GHL_ERRDETAIL_MAX bytes of whole, valid UTF-8 characters, with control
 * characters (C0, DEL and C1) turned into '?' so that nothing the other
 * side sends can forge lines or terminal sequences in a log; in a
 * non-UTF-8 database non-ASCII bytes become '?' too, so the message can
 * always be encoded.
 */
static char *
ghl_clip_text(const char *text, size_t len)
{
	StringInfoData buf;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			keep;
	int			i;

	keep = pg_encoding_verifymbstr(PG_UTF8, text, (int) Min(len, GHL_ERRDETAIL_MAX));
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, text, keep);
	for (i = 0; i < buf.len; i++)
	{
		unsigned char c = (unsigned char) buf.data[i];

		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			buf.data[i] = '?';
		else if (c == 0xc2 && (unsigned char) buf.data[i + 1] < 0xa0)
		{
			/* U+0080 to U+009F, two bytes */
			buf.data[i] = '?';
			memmove(buf.data + i + 1, buf.data + i + 2, buf.len - i - 1);
			buf.len--;
		}
	}
	if ((size_t) keep < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * A 2xx that is not JSON is a proxy, captive portal or misconfigured
 * base_url answering instead of the API: say so, rather than failing later
 * with a parse error.  An empty body or a missing Content-Type is left to
 * the parser.
 */
static void
ghl_check_json(GhlConnection *conn, GhlAttempt *attempt,
			   const GhlResponse *response)
{
	const char *ct = attempt->content_type;
	size_t		n = strcspn(ct, "; \t");

	if (response->len == 0 || ct[0] == '\0')
		return;
	if ((n == strlen("application/json") &&
		 pg_strncasecmp(ct, "application/json", n) == 0) ||
		(n >= 5 && pg_strncasecmp(ct + n - 5, "+json", 5) == 0))
		return;

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_JSON_TEXT),
			 errmsg("GHL server \"%s\" returned a non-JSON response",
					conn->options->server_name),
			 errdetail("Content-Type is \"%s\"; the body starts with: %s",
					   ghl_clip_text(ct, strlen(ct)),
					   ghl_clip_text(response->data, response->len)),
			 errhint("Check the server option base_url.")));
}

/*
 * Turn a libcurl failure into an error that says what went wrong: no
 * connection at all, a timeout, a broken transfer, an oversized body.  The
 * detail is curl's own message, which names hosts but never headers.
 */
static void pg_attribute_noreturn()
ghl_report_curl_error(GhlConnection *conn, GhlAttempt *attempt)
{
	GhlOptions *options = conn->options;
	CURLcode	rc = attempt->rc;
	const char *detail = attempt->errbuf[0] ? attempt->errbuf : curl_easy_strerror(rc);

	if (attempt->oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while receiving a response of %zu bytes.",
						   attempt->len)));

	if (rc == CURLE_COULDNT_CONNECT && attempt->refused_kind != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("GHL server \"%s\" may not connect to %s address %s",
						options->server_name, attempt->refused_kind,
						attempt->refused_address),
				 errdetail("The owner of the server is not a superuser, so it may only reach public addresses."),
				 errhint("Point base_url and token_url at the public API, or have a superuser create the server.")));

	if (attempt->overflow || rc == CURLE_FILESIZE_EXCEEDED)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("response from GHL server \"%s\" exceeds ghl_fdw.max_response_bytes (%d bytes)",
						options->server_name, ghl_max_response_bytes),
				 errhint("Raise ghl_fdw.max_response_bytes or lower the server option page_size.")));

	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not connect to GHL server \"%s\"",
							options->server_name),
					 errdetail("%s", detail)));
			break;
		case CURLE_URL_MALFORMAT:
		case CURLE_UNSUPPORTED_PROTOCOL:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid URL for GHL server \"%s\"",
							options->server_name),
					 errdetail("%s", detail),
					 errhint("Check the server options base_url and token_url; only http and https are allowed.")));
			break;
		case CURLE_OPERATION_TIMEDOUT:
			if (attempt->connect_time == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
						 errmsg("connection to GHL server \"%s\" timed out after %d ms",
								options->server_name, options->connect_timeout_ms),
						 errdetail("%s", detail),
						 errhint("Raise the server option connect_timeout_ms if the API is reachable but slow.")));
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("request to GHL server \"%s\" timed out after %d ms",
							options->server_name, options->timeout_ms),
					 errdetail("%s", detail),
					 errhint("Raise the server option timeout_ms, or lower page_size.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("request to GHL server \"%s\" failed",
							options->server_name),
					 errdetail("%s", detail)));
	}
	pg_unreachable();
}

/*
 * The outcome of a request whose last attempt this is: a 2xx or 404
 * response, copied into the current memory context, or the error it ends
 * in.  The errcontext names the request in all of them.
 */
void
ghl_attempt_response(GhlConnection *conn, GhlAttempt *attempt,
					 const GhlRequest *request, GhlResponse *response)
{
	ErrorContextCallback errcallback;
	long		status = attempt->status;

	errcallback.callback = ghl_request_context;
	errcallback.arg = (void *) request;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	if (attempt->rc != CURLE_OK)
		ghl_report_curl_error(conn, attempt);

	response->status = status;
	response->len = attempt->len;
	response->data = MemoryContextAllocHuge(CurrentMemoryContext, attempt->len + 1);
	if (attempt->len > 0)
		memcpy(response->data, attempt->buf, attempt->len);
	response->data[attempt->len] = '\0';

	/* a token endpoint's answer is parsed whatever its type, never shown */
	if (status >= 200 && status < 300 && !request->token_request)
		ghl_check_json(conn, attempt, response);

	error_context_stack = errcallback.previous;

	if ((status >= 200 && status < 300) || status == 404)
		return;
	/* nothing of a token endpoint's answer is shown: drop the copy now */
	if (request->token_request)
		explicit_bzero(response->data, response->len);
	ghl_report_http_error(conn, request, response);
}

/*
 * Map an HTTP error status to a SQLSTATE and report it with the API's own
 * message.  The single place where that mapping lives, so callers that
 * treat a status as an error (e.g. a 404 that is not "zero rows") report it
 * exactly as the transport would.  Of a token endpoint's answer nothing is
 * shown: an endpoint that echoes its request would print the secrets the
 * request carried.
 */
void
ghl_report_http_error(GhlConnection *conn, const GhlRequest *request,
					  const GhlResponse *response)
{
	const char *server = conn->options->server_name;
	long		status = response->status;
	char	   *message = NULL;
	char	   *trace_id = NULL;
	char	   *detail = NULL;
	char	   *hint = NULL;
	int			sqlstate;
	ErrorContextCallback errcallback;

	if (request->token_request)
		detail = pstrdup("The token endpoint's answer is not shown, since it may contain credentials.");
	else
	{
		ghl_json_error_info(response->data, response->len, &message, &trace_id);
		if (message != NULL && trace_id != NULL)
			detail = psprintf("%s (traceId %s)",
							  ghl_clip_text(message, strlen(message)),
							  ghl_clip_text(trace_id, strlen(trace_id)));
		else if (message != NULL)
			detail = ghl_clip_text(message, strlen(message));
		else if (response->len > 0)
			detail = psprintf("Response body: %s",
							  ghl_clip_text(response->data, response->len));
	}

	switch (status)
	{
		case 400:
		case 422:
			sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case 401:
			sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			hint = psprintf("Check the credentials in the user mapping for server \"%s\"; an OAuth installation may need to be authorized again.",
							server);
			break;
		case 403:
			sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
			hint = psprintf("Check that the token has the scopes this request needs and access to location \"%s\".",
							conn->options->location_id ? conn->options->location_id : "");
			break;
		case 404:
			sqlstate = ERRCODE_UNDEFINED_OBJECT;
			break;
		case 409:
			sqlstate = ERRCODE_UNIQUE_VIOLATION;
			break;
		case 429:
			sqlstate = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
			hint = pstrdup("The API allows 100 requests per 10 seconds per location; run fewer concurrent queries or raise the server option max_retries.");
			break;
		default:
			sqlstate = ERRCODE_FDW_ERROR;
			if (status >= 300 && status < 400)
				hint = pstrdup("Redirects are not followed, since their target would escape the checks of ghl_fdw.allowed_hosts; set base_url or token_url to the address the API redirects to.");
			break;
	}

	errcallback.callback = ghl_request_context;
	errcallback.arg = (void *) request;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("GHL server \"%s\" %s the request: HTTP %ld", server,
					(status >= 400 && status < 500) ? "rejected" : "failed",
					status),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

/*
 * What the last answer to an authenticated request on the connection said
 * besides its body, for ghl_fdw.check(), which reads it whether or not the
 * request succeeded: its HTTP status (0 when no answer arrived), its
 * rate-limit headers and its Date header (0 when it had none).
 */
void
ghl_http_last_response(GhlConnection *conn, long *status,
					   GhlRateLimit *rate, TimestampTz *date)
{
	*status = conn->last_status;
	*rate = conn->last_rate;
	*date = conn->last_date > 0 ?
		time_t_to_timestamptz((pg_time_t) conn->last_date) : 0;
}

/*
 * Percent-encode a value for a path segment, a query string or a form
 * body.  Everything but ASCII letters, digits, '-', '_' and '~' is
 * encoded, '.' included: an id ".." left as it is would make
 * "/contacts/../tasks" another endpoint once the path is normalized.  The
 * result is sized up front, so a secret being encoded leaves no partial
 * copies behind in reallocated memory.
 */
char *
ghl_url_escape(const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *result = palloc(strlen(value) * 3 + 1);
	char	   *out = result;
	const unsigned char *in;

	for (in = (const unsigned char *) value; *in; in++)
	{
		if ((*in >= 'A' && *in <= 'Z') || (*in >= 'a' && *in <= 'z') ||
			(*in >= '0' && *in <= '9') || *in == '-' || *in == '_' || *in == '~')
			*out++ = (char) *in;
		else
		{
			*out++ = '%';
			*out++ = hex[*in >> 4];
			*out++ = hex[*in & 0x0f];
		}
	}
	*out = '\0';
	return result;
}
