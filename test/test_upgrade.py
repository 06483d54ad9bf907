"""ALTER EXTENSION ghl_fdw UPDATE: a 1.0 install that has synced data,
updated to the current version, must equal a fresh install of that version
object by object (definitions, privileges, comments, dump configuration),
and keep every synced row and tombstone."""
import unittest

from pgtest import MOCK_URL, psql

OLD = "ghl_up_old"
NEW = "ghl_up_new"
LOCATION = "ve9EPM428h8vShlRW1KT"

# Every object of the extension, with what defines it, as "kind | identity |
# definition" lines.  OIDs and the extension's own install order stay out,
# so two installs compare equal exactly when they create the same objects.
SIGNATURE = r"""
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'ghl_fdw'),
members AS (
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'),
described AS (
    SELECT m.*, pg_describe_object(m.classid, m.objid, m.objsubid) AS ident
    FROM members m)
SELECT kind || ' | ' || ident || ' | ' || coalesce(def, '')
FROM (
    -- functions: their whole definition, privileges and comment
    SELECT 'function' AS kind, d.ident,
           pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
           || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '') AS def
    FROM described d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    WHERE p.prokind <> 'a'
    UNION ALL
    -- relations: kind, privileges, row security, options, comment
    SELECT 'relation', d.ident,
           c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
           || ' rls=' || c.relrowsecurity || ' options=' || coalesce(c.reloptions::text, '')
           || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
           || coalesce(' view=' || pg_get_viewdef(c.oid), '')
    FROM described d JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    UNION ALL
    -- columns of tables and views, in order
    SELECT 'column', d.ident || '.' || a.attname,
           a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
           || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
           || ' acl=' || coalesce(a.attacl::text, '')
    FROM described d JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    -- constraints, indexes, policies and triggers of the extension's tables
    SELECT 'constraint', d.ident || ' ' || con.conname, pg_get_constraintdef(con.oid)
    FROM described d JOIN pg_constraint con ON d.classid = 'pg_class'::regclass AND con.conrelid = d.objid
    UNION ALL
    SELECT 'index', d.ident || ' ' || i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
    FROM described d JOIN pg_index i ON d.classid = 'pg_class'::regclass AND i.indrelid = d.objid
    UNION ALL
    SELECT 'policy', d.ident || ' ' || pol.polname,
           pol.polcmd::text || ' ' || pol.polpermissive || ' ' || pol.polroles::text || ' '
           || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') || ' '
           || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '')
    FROM described d JOIN pg_policy pol ON d.classid = 'pg_class'::regclass AND pol.polrelid = d.objid
    UNION ALL
    SELECT 'trigger', d.ident || ' ' || t.tgname, pg_get_triggerdef(t.oid)
    FROM described d JOIN pg_trigger t ON d.classid = 'pg_class'::regclass AND t.tgrelid = d.objid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'event trigger', d.ident,
           e.evtevent || ' ' || e.evtenabled::text || ' ' || e.evtfoid::regproc::text || ' '
           || coalesce(e.evttags::text, '')
    FROM described d JOIN pg_event_trigger e ON d.classid = 'pg_event_trigger'::regclass AND e.oid = d.objid
    UNION ALL
    SELECT 'wrapper', d.ident,
           w.fdwhandler::regproc::text || ' ' || w.fdwvalidator::regproc::text || ' comment='
           || coalesce(obj_description(w.oid, 'pg_foreign_data_wrapper'), '')
    FROM described d JOIN pg_foreign_data_wrapper w
         ON d.classid = 'pg_foreign_data_wrapper'::regclass AND w.oid = d.objid
    UNION ALL
    -- anything else the extension owns (types, operators, casts, ...)
    SELECT 'object', d.ident, ''
    FROM described d
    WHERE d.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass,
                            'pg_event_trigger'::regclass, 'pg_foreign_data_wrapper'::regclass)
    UNION ALL
    -- what pg_dump carries of the extension's tables
    SELECT 'dumped', c::regclass::text, coalesce(e.extcondition[i], '')
    FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS u(c, i)
    WHERE e.extname = 'ghl_fdw'
    UNION ALL
    -- objects in the extension's schema that are not part of it
    SELECT 'stray', c.oid::regclass::text, c.relkind::text
    FROM pg_class c
    WHERE c.relnamespace = 'ghl_fdw'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.deptype IN ('e', 'a', 'i'))
) AS objects
ORDER BY 1
"""


