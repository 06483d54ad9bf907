/*-------------------------------------------------------------------------
 *
 * http.c
 *		  HTTP transport to the GHL API.
 *
 * One libcurl easy handle per user mapping is cached for the life of the
 * backend, so successive pages and queries reuse a kept-alive connection.
 * Transfers are interruptible (cancel and statement_timeout abort them
 * within about a second), paced by the rate-limit governor of ratelimit.c,
 * retried with backoff when that is safe, and every failure ends in an
 * ereport with a real SQLSTATE.  Nothing raises an error inside a curl
 * callback: callbacks only set flags, and the errors are raised once
 * curl_easy_perform has returned.
 *
 * A server owned by a non-superuser may only reach what the administrator
 * allowed: its URLs are checked again before each request, and the address
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
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* backoff between retries: base doubling per retry, capped */
#define GHL_BACKOFF_BASE_MS		250
#define GHL_BACKOFF_MAX_MS		10000
/* longest wait a Retry-After or a rate window may impose on one retry */
#define GHL_MAX_WAIT_MS			60000
/* initial size of a connection's response buffer */
#define GHL_INITIAL_BUFFER		(64 * 1024)

/*
 * A cached connection: the hash entry itself, so pointers handed out stay
 * valid for the life of the backend (dynahash never moves entries).
 */
struct GhlConnection
{
	Oid			umid;			/* hash key: user mapping OID */
	CURL	   *curl;			/* NULL until (re)opened */
	MemoryContext cxt;			/* holds options */
	GhlOptions *options;		/* copy taken when the handle was opened */
	bool		invalidated;	/* server or mapping changed: rebuild */
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;

	/* response body, malloc'd: curl callbacks must not palloc */
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		overflow;		/* body exceeded ghl_max_response_bytes */
	bool		oom;			/* realloc failed */

	/* the address the last attempt refused to connect to, and why */
	char		refused_address[INET6_ADDRSTRLEN];
	const char *refused_kind;

	char		content_type[128];	/* of the last response, "" if none */
	int64		retry_after;	/* its Retry-After in seconds, or -1 */
	GhlRateLimit rate;			/* its X-RateLimit-* headers */
	char		errbuf[CURL_ERROR_SIZE];
};

/* the numeric response headers, and where each is kept */
static const struct
{
	const char *name;
	size_t		offset;
}			numeric_headers[] =
{
	{"Retry-After", offsetof(GhlConnection, retry_after)},
	{"X-RateLimit-Max", offsetof(GhlConnection, rate.max)},
	{"X-RateLimit-Remaining", offsetof(GhlConnection, rate.remaining)},
	{"X-RateLimit-Interval-Milliseconds", offsetof(GhlConnection, rate.interval_ms)},
	{"X-RateLimit-Limit-Daily", offsetof(GhlConnection, rate.daily_limit)},
	{"X-RateLimit-Daily-Remaining", offsetof(GhlConnection, rate.daily_remaining)},
};

#define GHL_HEADER_FIELD(conn, i) \
	((int64 *) ((char *) (conn) + numeric_headers[i].offset))

static HTAB *ConnectionHash = NULL;
static bool curl_initialized = false;

/*
 * Clear what the headers of one response told, so that nothing of an
 * earlier response (a stale X-RateLimit-Remaining above all) is taken for
 * the current one's.
 */
static void
ghl_forget_headers(GhlConnection *conn)
{
	int			i;

	conn->content_type[0] = '\0';
	for (i = 0; i < lengthof(numeric_headers); i++)
		*GHL_HEADER_FIELD(conn, i) = -1;
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
 * with an ereport comes before curl_easy_init, so a failure leaves nothing
 * that ghl_close_connection cannot release.
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
	ghl_forget_headers(conn);
	conn->errbuf[0] = '\0';

	conn->curl = curl_easy_init();
	if (conn->curl == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle for GHL server \"%s\"",
						options->server_name)));
}

