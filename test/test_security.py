"""No role gains more than it was granted.  A role that may only use a
ghl_fdw server, acting through its own login, cannot run code as the token
store's owner through its search_path, lose or read the tokens of a
mapping, stall refreshes with locks of its own, or throttle the real
location through what a fake API answers; the SQL functions act only on
servers it may use, and the statements that carry secrets stay out of the
server log.

Every case runs as a role that is not a superuser and logs in as itself,
in a database it owns; the test's superuser only sets the stage and
inspects the result.  The mock issues every token, and at the end none of
them may appear in anything a session printed or in the server log.
"""
import os
import time
import unittest

from pgtest import MOCK_URL, mock, psql, start_psql
from test_oauth import OUTPUTS, SECRETS_FIXED, finish, fresh_seed, wait_for, worker_running
from test_resilience import wait_until

DB = "ghl_sec_db"
ROLE = "ghl_sec"            # uses servers; owns DB, as an application's role may
OTHER = "ghl_sec_other"     # another ordinary role of the cluster
LOCATION = "ve9EPM428h8vShlRW1KT"
NONE_SQL = "SELECT count(*) FROM sec.contacts WHERE id = 'nonexistent-id';\n"
TOKEN_PATH = "^/oauth/token$"


def run(sql, user=ROLE, check=True, timeout=120):
    """Run sql in a session that logs in as user (ROLE by default), with
    SQLSTATEs shown; returns (returncode, stdout, stderr, seconds).  What
    it prints joins OUTPUTS, which is checked for secrets last."""
    start = time.monotonic()
    rc, out, err = psql("\\set VERBOSITY verbose\n" + sql, db=DB, check=check,
                        timeout=timeout, user=user)
    OUTPUTS.append(out + "\n" + err)
    return rc, out, err, time.monotonic() - start


def admin(sql):
    """Run sql as the test's superuser in DB, whatever search_path the
    database gives it; returns the output lines."""
    out = psql("SET search_path = pg_catalog, public;\n" + sql, db=DB)[1]
    return [line for line in out.splitlines() if line]


def umid(server, user=ROLE):
    return admin(f"SELECT umid FROM pg_user_mappings "
                 f"WHERE srvname = '{server}' AND usename = '{user}'")[0]


def stored(column, server="sec_oauth"):
    """A column of ROLE's row of the token store for server."""
    return admin(f"SELECT coalesce({column}::text, '<null>') FROM ghl_fdw.token_store "
                 f"WHERE umid = {umid(server)}")[0]


def expire_stored_token(server="sec_oauth"):
    """The next query of ROLE on server needs a refresh."""
    admin(f"UPDATE ghl_fdw.token_store SET expires_at = now() WHERE umid = {umid(server)}")


def latest_refresh_token():
    return [t for t in mock("GET", "/_mock/issued_tokens")["tokens"] if t.startswith("rt-")][-1]


def fault(spec):
    mock("POST", "/_mock/faults", spec)


def token_store_locks():
    """(locktype, classid is the token store, granted) of every advisory
    lock and every object lock of DB."""
    rows = admin(f"""
        SELECT locktype, classid = 'ghl_fdw.token_store'::regclass, granted
        FROM pg_locks
        WHERE locktype IN ('advisory', 'object')
          AND database = (SELECT oid FROM pg_database WHERE datname = '{DB}')""")
    return [tuple(row.split("|")) for row in rows]


