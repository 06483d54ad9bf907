"""pg_dump carries the token store: a copy restored into a new database,
or into a new cluster, keeps querying and syncing with the rotated refresh
token, without re-authorization; the rows still belong to the same server
and role, and the store stays closed to ordinary roles.  A dump without the
store's data (--exclude-table-data) gives a copy that cannot refresh."""
import os
import subprocess
import tempfile
import unittest
import uuid

from pgtest import MOCK_URL, PGBIN, Cluster, mock, psql

SOURCE = "ghl_dump_src"
COPY = "ghl_dump_copy"
BARE = "ghl_dump_bare"
ROLE = "ghl_dump_user"
LOCATION = "ve9EPM428h8vShlRW1KT"
QUERY = "SELECT count(*) FROM dump.contacts;\n"


def fresh_seed():
    """A refresh token of a new authorization: a lineage of this test's own."""
    return mock("POST", "/oauth/token", {
        "grant_type": "authorization_code", "code": f"dump-{uuid.uuid4().hex}",
        "client_id": "mock-client", "client_secret": "mock-secret"})["refresh_token"]


def token_requests():
    return [(r["method"], r["path"], r["status"]) for r in mock("GET", "/_mock/requests")
            if r["path"].startswith("/oauth/")]


def dump(db, path, *extra):
    subprocess.run(["pg_dump", "-Fc", "-f", path, *extra, db], check=True,
                   capture_output=True, text=True)


def restore(path, target):
    """pg_restore into a database given by name (this cluster) or conninfo."""
    subprocess.run(["pg_restore", "--exit-on-error", "-d", target, path], check=True,
                   capture_output=True, text=True)


@unittest.skipUnless(MOCK_URL and os.path.exists(PGBIN + "/initdb"),
                     "needs the mock and a PostgreSQL 15 server")
class DumpRestoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        password = os.environ.get("PGPASSWORD")
        cls.login = f"LOGIN PASSWORD '{password}'" if password else "LOGIN"
        for db in (SOURCE, COPY, BARE):
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} {cls.login};", db="postgres")
        psql(f"CREATE DATABASE {SOURCE}", db="postgres")
        psql(f"""
            CREATE EXTENSION ghl_fdw;
            CREATE SERVER ghl_dump FOREIGN DATA WRAPPER ghl_fdw
                OPTIONS (location_id '{LOCATION}', base_url '{MOCK_URL}',
                         max_retries '0', sync_schema 'dump_rankr');
            GRANT USAGE ON FOREIGN SERVER ghl_dump TO {ROLE};
            CREATE SCHEMA dump AUTHORIZATION {ROLE};
            CREATE SCHEMA dump_rankr AUTHORIZATION {ROLE};
        """, db=SOURCE)
        psql(f"""
            CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_dump OPTIONS
                (client_id 'mock-client', client_secret 'mock-secret',
                 refresh_token '{fresh_seed()}');
            IMPORT FOREIGN SCHEMA ghl LIMIT TO (contacts) FROM SERVER ghl_dump INTO dump;
        """, db=SOURCE, user=ROLE)
        cls.tmp = tempfile.mkdtemp(prefix="ghl_dump.")
        os.chmod(cls.tmp, 0o777)
        cls.cluster = None

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.destroy()
        for db in (SOURCE, COPY, BARE):
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        psql(f"DROP ROLE IF EXISTS {ROLE}", db="postgres")

    def setUp(self):
        """A lineage of each test's own: a new seed replaces the stored tokens."""
        psql(f"ALTER USER MAPPING FOR CURRENT_USER SERVER ghl_dump "
             f"OPTIONS (SET refresh_token '{fresh_seed()}')", db=SOURCE, user=ROLE)

    def query(self, db, check=True):
        return psql("\\set VERBOSITY verbose\n" + QUERY, db=db, user=ROLE, check=check)

    def sync(self, db):
        return psql("SELECT mode, status FROM ghl_fdw.sync('ghl_dump', '{contacts}');",
                    db=db, user=ROLE)[1]

    def stored(self, db, column):
        return psql(f"SELECT {column} FROM ghl_fdw.token_store", db=db)[1]

    def test_dump_and_restore(self):
        # the source refreshes once: the seed is spent, the live token is stored
        contacts = self.query(SOURCE)[1]
        seed = psql("SELECT option_value FROM pg_options_to_table((SELECT umoptions "
                    "FROM pg_user_mapping WHERE umserver = (SELECT oid FROM pg_foreign_server "
                    "WHERE srvname = 'ghl_dump'))) WHERE option_name = 'refresh_token'",
                    db=SOURCE)[1]
        self.assertEqual(self.sync(SOURCE), "full|succeeded")
        rotated = self.stored(SOURCE, "refresh_token")
        self.assertNotEqual(rotated, seed)
        self.assertEqual(self.stored(SOURCE, "server_name || '/' || role_name"),
                         f"ghl_dump/{ROLE}")
        path = os.path.join(self.tmp, "source.dump")
        dump(SOURCE, path)

        # a new database of the same cluster: the tokens came along, still
        # closed to ordinary roles, and the stored access token is used as is
        psql(f"CREATE DATABASE {COPY}", db="postgres")
        restore(path, COPY)
        self.assertEqual(self.stored(COPY, "refresh_token"), rotated)
        self.assertEqual(psql(f"SELECT has_table_privilege('{ROLE}', 'ghl_fdw.token_store', "
                              "'SELECT,UPDATE')", db=COPY)[1], "f")
        mock("DELETE", "/_mock/requests")
        self.assertEqual(self.query(COPY)[1], contacts)
        self.assertEqual(token_requests(), [])

        # every token revoked: the copy refreshes with the rotated refresh
        # token (the seed would be refused) and an incremental sync goes on
        mock("POST", "/_mock/config", {"expire_all_tokens": True})
        mock("DELETE", "/_mock/requests")
        self.query(COPY)
        self.assertEqual(token_requests(), [("POST", "/oauth/token", 200)])
        self.assertEqual(self.sync(COPY), "incremental|succeeded")
        self.assertNotIn(self.stored(COPY, "refresh_token"), (rotated, seed))

        # one lineage: the original's refresh token is spent now
        mock("POST", "/_mock/config", {"expire_all_tokens": True})
        rc, _, err = self.query(SOURCE, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("28000", err)
        self.assertIn("re-authorization is needed", err)

        # a new cluster, restored from a dump of the copy
        path = os.path.join(self.tmp, "copy.dump")
        dump(COPY, path)
        self.cluster = type(self).cluster = Cluster("ghl_dump.")
        self.cluster.psql(f"CREATE ROLE {ROLE} LOGIN")
        owner = psql("SELECT current_user", db=SOURCE)[1]
        if owner != "postgres":
            self.cluster.psql(f'CREATE ROLE "{owner}" SUPERUSER')
        restore(path, self.cluster.conninfo())
        mock("POST", "/_mock/config", {"expire_all_tokens": True})
        mock("DELETE", "/_mock/requests")
        self.assertEqual(self.cluster.psql(QUERY, user=ROLE).stdout.strip(), contacts)
        self.assertEqual(token_requests(), [("POST", "/oauth/token", 200)])
        self.assertEqual(self.cluster.psql(
            "SELECT mode, status FROM ghl_fdw.sync('ghl_dump', '{contacts}')",
            user=ROLE).stdout.strip(), "incremental|succeeded")
        self.assertEqual(self.cluster.psql(
            f"SELECT server_name || '/' || role_name, refresh_token <> '{rotated}', "
            f"has_table_privilege('{ROLE}', 'ghl_fdw.token_store', 'SELECT') "
            "FROM ghl_fdw.token_store").stdout.strip(), f"ghl_dump/{ROLE}|t|f")

    def test_restored_row_stays_with_its_role(self):
        """A restored row belongs to its server and role by name: another
        role's mapping on the server neither uses it nor deletes it."""
        path = os.path.join(self.tmp, "names.dump")
        self.query(SOURCE)
        dump(SOURCE, path)
        psql(f"CREATE DATABASE {BARE}", db="postgres")
        restore(path, BARE)
        before = self.stored(BARE, "refresh_token")
        psql(f"""
            CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_dump
                OPTIONS (client_id 'mock-client', client_secret 'mock-secret');
            SELECT count(*) FROM dump.contacts WHERE id = 'nonexistent-id';
            DROP USER MAPPING FOR CURRENT_USER SERVER ghl_dump;
        """, db=BARE)
        self.assertEqual(psql("SELECT role_name, refresh_token FROM ghl_fdw.token_store",
                              db=BARE)[1], f"{ROLE}|{before}")
        # dropping the role's own mapping forgets its tokens
        psql(f"DROP USER MAPPING FOR {ROLE} SERVER ghl_dump", db=BARE)
        self.assertEqual(psql("SELECT count(*) FROM ghl_fdw.token_store", db=BARE)[1], "0")

    def test_dump_without_tokens(self):
        """--exclude-table-data=ghl_fdw.token_store: a copy that cannot
        spend the lineage (its seed is spent), however it is used."""
        path = os.path.join(self.tmp, "bare.dump")
        self.query(SOURCE)
        dump(SOURCE, path, "--exclude-table-data=ghl_fdw.token_store")
        db = BARE + "_x"
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db}", db="postgres")
        try:
            restore(path, db)
            self.assertEqual(psql("SELECT count(*) FROM ghl_fdw.token_store", db=db)[1], "0")
            mock("POST", "/_mock/config", {"expire_all_tokens": True})
            rc, _, err = self.query(db, check=False)
            self.assertNotEqual(rc, 0)
            self.assertIn("28000", err)
        finally:
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")


if __name__ == "__main__":
    unittest.main()