/*
 * Release the handle (closing its kept-alive sockets) and the options.  The
 * old options may still be referenced by a running scan, so inside a
 * transaction they are handed to it to be freed at its end.
 */
static void
ghl_close_connection(GhlConnection *conn)
{
	if (conn->curl != NULL)
	{
		curl_easy_cleanup(conn->curl);
		conn->curl = NULL;
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
 * the mapping, like postgres_fdw, because the credentials live there.
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
		conn->curl = NULL;
		conn->cxt = NULL;
		conn->options = NULL;
		conn->buf = NULL;
		conn->len = conn->cap = 0;
	}

	if (conn->curl == NULL || conn->invalidated)
	{
		ghl_close_connection(conn);
		ghl_open_connection(conn, options);
	}
	return conn;
}

/*
 * Collect the body into the connection's malloc'd buffer.  Returning less
 * than was offered makes curl abort with CURLE_WRITE_ERROR; the flags tell
 * the caller why, since no error may be raised here.
 */
static size_t
ghl_write_callback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	GhlConnection *conn = (GhlConnection *) userdata;
	size_t		n = size * nmemb;

	if (ghl_max_response_bytes > 0 &&
		conn->len + n > (size_t) ghl_max_response_bytes)
	{
		conn->overflow = true;
		return 0;
	}
	if (conn->len + n + 1 > conn->cap)
	{
		size_t		newcap = Max(conn->cap, GHL_INITIAL_BUFFER);
		char	   *newbuf;

		while (newcap < conn->len + n + 1)
			newcap *= 2;
		newbuf = realloc(conn->buf, newcap);
		if (newbuf == NULL)
		{
			conn->oom = true;
			return 0;
		}
		conn->buf = newbuf;
		conn->cap = newcap;
	}
	memcpy(conn->buf + conn->len, ptr, n);
	conn->len += n;
	return n;
}

/*
 * Pick Content-Type, Retry-After and the rate-limit headers out of each
 * response.  A status line starts a new response (e.g. after a 100
 * Continue): what describes only one response is cleared there.
 */
