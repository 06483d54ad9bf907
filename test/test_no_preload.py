"""Without shared_preload_libraries the governor degrades to pacing each
backend on its own: a second, throwaway cluster that does not preload
ghl_fdw checks that a backend still paces itself and that the counters
say they are not shared."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from pgtest import MOCK_URL, mock

PGBIN = "/usr/lib/postgresql/15/bin"


def as_server(args, **kw):
    """Run a server program as postgres when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


@unittest.skipUnless(MOCK_URL and os.path.exists(PGBIN + "/initdb"),
                     "needs the mock and a PostgreSQL 15 server")
class NoPreloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ghl_nopreload.")
        if os.geteuid() == 0:
            shutil.chown(cls.dir, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cls.port = str(s.getsockname()[1])
        data = cls.dir + "/data"
        as_server([PGBIN + "/initdb", "-D", data, "-A", "trust", "-U", "postgres"])
        as_server([PGBIN + "/pg_ctl", "-D", data, "-w", "-l", cls.dir + "/log", "start", "-o",
                   f"-k {cls.dir} -p {cls.port} -c listen_addresses= -c fsync=off"])

    @classmethod
    def tearDownClass(cls):
        as_server([PGBIN + "/pg_ctl", "-D", cls.dir + "/data", "-m", "immediate", "stop"])
        shutil.rmtree(cls.dir, ignore_errors=True)
        mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})

    def psql(self, sql):
        proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", self.dir, "-p", self.port, "-U", "postgres", "-d", "postgres"],
                              input=sql, capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.strip().splitlines()

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
