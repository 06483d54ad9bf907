/*-------------------------------------------------------------------------
 *
 * receiver.c
 *		  The HTTP side of ghl_fdw_webhookd: libmicrohttpd, one thread per
 *		  connection, answering each delivery after the database did.
 *
 * HighLevel sends a delivery again only when it is answered 429, and
 * takes every other status as final.  So the status says what a retry
 * would achieve: 200 once the delivery is committed (or was a duplicate),
 * 400 and 401 for a delivery no retry can make acceptable (not an event,
 * not signed by a trusted key, too old), 413 for a body over the limit,
 * and 429 with Retry-After whenever the fault is ours: the database is
 * down, busy or failed, so the delivery comes back later.
 *
 * Every request but a successful health check is logged in one line when
 * it ends: client, method, path, status, outcome, webhookId and time,
 * never the body or a signature.
 *
 * IDENTIFICATION
 *		  src/webhookd/receiver.c
 *
 *-------------------------------------------------------------------------
 */
#include "webhookd.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json.h>
#include <microhttpd.h>

#define HEALTH_PATH			"/healthz"
#define LOGGED_TEXT_MAX		120		/* longest path or reason in a log line */
#define LOGGED_ID_MAX		64		/* longest webhookId in a log line */
#define CONNECTION_LIMIT	1024

struct Receiver
{
	struct MHD_Daemon *daemon;
	const WebhookdConfig *config;
	Pool	   *pool;
	pthread_mutex_t mutex;
	pthread_cond_t idle;		/* signalled when in_flight drops */
	int			in_flight;		/* requests begun and not yet ended */
};

/* One request, from its first callback to its completion. */
typedef struct Request
{
	int64_t		started_us;
	char		client[64];
	char		method[16];
	char		path[LOGGED_TEXT_MAX + 1];
	bool		health;			/* a health check */
	char	   *body;			/* malloc'd, NUL-terminated */
	size_t		len;
	bool		too_large;
	unsigned int status;		/* 0 until answered */
	char		outcome[32];	/* applied, duplicate, refused, ... */
	char		webhook_id[LOGGED_ID_MAX + 1];
	char		reason[256];
} Request;

/*
 * Copy untrusted text for a log line, cut to max bytes: printable ASCII
 * only, and no double quote or backslash, which delimit in the line.
 */
static void
copy_printable(char *dst, const char *src, size_t max)
{
	size_t		i;

	for (i = 0; src && src[i] && i < max; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c == '"')
			c = '\'';
		else if (c < 0x20 || c > 0x7e || c == '\\')
			c = '?';
		dst[i] = (char) c;
	}
	dst[i] = '\0';
}

/* Append a JSON string literal of value to buf (of size bytes). */
static size_t
append_json_string(char *buf, size_t size, size_t len, const char *value)
{
	const char *p;

	if (len < size)
		buf[len++] = '"';
	for (p = value; *p && len + 7 < size; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"' || c == '\\')
			len += snprintf(buf + len, size - len, "\\%c", c);
		else if (c < 0x20)
			len += snprintf(buf + len, size - len, "\\u%04x", c);
		else
			buf[len++] = (char) c;
	}
	if (len < size)
		buf[len++] = '"';
	buf[len < size ? len : size - 1] = '\0';
	return len;
}

/*
 * The request's signature headers as the JSON object apply_webhook takes
 * (libmicrohttpd looks header names up ignoring case).  malloc'd.
 */
static char *
signature_headers_json(struct MHD_Connection *connection)
{
	static const char *const names[] = {"X-GHL-Signature", "x-wh-signature"};
	size_t		size = 16;
	size_t		len = 0;
	char	   *json;
	size_t		i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
	{
		const char *value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, names[i]);

		if (value)
			size += strlen(names[i]) + 6 * strlen(value) + 8;
	}
	if ((json = malloc(size)) == NULL)
		return NULL;
	json[len++] = '{';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
	{
		const char *value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, names[i]);

		if (value == NULL)
			continue;
		if (len > 1)
			json[len++] = ',';
		len = append_json_string(json, size, len, names[i]);
		json[len++] = ':';
		len = append_json_string(json, size, len, value);
	}
	json[len++] = '}';
	json[len] = '\0';
	return json;
}