def setUpModule():
    if not MOCK_URL:
        return
    password = os.environ.get("PGPASSWORD")
    login = f"LOGIN PASSWORD '{password}'" if password else "LOGIN"
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(f"DROP ROLE IF EXISTS {ROLE}; DROP ROLE IF EXISTS {OTHER};", db="postgres")
    psql(f"CREATE ROLE {ROLE} {login}; CREATE ROLE {OTHER} {login};", db="postgres")
    psql(f"CREATE DATABASE {DB} OWNER {ROLE}", db="postgres")
    port = MOCK_URL.rsplit(":", 1)[1]
    servers = {"sec_oauth": MOCK_URL, "sec_real": MOCK_URL, "sec_hidden": MOCK_URL,
               "sec_warn": MOCK_URL, "sec_fake": f"http://localhost:{port}"}
    admin("CREATE EXTENSION ghl_fdw;\n" + "".join(
        f"CREATE SERVER {name} FOREIGN DATA WRAPPER ghl_fdw OPTIONS "
        f"(location_id '{LOCATION}', base_url '{url}', max_retries '0');\n"
        for name, url in servers.items()) + f"""
GRANT USAGE ON FOREIGN SERVER sec_oauth, sec_real, sec_fake, sec_warn TO {ROLE};
CREATE USER MAPPING FOR {ROLE} SERVER sec_hidden OPTIONS (access_token 'pit-mock-token');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_hidden OPTIONS (access_token 'pit-mock-token');
""")
    run(f"""
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_oauth
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret', refresh_token '{fresh_seed()}');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_real OPTIONS (access_token 'pit-mock-token');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_fake OPTIONS (access_token 'pit-mock-token');
CREATE SCHEMA sec;
IMPORT FOREIGN SCHEMA ghl LIMIT TO (contacts) FROM SERVER sec_oauth INTO sec;
CREATE FOREIGN TABLE sec.real_contacts (id text) SERVER sec_real OPTIONS (resource 'contacts');
CREATE FOREIGN TABLE sec.fake_contacts (id text) SERVER sec_fake OPTIONS (resource 'contacts');
""")


