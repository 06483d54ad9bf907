"""Cancel ends a slow transfer and a backoff sleep within about a second,
and backends sharing one location stay under its rate limit together."""
import time
import unittest

from pgtest import MOCK_URL, mock, psql, psql_value, start_psql, wait_until

SERVER_SQL = f"""
CREATE SERVER ghl_resilience FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '{MOCK_URL}',
             max_retries '3');
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_resilience
    OPTIONS (access_token 'pit-mock-token');
CREATE FOREIGN TABLE public.resilience_contacts (id text, email text)
    SERVER ghl_resilience OPTIONS (resource 'contacts');
"""


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class ResilienceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        psql(SERVER_SQL)

    @classmethod
    def tearDownClass(cls):
        psql("DROP SERVER ghl_resilience CASCADE")
        mock("DELETE", "/_mock/faults")
        mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})

    def setUp(self):
        mock("DELETE", "/_mock/faults")
        mock("DELETE", "/_mock/requests")

    def cancel_after(self, app, ready):
        """Run a scan in session `app`, cancel it once ready() holds, and
        return (seconds from cancel to the end of the session, stderr)."""
        proc = start_psql(f"\\set VERBOSITY verbose\nSET application_name = '{app}';\n"
                          "SELECT count(*) FROM resilience_contacts;\n")
        try:
            wait_until(lambda: psql_value(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                f"'{app}' AND state = 'active'") == "1")
            wait_until(ready)
            time.sleep(0.3)
            cancelled = time.monotonic()
            psql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'")
            proc.wait(timeout=30)
            return time.monotonic() - cancelled, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()

    def test_cancel_during_slow_transfer(self):
        # the body trickles in over 20 s
        mock("POST", "/_mock/faults", {"path": "^/contacts/search$", "kind": "slow_body",
                                       "delay_ms": 20000, "times": 1})
        started = time.monotonic()
        elapsed, err = self.cancel_after(
            "ghl_cancel_transfer", lambda: time.monotonic() - started > 1.0)
        self.assertIn("57014", err)
        self.assertLess(elapsed, 2.0)

    def test_cancel_during_backoff_sleep(self):
        # a 503 asking for 30 s of patience: the retry sleeps on the latch
        mock("POST", "/_mock/faults", {"path": "^/contacts/search$", "status": 503,
                                       "retry_after": 30, "times": 1})
        elapsed, err = self.cancel_after(
            "ghl_cancel_backoff",
            lambda: any(r["status"] == 503 for r in mock("GET", "/_mock/requests")))
        self.assertIn("57014", err)
        self.assertLess(elapsed, 2.0)
        # cancelled in the sleep: the retry was never sent
        self.assertEqual([r["status"] for r in mock("GET", "/_mock/requests")], [503])

    def test_backends_share_the_rate_limit(self):
        # 3 backends x 10 scans against 10 requests per second
        mock("POST", "/_mock/config", {"rate_limit": 10, "rate_interval_ms": 1000})
        time.sleep(1.1)
        mock("DELETE", "/_mock/requests")
        loop = ("DO $$ BEGIN FOR i IN 1..10 LOOP "
                "PERFORM count(*) FROM resilience_contacts; END LOOP; END $$;\n")
        started = time.monotonic()
        procs = [start_psql(loop) for _ in range(3)]
        for p in procs:
            p.wait(timeout=120)
        elapsed = time.monotonic() - started
        mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})
        for p in procs:
            self.assertEqual(p.returncode, 0, p.stderr.read())
        statuses = [r["status"] for r in mock("GET", "/_mock/requests")
                    if r["path"] == "/contacts/search" and r["fault"] != "delay"]
        self.assertEqual(statuses.count(200), 30)
        self.assertLessEqual(statuses.count(429), 1)
        # 30 requests at 10 per second need about 2 s beyond the first burst
        self.assertGreater(elapsed, 1.9)


if __name__ == "__main__":
    unittest.main()