/* The delivery's webhookId, for the log; "-" when it has none. */
static void
find_webhook_id(Request *req)
{
	json_tokener *tok = json_tokener_new();
	json_object *root = NULL;
	json_object *id;

	strcpy(req->webhook_id, "-");
	if (tok == NULL)
		return;
	root = json_tokener_parse_ex(tok, req->body, (int) req->len);
	json_tokener_free(tok);
	if (root != NULL && json_object_is_type(root, json_type_object) &&
		json_object_object_get_ex(root, "webhookId", &id) &&
		json_object_is_type(id, json_type_string))
		copy_printable(req->webhook_id, json_object_get_string(id), LOGGED_ID_MAX);
	json_object_put(root);
}

/*
 * Queue the answer.  body is JSON text; a 429 also says when to come
 * back.
 */
static enum MHD_Result
answer(struct MHD_Connection *connection, Request *req, unsigned int status,
	   const char *outcome, const char *body)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	req->status = status;
	copy_printable(req->outcome, outcome, sizeof(req->outcome) - 1);
	response = MHD_create_response_from_buffer(strlen(body), (void *) body,
											   MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
							"application/json");
	if (status == MHD_HTTP_TOO_MANY_REQUESTS)
	{
		char		retry_after[16];

		snprintf(retry_after, sizeof(retry_after), "%d", WEBHOOKD_RETRY_AFTER);
		MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
	}
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "POST");
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

/* Answer with {"error": message}. */
static enum MHD_Result
answer_error(struct MHD_Connection *connection, Request *req,
			 unsigned int status, const char *outcome, const char *message)
{
	char		body[512];
	size_t		len;

	len = snprintf(body, sizeof(body), "{\"error\":");
	len = append_json_string(body, sizeof(body) - 2, len, message);
	snprintf(body + len, sizeof(body) - len, "}\n");
	return answer(connection, req, status, outcome, body);
}

/*
 * Hand a complete delivery to the database and answer what it made of it.
 */
static enum MHD_Result
deliver(Receiver *receiver, struct MHD_Connection *connection, Request *req)
{
	char	   *headers;
	char		outcome[32] = "";
	char		body[64];
	ApplyResult result;

	if (req->too_large)
		return answer_error(connection, req, MHD_HTTP_CONTENT_TOO_LARGE,
							"too-large", "body too large");
	if (req->body == NULL || memchr(req->body, '\0', req->len) != NULL)
		return answer_error(connection, req, MHD_HTTP_BAD_REQUEST,
							"malformed", "empty body or a NUL byte in it");
	find_webhook_id(req);
	if ((headers = signature_headers_json(connection)) == NULL)
		return MHD_NO;
	result = pool_apply(receiver->pool, receiver->config->pool_wait_ms,
						req->body, headers, outcome, sizeof(outcome),
						req->reason, sizeof(req->reason));
	free(headers);

	switch (result)
	{
		case APPLY_DONE:
			snprintf(body, sizeof(body), "{\"outcome\":");
			append_json_string(body, sizeof(body) - 2, strlen(body), outcome);
			strcat(body, "}\n");
			return answer(connection, req, MHD_HTTP_OK, outcome, body);
		case APPLY_REFUSED:
			return answer_error(connection, req, MHD_HTTP_UNAUTHORIZED,
								"refused", req->reason);
		case APPLY_MALFORMED:
			return answer_error(connection, req, MHD_HTTP_BAD_REQUEST,
								"malformed", req->reason);
		case APPLY_BUSY:
			return answer_error(connection, req, MHD_HTTP_TOO_MANY_REQUESTS,
								"busy", "busy, retry later");
		case APPLY_UNAVAILABLE:
			return answer_error(connection, req, MHD_HTTP_TOO_MANY_REQUESTS,
								"unavailable", "database unavailable, retry later");
		case APPLY_FAILED:
			break;
	}
	return answer_error(connection, req, MHD_HTTP_TOO_MANY_REQUESTS,
						"failed", "not stored, retry later");
}

