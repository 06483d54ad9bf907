"""OAuth with rotating refresh tokens across processes: single flight among
concurrent backends, tokens that survive a terminated backend, and no
secret in the server log, in errors, notices or EXPLAIN output."""
import glob
import os
import time
import unittest
import uuid

from pgtest import MOCK_URL, mock, psql, psql_value, start_psql

SERVER = "ghl_oauth_proc"
UMID = f"(SELECT umid FROM pg_user_mappings WHERE srvname = '{SERVER}')"
COUNT_SQL = "SELECT count(*) FROM oauth_proc.contacts;\n"
SECRETS_FIXED = ("mock-secret", "rt-seed-0")

# every psql output of this module, checked for secrets at the end
OUTPUTS = []


def run(sql, check=True):
    """psql() that keeps what the session printed for the secrets check."""
    rc, out, err = psql(sql, check=check)
    OUTPUTS.append(out + "\n" + err)
    return rc, out, err


def fresh_seed():
    """A refresh token from a new authorization (authorization_code grant)."""
    answer = mock("POST", "/oauth/token", {
        "grant_type": "authorization_code", "code": f"proc-{uuid.uuid4().hex}",
        "client_id": "mock-client", "client_secret": "mock-secret"})
    return answer["refresh_token"]


def finish(proc, timeout=120):
    """Wait for a start_psql() session; returns (returncode, stdout, stderr)."""
    proc.wait(timeout=timeout)
    out, err = proc.stdout.read(), proc.stderr.read()
    OUTPUTS.append(out + "\n" + err)
    return proc.returncode, out, err


def wait_for(sql, timeout=30):
    """Poll until sql returns 't'."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if psql_value(sql) == "t":
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def worker_running():
    return ("SELECT count(*) > 0 FROM pg_stat_activity "
            "WHERE backend_type = 'ghl_fdw token refresh'")


def revoke_tokens(token_delay_ms=None):
    """The API stops accepting every token it issued; stats start over.  A
    slow token endpoint keeps the refresh going while others arrive."""
    mock("POST", "/_mock/config", {"expire_all_tokens": True})
    mock("DELETE", "/_mock/stats")
    if token_delay_ms:
        mock("POST", "/_mock/faults", {"method": "POST", "path": "^/oauth/token$",
                                       "kind": "delay", "delay_ms": token_delay_ms})


def refreshes():
    return mock("GET", "/_mock/stats")["refreshes"]


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class OAuthProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        run(f"""
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS oauth_proc CASCADE;
DROP SERVER IF EXISTS {SERVER} CASCADE;
CREATE SERVER {SERVER} FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '{MOCK_URL}', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER {SERVER}
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret',
             refresh_token '{fresh_seed()}');
CREATE SCHEMA oauth_proc;
IMPORT FOREIGN SCHEMA ghl LIMIT TO (contacts) FROM SERVER {SERVER} INTO oauth_proc;
""")
        cls.contacts = str(len(mock("GET", "/_mock/state")["contacts"]))

    @classmethod
    def tearDownClass(cls):
        mock("DELETE", "/_mock/faults")
        run(f"""