def tearDownModule():
    if not MOCK_URL:
        return
    mock("DELETE", "/_mock/faults")
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(f"DROP ROLE IF EXISTS {ROLE}; DROP ROLE IF EXISTS {OTHER};", db="postgres")


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class SecurityTest(unittest.TestCase):
    def setUp(self):
        # each case starts from a fresh authorization and a stored token
        mock("DELETE", "/_mock/faults")
        run(f"ALTER USER MAPPING FOR CURRENT_USER SERVER sec_oauth "
            f"OPTIONS (SET refresh_token '{fresh_seed()}');\n" + NONE_SQL)

    def tearDown(self):
        mock("DELETE", "/_mock/faults")

    def test_governor_3_full_table_still_paces_a_new_location(self):
        # more locations than the governor holds, one request each (the
        # superuser sends them: only it can point servers at the mock)
        admin(f"""
CREATE SERVER sec_fill FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 'fill-0', base_url '{MOCK_URL}', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_fill OPTIONS (access_token 'pit-mock-token');
CREATE FOREIGN TABLE public.fill (id text) SERVER sec_fill OPTIONS (resource 'contacts');
DO $$
BEGIN
    FOR i IN 1..1100 LOOP
        EXECUTE format('ALTER SERVER sec_fill OPTIONS (SET location_id %L)', 'fill-' || i);
        EXECUTE $q$SELECT count(*) FROM public.fill WHERE id = 'x'$q$;
    END LOOP;
END $$;
DROP SERVER sec_fill CASCADE;
CREATE SERVER sec_new FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 'sec-new', base_url '{MOCK_URL}', max_retries '0');
GRANT USAGE ON FOREIGN SERVER sec_new TO {ROLE};
CREATE USER MAPPING FOR {ROLE} SERVER sec_new OPTIONS (access_token 'pit-mock-token');
CREATE FOREIGN TABLE public.new_contacts (id text) SERVER sec_new OPTIONS (resource 'contacts');
GRANT SELECT ON public.new_contacts TO {ROLE};
""")
        # then the role's first use of another location, which allows 2
        # requests per 2 s: paced, not refused with a 429
        mock("POST", "/_mock/config", {"rate_limit": 2, "rate_interval_ms": 2000})
        try:
            time.sleep(2.1)
            mock("DELETE", "/_mock/requests")
            rc, _, err, seconds = run("SELECT count(*) FROM public.new_contacts WHERE id = 'x';\n" * 4,
                                      check=False)
        finally:
            mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})
            admin("DROP SERVER sec_new CASCADE")
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["status"] for r in mock("GET", "/_mock/requests")], [404] * 4)
        self.assertGreater(seconds, 1.9)

    def test_hostile_operators_never_run_as_another_role(self):
        # = for (oid, oid) and (text, text), first on every search_path the
        # role can set: its session's, its role's and its database's
        run(f"""
CREATE SCHEMA evil;
CREATE TABLE evil.calls (current_name name, session_name name);
CREATE FUNCTION evil.eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls VALUES (current_user, session_user);
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls VALUES (current_user, session_user);
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq);
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
ALTER ROLE CURRENT_USER SET search_path = evil, pg_catalog, public;
ALTER DATABASE {DB} SET search_path = evil, pg_catalog, public;
""")
        try:
            # the operators are live in the role's sessions
            run("SELECT 1::oid = 1::oid, 'a'::text = 'a'::text;")
            calls = admin("SELECT count(*) FROM evil.calls")[0]
            self.assertGreaterEqual(int(calls), 2)

            entry_points = [NONE_SQL,
                            "DELETE FROM sec.contacts WHERE id = 'nonexistent-id';\n",
                            "SELECT ghl_fdw.require_scope('sec_oauth', 'contacts.readonly');\n",
                            "SELECT mode FROM ghl_fdw.token_status('sec_oauth');\n"]
            for prefix in ("", "SET search_path = evil, pg_catalog, public;\n"):
                for sql in entry_points:
                    expire_stored_token()
                    run(prefix + sql)
            # the event trigger forgets the tokens of a dropped mapping
            mapping = umid("sec_oauth")
            run("DROP USER MAPPING FOR CURRENT_USER SERVER sec_oauth;\n")
            self.assertEqual(admin(f"SELECT count(*) FROM ghl_fdw.token_store "
                                   f"WHERE umid = {mapping}"), ["0"])

            roles = admin("SELECT DISTINCT current_name || '/' || session_name FROM evil.calls")
            self.assertEqual(roles, [f"{ROLE}/{ROLE}"])
        finally:
            run(f"""
ALTER ROLE CURRENT_USER RESET search_path;
ALTER DATABASE {DB} RESET search_path;
DROP SCHEMA evil CASCADE;
CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER sec_oauth
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret', refresh_token '{fresh_seed()}');
""" + NONE_SQL)

    def test_text_plain_token_answer_is_kept_and_used(self):
        # the token endpoint answers with the wrong Content-Type: the answer
        # is a token answer all the same, its new refresh token is kept
        expire_stored_token()
        fault({"method": "POST", "path": TOKEN_PATH, "kind": "wrong_content_type"})
        rc, out, err, _ = run(NONE_SQL, check=False)
        self.assertEqual((rc, out), (0, "0"), err)
        self.assertEqual(stored("refresh_token"), latest_refresh_token())
        # ... and used by the next refresh
        mock("DELETE", "/_mock/requests")
        expire_stored_token()
        self.assertEqual(run(NONE_SQL)[1], "0")
        tokens = [r["status"] for r in mock("GET", "/_mock/requests") if r["path"] == "/oauth/token"]
        self.assertEqual(tokens, [200])

    def test_rotation_without_refresh_token_keeps_the_stored_one(self):
        before = stored("refresh_token")
        expire_stored_token()
        fault({"method": "POST", "path": TOKEN_PATH, "kind": "patch", "drop": ["refresh_token"]})
        rc, _, err, _ = run(NONE_SQL, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("ERROR:  28000: the token endpoint of GHL server \"sec_oauth\" "
                      "answered a refresh without a usable refresh token", err)
        self.assertIn("HINT:  Check the server option token_url.", err)
        self.assertEqual(stored("refresh_token"), before)

    def test_broken_expires_in_keeps_the_new_refresh_token(self):
        for expires_in in (0, -5, 10 ** 16, 2 ** 63, "86399", 1.5):
            with self.subTest(expires_in=expires_in):
                expire_stored_token()
                fault({"method": "POST", "path": TOKEN_PATH, "kind": "patch",
                       "set": {"expires_in": expires_in}})
                rc, _, err, _ = run(NONE_SQL, check=False)
                self.assertNotEqual(rc, 0)
                self.assertIn("ERROR:  HV004: the token endpoint of GHL server \"sec_oauth\" "
                              "answered with an invalid \"expires_in\"", err)
                # the answer's refresh token was kept, and it works
                self.assertEqual(stored("refresh_token"), latest_refresh_token())
                self.assertEqual(run(NONE_SQL)[1], "0")

    def test_governor_1_absurd_headers_slow_nothing(self):
        # a fake API at another host answers with limits no API could mean
        fault({"method": "GET", "path": "^/contacts/nonexistent-id$", "kind": "headers",
               "headers": {"X-RateLimit-Max": "1", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Interval-Milliseconds": "36000000",
                           "Retry-After": "86400"}})
        fake = "SELECT count(*) FROM sec.fake_contacts WHERE id = 'nonexistent-id';\n"
        real = "SELECT count(*) FROM sec.real_contacts WHERE id = 'nonexistent-id';\n"
        self.assertEqual(run(fake)[1], "0")
        self.assertEqual(mock("GET", "/_mock/faults"), [])
        rc, out, err, seconds = run("SET statement_timeout = '20s';\n" + fake + real, check=False)
        self.assertEqual((rc, out), (0, "0\n0"), err)
        self.assertLess(seconds, 5)

    def test_governor_2_wait_past_statement_timeout_fails_at_once(self):
        # the fake API's limit: 1 request a minute, spent
        fault({"method": "GET", "path": "^/contacts/nonexistent-id$", "kind": "headers",
               "headers": {"X-RateLimit-Max": "1", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Interval-Milliseconds": "60000"}})
        fake = "SELECT count(*) FROM sec.fake_contacts WHERE id = 'nonexistent-id';\n"
        self.assertEqual(run(fake)[1], "0")
        rc, _, err, seconds = run("SET statement_timeout = '5s';\n" + fake, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("ERROR:  53400: rate limit of GHL server \"sec_fake\" allows no request "
                      "before statement_timeout", err)
        self.assertLess(seconds, 3)
        # the real API of the same location is not slowed
        rc, out, err, seconds = run("SET statement_timeout = '5s';\n"
                                    "SELECT count(*) FROM sec.real_contacts WHERE id = 'x';\n",
                                    check=False)
        self.assertEqual((rc, out), (0, "0"), err)
        self.assertLess(seconds, 3)

    def test_refresh_takes_no_advisory_lock(self):
        expire_stored_token()
        fault({"method": "POST", "path": TOKEN_PATH, "kind": "delay", "delay_ms": 2000})
        proc = start_psql(NONE_SQL, db=DB, user=ROLE)
        seen = set()
        wait_for(worker_running())
        while proc.poll() is None:
            seen.update(token_store_locks())
        rc, out, err = finish(proc)
        self.assertEqual((rc, out.strip()), (0, "0"), err)
        self.assertNotIn("advisory", {locktype for locktype, _, _ in seen})
        # the refresh was serialized on locks of the token store's own class
        self.assertIn(("object", "t", "t"), seen)

    def test_old_advisory_keys_block_nothing(self):
        # another role holds the advisory keys 1.0 used for the mapping
        key = admin(f"SELECT {umid('sec_oauth')}::oid::int")[0]
        holder = start_psql(f"SELECT pg_advisory_lock({key}, x'67686c31'::int), "
                            f"pg_advisory_lock({key}, x'67686c32'::int);\n"
                            "SELECT pg_sleep(60);\n", db=DB, user=OTHER)
        try:
            wait_until(lambda: [row[0] for row in token_store_locks()].count("advisory") == 2)
            expire_stored_token()
            rc, out, err, seconds = run("SET statement_timeout = '10s';\n" + NONE_SQL, check=False)
            self.assertEqual((rc, out), (0, "0"), err)
            self.assertLess(seconds, 5)
        finally:
            admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{OTHER}'")
            finish(holder)

    def test_refresh_waiting_on_the_lock_ends_on_statement_timeout(self):
        expire_stored_token()
        fault({"method": "POST", "path": TOKEN_PATH, "kind": "delay", "delay_ms": 4000})
        refreshing = start_psql(NONE_SQL, db=DB, user=ROLE)
        wait_for(worker_running())
        waiting = start_psql("\\set VERBOSITY verbose\nSET statement_timeout = '1s';\n" + NONE_SQL,
                             db=DB, user=ROLE)
        started, seen = time.monotonic(), set()
        while waiting.poll() is None:
            seen.update(token_store_locks())
        rc, _, err = finish(waiting)
        self.assertNotEqual(rc, 0)
        self.assertIn("57014: canceling statement due to statement timeout", err)
        self.assertLess(time.monotonic() - started, 3)
        self.assertIn(("object", "t", "f"), seen)
        rc, out, err = finish(refreshing)
        self.assertEqual((rc, out.strip()), (0, "0"), err)

    def test_functions_act_only_on_servers_the_role_may_use(self):
        admin("CREATE FOREIGN TABLE public.hidden (id text) SERVER sec_hidden "
              "OPTIONS (resource 'contacts');\n"
              "SELECT count(*) FROM public.hidden WHERE id = 'x';\n"
              "DROP FOREIGN TABLE public.hidden;")
        for sql in ("SELECT * FROM ghl_fdw.token_status('sec_hidden');\n",
                    "SELECT ghl_fdw.require_scope('sec_hidden');\n",
                    "SELECT ghl_fdw.request_stats_reset();\n"):
            with self.subTest(sql=sql):
                rc, _, err, _ = run(sql, check=False)
                self.assertNotEqual(rc, 0)
                self.assertIn("ERROR:  42501: permission denied for", err)
        # what it may use, it sees
        self.assertEqual(run("SELECT mode FROM ghl_fdw.token_status('sec_oauth');\n")[1],
                         "refresh_token")
        _, out, _, _ = run("SELECT count(*) FROM sec.real_contacts WHERE id = 'x';\n"
                           "SELECT server_name FROM ghl_fdw.request_stats();\n"
                           "SELECT server_name FROM ghl_fdw.request_stats;\n")
        self.assertEqual(out.count("sec_real"), 2)
        self.assertNotIn("sec_hidden", out)
        self.assertIn("sec_hidden", admin("SELECT server_name FROM ghl_fdw.request_stats"))

    def test_statement_with_a_secret_warns_when_logged(self):
        # the log records DDL: a statement that sets a secret warns, without
        # quoting it; one that sets none does not
        admin(f"ALTER ROLE {ROLE} SET log_statement = 'ddl'")
        try:
            _, _, err, _ = run("DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER sec_warn;\n"
                               "CREATE USER MAPPING FOR CURRENT_USER SERVER sec_warn "
                               "OPTIONS (access_token 'sec-logged-0123');\n"
                               "ALTER USER MAPPING FOR CURRENT_USER SERVER sec_warn "
                               "OPTIONS (ADD user_type 'Location');\n")
        finally:
            admin(f"ALTER ROLE {ROLE} RESET log_statement")
        self.assertEqual(err.count("WARNING:  01000: the server log may keep this statement, "
                                   "secrets included"), 1, err)
        self.assertIn("DETAIL:  Statements are logged because of log_statement = 'ddl'.", err)
        self.assertNotIn("sec-logged-0123", err)

    def test_validator_errors_leave_the_statement_out_of_the_log(self):
        # by default nothing warns, and an error of the validator leaves the
        # statement, secret included, out of the log
        rc, _, err, _ = run("DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER sec_warn;\n"
                            "CREATE USER MAPPING FOR CURRENT_USER SERVER sec_warn "
                            "OPTIONS (access_token 'sec-hidden-4567', client_id 'x');\n",
                            check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('options "access_token" and "client_id" cannot be used together', err)
        self.assertNotIn("WARNING", err)

        def logged():
            return psql("SELECT pg_read_file(pg_current_logfile())")[1]
        wait_until(lambda: "cannot be used together" in logged())
        self.assertNotIn("sec-hidden-4567", logged())

    def test_zz_nothing_echoed(self):
        tokens = mock("GET", "/_mock/issued_tokens")["tokens"]
        secrets = set(tokens) | set(SECRETS_FIXED)
        log = psql("SELECT pg_read_file(pg_current_logfile())")[1]
        self.assertIn("ghl_fdw token refresh", log)
        for name, text in (("server log", log), ("psql output", "\n".join(OUTPUTS))):
            for secret in secrets:
                self.assertNotIn(secret, text, f"a secret appears in the {name}")


if __name__ == "__main__":
    unittest.main()