/* The first callback of a request: who sent what, and where it goes. */
static Request *
begin_request(Receiver *receiver, struct MHD_Connection *connection,
			  const char *url, const char *method)
{
	Request    *req = calloc(1, sizeof(Request));
	const union MHD_ConnectionInfo *info;

	if (req == NULL)
		return NULL;
	req->started_us = monotonic_us();
	copy_printable(req->method, method, sizeof(req->method) - 1);
	copy_printable(req->path, url, LOGGED_TEXT_MAX);
	strcpy(req->webhook_id, "-");
	strcpy(req->client, "?");
	info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info && info->client_addr)
		getnameinfo(info->client_addr,
					info->client_addr->sa_family == AF_INET6 ?
					sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
					req->client, sizeof(req->client), NULL, 0, NI_NUMERICHOST);

	pthread_mutex_lock(&receiver->mutex);
	receiver->in_flight++;
	pthread_mutex_unlock(&receiver->mutex);
	return req;
}

/*
 * libmicrohttpd's access handler: called once when the headers are in,
 * once per chunk of body, and once more when the body is complete.
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **req_cls)
{
	Receiver   *receiver = cls;
	Request    *req = *req_cls;

	if (req == NULL)
	{
		const char *length;

		if ((req = begin_request(receiver, connection, url, method)) == NULL)
			return MHD_NO;
		*req_cls = req;
		if (strcmp(url, HEALTH_PATH) == 0)
		{
			req->health = true;
			return pool_ping(receiver->pool) ?
				answer(connection, req, MHD_HTTP_OK, "healthy", "{\"status\":\"ok\"}\n") :
				answer_error(connection, req, MHD_HTTP_SERVICE_UNAVAILABLE,
							 "unhealthy", "database unavailable");
		}
		if (strcmp(url, receiver->config->path) != 0)
			return answer_error(connection, req, MHD_HTTP_NOT_FOUND,
								"not-found", "not found");
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return answer_error(connection, req, MHD_HTTP_METHOD_NOT_ALLOWED,
								"not-allowed", "deliveries are POSTed");
		length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
											 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (length && strtoull(length, NULL, 10) > (unsigned long long) receiver->config->max_body)
			return answer_error(connection, req, MHD_HTTP_CONTENT_TOO_LARGE,
								"too-large", "body too large");
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->status != 0 || req->too_large)
			return MHD_YES;
		if (req->len + n > (size_t) receiver->config->max_body)
		{
			/* keep reading to the end, but no longer keep the bytes */
			req->too_large = true;
			free(req->body);
			req->body = NULL;
			return MHD_YES;
		}
		if (req->body == NULL &&
			(req->body = malloc(receiver->config->max_body + 1)) == NULL)
			return MHD_NO;
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		req->body[req->len] = '\0';
		return MHD_YES;
	}
	if (req->status != 0)
		return MHD_YES;
	return deliver(receiver, connection, req);
}

/*
 * libmicrohttpd's completion callback: log the request and free it.  A
 * request that ended without an answer (the client left, a timeout) is
 * logged too.
 */
static void
request_completed(void *cls, struct MHD_Connection *connection,
				  void **req_cls, enum MHD_RequestTerminationCode toe)
{
	Receiver   *receiver = cls;
	Request    *req = *req_cls;
	char		status[8] = "-";
	char		reason[LOGGED_TEXT_MAX + 1];

	if (req == NULL)
		return;
	*req_cls = NULL;
	if (req->status)
		snprintf(status, sizeof(status), "%u", req->status);
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && req->status == 0)
		strcpy(req->outcome, toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ?
			   "timeout" : "aborted");
	copy_printable(reason, req->reason, LOGGED_TEXT_MAX);
	if (!req->health || req->status != MHD_HTTP_OK)
		log_line("%s %s %s %s %s id=%s %.1fms%s%s%s",
				 req->client, req->method, req->path, status, req->outcome,
				 req->webhook_id,
				 (monotonic_us() - req->started_us) / 1000.0,
				 reason[0] ? " reason=\"" : "", reason, reason[0] ? "\"" : "");
	free(req->body);
	free(req);

	pthread_mutex_lock(&receiver->mutex);
	receiver->in_flight--;
	pthread_cond_broadcast(&receiver->idle);
	pthread_mutex_unlock(&receiver->mutex);
}