SET client_min_messages = warning;
DROP SCHEMA oauth_proc CASCADE;
DROP SERVER {SERVER} CASCADE;
""")

    def setUp(self):
        mock("DELETE", "/_mock/faults")
        run(COUNT_SQL)          # a stored, valid token to start from

    def run_eight(self, prefix=""):
        """Eight concurrent sessions count the contacts; all must succeed."""
        procs = [start_psql(prefix + COUNT_SQL) for _ in range(8)]
        for proc in procs:
            rc, out, err = finish(proc)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out.strip(), self.contacts)

    def test_eight_backends_rejected_token_one_refresh(self):
        # the API revokes the token all eight start with: each gets a 401
        revoke_tokens(token_delay_ms=1000)
        self.run_eight()
        self.assertEqual(refreshes(), 1)

    def test_eight_backends_expired_token_one_refresh(self):
        # the stored token has expired: each backend sees it before any request
        run(f"UPDATE ghl_fdw.token_store SET expires_at = now() - interval '1 minute' "
            f"WHERE umid = {UMID};")
        revoke_tokens(token_delay_ms=1000)
        self.run_eight()
        self.assertEqual(refreshes(), 1)
        self.assertEqual(mock("GET", "/_mock/stats")["token_requests"], 1)

    def test_eight_serializable_transactions_one_refresh(self):
        # the snapshot of each query predates the token another one stored:
        # a token worker, which reads the store afresh, hands it over
        revoke_tokens(token_delay_ms=1000)
        self.run_eight("SET default_transaction_isolation = 'serializable';\n")
        self.assertEqual(refreshes(), 1)

    def test_backend_terminated_during_refresh(self):
        revoke_tokens(token_delay_ms=2000)
        victim = start_psql("SET application_name = 'ghl_oauth_victim';\n" + COUNT_SQL)
        wait_for(worker_running())
        run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'ghl_oauth_victim';")
        self.assertNotEqual(finish(victim)[0], 0)
        wait_for(f"SELECT NOT ({worker_running()})")
        # the worker committed the new pair: a new session uses it as it is
        mock("DELETE", "/_mock/requests")
        _, out, _ = run(COUNT_SQL)
        self.assertEqual(out, self.contacts)
        self.assertEqual(refreshes(), 1)
        paths = [r["path"] for r in mock("GET", "/_mock/requests")]
        self.assertNotIn("/oauth/token", paths)

    def test_backend_terminated_after_refresh_in_open_transaction(self):
        revoke_tokens()
        victim = start_psql("SET application_name = 'ghl_oauth_victim';\nBEGIN;\n"
                            + COUNT_SQL + "SELECT pg_sleep(60);\n")
        wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE "
                 "application_name = 'ghl_oauth_victim' AND query LIKE '%pg_sleep%'")
        self.assertEqual(refreshes(), 1)
        run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'ghl_oauth_victim';")
        self.assertNotEqual(finish(victim)[0], 0)
        _, out, _ = run(COUNT_SQL)
        self.assertEqual(out, self.contacts)
        self.assertEqual(refreshes(), 1)

    def test_statement_timeout_while_refreshing(self):
        revoke_tokens(token_delay_ms=2000)
        start = time.time()
        rc, _, err = run("SET statement_timeout = '300ms';\n" + COUNT_SQL, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("statement timeout", err)
        self.assertLess(time.time() - start, 1.5)
        # the worker goes on and commits; the next session uses its token
        wait_for(f"SELECT NOT ({worker_running()})")
        _, out, _ = run(COUNT_SQL)
        self.assertEqual(out, self.contacts)
        self.assertEqual(refreshes(), 1)

    def test_zz_no_secret_anywhere(self):
        # a spent refresh token (a stale copy put back): the error the client
        # gets, with every DEBUG1 message sent to the client too
        run(f"""
CREATE TABLE oauth_proc.spent AS
    SELECT refresh_token FROM ghl_fdw.token_store WHERE umid = {UMID};
UPDATE ghl_fdw.token_store SET expires_at = now() WHERE umid = {UMID};
SELECT count(*) FROM oauth_proc.contacts WHERE id = 'x';
CREATE TABLE oauth_proc.good AS
    SELECT refresh_token FROM ghl_fdw.token_store WHERE umid = {UMID};
UPDATE ghl_fdw.token_store SET expires_at = now(),
    refresh_token = (SELECT refresh_token FROM oauth_proc.spent) WHERE umid = {UMID};
""")
        rc, _, err = run("SET client_min_messages = debug1;\n" + COUNT_SQL, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("re-authorization is needed", err)
        # the good one back; a 401, a refresh and the retry, all at DEBUG1
        mock("POST", "/_mock/config", {"expire_all_tokens": True})
        run(f"""
UPDATE ghl_fdw.token_store SET refresh_token = (SELECT refresh_token FROM oauth_proc.good)
WHERE umid = {UMID};
SET client_min_messages = debug1;
SELECT count(*) FROM oauth_proc.contacts WHERE id = 'x';
DO $$ BEGIN RAISE NOTICE 'token status: %', (SELECT ghl_fdw.token_status('{SERVER}')); END $$;
""")
        _, explain, _ = run("""
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM oauth_proc.contacts WHERE email = 'a@example.com';
EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM oauth_proc.contacts;
""")
        self.assertIn("Foreign Scan", explain)
        tokens = mock("GET", "/_mock/issued_tokens")["tokens"]
        self.assertGreater(len(tokens), 4)
        secrets = set(tokens) | set(SECRETS_FIXED)

        _, log, _ = psql("SELECT pg_read_file(pg_current_logfile());")
        self.assertIn("ghl_fdw token refresh", log)     # the log is the right one
        texts = {"server log": log, "psql output": "\n".join(OUTPUTS)}
        for name, text in texts.items():
            for secret in secrets:
                self.assertNotIn(secret, text, f"a secret appears in the {name}")
        # the regression suites' output echoes the statements that set the
        # seed credentials, but must show no token the FDW was given
        here = os.path.dirname(os.path.abspath(__file__))
        for path in glob.glob(os.path.join(here, "results", "results", "*.out")):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            for secret in tokens:
                self.assertNotIn(secret, text, f"a token appears in {path}")
        print(f"\nno secret found: {len(secrets)} secrets, {len(texts)} texts, "
              f"{len(log)} bytes of server log")


if __name__ == "__main__":
    unittest.main()
