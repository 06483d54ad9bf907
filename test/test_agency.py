"""Agency installs: one Company credential (a rotating refresh token) on an
agency server; ghl_fdw.create_location_servers() makes a server per
location where the app is installed, idempotently, with staggered sync
jobs; the five sync at the same time, each within its own rate budget, and
the agency's refresh token rotates once per expiry across all of them,
counted at the mock.  A role gets no agency credentials it was not given."""
import os
import time
import unittest
import uuid

from pgtest import DB, MOCK_URL, mock, psql, start_psql

USER = "ghl_agency_user"        # an ordinary role using the location servers
OTHER = "ghl_agency_other"      # an ordinary role with no agency mapping
DEFAULT = "ve9EPM428h8vShlRW1KT"
EXTRA = ["AgencyLoc00000000001", "AgencyLoc00000000002", "AgencyLoc00000000003",
         "AgencyLoc00000000004"]
LOCATIONS = sorted([DEFAULT] + EXTRA)
OUTPUTS = []


def run(sql, user=None, check=True):
    rc, out, err = psql("\\set VERBOSITY verbose\n" + sql, db=DB, user=user, check=check)
    OUTPUTS.append(out + "\n" + err)
    return rc, out, err


def rows(sql, user=None):
    return [line.split("|") for line in run(sql, user=user)[1].splitlines() if line]


def company_seed():
    """The refresh token of a new Company authorization: a lineage of its own."""
    return mock("POST", "/oauth/token", {
        "grant_type": "authorization_code", "code": f"agency-{uuid.uuid4().hex}",
        "client_id": "mock-client", "client_secret": "mock-secret",
        "user_type": "Company"})["refresh_token"]


def company_mapping(role, server="agency"):
    return (f"CREATE USER MAPPING FOR {role} SERVER {server} OPTIONS (client_id 'mock-client', "
            f"client_secret 'mock-secret', refresh_token '{company_seed()}', user_type 'Company');")


def stats():
    return mock("GET", "/_mock/stats")


def sync_all(servers, full="false"):
    """Sync every server in a session of its own, all at once; their statuses."""
    procs = [start_psql(f"SELECT string_agg(status, ',') FROM ghl_fdw.sync('{s}', '{{contacts}}', "
                        f"{full});", db=DB) for s in servers]
    outs = []
    for p in procs:
        p.wait(timeout=300)
        outs.append((p.stdout.read(), p.stderr.read()))
    for (out, err), p in zip(outs, procs):
        OUTPUTS.append(out + err)
        if p.returncode != 0:
            raise AssertionError(err)
    return [out.strip() for out, _ in outs]


