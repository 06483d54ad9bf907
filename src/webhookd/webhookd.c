/*-------------------------------------------------------------------------
 *
 * webhookd.c
 *		  ghl_fdw_webhookd: receives HighLevel's webhook deliveries over
 *		  HTTP and stores each with ghl_fdw.apply_webhook.  Settings from
 *		  the command line and a config file, logging, signals.
 *
 *	  ghl_fdw_webhookd --listen HOST:PORT --dsn CONNINFO [--path /webhooks/ghl]
 *
 * The connection string may carry a password: it is never logged, and a
 * config file (or libpq's password file) keeps it out of the process
 * list.  SIGTERM and SIGINT stop the receiver after the deliveries under
 * way are answered.
 *
 * IDENTIFICATION
 *		  src/webhookd/webhookd.c
 *
 *-------------------------------------------------------------------------
 */
#include "webhookd.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* how long a stop waits for the deliveries under way */
#define SHUTDOWN_GRACE_MS	10000

static const char *progname = "ghl_fdw_webhookd";

/*
 * Write one line to stderr, stamped with the UTC time; one call, so lines
 * of concurrent requests never interleave.
 */
void
log_line(const char *format,...)
{
	char		line[1024];
	struct timespec now;
	struct tm	tm;
	size_t		len;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	len += snprintf(line + len, sizeof(line) - len, ".%03ldZ ",
					now.tv_nsec / 1000000L);
	va_start(ap, format);
	vsnprintf(line + len, sizeof(line) - len, format, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

/* Microseconds of a clock that never jumps: durations and deadlines. */
int64_t
monotonic_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* --help: what the program does, its options and its answers. */
static void
usage(void)
{
	printf("%s receives HighLevel webhook deliveries and stores each one with\n"
		   "ghl_fdw.apply_webhook, which verifies and deduplicates it.\n\n"
		   "Usage:\n"
		   "  %s --listen HOST:PORT --dsn CONNINFO [OPTION]...\n"
		   "  %s --config FILE [OPTION]...\n\n"
		   "Options:\n"
		   "  -l, --listen=HOST:PORT   address to listen on ([::1]:PORT for IPv6,\n"
		   "                           :PORT for every address, port 0: any free port)\n"
		   "  -d, --dsn=CONNINFO       libpq connection string of the database\n"
		   "  -p, --path=PATH          path deliveries are posted to (default /webhooks/ghl)\n"
		   "  -c, --config=FILE        read settings from FILE: lines \"name = value\",\n"
		   "                           names as the long options (listen, dsn, path,\n"
		   "                           pool, pool_wait, max_body, timeout), # comments;\n"
		   "                           the command line wins\n"
		   "      --pool=N             database connections (default 8)\n"
		   "      --pool-wait=MS       wait for a free connection before answering\n"
		   "                           429 (default 2000)\n"
		   "      --max-body=BYTES     largest body accepted (default 1048576)\n"
		   "      --timeout=SECONDS    close connections idle this long (default 10)\n"
		   "  -h, --help               show this help, then exit\n"
		   "  -V, --version            show the version, then exit\n\n"
		   "Answers: 200 stored or a duplicate; 400 not a HighLevel event; 401 not\n"
		   "signed by a key of ghl_fdw.webhook_keys, or too old; 413 body too large;\n"
		   "429 with Retry-After when the database is unavailable or busy, so that\n"
		   "HighLevel sends the delivery again.  GET /healthz answers 200 while the\n"
		   "database accepts connections, else 503.  One log line per request goes\n"
		   "to stderr.\n",
		   progname, progname, progname);
}

/* Complain about the settings and exit with the usage status. */
static void
bad_usage(const char *format,...) __attribute__((format(printf, 1, 2), noreturn));

static void
bad_usage(const char *format,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", progname);
	exit(2);
}

/* An integer setting within [min, max]. */
static long
parse_number(const char *name, const char *value, long min, long max)
{
	char	   *end;
	long		result;

	errno = 0;
	result = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || result < min || result > max)
		bad_usage("invalid value for %s: \"%s\" (%ld to %ld)", name, value, min, max);
	return result;
}

/* Replace a string setting with a copy of value. */
static void
set_string(char **setting, const char *value)
{
	free(*setting);
	if ((*setting = strdup(value)) == NULL)
		bad_usage("out of memory");
}

/* Set one setting by its name; false if there is no such setting. */
static bool
set_option(WebhookdConfig *config, const char *name, const char *value)
{
	if (strcmp(name, "listen") == 0)
		set_string(&config->listen, value);
	else if (strcmp(name, "dsn") == 0)
		set_string(&config->dsn, value);
	else if (strcmp(name, "path") == 0)
	{
		if (value[0] != '/')
			bad_usage("the path must begin with \"/\"");
		set_string(&config->path, value);
	}
	else if (strcmp(name, "pool") == 0)
		config->pool = (int) parse_number(name, value, 1, 1000);
	else if (strcmp(name, "pool_wait") == 0 || strcmp(name, "pool-wait") == 0)
		config->pool_wait_ms = (int) parse_number(name, value, 0, 600000);
	else if (strcmp(name, "max_body") == 0 || strcmp(name, "max-body") == 0)
		config->max_body = parse_number(name, value, 1, 64L * 1024 * 1024);
	else if (strcmp(name, "timeout") == 0)
		config->timeout = (int) parse_number(name, value, 1, 3600);
	else
		return false;
	return true;
}

/* Trim white space at both ends of s, in place. */
static char *
trim(char *s)
{
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

/*
 * Read a config file: "name = value" lines, blank lines and # comments.
 * The value is the rest of the line, so a connection string needs no
 * quoting.
 */
static void
read_config_file(WebhookdConfig *config, const char *filename)
{
	FILE	   *file = fopen(filename, "r");
	char		line[4096];
	int			lineno = 0;

	if (file == NULL)
		bad_usage("cannot open config file \"%s\": %s", filename, strerror(errno));
	while (fgets(line, sizeof(line), file))
	{
		char	   *text = trim(line);
		char	   *equals;

		lineno++;
		if (text[0] == '\0' || text[0] == '#')
			continue;
		equals = strchr(text, '=');
		if (equals == NULL)
			bad_usage("%s:%d: expected \"name = value\"", filename, lineno);
		*equals = '\0';
		if (!set_option(config, trim(text), trim(equals + 1)))
			bad_usage("%s:%d: unknown setting \"%s\"", filename, lineno, trim(text));
	}
	fclose(file);
}

/*
 * The settings: defaults, then the config file, then the command line,
 * which wins.
 */
static void
parse_arguments(int argc, char **argv, WebhookdConfig *config)
{
	static const struct option long_options[] = {
		{"listen", required_argument, NULL, 'l'},
		{"dsn", required_argument, NULL, 'd'},
		{"path", required_argument, NULL, 'p'},
		{"config", required_argument, NULL, 'c'},
		{"pool", required_argument, NULL, 1},
		{"pool-wait", required_argument, NULL, 2},
		{"max-body", required_argument, NULL, 3},
		{"timeout", required_argument, NULL, 4},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	set_string(&config->path, "/webhooks/ghl");
	config->pool = 8;
	config->pool_wait_ms = 2000;
	config->max_body = 1024 * 1024;
	config->timeout = 10;

	/* the config file first, whatever its place among the options */
	while ((c = getopt_long(argc, argv, "l:d:p:c:hV", long_options, NULL)) != -1)
	{
		if (c == 'c')
			read_config_file(config, optarg);
		else if (c == 'h')
		{
			usage();
			exit(0);
		}
		else if (c == 'V')
		{
			printf("%s (ghl_fdw) %s\n", progname, WEBHOOKD_VERSION);
			exit(0);
		}
		else if (c == '?')
			bad_usage("invalid option");
	}
	if (optind < argc)
		bad_usage("unexpected argument \"%s\"", argv[optind]);

	optind = 1;
	while ((c = getopt_long(argc, argv, "l:d:p:c:hV", long_options, NULL)) != -1)
	{
		const char *name = NULL;
		int			i;

		for (i = 0; long_options[i].name; i++)
		{
			if (long_options[i].val == c)
				name = long_options[i].name;
		}
		if (name && c != 'c')
			(void) set_option(config, name, optarg);
	}

	if (config->listen == NULL || config->dsn == NULL)
		bad_usage("--listen and --dsn are required");
	if (strchr(config->listen, ':') == NULL)
		bad_usage("--listen takes HOST:PORT");
}

/*
 * Read the settings, start listening, and wait for a stop signal; the
 * receiver's threads do the work.
 */
int
main(int argc, char **argv)
{
	WebhookdConfig config = {0};
	sigset_t	signals;
	Pool	   *pool;
	Receiver   *receiver;
	unsigned int port;
	char		database[512];
	int			sig;

	parse_arguments(argc, argv, &config);

	/*
	 * Block the stop signals in every thread (they inherit the mask) and
	 * wait for them in this one; a vanished client never kills us.
	 */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((pool = pool_create(config.dsn, config.pool)) == NULL)
	{
		log_line("out of memory");
		return 1;
	}
	if ((receiver = receiver_start(&config, pool, &port)) == NULL)
		return 1;
	pool_describe(config.dsn, database, sizeof(database));
	log_line("listening on %.*s:%u, path %s, %d database connections (%s)",
			 (int) (strrchr(config.listen, ':') - config.listen), config.listen,
			 port, config.path, config.pool, database);
	if (!pool_ping(pool))
		log_line("the database does not accept connections yet: deliveries are answered 429 until it does");

	sigwait(&signals, &sig);
	log_line("%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	receiver_stop(receiver, SHUTDOWN_GRACE_MS);
	pool_destroy(pool);
	log_line("stopped");
	free(config.listen);
	free(config.dsn);
	free(config.path);
	return 0;
}