def signature(db):
    return psql(SIGNATURE, db=db)[1].splitlines()


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class UpgradeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for db in (OLD, NEW):
            psql(f"DROP DATABASE IF EXISTS {db}", db="postgres")
            psql(f"CREATE DATABASE {db}", db="postgres")

    @classmethod
    def tearDownClass(cls):
        for db in (OLD, NEW):
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")

    def test_update_equals_fresh_install(self):
        default = psql("SELECT default_version FROM pg_available_extensions "
                       "WHERE name = 'ghl_fdw'", db=NEW)[1]
        self.assertNotEqual(default, "1.0", "the update needs a newer default version")

        # a 1.0 install that has been used: a server, a mapping, a synced schema
        psql(f"""
            CREATE EXTENSION ghl_fdw VERSION '1.0';
            CREATE SERVER ghl FOREIGN DATA WRAPPER ghl_fdw
                OPTIONS (location_id '{LOCATION}', base_url '{MOCK_URL}');
            CREATE USER MAPPING FOR CURRENT_USER SERVER ghl
                OPTIONS (access_token 'pit-mock-token');
            SELECT count(*) FROM ghl_fdw.sync('ghl', '{{contacts,tasks}}');
            -- a tombstone, as a full run leaves for a contact gone upstream
            UPDATE rankr.contacts SET deleted_at = now()
            WHERE id = (SELECT min(id) FROM rankr.contacts);
        """, db=OLD)
        before = self.synced(OLD)
        # the 1.0 token store: a rotated refresh token, and an orphan row of
        # a mapping that is gone
        psql(f"""
            CREATE SERVER ghl_oauth FOREIGN DATA WRAPPER ghl_fdw
                OPTIONS (location_id '{LOCATION}', base_url '{MOCK_URL}');
            CREATE USER MAPPING FOR PUBLIC SERVER ghl_oauth
                OPTIONS (client_id 'mock-client', client_secret 'mock-secret',
                         refresh_token 'rt-seed-upgrade');
            INSERT INTO ghl_fdw.token_store (umid, seed_fingerprint, refresh_token)
            SELECT umid, 'fingerprint', 'rt-rotated-upgrade' FROM pg_user_mappings
            WHERE srvname = 'ghl_oauth'
            UNION ALL SELECT 1, 'fingerprint', 'rt-orphan';
        """, db=OLD)
        self.assertGreater(before["contacts"][0], 0)
        self.assertEqual(before["contacts"][1], 1)

        psql("ALTER EXTENSION ghl_fdw UPDATE", db=OLD)
        psql("CREATE EXTENSION ghl_fdw", db=NEW)
        self.assertEqual(psql("SELECT extversion FROM pg_extension WHERE extname = 'ghl_fdw'",
                              db=OLD)[1], default)

        old, new = signature(OLD), signature(NEW)
        self.assertGreater(len(new), 20)
        self.assertEqual([line for line in old if line not in new],
                         [line for line in new if line not in old])
        self.assertEqual(old, new)

        # no synced row and no tombstone lost
        self.assertEqual(self.synced(OLD), before)
        # the stored tokens now go by the names of server and role
        self.assertEqual(psql("SELECT server_name, role_name, umid = (SELECT umid FROM "
                              "pg_user_mappings WHERE srvname = 'ghl_oauth'), refresh_token "
                              "FROM ghl_fdw.token_store", db=OLD)[1],
                         "ghl_oauth|public|t|rt-rotated-upgrade")

    @staticmethod
    def synced(db):
        """resource -> (rows, tombstones, digest of ids and tombstoned ids)."""
        out = {}
        for table in ("contacts", "tasks"):
            out[table] = tuple(psql(f"""
                SELECT count(*), count(deleted_at),
                       md5(string_agg(id || ':' || (deleted_at IS NOT NULL), ',' ORDER BY id))
                FROM rankr.{table}""", db=db)[1].split("|"))
            out[table] = (int(out[table][0]), int(out[table][1]), out[table][2])
        return out