def overlapping_locations():
    """The most locations that had a request in flight at one moment."""
    spans = [(r["arrived_ms"], r["done_ms"], r["location"]) for r in mock("GET", "/_mock/requests")
             if r["location"] and r.get("done_ms")]
    return max(len({loc for a, d, loc in spans if a <= t < d}) for t, _, _ in spans)


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class AgencyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
        for loc in EXTRA:
            mock("POST", "/_mock/locations", {"id": loc, "contacts": 200, "seed": 7})
        mock("POST", "/_mock/locations", {"id": DEFAULT, "contacts": 200, "seed": 7})
        password = os.environ.get("PGPASSWORD")
        login = f"LOGIN PASSWORD '{password}'" if password else "LOGIN"
        psql(f"CREATE ROLE {USER} {login}; CREATE ROLE {OTHER} {login};", db="postgres")
        run(f"""
            CREATE EXTENSION IF NOT EXISTS pg_cron;
            CREATE SERVER agency FOREIGN DATA WRAPPER ghl_fdw
                OPTIONS (location_id '{DEFAULT}', base_url '{MOCK_URL}', app_id 'mock-app',
                         max_retries '3', page_size '20', sync_schema 'agency_rankr');
            {company_mapping('CURRENT_USER')}
            GRANT USAGE ON FOREIGN DATA WRAPPER ghl_fdw TO {USER}, {OTHER};
            GRANT USAGE ON FOREIGN SERVER agency TO {USER};
            CREATE SCHEMA mine AUTHORIZATION {USER};
        """)

    @classmethod
    def tearDownClass(cls):
        psql(f"""
            SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ghl_fdw_sync_agency%';
            SELECT format('DROP SERVER %I CASCADE', srvname) FROM pg_foreign_server
            WHERE srvname = 'agency' OR srvname LIKE 'agency\\_%' \\gexec
            DROP SCHEMA IF EXISTS agency_rankr, mine CASCADE;
            DELETE FROM ghl_fdw.sync_state WHERE server_name LIKE 'agency%';
            DELETE FROM ghl_fdw.sync_runs WHERE server_name LIKE 'agency%';
            DELETE FROM ghl_fdw.sync_passes WHERE server_name LIKE 'agency%';
            REVOKE USAGE ON FOREIGN DATA WRAPPER ghl_fdw FROM {USER}, {OTHER};
            DROP ROLE {USER}; DROP ROLE {OTHER};
        """, check=False)
        mock("POST", "/_mock/config", {"latency_ms": 0, "rate_limit": 100000,
                                       "rate_interval_ms": 10000})
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})

    def create(self, every="NULL"):
        return rows(f"SELECT server_name, location_id, action, job_id IS NOT NULL "
                    f"FROM ghl_fdw.create_location_servers('agency', {every}, '{{contacts}}')")

    def test_1_create_and_keep(self):
        mock("DELETE", "/_mock/stats")
        mock("DELETE", "/_mock/requests")
        created = self.create(15)
        self.assertEqual(created, [[f"agency_{loc}", loc, "created", "t"] for loc in LOCATIONS])
        after = stats()
        # one refresh for the Company token, one page of installs, no location token yet
        self.assertEqual((after["refreshes"], after["location_token_requests"]), (1, 0))
        self.assertEqual([(r["method"], r["status"]) for r in mock("GET", "/_mock/requests")
                          if r["path"] == "/oauth/installedLocations"], [("GET", 200)])
        # each server: the agency's options, its location, a from_agency mapping
        self.assertEqual(rows("""
            SELECT count(*) FILTER (WHERE 'base_url=' || (SELECT option_value FROM
                       pg_options_to_table((SELECT srvoptions FROM pg_foreign_server
                                            WHERE srvname = 'agency')) WHERE option_name = 'base_url')
                       = ANY (s.srvoptions) AND 'agency_server=agency' = ANY (s.srvoptions)
                       AND NOT EXISTS (SELECT FROM unnest(s.srvoptions) o WHERE o LIKE 'app_id=%')),
                   count(DISTINCT m.umoptions::text)
            FROM pg_foreign_server s JOIN pg_user_mappings m ON m.srvid = s.oid
            WHERE s.srvname LIKE 'agency\\_%'"""), [["5", "1"]])
        self.assertEqual(rows("SELECT DISTINCT umoptions::text FROM pg_user_mappings "
                              "WHERE srvname LIKE 'agency\\_%'"), [["{from_agency=true}"]])
        # staggered jobs: five distinct starting minutes
        self.assertEqual(rows("""SELECT count(*), count(DISTINCT split_part(schedule, '-', 1))
                                 FROM cron.job WHERE jobname LIKE 'ghl_fdw_sync_agency\\_%'"""),
                         [["5", "5"]])
        # again: nothing new, nothing asked of the token endpoint
        mock("DELETE", "/_mock/stats")
        self.assertEqual(self.create(15), [[f"agency_{loc}", loc, "kept", "f"] for loc in LOCATIONS])
        self.assertEqual(stats()["token_requests"], 0)
        self.assertEqual(rows("SELECT count(*) FROM pg_foreign_server WHERE srvname LIKE 'agency%'"),
                         [["6"]])
        # the jobs are not to run while the other tests sync these servers
        self.assertEqual(rows("""SELECT count(*) FILTER (WHERE cron.unschedule(jobid)) FROM cron.job
                                 WHERE jobname LIKE 'ghl_fdw_sync_agency\\_%'"""), [["5"]])

    def test_2_concurrent_sync_single_flight(self):
        servers = [f"agency_{loc}" for loc in LOCATIONS]
        mock("POST", "/_mock/config", {"latency_ms": 40})
        try:
            # first use: each location buys its token with the stored Company token
            mock("DELETE", "/_mock/stats")
            mock("DELETE", "/_mock/requests")
            self.assertEqual(sync_all(servers), ["succeeded"] * 5)
            first = stats()
            self.assertEqual((first["refreshes"], first["location_token_requests"]), (0, 5))
            self.assertGreaterEqual(overlapping_locations(), 3)

            # every token revoked: one refresh of the agency lineage for all five
            refresh_before = rows("SELECT md5(refresh_token) FROM ghl_fdw.token_store "
                                  "WHERE server_name = 'agency'")
            mock("POST", "/_mock/config", {"expire_all_tokens": True})
            mock("DELETE", "/_mock/stats")
            self.assertEqual(sync_all(servers), ["succeeded"] * 5)
            second = stats()
            self.assertEqual((second["token_requests"], second["refreshes"],
                              second["location_token_requests"]), (1, 1, 5))
            self.assertNotEqual(rows("SELECT md5(refresh_token) FROM ghl_fdw.token_store "
                                     "WHERE server_name = 'agency'"), refresh_before)
            # one lineage: no location server's row holds a refresh or Company token
            self.assertEqual(rows("""
                SELECT count(*), count(refresh_token), count(agency_token),
                       count(DISTINCT location_id)
                FROM ghl_fdw.token_store WHERE server_name LIKE 'agency\\_%'"""),
                [["5", "0", "0", "5"]])
        finally:
            mock("POST", "/_mock/config", {"latency_ms": 0})

    def test_3_own_rate_budgets(self):
        """Ten requests a second per location: five locations together send
        more than ten a second, and none gets a 429."""
        servers = [f"agency_{loc}" for loc in LOCATIONS]
        run("SELECT ghl_fdw.request_stats_reset()")
        mock("POST", "/_mock/config", {"rate_limit": 10, "rate_interval_ms": 1000})
        time.sleep(1.1)
        mock("DELETE", "/_mock/requests")
        try:
            self.assertEqual(sync_all(servers, full="true"), ["succeeded"] * 5)
        finally:
            mock("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})
        log = [r for r in mock("GET", "/_mock/requests") if r["location"]]
        self.assertEqual({r["status"] for r in log}, {200})
        busiest = max(sum(1 for r in log if s["arrived_ms"] <= r["arrived_ms"] < s["arrived_ms"] + 1000)
                      for s in log)
        self.assertGreater(busiest, 10)

    def test_4_uninstall_is_reported(self):
        gone = EXTRA[0]
        mock("POST", "/_mock/uninstall", {"location": gone})
        try:
            result = self.create()
        finally:
            mock("POST", "/_mock/install", {"location": gone})
        self.assertIn([f"agency_{gone}", gone, "uninstalled", "f"], result)
        self.assertEqual(sorted(r[2] for r in result), ["kept"] * 4 + ["uninstalled"])
        # kept, with its synced rows
        self.assertEqual(rows(f"SELECT count(*) > 0 FROM agency_rankr.contacts "
                              f"WHERE location_id = '{gone}'"), [["t"]])
        self.assertEqual(rows(f"SELECT count(*) FROM pg_foreign_server "
                              f"WHERE srvname = 'agency_{gone}'"), [["1"]])

    def test_5_roles_use_their_own_credentials(self):
        loc = LOCATIONS[1]
        server = f"agency_{loc}"
        # a role with USAGE on the agency server may not hang servers off it
        rc, _, err = run(f"CREATE SERVER stolen FOREIGN DATA WRAPPER ghl_fdw OPTIONS "
                         f"(location_id '{EXTRA[2]}', agency_server 'agency')",
                         user=USER, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("42501", err)
        self.assertIn('permission denied to use GHL server "agency" as an agency server', err)
        rc, _, err = run("SELECT * FROM ghl_fdw.create_location_servers('agency')",
                         user=OTHER, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("42501", err)

        # a from_agency mapping of its own: the role's own mapping on the
        # agency server is used, never the one of the agency's owner
        owner_row = rows("SELECT md5(refresh_token) FROM ghl_fdw.token_store "
                         "WHERE server_name = 'agency' AND role_name = current_user")
        run(f"""
            CREATE USER MAPPING FOR CURRENT_USER SERVER "{server}" OPTIONS (from_agency 'true');
            CREATE FOREIGN TABLE mine.contacts (id text) SERVER "{server}"
                OPTIONS (resource 'contacts');
        """, user=USER)
        rc, _, err = run("SELECT count(*) FROM mine.contacts", user=USER, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn(f'no user mapping for role "{USER}" on GHL server "agency"', err)
        run(company_mapping("CURRENT_USER"), user=USER)
        mock("DELETE", "/_mock/stats")
        self.assertEqual(run("SELECT count(*) > 0 FROM mine.contacts", user=USER)[1], "t")
        self.assertEqual((stats()["refreshes"], stats()["location_token_requests"]), (1, 1))
        self.assertEqual(rows("SELECT md5(refresh_token) FROM ghl_fdw.token_store "
                              "WHERE server_name = 'agency' AND role_name = current_user"), owner_row)
        self.assertEqual(rows(f"SELECT server_name, role_name FROM ghl_fdw.token_store "
                              f"WHERE role_name = '{USER}' ORDER BY 1"),
                         [["agency", USER], [server, USER]])

        # credentials cannot come with from_agency
        rc, _, err = run(f"CREATE USER MAPPING FOR {OTHER} SERVER \"{server}\" OPTIONS "
                         f"(from_agency 'true', access_token 'pit-x')", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('option "from_agency" cannot be used with credentials', err)

    def test_6_agency_mapping_change_reaches_open_sessions(self):
        """A session that used a location server sees a later change of the
        agency server's mapping: the next token it buys uses the new
        credentials, not those its connection was opened with."""
        server = f"agency_{LOCATIONS[2]}"
        rc, out, err = run(f"""
            CREATE FOREIGN TABLE public.agency_probe (id text) SERVER "{server}"
                OPTIONS (resource 'contacts');
            SELECT count(*) > 0 FROM public.agency_probe;
            SELECT FROM test.mock('POST', '/_mock/config', '{{"expire_all_tokens": true}}');
            ALTER USER MAPPING FOR CURRENT_USER SERVER agency
                OPTIONS (SET client_secret 'not-the-secret');
            SELECT count(*) > 0 FROM public.agency_probe;
        """, check=False)
        run("""
            ALTER USER MAPPING FOR CURRENT_USER SERVER agency
                OPTIONS (SET client_secret 'mock-secret');
            DROP FOREIGN TABLE public.agency_probe;
        """)
        self.assertNotEqual(rc, 0)
        self.assertEqual(out.split(), ["t"])
        self.assertIn('28000: GHL server "agency" refused the OAuth client credentials', err)
        self.assertEqual(run("SELECT count(*) > 0 FROM mine.contacts", user=USER)[1], "t")

    def test_9_no_secret_in_outputs(self):
        text = "\n".join(OUTPUTS)
        leaked = [t for t in mock("GET", "/_mock/issued_tokens")["tokens"] if t in text]
        self.assertEqual(leaked, [])


if __name__ == "__main__":
    unittest.main()
