"""Many locations, one sync_schema: two servers (locations) sync into the
same tables, in any order and at the same time, and each location's rows
equal that location's data while the other's are never touched; the
tables have the shape a sharded (Citus) deployment distributes by
location_id.

Uses test.sync_diff(), which the sync pg_regress suite creates.
"""
import unittest

from pgtest import MOCK_URL, mock, psql, psql_value, start_psql, wait_until

SCHEMA = "rankr_multi"
LOCATIONS = {"loc_a": ("ve9EPM428h8vShlRW1KT", "pit-mock-token"),
             "loc_b": ("Bq7xLocationB0000002", "pit-Bq7xLocationB0000002")}


def diff(location):
    rows = psql(f"SELECT * FROM test.sync_diff('{SCHEMA}', '{location}')")[1].splitlines()
    return {r.split("|")[0]: tuple(int(v) for v in r.split("|")[1:]) for r in rows}


def sync_status(server, args=""):
    return psql_value(f"SELECT string_agg(status, ',') FROM ghl_fdw.sync('{server}'{args})")


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class LocationsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        mock("POST", "/_mock/reset", {"contacts": 300, "seed": 21})
        mock("POST", "/_mock/locations", {"id": LOCATIONS["loc_b"][0], "contacts": 250, "seed": 22})
        for server, (location, token) in LOCATIONS.items():
            psql(f"""
                SELECT format('CREATE SERVER {server} FOREIGN DATA WRAPPER ghl_fdw OPTIONS (
                    location_id %L, base_url %L, sync_schema %L, max_retries %L)',
                    '{location}', mock_url, '{SCHEMA}', '0') FROM test.env \\gexec
                CREATE USER MAPPING FOR CURRENT_USER SERVER {server}
                    OPTIONS (access_token '{token}');
                INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
                VALUES ('{server}', '10 years', '2 years');
            """)

    @classmethod
    def tearDownClass(cls):
        for server in LOCATIONS:
            psql(f"""
                DROP SERVER {server} CASCADE;
                DELETE FROM ghl_fdw.sync_state WHERE server_name = '{server}';
                DELETE FROM ghl_fdw.sync_runs WHERE server_name = '{server}';
                DELETE FROM ghl_fdw.sync_passes WHERE server_name = '{server}';
                DELETE FROM ghl_fdw.sync_settings WHERE server_name = '{server}';
            """)
        psql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})

    def assert_equal_to_mock(self, location, tombstones=None):
        for resource, (want, live, missing, extra, dead) in diff(location).items():
            self.assertEqual((want, missing, extra), (live, 0, 0), (location, resource))
            if tombstones is not None:
                self.assertEqual(dead, tombstones.get(resource, 0), (location, resource))

    def forget(self):
        """No sync tables and no sync bookkeeping of either server."""
        psql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        for server in LOCATIONS:
            psql(f"""
                DELETE FROM ghl_fdw.sync_state WHERE server_name = '{server}';
                DELETE FROM ghl_fdw.sync_runs WHERE server_name = '{server}';
                DELETE FROM ghl_fdw.sync_passes WHERE server_name = '{server}';
            """)

    def test_first_runs_create_the_tables_at_once(self):
        """The first runs of two locations into a new schema at the same
        time: the later one waits for the tables the first creates, then
        writes into them, instead of failing on the catalogs' unique index
        (which once also left it without a ledger row)."""
        self.forget()
        contact = mock("GET", "/_mock/state")["contacts"][0]["id"]
        holder = start_psql(f"""
            BEGIN;
            SELECT string_agg(status, ',') FROM ghl_fdw.refresh_contact('loc_a', '{contact}');
            SELECT pg_sleep(5);
            COMMIT;""")
        try:
            wait_until(lambda: psql_value("""
                SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'""") == "1", 30)
            self.assertEqual(psql_value(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{SCHEMA}'"),
                             "0", "the tables are not committed yet")
            self.assertEqual(sync_status("loc_b", ", '{contacts}'"), "succeeded")
        finally:
            self.assertEqual(holder.wait(timeout=60), 0, holder.stderr.read())
        self.assertEqual(holder.stdout.read().split(), ["succeeded,succeeded,succeeded,succeeded"])
        self.assertEqual(psql_value(f"""
            SELECT string_agg(location_id || ':' || n, ',' ORDER BY location_id)
            FROM (SELECT location_id, count(*) AS n FROM {SCHEMA}.contacts GROUP BY 1) c"""),
                         f"{LOCATIONS['loc_b'][0]}:250,{LOCATIONS['loc_a'][0]}:1")
        self.forget()

    def test_two_locations_one_schema(self):
        a, b = LOCATIONS["loc_a"][0], LOCATIONS["loc_b"][0]
        # one after the other, then each incrementally in the other order
        self.assertEqual(sync_status("loc_a"), "succeeded,succeeded,succeeded,succeeded")
        self.assertEqual(sync_status("loc_b"), "succeeded,succeeded,succeeded,succeeded")
        self.assert_equal_to_mock(a, {})
        self.assert_equal_to_mock(b, {})
        self.assertEqual(psql_value(f"SELECT count(DISTINCT location_id) FROM {SCHEMA}.contacts"), "2")

        # an audit of every row the syncs of location A write
        psql(f"""
            CREATE TABLE public.multi_audit (relname name, location_id text);
            CREATE FUNCTION public.multi_audit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO public.multi_audit VALUES (TG_RELNAME, NEW.location_id);
                RETURN NEW;
            END $$;
            SELECT format('CREATE TRIGGER audit AFTER INSERT OR UPDATE ON {SCHEMA}.%I
                           FOR EACH ROW EXECUTE FUNCTION public.multi_audit()', r)
            FROM unnest(ARRAY['contacts', 'tasks', 'notes', 'appointments']) AS r \\gexec
        """)
        changed_a = mock("POST", "/_mock/mutate", {
            "location": a, "seed": 1, "update": 6, "create": 2, "delete": 3, "task_edits": 3,
            "note_edits": 2, "appointment_edits": 2})
        changed_b = mock("POST", "/_mock/mutate", {
            "location": b, "seed": 2, "update": 4, "create": 1, "delete": 2, "task_creates": 2})
        self.assertEqual(sync_status("loc_b"), "succeeded,succeeded,succeeded,succeeded")
        psql("TRUNCATE public.multi_audit")
        self.assertEqual(sync_status("loc_a"), "succeeded,succeeded,succeeded,succeeded")
        self.assertEqual(psql_value(f"""
            SELECT string_agg(DISTINCT location_id, ',') FROM public.multi_audit"""), a)
        # deletes need full runs: run both at the same time
        runs = [start_psql(f"SELECT string_agg(status, ',') FROM ghl_fdw.sync('{s}', full => true);")
                for s in LOCATIONS]
        for run in runs:
            self.assertEqual(run.wait(timeout=300), 0, run.stderr.read())
            self.assertEqual(run.stdout.read().strip(), "succeeded,succeeded,succeeded,succeeded")
        psql(f"""
            SELECT format('DROP TRIGGER audit ON {SCHEMA}.%I', r)
            FROM unnest(ARRAY['contacts', 'tasks', 'notes', 'appointments']) AS r \\gexec
            DROP TABLE public.multi_audit;
            DROP FUNCTION public.multi_audit();
        """)
        # each location equals its own data; what was deleted in one is
        # tombstoned there only
        self.assert_equal_to_mock(a)
        self.assert_equal_to_mock(b)
        for location, changes in ((a, changed_a), (b, changed_b)):
            deleted = "','".join(changes["deleted"])
            self.assertEqual(psql_value(f"""
                SELECT concat_ws(' ', count(*) FILTER (WHERE location_id = '{location}'),
                                      count(*))
                FROM {SCHEMA}.contacts WHERE deleted_at IS NOT NULL AND id IN ('{deleted}')"""),
                             f"{len(changes['deleted'])} {len(changes['deleted'])}")
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM {SCHEMA}.contacts WHERE deleted_at IS NOT NULL"""),
                         str(len(changed_a["deleted"]) + len(changed_b["deleted"])))
        # the status view: one row per server and resource
        self.assertEqual(psql_value("""
            SELECT string_agg(server_name || '/' || resource || '/' || status, ','
                              ORDER BY server_name, resource)
            FROM ghl_fdw.sync_status WHERE server_name LIKE 'loc_%'"""),
                         ",".join(f"{s}/{r}/succeeded" for s in sorted(LOCATIONS)
                                  for r in ("appointments", "contacts", "notes", "tasks")))

    def test_tables_ready_to_distribute(self):
        """What a distribution by location_id (Citus) needs: every key and
        unique index includes location_id, every index leads with it, and
        no foreign key ties one location's rows to another's."""
        self.assertEqual(sync_status("loc_a", ", '{contacts,tasks,notes,appointments}'"),
                         "succeeded,succeeded,succeeded,succeeded")
        tables = f"""
            SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = '{SCHEMA}' AND c.relkind = 'r'"""
        self.assertEqual(psql_value(f"SELECT count(*) FROM ({tables}) t"), "4")
        self.assertEqual(psql_value(f"""
            SELECT string_agg(DISTINCT pg_get_constraintdef(oid), ',') FROM pg_constraint
            WHERE conrelid IN ({tables}) AND contype = 'p'"""), "PRIMARY KEY (location_id, id)")
        # unique indexes without location_id, indexes not led by it, foreign keys
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM pg_index i
            WHERE i.indrelid IN ({tables}) AND i.indisunique
              AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) AS k
                              WHERE k = (SELECT attnum FROM pg_attribute
                                         WHERE attrelid = i.indrelid AND attname = 'location_id'))"""),
                         "0")
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM pg_index i
            WHERE i.indrelid IN ({tables})
              AND i.indkey[0] <> (SELECT attnum FROM pg_attribute
                                  WHERE attrelid = i.indrelid AND attname = 'location_id')"""),
                         "0")
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM pg_constraint
            WHERE (conrelid IN ({tables}) OR confrelid IN ({tables})) AND contype = 'f'"""), "0")
        # the children are found by location and contact
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM pg_index i
            WHERE i.indrelid IN ({tables})
              AND pg_get_indexdef(i.indexrelid) LIKE '%(location_id, contact_id)'"""), "3")


if __name__ == "__main__":
    unittest.main()
