"""A sync commits in short steps: no transaction of it stays open long,
its progress shows while it runs, refresh_contact does not wait for it,
and a run killed half-way (with its API) is resumed by the next one
without reading again what it had committed.

Uses test.sync_diff(), which the sync pg_regress suite creates.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from pgtest import MOCK_URL, mock, psql, psql_value, start_psql, wait_until
from test_sync import create_server, diff, drop_server

SERVER = "ghl_steps"
SCHEMA = "rankr_steps"
HERE = os.path.dirname(os.path.abspath(__file__))


def start_mock(port, contacts, seed):
    """A mock of our own on a fixed port, to be killed and restarted."""
    portfile = tempfile.mktemp()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_ghl.py"),
                             "--port", str(port), "--port-file", portfile,
                             "--contacts", str(contacts), "--seed", str(seed),
                             "--rate-limit", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: os.path.exists(portfile) or proc.poll() is not None, 120)
    os.unlink(portfile)
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_up():
    try:
        return psql_value("SELECT 1") == "1"
    except AssertionError:
        return False


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class SyncStepsTest(unittest.TestCase):
    def tearDown(self):
        drop_server(SERVER, SCHEMA)
        mock("DELETE", "/_mock/faults")

    def test_short_transactions_progress_and_refresh(self):
        mock("POST", "/_mock/reset", {"contacts": 5000, "seed": 11})
        create_server(SERVER, SCHEMA)
        contact = mock("GET", "/_mock/state")["contacts"][42]["id"]
        # each request for a contact's notes takes a little while
        mock("POST", "/_mock/faults", {"path": "/notes$", "kind": "delay", "delay_ms": 5,
                                       "times": -1})
        for how in ("CALL ghl_fdw.run_sync", "SELECT count(*) FROM ghl_fdw.sync"):
            run = start_psql(f"SET application_name = 'ghl_steps';\n{how}('{SERVER}', full => true);\n")
            oldest = 0.0
            progress = []
            refresh_seconds = None
            while run.poll() is None:
                # the transactions of the run: its caller's, and its worker's
                age = float(psql_value("""
                    SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)
                    FROM pg_stat_activity
                    WHERE (application_name = 'ghl_steps' AND state = 'active'
                           AND query LIKE 'CALL%') OR backend_type = 'ghl_fdw sync'"""))
                oldest = max(oldest, age)
                row = psql_value(f"""
                    SELECT concat_ws(',', phase, contacts_done, coalesce(contacts_total::text, '?'),
                                     requests_per_second > 0, time_left IS NOT NULL)
                    FROM ghl_fdw.sync_progress WHERE server_name = '{SERVER}'""")
                if row:
                    progress.append(row)
                if refresh_seconds is None and len(progress) > 3:
                    started = time.monotonic()
                    self.assertEqual(psql_value(f"""
                        SELECT string_agg(status, ',') FROM ghl_fdw.refresh_contact(
                            '{SERVER}', '{contact}')"""), "succeeded,succeeded,succeeded,succeeded")
                    refresh_seconds = time.monotonic() - started
                time.sleep(0.25)
            out, err = run.stdout.read(), run.stderr.read()
            self.assertEqual(run.returncode, 0, err)
            print(f"\n{how}: oldest transaction {oldest:.1f} s, refresh_contact during the run "
                  f"{refresh_seconds:.2f} s, {len(progress)} progress samples, last {progress[-1:]}")
            self.assertLess(oldest, 10.0)
            self.assertIsNotNone(refresh_seconds, "the run ended before refresh_contact ran")
            self.assertLess(refresh_seconds, 2.0)
            # the view shows the run: its phase, contacts done of the total
            # (growing), a request rate and, at some point, the time left;
            # the total is unknown ('?') only until the first page arrives,
            # which other passes' answers may precede
            phases = [p.split(",") for p in progress]
            self.assertTrue(all(p[0] in ("contacts", "tasks", "appointments", "done")
                                for p in phases), phases)
            totals = [p[2] for p in phases if p[0] == "contacts"]
            self.assertTrue(all(p[2] == "5000" or (p[2] == "?" and p[1] == "0")
                                for p in phases if p[0] == "contacts"), phases)
            self.assertIn("5000", totals)
            self.assertEqual(totals, sorted(totals, key=lambda t: t != "?"), phases)
            done = [int(p[1]) for p in phases]
            self.assertEqual(done, sorted(done))
            self.assertGreater(done[-1], done[0])
            self.assertIn("t", [p[3] for p in phases])
            self.assertIn("t", [p[4] for p in phases])
        self.assertTrue(all(d[2:4] == (0, 0) for d in diff(SCHEMA).values()), diff(SCHEMA))

    def test_killed_run_resumes(self):
        """Kill the sync's process (the cluster restarts) and its API half-way
        through a full sync of 20,000 contacts: the next run reads only what
        the first had not committed, and the tables equal the API's data."""
        # the shared mock holds the same data as ours, for test.sync_diff()
        mock("POST", "/_mock/reset", {"contacts": 20000, "seed": 5})
        port = free_port()
        api = start_mock(port, 20000, 5)
        try:
            create_server(SERVER, SCHEMA, f"'http://127.0.0.1:{port}'")
            subprocess.run(["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
                            "-d", '{"path": "/notes$", "kind": "delay", "delay_ms": 5, "times": -1}',
                            f"http://127.0.0.1:{port}/_mock/faults"], check=True,
                           capture_output=True)
            first = start_psql(f"SELECT count(*) FROM ghl_fdw.sync('{SERVER}', full => true);\n")
            wait_until(lambda: int(psql_value(f"""
                SELECT coalesce(max((cursor->>'done')::int), 0) FROM ghl_fdw.sync_passes
                WHERE server_name = '{SERVER}' AND pass = 'full'""") or 0) >= 5000, 300)
            worker = int(psql_value("""
                SELECT pid FROM pg_stat_activity
                WHERE backend_type = 'ghl_fdw sync' AND query <> 'ghl_fdw sync: statistics'"""))
            os.kill(worker, signal.SIGKILL)
            api.kill()
            api.wait()
            first.wait(timeout=60)
            self.assertNotEqual(first.returncode, 0)
            wait_until(server_up, 60, interval=0.5)

            # what the killed run had committed
            committed, pages, slices = (int(v) for v in psql_value(f"""
                SELECT concat_ws(' ', cursor->>'done', cursor->>'pages',
                                 jsonb_array_length(cursor->'slices'))
                FROM ghl_fdw.sync_passes WHERE server_name = '{SERVER}' AND pass = 'full'""").split())
            self.assertGreaterEqual(committed, 5000)
            self.assertEqual(psql_value(f"""
                SELECT count(*) FROM {SCHEMA}.contacts WHERE as_of >= (
                    SELECT started_at FROM ghl_fdw.sync_passes
                    WHERE server_name = '{SERVER}' AND pass = 'full')"""), str(committed))

            api = start_mock(port, 20000, 5)
            second = psql_value(f"""
                SELECT string_agg(status, ',') FROM ghl_fdw.sync('{SERVER}', full => true)""")
            self.assertEqual(second, "succeeded,succeeded,succeeded,succeeded")
            # the killed run is recorded as such
            self.assertEqual(psql_value(f"""
                SELECT string_agg(DISTINCT status || ' ' || left(error, 5), ',') FROM ghl_fdw.sync_runs
                WHERE server_name = '{SERVER}' AND run_id = (SELECT min(run_id) FROM ghl_fdw.sync_runs
                                                             WHERE server_name = '{SERVER}')"""),
                             "failed 57P01")
            log = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{port}/_mock/requests"],
                                 check=True, capture_output=True, text=True).stdout
            notes = log.count('/notes"')
            searches = log.count('"/contacts/search"')
            print(f"\nkilled after {committed} contacts ({pages} pages) were committed; the "
                  f"next run read {notes} contacts' notes and {searches} pages of contacts")
            # no contact whose page was committed is read again
            self.assertEqual(notes, 20000 - committed)
            self.assertLessEqual(searches, -(-(20000 - committed) // 500) + slices)
            self.assertTrue(all(d[2:4] == (0, 0) and d[0] == d[1] for d in diff(SCHEMA).values()),
                            diff(SCHEMA))
        finally:
            api.kill()
            api.wait()


if __name__ == "__main__":
    unittest.main()
