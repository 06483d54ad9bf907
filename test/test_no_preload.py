"""Without shared_preload_libraries the governor degrades to pacing each
backend on its own: a second, throwaway cluster that does not preload
ghl_fdw checks that a backend still paces itself and that the counters
say they are not shared."""
import os
import time
import unittest

from pgtest import MOCK_URL, PGBIN, Cluster, mock


@unittest.skipUnless(MOCK_URL and os.path.exists(PGBIN + "/initdb"),
                     "needs the mock and a PostgreSQL 15 server")
class NoPreloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("ghl_nopreload.")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.destroy()
        mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})

    def psql(self, sql):
        return self.cluster.psql(sql).stdout.strip().splitlines()

    def test_backend_paces_itself(self):
        self.psql(f"""
            CREATE EXTENSION ghl_fdw;
            CREATE SERVER ghl FOREIGN DATA WRAPPER ghl_fdw
                OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '{MOCK_URL}',
                         max_retries '2');
            CREATE USER MAPPING FOR CURRENT_USER SERVER ghl
                OPTIONS (access_token 'pit-mock-token');
            CREATE FOREIGN TABLE contacts (id text) SERVER ghl OPTIONS (resource 'contacts');
        """)
        mock("POST", "/_mock/config", {"rate_limit": 5, "rate_interval_ms": 1000})
        time.sleep(1.1)
        mock("DELETE", "/_mock/requests")
        started = time.monotonic()
        out = self.psql("""
            SELECT current_setting('shared_preload_libraries') = '';
            DO $$ BEGIN FOR i IN 1..12 LOOP PERFORM count(*) FROM contacts; END LOOP; END $$;
            SELECT requests, rate_limited, throttle_waits > 0, shared
            FROM ghl_fdw.request_stats;
        """)
        elapsed = time.monotonic() - started
        mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})
        self.assertEqual(out[0], "t")
        # this backend's own counters: paced, no 429, not shared
        self.assertEqual(out[-1], "12|0|t|f")
        self.assertGreater(elapsed, 1.9)
        statuses = [r["status"] for r in mock("GET", "/_mock/requests")
                    if r["path"] == "/contacts/search" and r["fault"] != "delay"]
        self.assertEqual(statuses, [200] * 12)


if __name__ == "__main__":
    unittest.main()