static size_t
ghl_header_callback(char *ptr, size_t size, size_t nitems, void *userdata)
{
	GhlConnection *conn = (GhlConnection *) userdata;
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
		ghl_forget_headers(conn);
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
		valuelen = Min(valuelen, sizeof(conn->content_type) - 1);
		memcpy(conn->content_type, value, valuelen);
		conn->content_type[valuelen] = '\0';
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
			*GHL_HEADER_FIELD(conn, i) = parsed;
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
 * address are kept; the error is raised after curl_easy_perform.
 */
static curl_socket_t
ghl_open_socket(void *clientp, curlsocktype purpose,
				struct curl_sockaddr *address)
{
	GhlConnection *conn = (GhlConnection *) clientp;
	const char *kind = refused_address_kind(&address->addr);

	if (kind != NULL)
	{
		const void *raw = address->family == AF_INET6 ?
			(const void *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr :
			(const void *) &((struct sockaddr_in *) &address->addr)->sin_addr;

		conn->refused_kind = kind;
		if ((address->family != AF_INET && address->family != AF_INET6) ||
			inet_ntop(address->family, raw, conn->refused_address,
					  sizeof(conn->refused_address)) == NULL)
			strlcpy(conn->refused_address, "?", sizeof(conn->refused_address));
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * Called by libcurl at least once a second during a transfer: abort it when
 * the backend has a cancel or termination pending.  Only a flag; the
 * interrupt itself is processed after curl_easy_perform returns.
 */
static int
ghl_progress_callback(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
					  curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/*
 * Name the request in every error raised while it runs: method and path,
 * without the query string (it may carry search terms) and without the
 * base URL (it may carry credentials).
 */
static void
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
 * Run one attempt of a request.  The bearer token is fetched first, because
 * auth.c may run a token request of its own on this same connection; only
 * then is the handle reset and configured.  The header list is freed even
 * when building it fails half-way.
 */
static CURLcode
ghl_perform(GhlConnection *conn, const GhlRequest *request)
{
	GhlOptions *options;
	const char *token = NULL;
	const char *body = request->body;
	struct curl_slist *volatile headers = NULL;
	char	   *url;
	CURLcode	rc = CURLE_OK;

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

	PG_TRY();
	{
		CURL	   *curl = conn->curl;

		headers = ghl_add_header(headers, "Accept", "application/json");
		if (token != NULL)
		{
			char	   *bearer = psprintf("Bearer %s", token);

			headers = ghl_add_header(headers, "Authorization", bearer);
			explicit_bzero(bearer, strlen(bearer));
			pfree(bearer);
		}
		if (request->api_version != NULL)
			headers = ghl_add_header(headers, "Version", request->api_version);
		if (body != NULL)
		{
			headers = ghl_add_header(headers, "Content-Type",
									 request->content_type ? request->content_type
									 : "application/json");
			/* no "Expect: 100-continue" round trip for larger bodies */
			headers = ghl_add_header(headers, "Expect", "");
		}

		curl_easy_reset(curl);
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_USERAGENT, "ghl_fdw/" GHL_FDW_VERSION);
		curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, conn->errbuf);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ghl_write_callback);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, conn);
		curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, ghl_header_callback);
		curl_easy_setopt(curl, CURLOPT_HEADERDATA, conn);
		curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, ghl_progress_callback);
		curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
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
			curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, conn);
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

		conn->len = 0;
		conn->overflow = false;
		conn->oom = false;
		ghl_forget_headers(conn);
		conn->errbuf[0] = '\0';
		conn->refused_kind = NULL;
		rc = curl_easy_perform(curl);
	}
	PG_FINALLY();
	{
		/* the handle must not keep pointers to what is freed here */
		if (conn->curl != NULL)
			curl_easy_setopt(conn->curl, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(headers);
	}
	PG_END_TRY();

	pfree(url);
	return rc;
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
ghl_server_wait(GhlConnection *conn, long status)
{
	if ((status == 429 || status == 503) && conn->retry_after > 0)
		return (long) Min(conn->retry_after, GHL_MAX_WAIT_MS / 1000) * 1000;
	if (status == 429 && conn->rate.interval_ms > 0)
		return (long) Min(conn->rate.interval_ms, GHL_MAX_WAIT_MS);
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
 * Whether a sleep of "ms" would end after statement_timeout fires: then
 * there is no point in starting it, and the failure at hand is reported
 * instead of a cancel.
 */
static bool
ghl_outlives_statement(long ms)
{
	TimestampTz deadline;

	if (StatementTimeout <= 0)
		return false;
	deadline = TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms) >= deadline;
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
ghl_check_json(GhlConnection *conn, const GhlResponse *response)
{
	const char *ct = conn->content_type;
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
ghl_report_curl_error(GhlConnection *conn, CURLcode rc)
{
	GhlOptions *options = conn->options;
	const char *detail = conn->errbuf[0] ? conn->errbuf : curl_easy_strerror(rc);
	curl_off_t	connect_time = 0;

	if (conn->oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while receiving a response of %zu bytes.",
						   conn->len)));

	if (rc == CURLE_COULDNT_CONNECT && conn->refused_kind != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("GHL server \"%s\" may not connect to %s address %s",
						options->server_name, conn->refused_kind,
						conn->refused_address),
				 errdetail("The owner of the server is not a superuser, so it may only reach public addresses."),
				 errhint("Point base_url and token_url at the public API, or have a superuser create the server.")));

	if (conn->overflow || rc == CURLE_FILESIZE_EXCEEDED)
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
			curl_easy_getinfo(conn->curl, CURLINFO_CONNECT_TIME_T, &connect_time);
			if (connect_time == 0)
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
 * Perform a request, retrying what is safe to retry, and return only with
 * a 2xx or 404 response; every other outcome is an error.  The errcontext
 * pushed here names the request in all of them, including a cancel.
 */
void
ghl_http_execute(GhlConnection *conn, const GhlRequest *request,
				 GhlResponse *response, GhlRequestStats *stats)
{
	ErrorContextCallback errcallback;
	int			retries = 0;
	bool		auth_retried = false;
	CURLcode	rc;
	long		status;

	errcallback.callback = ghl_request_context;
	errcallback.arg = (void *) request;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/* ghl_fdw.allowed_hosts may have changed since the server was made */
	if (!conn->options->owner_is_superuser)
		ghl_check_url(request->url ? "token_url" : "base_url",
					  request->url ? request->url : conn->options->base_url,
					  true, conn->options->server_name);

	for (;;)
	{
		long		server_wait;
		long		delay;

		CHECK_FOR_INTERRUPTS();
		if (request->authenticated)
			ghl_governor_acquire(conn->options);
		rc = ghl_perform(conn, request);
		status = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(conn->curl, CURLINFO_RESPONSE_CODE, &status);
		server_wait = ghl_server_wait(conn, status);
		if (request->authenticated)
			ghl_governor_observe(conn->options, &conn->rate, status, server_wait);
		ghl_count(conn->options, GHL_COUNT_REQUESTS, 1);
		ghl_count(conn->options, GHL_COUNT_BYTES, conn->len);
		if (status == 429)
			ghl_count(conn->options, GHL_COUNT_RATE_LIMITED, 1);
		if (stats != NULL)
		{
			stats->requests++;
			stats->bytes += conn->len;
			if (status == 429)
				stats->rate_limited++;
		}

		if (rc == CURLE_ABORTED_BY_CALLBACK)
		{
			CHECK_FOR_INTERRUPTS();
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling request to GHL server \"%s\"",
							conn->options->server_name)));
		}

		/* a rejected token: forget it and try once more with a fresh one */
		if (status == 401 && request->authenticated && !auth_retried &&
			ghl_auth_forget(conn->options))
		{
			auth_retried = true;
			if (stats != NULL)
				stats->retries++;
			ghl_count(conn->options, GHL_COUNT_RETRIES, 1);
			continue;
		}

		/* a refused address stays refused */
		if (!ghl_retryable(request, rc, status) ||
			(rc == CURLE_COULDNT_CONNECT && conn->refused_kind != NULL) ||
			retries >= conn->options->max_retries)
			break;

		delay = ghl_retry_delay(server_wait, retries);
		if (ghl_outlives_statement(delay))
		{
			elog(DEBUG1, "GHL server \"%s\": no retry, %ld ms of backoff would outlast statement_timeout",
				 conn->options->server_name, delay);
			break;
		}
		retries++;
		if (stats != NULL)
			stats->retries++;
		ghl_count(conn->options, GHL_COUNT_RETRIES, 1);
		elog(DEBUG1, "GHL server \"%s\": %s, retry %d of %d in %ld ms",
			 conn->options->server_name,
			 rc == CURLE_OK ? psprintf("HTTP %ld", status) : curl_easy_strerror(rc),
			 retries, conn->options->max_retries, delay);
		ghl_sleep_ms(delay);
	}

	if (rc != CURLE_OK)
		ghl_report_curl_error(conn, rc);

	response->status = status;
	response->len = conn->len;
	response->data = MemoryContextAllocHuge(CurrentMemoryContext, conn->len + 1);
	if (conn->len > 0)
		memcpy(response->data, conn->buf, conn->len);
	response->data[conn->len] = '\0';

	/* a token endpoint's answer is parsed whatever its type, never shown */
	if (status >= 200 && status < 300 && !request->token_request)
		ghl_check_json(conn, response);

	error_context_stack = errcallback.previous;

	if ((status >= 200 && status < 300) || status == 404)
		return;
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
