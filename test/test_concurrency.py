"""Requests side by side: a cancel ends a batch within about a second and
the session goes on, and a token the API revokes while a batch is in flight
is refreshed once, however many of its requests come back 401."""
import subprocess
import time
import unittest
import uuid

from pgtest import DB, MOCK_URL, mock, psql, psql_value, wait_until

SERVER = "ghl_concurrency"
NOTES = r"^/contacts/[^/]+/notes$"


def contact_ids(n):
    """The first n contact ids of the mock, sorted like the scan sorts them."""
    return sorted(c["id"] for c in mock("GET", "/_mock/state")["contacts"])[:n]


def notes_query(ids, table):
    array = ",".join(f"'{i}'" for i in ids)
    return f"SELECT count(*) FROM {table} WHERE contact_id = ANY (ARRAY[{array}]);\n"


def expected_notes(ids):
    return str(sum(1 for n in mock("GET", "/_mock/state")["notes"] if n["contactId"] in ids))


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class ConcurrencyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        seed = mock("POST", "/oauth/token", {
            "grant_type": "authorization_code", "code": f"conc-{uuid.uuid4().hex}",
            "client_id": "mock-client", "client_secret": "mock-secret"})["refresh_token"]
        psql(f"""
SET client_min_messages = warning;
CREATE SERVER {SERVER} FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '{MOCK_URL}',
             max_retries '0', max_concurrency '8');
CREATE SERVER {SERVER}_oauth FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '{MOCK_URL}',
             max_retries '0', max_concurrency '8');
CREATE USER MAPPING FOR CURRENT_USER SERVER {SERVER}
    OPTIONS (access_token 'pit-mock-token');
CREATE USER MAPPING FOR CURRENT_USER SERVER {SERVER}_oauth
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret', refresh_token '{seed}');
CREATE FOREIGN TABLE public.concurrency_notes (id text, contact_id text)
    SERVER {SERVER} OPTIONS (resource 'notes');
CREATE FOREIGN TABLE public.concurrency_oauth_notes (id text, contact_id text)
    SERVER {SERVER}_oauth OPTIONS (resource 'notes');
""")
        cls.ids = contact_ids(24)
        cls.notes = expected_notes(cls.ids)

    @classmethod
    def tearDownClass(cls):
        mock("DELETE", "/_mock/faults")
        psql(f"SET client_min_messages = warning;\n"
             f"DROP SERVER {SERVER} CASCADE;\nDROP SERVER {SERVER}_oauth CASCADE;\n")

    def setUp(self):
        mock("DELETE", "/_mock/faults")
        mock("DELETE", "/_mock/requests")

    def test_cancel_during_batch(self):
        # the first eight requests, all in flight at once, hang for 5 s
        mock("POST", "/_mock/faults", {"path": NOTES, "kind": "delay", "delay_ms": 5000,
                                       "times": 8})
        app = "ghl_cancel_batch"
        query = notes_query(self.ids, "concurrency_notes")
        proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-d", DB],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdin.write(f"\\set VERBOSITY verbose\nSET application_name = '{app}';\n"
                         + query + query)
        proc.stdin.close()
        try:
            wait_until(lambda: len(mock("GET", "/_mock/requests")) == 8)
            cancelled = time.monotonic()
            psql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                 f"WHERE application_name = '{app}'")
            # the session's next statement runs on the same connection
            proc.wait(timeout=60)
            elapsed = time.monotonic() - cancelled
            out, err = proc.stdout.read(), proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            # the mock still answers the cancelled requests; once it has,
            # they count against no later test's rate limit
            wait_until(lambda: mock("GET", "/_mock/stats")["in_flight"] == 0)
        self.assertIn("57014", err)
        self.assertIn("HTTP request: GET /contacts/", err)
        self.assertEqual(out.split(), [self.notes])
        # 8 cancelled in flight, then the 24 of the second statement
        self.assertEqual(len(mock("GET", "/_mock/requests")), 32)
        self.assertLess(elapsed, 3.0)

    def test_revoked_token_refreshed_once(self):
        psql(notes_query(self.ids[:1], "concurrency_oauth_notes"))   # a token to start from
        # the API revokes the token while a batch is under way: four of the
        # first eight requests answer 401 at once, four only after the new
        # token is in use, and must not reject it in turn
        mock("POST", "/_mock/config", {"expire_all_tokens": True})
        mock("DELETE", "/_mock/stats")
        mock("DELETE", "/_mock/requests")
        mock("POST", "/_mock/faults", {"path": NOTES, "kind": "delay", "delay_ms": 1500,
                                       "times": 4})
        count = psql_value(notes_query(self.ids, "concurrency_oauth_notes"))
        self.assertEqual(count, self.notes)
        self.assertEqual(mock("GET", "/_mock/stats")["refreshes"], 1)
        statuses = [r["status"] for r in mock("GET", "/_mock/requests")
                    if r["path"].endswith("/notes")]
        self.assertEqual(statuses.count(401), 8)
        self.assertEqual(statuses.count(200), 24)


if __name__ == "__main__":
    unittest.main()
