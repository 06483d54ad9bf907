"""ghl_fdw.sync as processes see it: a concurrent second run is skipped, a
pg_cron job made by schedule_sync really runs (and a failing one fails),
and the acceptance run of 20,000 contacts (full sync, changes,
incremental sync, full sync).

Uses test.sync_diff(), which the sync pg_regress suite creates in the same
database before these tests run.
"""
import math
import os
import time
import unittest

from pgtest import MOCK_URL, mock, psql, psql_value, start_psql, wait_until

SERVER = "ghl_py"
SCHEMA = "rankr_py"
RUN_COLUMNS = "resource, mode, status, rows_upserted, rows_deleted, requests"


def sync(args="", columns=RUN_COLUMNS, server=SERVER):
    """Run ghl_fdw.sync on the test server; rows as tuples, by resource."""
    out = psql_rows(f"SELECT {columns} FROM ghl_fdw.sync('{server}'{args})")
    return {row[0]: row[1:] for row in out}


def psql_rows(sql):
    return [line.split("|") for line in psql(sql)[1].splitlines() if line]


def diff(schema=SCHEMA):
    """test.sync_diff() of the test schema: resource -> (mock, live, missing, extra, tombstones)."""
    return {r[0]: tuple(int(v) for v in r[1:])
            for r in psql_rows(f"SELECT * FROM test.sync_diff('{schema}')")}


def request_counts():
    """Requests the mock logged since the last clear, by endpoint."""
    counts = {}
    for entry in mock("GET", "/_mock/requests"):
        path = "/".join("{id}" if len(p) == 20 else p for p in entry["path"].split("/"))
        key = f"{entry['method']} {path}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def create_server(name, schema, base_url_sql="mock_url"):
    """A server of the default location syncing into schema, whose
    appointment horizon covers the mock's data."""
    psql(f"""
        SELECT format('CREATE SERVER {name} FOREIGN DATA WRAPPER ghl_fdw OPTIONS (
            location_id %L, base_url %L, sync_schema %L, max_retries %L)',
            've9EPM428h8vShlRW1KT', {base_url_sql}, '{schema}', '0') FROM test.env \\gexec
        CREATE USER MAPPING FOR CURRENT_USER SERVER {name}
            OPTIONS (access_token 'pit-mock-token');
        INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
        VALUES ('{name}', '10 years', '2 years');
    """)


def drop_server(name, schema):
    psql(f"""
        DROP SERVER {name} CASCADE;
        DROP SCHEMA IF EXISTS {schema} CASCADE;
        DELETE FROM ghl_fdw.sync_state WHERE server_name = '{name}';
        DELETE FROM ghl_fdw.sync_runs WHERE server_name = '{name}';
        DELETE FROM ghl_fdw.sync_passes WHERE server_name = '{name}';
        DELETE FROM ghl_fdw.sync_settings WHERE server_name = '{name}';
    """)


def wait_for_cron_runs(jobs, timeout=90):
    """Wait until every job has a finished run in cron.job_run_details
    (pg_cron starts jobs on minute boundaries); returns job -> status."""
    statuses = {}

    def finished():
        for job in jobs:
            statuses[job] = psql_value(f"""
                SELECT coalesce(min(status), 'none') FROM cron.job_run_details
                WHERE jobid = {job} AND status IN ('succeeded', 'failed')""")
        return all(s != "none" for s in statuses.values())
    wait_until(finished, timeout, interval=1.0)
    return statuses