/* Route libmicrohttpd's own complaints to our log. */
static void mhd_log(void *cls, const char *format, va_list ap)
			__attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *format, va_list ap)
{
	char		message[512];

	vsnprintf(message, sizeof(message), format, ap);
	message[strcspn(message, "\n")] = '\0';
	log_line("libmicrohttpd: %s", message);
}

/*
 * Listen on address, a resolved HOST:PORT.  *port receives the port
 * actually bound (the listen address may ask for port 0).
 */
Receiver *
receiver_start(const WebhookdConfig *config, Pool *pool, unsigned int *port)
{
	Receiver   *receiver = calloc(1, sizeof(Receiver));
	struct addrinfo hints = {0};
	struct addrinfo *addr = NULL;
	char	   *host = strdup(config->listen);
	char	   *colon = host ? strrchr(host, ':') : NULL;
	const union MHD_DaemonInfo *info;
	unsigned int flags;
	int			rc;

	if (receiver == NULL || colon == NULL)
	{
		free(host);
		free(receiver);
		return NULL;
	}
	*colon = '\0';
	/* [::1]:8080 */
	if (host[0] == '[' && colon > host && colon[-1] == ']')
	{
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &addr);
	free(host);
	if (rc != 0)
	{
		log_line("cannot resolve listen address %s: %s", config->listen,
				 gai_strerror(rc));
		free(receiver);
		return NULL;
	}

	receiver->config = config;
	receiver->pool = pool;
	pthread_mutex_init(&receiver->mutex, NULL);
	pthread_cond_init(&receiver->idle, NULL);
	flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
		MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (addr->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	receiver->daemon = MHD_start_daemon(flags, 0, NULL, NULL,
										&handle_request, receiver,
										MHD_OPTION_EXTERNAL_LOGGER, &mhd_log, NULL,
										MHD_OPTION_SOCK_ADDR, addr->ai_addr,
										MHD_OPTION_CONNECTION_TIMEOUT,
										(unsigned int) config->timeout,
										MHD_OPTION_CONNECTION_LIMIT,
										(unsigned int) CONNECTION_LIMIT,
										MHD_OPTION_NOTIFY_COMPLETED,
										&request_completed, receiver,
										MHD_OPTION_END);
	freeaddrinfo(addr);
	if (receiver->daemon == NULL)
	{
		log_line("cannot listen on %s", config->listen);
		free(receiver);
		return NULL;
	}
	info = MHD_get_daemon_info(receiver->daemon, MHD_DAEMON_INFO_BIND_PORT);
	*port = info ? info->port : 0;
	return receiver;
}

/*
 * Stop accepting connections, let the requests under way finish (for at
 * most grace_ms), then close everything.
 */
void
receiver_stop(Receiver *receiver, int grace_ms)
{
	int			listen_fd = MHD_quiesce_daemon(receiver->daemon);
	int64_t		deadline = monotonic_us() + (int64_t) grace_ms * 1000;

	if (listen_fd >= 0)
		close(listen_fd);
	pthread_mutex_lock(&receiver->mutex);
	while (receiver->in_flight > 0 && monotonic_us() < deadline)
	{
		struct timespec tick;

		clock_gettime(CLOCK_REALTIME, &tick);
		tick.tv_nsec += 100 * 1000000L;
		if (tick.tv_nsec >= 1000000000L)
		{
			tick.tv_sec++;
			tick.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&receiver->idle, &receiver->mutex, &tick);
	}
	pthread_mutex_unlock(&receiver->mutex);
	MHD_stop_daemon(receiver->daemon);
	pthread_cond_destroy(&receiver->idle);
	pthread_mutex_destroy(&receiver->mutex);
	free(receiver);
}