def start_held_run():
    """Start a contacts sync of the test server that its contact search
    holds for 4 s; returns its psql once the run shows in sync_progress."""
    mock("POST", "/_mock/faults", {"method": "POST", "path": "^/contacts/search$",
                                   "kind": "delay", "delay_ms": 4000})
    held = start_psql(f"SELECT status FROM ghl_fdw.sync('{SERVER}', '{{contacts}}');")
    wait_until(lambda: psql_value(f"""
        SELECT count(*) FROM ghl_fdw.sync_progress WHERE server_name = '{SERVER}'""") == "1", 30)
    return held


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class SyncProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        psql("CREATE EXTENSION IF NOT EXISTS pg_cron")
        create_server(SERVER, SCHEMA)

    @classmethod
    def tearDownClass(cls):
        drop_server(SERVER, SCHEMA)
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})

    def setUp(self):
        psql(f"""
            DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
            DELETE FROM ghl_fdw.sync_state WHERE server_name = '{SERVER}';
            DELETE FROM ghl_fdw.sync_passes WHERE server_name = '{SERVER}';
        """)
        mock("DELETE", "/_mock/faults")

    def assert_held_run_succeeds(self, held):
        out, err = held.stdout.read(), held.stderr.read()
        self.assertEqual(held.wait(timeout=60), 0, err)
        self.assertEqual(out.split(), ["succeeded"])

    def test_concurrent_run_is_skipped(self):
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
        first = start_held_run()
        # the lock it holds is none an ordinary role could take
        self.assertEqual(psql_value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
                         "0")
        started = time.monotonic()
        second = sync()
        elapsed = time.monotonic() - started
        self.assert_held_run_succeeds(first)
        self.assertEqual({r: v[1] for r, v in second.items()},
                         {"appointments": "skipped", "contacts": "skipped",
                          "notes": "skipped", "tasks": "skipped"})
        self.assertLess(elapsed, 2.0, "a skipped run must return at once")
        # skipped runs are in the ledger with their reason
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM ghl_fdw.sync_runs WHERE server_name = '{SERVER}'
               AND status = 'skipped' AND error = 'another sync of location ve9EPM428h8vShlRW1KT'
                   || ' into schema {SCHEMA} is running'"""), "4")

    def test_refused_tables_take_no_lock(self):
        """A role whose server names another role's location and sync schema
        is refused the tables before it takes the location's lock: while
        the owner's run holds it, the intruder's run fails on the tables
        instead of being skipped, so it could never hold the lock itself
        and keep the owner's runs skipped."""
        intruder = "ghl_py_intruder"
        password = os.environ.get("PGPASSWORD")
        login = f"LOGIN PASSWORD '{password}'" if password else "LOGIN"
        psql(f"""
            CREATE ROLE {intruder} {login};
            GRANT USAGE ON FOREIGN DATA WRAPPER ghl_fdw TO {intruder};
        """)
        try:
            # its server is never asked anything: the run ends before any request
            psql(f"""
                CREATE SERVER intruder FOREIGN DATA WRAPPER ghl_fdw
                    OPTIONS (location_id 've9EPM428h8vShlRW1KT', sync_schema '{SCHEMA}');
                CREATE USER MAPPING FOR CURRENT_USER SERVER intruder
                    OPTIONS (access_token 'pit-intruder');
            """, user=intruder)
            mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
            sync(", '{contacts}'")
            first = start_held_run()
            rc, out, err = psql("SELECT status, requests, error FROM ghl_fdw.sync('intruder');",
                                user=intruder, check=False)
            self.assert_held_run_succeeds(first)
            self.assertEqual(rc, 0, err)
            self.assertEqual(set(out.splitlines()),
                             {f"failed|0|42501: sync table {SCHEMA}.contacts is owned by role "
                              f"\"{psql_value('SELECT current_user')}\""})
        finally:
            psql(f"""
                DROP OWNED BY {intruder};
                DROP ROLE {intruder};
            """)

    def test_other_schema_is_not_skipped(self):
        """A run of the location into another schema is not held back by a
        running one, even into a schema whose name was picked for the low
        16 bits of its hash to match, which once made the two runs share a
        lock."""
        twin = psql_value(f"""
            SELECT s FROM generate_series(1, 1000000) AS g,
                          LATERAL (SELECT 'rankr_twin_' || g AS s) AS x
            WHERE hashtext(s) & 65535 = hashtext('{SCHEMA}') & 65535 LIMIT 1""")
        self.assertTrue(twin.startswith("rankr_twin_"))
        create_server("ghl_py_twin", twin)
        try:
            mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
            first = start_held_run()
            second = sync(", '{contacts}'", server="ghl_py_twin")
            self.assert_held_run_succeeds(first)
            self.assertEqual(second["contacts"][1], "succeeded")
        finally:
            drop_server("ghl_py_twin", twin)

    def test_statistics_follow_the_answer(self):
        """sync() answers once the run's rows and ledger are committed; its
        worker then analyzes the table the run created, and ends."""
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
        self.assertEqual(sync(", '{contacts}'")["contacts"][1], "succeeded")
        wait_until(lambda: psql_value(f"""
            SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
            WHERE schemaname = '{SCHEMA}' AND relname = 'contacts'""") == "t", 30)
        wait_until(lambda: psql_value("""
            SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ghl_fdw sync'""") == "0",
                   30)
        self.assertEqual(psql_value(f"""
            SELECT reltuples FROM pg_class WHERE oid = '{SCHEMA}.contacts'::regclass"""), "100")

    def test_cron_jobs_succeed_and_fail(self):
        """A job made by schedule_sync syncs; a job whose run fails is
        recorded as failed by pg_cron, and its ledger rows say why."""
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
        sync()
        changed = mock("POST", "/_mock/mutate", {"seed": 9, "update": 1})["updated"][0]
        # a server whose API refuses connections: its runs fail
        create_server("ghl_py_down", "rankr_py_down", "'http://127.0.0.1:9'")
        last_run = psql_value("SELECT coalesce(max(run_id), 0) FROM ghl_fdw.sync_runs")
        good = psql_value(f"SELECT ghl_fdw.schedule_sync('{SERVER}', '* * * * *')")
        bad = psql_value("SELECT ghl_fdw.schedule_sync('ghl_py_down', '* * * * *')")
        try:
            statuses = wait_for_cron_runs([good, bad])
        finally:
            self.assertEqual(psql_value(f"SELECT ghl_fdw.unschedule_sync('{SERVER}')"), "t")
            self.assertEqual(psql_value("SELECT ghl_fdw.unschedule_sync('ghl_py_down')"), "t")
        self.assertEqual(statuses, {good: "succeeded", bad: "failed"})
        self.assertIn("sync of GHL server \"ghl_py_down\" failed", psql(f"""
            SELECT return_message FROM cron.job_run_details WHERE jobid = {bad} LIMIT 1""")[1])
        self.assertEqual(psql_value(f"""
            SELECT string_agg(DISTINCT status || ': ' || left(error, 5), ',')
            FROM ghl_fdw.sync_runs WHERE server_name = 'ghl_py_down' AND run_id > {last_run}"""),
                         "failed: HV00N")
        drop_server("ghl_py_down", "rankr_py_down")
        # the good job's effect: the changed contact is synced as the API has it now
        contact = mock("GET", "/_mock/state")["contacts"]
        want = next(c for c in contact if c["id"] == changed)["dateUpdated"]
        self.assertEqual(psql_value(f"""
            SELECT date_updated = '{want}'::timestamptz FROM {SCHEMA}.contacts
            WHERE id = '{changed}'"""), "t")
        self.assertEqual(diff()["contacts"][2:4], (0, 0))

    def test_acceptance_20k(self):
        mock("POST", "/_mock/reset", {"contacts": 20000, "seed": 5})
        started = time.monotonic()
        full = sync()
        print(f"\nfull sync of 20,000 contacts: {time.monotonic() - started:.1f} s, {full}")
        self.assertTrue(all(v[1] == "succeeded" for v in full.values()), full)
        self.assertEqual(full["contacts"][2], "20000")
        self.assertTrue(all(d[2:4] == (0, 0) and d[0] == d[1] for d in diff().values()), diff())

        changes = mock("POST", "/_mock/mutate", {
            "seed": 6, "update": 50, "create": 10, "delete": 5, "task_edits": 10,
            "note_edits": 10, "task_creates": 5, "note_deletes": 5})
        changed = set(changes["updated"]) | set(changes["created"])
        # due: the changed contacts and those in the overlap window below
        # the watermark
        due = len(changed | set(psql(f"""
            SELECT id FROM {SCHEMA}.contacts
            WHERE date_updated >= (SELECT watermark - interval '5 minutes' FROM ghl_fdw.sync_state
                                   WHERE server_name = '{SERVER}' AND resource = 'contacts')""")[1].split()))
        tasks = len(mock("GET", "/_mock/state")["tasks"])
        mock("DELETE", "/_mock/requests")
        started = time.monotonic()
        incremental = sync()
        counts = request_counts()
        print(f"incremental run: {time.monotonic() - started:.1f} s, {incremental}")
        print(f"incremental requests by endpoint: {counts}")
        self.assertEqual(incremental["contacts"][2], str(len(changed)))
        # one request per due contact and child resource read per contact
        for child in ("notes", "appointments"):
            self.assertEqual(counts[f"GET /contacts/{{id}}/{child}"], due)
        # the location's tasks in pages of 500; one request for each task of
        # a deleted contact, confirming it is gone
        self.assertEqual(counts["POST /locations/{id}/tasks/search"], math.ceil(tasks / 500))
        self.assertEqual(counts.get("GET /contacts/{id}/tasks/{id}", 0),
                         int(incremental["tasks"][3]))
        # the contacts updated since the watermark: one search page
        self.assertEqual(counts["POST /contacts/search"], 1)
        self.assertEqual(sum(counts.values()), sum(int(v[4]) for v in incremental.values()))
        after = diff()
        print(f"after the incremental run (mock, live, missing, extra, tombstones): {after}")
        # contacts are exact but for the 5 deletes, which need a full run;
        # tasks are exact; appointments too but for those of the deleted contacts
        self.assertEqual(after["contacts"][2:4], (0, 5))
        self.assertEqual(after["tasks"][2:4], (0, 0))
        self.assertEqual(after["appointments"][2], 0)

        full = sync(", full => true")
        print(f"full run after the changes: {full}")
        after = diff()
        print(f"after the full run: {after}")
        for resource, (want, live, missing, extra, _) in after.items():
            self.assertEqual((missing, extra), (0, 0), resource)
            self.assertEqual(want, live, resource)
        self.assertEqual(after["contacts"][4], 5)
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM {SCHEMA}.contacts
            WHERE deleted_at IS NOT NULL AND id = ANY ('{{{','.join(changes['deleted'])}}}')"""), "5")


if __name__ == "__main__":
    unittest.main()
