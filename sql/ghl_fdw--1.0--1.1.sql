/* ghl_fdw--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ghl_fdw UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Sync in short resumable steps, many locations per sync_schema
-- ---------------------------------------------------------------------

-- sync runs in C now (src/sync*.c); the PL/pgSQL steps of 1.0 go
DROP FUNCTION ghl_fdw._sync_run(bigint, text, text[], text, text);
DROP FUNCTION ghl_fdw._sync_announce_appointments(text, bigint, text[]);
DROP FUNCTION ghl_fdw._sync_tombstone(name, text, text);
DROP FUNCTION ghl_fdw._sync_upsert(name, name, text);
DROP FUNCTION ghl_fdw._sync_fetch(text);
DROP FUNCTION ghl_fdw._sync_prepare(name, name, text);
DROP FUNCTION ghl_fdw._sync_columns(name, text);
DROP FUNCTION ghl_fdw._sync_source(text);
DROP FUNCTION ghl_fdw._sync_server(text);
DROP FUNCTION ghl_fdw._sync_resources(text[]);
DROP FUNCTION ghl_fdw._sync_require_cron();

-- the ledger names the location, says how far a run got, and shows runs
-- while they run
ALTER TABLE ghl_fdw.sync_runs ADD COLUMN location_id text, ADD COLUMN progress jsonb;
ALTER TABLE ghl_fdw.sync_runs DROP CONSTRAINT sync_runs_status_check,
    ADD CONSTRAINT sync_runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped'));
UPDATE ghl_fdw.sync_runs r SET location_id = substr(o, length('location_id=') + 1)
FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) AS o
WHERE s.srvname = r.server_name AND o LIKE 'location_id=%';

-- a watermark holds for the location it was synced from: the server's
-- location when 1.0 synced it
ALTER TABLE ghl_fdw.sync_state ADD COLUMN location_id text;
UPDATE ghl_fdw.sync_state st SET location_id = substr(o, length('location_id=') + 1)
FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) AS o
WHERE s.srvname = st.server_name AND o LIKE 'location_id=%';

ALTER TABLE ghl_fdw.sync_settings
    ADD COLUMN appointments_back interval NOT NULL DEFAULT '1 year'
        CHECK (appointments_back >= interval '0'),
    ADD COLUMN appointments_ahead interval NOT NULL DEFAULT '1 year'
        CHECK (appointments_ahead >= interval '0'),
    ADD COLUMN appointments_by_contact boolean NOT NULL DEFAULT false;
COMMENT ON TABLE ghl_fdw.sync_settings IS
  'sync settings per server: incremental overlap window, ledger retention, appointment horizon';

-- how far an unfinished pass over a location got: the next run resumes it
CREATE TABLE ghl_fdw.sync_passes (
    server_name text NOT NULL,
    pass text NOT NULL CHECK (pass IN ('full', 'incremental', 'tasks')),
    location_id text NOT NULL,
    resources text[] NOT NULL,
    started_at timestamptz NOT NULL,
    cursor jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (server_name, pass)
);
COMMENT ON TABLE ghl_fdw.sync_passes IS
  'unfinished sync passes and the position each has committed; the next run resumes them';

SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_passes', '');

-- Sync writes its bookkeeping as the extension's owner.  Everybody may
-- read the rows of the servers they may use; a server's settings belong
-- to its owner.
ALTER TABLE ghl_fdw.sync_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ghl_fdw.sync_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE ghl_fdw.sync_passes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ghl_fdw.sync_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY server_usable ON ghl_fdw.sync_runs FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_runs.server_name
                     AND pg_catalog.has_server_privilege(s.oid, 'USAGE')));
CREATE POLICY server_usable ON ghl_fdw.sync_state FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_state.server_name
                     AND pg_catalog.has_server_privilege(s.oid, 'USAGE')));
CREATE POLICY server_usable ON ghl_fdw.sync_passes FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_passes.server_name
                     AND pg_catalog.has_server_privilege(s.oid, 'USAGE')));
CREATE POLICY server_usable ON ghl_fdw.sync_settings FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_settings.server_name
                     AND pg_catalog.has_server_privilege(s.oid, 'USAGE')));
CREATE POLICY server_owned ON ghl_fdw.sync_settings FOR ALL
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_settings.server_name
                     AND pg_catalog.pg_has_role(s.srvowner, 'USAGE')))
    WITH CHECK (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                        WHERE s.srvname = sync_settings.server_name
                          AND pg_catalog.pg_has_role(s.srvowner, 'USAGE')));
CREATE POLICY server_owned ON ghl_fdw.sync_runs FOR DELETE
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_runs.server_name
                     AND pg_catalog.pg_has_role(s.srvowner, 'USAGE')));
GRANT SELECT, DELETE ON ghl_fdw.sync_runs TO PUBLIC;
GRANT SELECT ON ghl_fdw.sync_state, ghl_fdw.sync_passes TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ghl_fdw.sync_settings TO PUBLIC;

-- the last run of each resource of each server: where an operator looks
CREATE VIEW ghl_fdw.sync_status WITH (security_invoker) AS
SELECT DISTINCT ON (r.server_name, r.resource)
       r.server_name, r.location_id, r.resource, r.run_id, r.mode, r.status,
       r.started_at, r.finished_at,
       pg_catalog.now() - coalesce(r.finished_at, r.started_at) AS age,
       r.rows_upserted, r.rows_deleted, r.requests, r.watermark, r.error
FROM ghl_fdw.sync_runs r
WHERE r.mode <> 'contact'
ORDER BY r.server_name, r.resource, r.started_at DESC, r.run_id DESC;
COMMENT ON VIEW ghl_fdw.sync_status IS
  'the last sync run of each resource of each server: status, age and error';

-- the syncs running now, how far they got and how long they may take
CREATE VIEW ghl_fdw.sync_progress WITH (security_invoker) AS
SELECT DISTINCT ON (r.run_id)
       r.run_id, r.server_name, r.location_id, r.mode, r.started_at,
       pg_catalog.now() - r.started_at AS running_for,
       r.progress->>'phase' AS phase,
       (r.progress->>'pages')::bigint AS pages_done,
       (r.progress->>'contacts_done')::bigint AS contacts_done,
       (r.progress->>'contacts_total')::bigint AS contacts_total,
       (r.progress->>'tasks_done')::bigint AS tasks_done,
       (r.progress->>'requests')::bigint AS requests,
       (r.progress->>'rate')::numeric AS requests_per_second,
       pg_catalog.make_interval(secs => (r.progress->>'eta_seconds')::float8) AS time_left,
       (r.progress->>'pid')::integer AS pid
FROM ghl_fdw.sync_runs r
WHERE r.status = 'running'
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
              WHERE a.pid = (r.progress->>'pid')::integer)
ORDER BY r.run_id, r.resource;
COMMENT ON VIEW ghl_fdw.sync_progress IS
  'running syncs: phase, pages and contacts done of the total, request rate, time left';
GRANT SELECT ON ghl_fdw.sync_status, ghl_fdw.sync_progress TO PUBLIC;

-- Materialize a server's resources into its sync_schema, in a background
-- worker, and return the ledger rows when it ends.  Incremental by
-- default; full => true reconciles everything and tombstones what is gone.
-- Runs of one location never overlap: a second one returns 'skipped' rows.
CREATE OR REPLACE FUNCTION ghl_fdw.sync(server_name text, resources text[] DEFAULT NULL,
                             full boolean DEFAULT false)
RETURNS SETOF ghl_fdw.sync_runs
AS 'MODULE_PATHNAME', 'ghl_fdw_sync'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION ghl_fdw.sync(text, text[], boolean) IS
  'materialize a ghl_fdw server into its sync_schema; one ghl_fdw.sync_runs row per resource';

-- The same run in place, committing step by step; raises when the run
-- fails (after saving its ledger rows).  What pg_cron jobs call.
CREATE PROCEDURE ghl_fdw.run_sync(server_name text, resources text[] DEFAULT NULL,
                                  full boolean DEFAULT false)
AS 'MODULE_PATHNAME', 'ghl_fdw_run_sync'
LANGUAGE C;

COMMENT ON PROCEDURE ghl_fdw.run_sync(text, text[], boolean) IS
  'ghl_fdw.sync committing step by step, failing when the run fails: for CALL from pg_cron';

-- Pull one contact with its tasks, notes and appointments now, e.g. from a
-- trigger when the contact appears on the Rankr side.  It does not wait
-- for or block a running sync, and leaves the watermarks alone.
CREATE OR REPLACE FUNCTION ghl_fdw.refresh_contact(server_name text, contact_id text)
RETURNS SETOF ghl_fdw.sync_runs
AS 'MODULE_PATHNAME', 'ghl_fdw_refresh_contact'
LANGUAGE C VOLATILE;

-- Prune ledger rows older than each server's keep_runs (default 30 days),
-- or than older_than when given, of the servers the caller owns (row
-- security decides).  Every sync prunes its own server.
CREATE OR REPLACE FUNCTION ghl_fdw.prune_sync_runs(server_name text DEFAULT NULL,
                                        older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH pruned AS (
        DELETE FROM ghl_fdw.sync_runs r
        WHERE (prune_sync_runs.server_name IS NULL OR r.server_name = prune_sync_runs.server_name)
          AND r.status <> 'running'
          AND r.started_at < pg_catalog.now() - coalesce(older_than,
                (SELECT s.keep_runs FROM ghl_fdw.sync_settings s WHERE s.server_name = r.server_name),
                interval '30 days')
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM pruned
$$;

-- Schedule ghl_fdw.run_sync with pg_cron as job ghl_fdw_sync_<server>;
-- calling again replaces the job.  Returns the pg_cron job id.
CREATE OR REPLACE FUNCTION ghl_fdw.schedule_sync(server_name text, schedule text DEFAULT '*/15 * * * *',
                                      resources text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
                   WHERE s.srvname = schedule_sync.server_name AND w.fdwname = 'ghl_fdw') THEN
        RAISE EXCEPTION 'ghl_fdw server "%" does not exist', server_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE SERVER ... FOREIGN DATA WRAPPER ghl_fdw first.';
    END IF;
    IF NOT pg_catalog.has_server_privilege(server_name, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied for foreign server %', server_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF cardinality(resources) = 0 OR EXISTS (
           SELECT 1 FROM pg_catalog.unnest(resources) AS r
           WHERE r IS NULL OR r NOT IN ('contacts', 'tasks', 'notes', 'appointments')) THEN
        RAISE EXCEPTION 'invalid sync resource "%"',
            coalesce((SELECT r FROM pg_catalog.unnest(resources) AS r
                      WHERE r IS NULL OR r NOT IN ('contacts', 'tasks', 'notes', 'appointments')
                      LIMIT 1), '')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Resources are contacts, tasks, notes and appointments; NULL means all.';
    END IF;
    -- the preload list is readable only with pg_read_all_settings; pg_cron's
    -- own extension cannot be created without it being preloaded
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
       OR (CASE WHEN pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE')
                THEN NOT 'pg_cron' = ANY (pg_catalog.string_to_array(pg_catalog.replace(
                         pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','))
                ELSE false END)
    THEN
        RAISE EXCEPTION 'scheduled sync needs the pg_cron extension'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Install pg_cron, add it to shared_preload_libraries (and set cron.database_name), '
                         'restart PostgreSQL and run CREATE EXTENSION pg_cron in this database.';
    END IF;
    -- pg_cron leaves it to the administrator who may schedule jobs
    IF NOT pg_catalog.has_function_privilege(
           'cron.schedule_in_database(text, text, text, text, text, boolean)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied to schedule a sync of ghl_fdw server "%"', server_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A superuser can GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) '
                         'to this role; the job then runs as this role.';
    END IF;
    EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, pg_catalog.current_database())'
        INTO job_id
        USING 'ghl_fdw_sync_' || server_name, schedule,
              CASE WHEN resources IS NULL
                   THEN pg_catalog.format('CALL ghl_fdw.run_sync(%L)', server_name)
                   ELSE pg_catalog.format('CALL ghl_fdw.run_sync(%L, %L)', server_name, resources) END;
    RETURN job_id;
END $$;

-- Remove the job schedule_sync made; false if there was none.
CREATE OR REPLACE FUNCTION ghl_fdw.unschedule_sync(server_name text)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_job boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'scheduled sync needs the pg_cron extension'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Install pg_cron, add it to shared_preload_libraries (and set cron.database_name), '
                         'restart PostgreSQL and run CREATE EXTENSION pg_cron in this database.';
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND username = current_user)'
        INTO found_job USING 'ghl_fdw_sync_' || server_name;
    IF found_job THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING 'ghl_fdw_sync_' || server_name;
    END IF;
    RETURN found_job;
END $$;

-- Rankr tables synced by 1.0: every row gets its location and an as_of
-- (its last sync), the key becomes (location_id, id) and children are
-- indexed by location and contact, so that many locations share the
-- schema.  A task or note takes the location of its contact, else of the
-- server syncing into the schema.
DO $$
DECLARE
    t record;
    server_location text;
    pkey name;
BEGIN
    FOR t IN
        SELECT c.oid AS relid, n.nspname, c.relname
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND c.relname IN ('contacts', 'tasks', 'notes', 'appointments')
          AND pg_catalog.obj_description(c.oid, 'pg_class')
              = 'GHL ' || c.relname || ' synced by ghl_fdw.sync; deleted_at marks rows gone upstream'
        ORDER BY c.relname = 'contacts' DESC, n.nspname, c.relname
    LOOP
        SELECT min(substr(o, length('location_id=') + 1)) INTO server_location
        FROM pg_catalog.pg_foreign_server s
        JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'ghl_fdw'
        CROSS JOIN LATERAL pg_catalog.unnest(s.srvoptions) AS o
        WHERE o LIKE 'location_id=%'
          AND coalesce((SELECT substr(x, length('sync_schema=') + 1)
                        FROM pg_catalog.unnest(s.srvoptions) AS x
                        WHERE x LIKE 'sync_schema=%'), 'rankr') = t.nspname;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                       WHERE attrelid = t.relid AND attname = 'location_id' AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE %I.%I ADD COLUMN location_id text', t.nspname, t.relname);
        END IF;
        IF t.relname <> 'contacts' THEN
            EXECUTE format('UPDATE %1$I.%2$I x SET location_id = c.location_id'
                           ' FROM %1$I.contacts c WHERE x.location_id IS NULL AND c.id = x.contact_id',
                           t.nspname, t.relname);
        END IF;
        EXECUTE format('UPDATE %I.%I SET location_id = %L WHERE location_id IS NULL',
                       t.nspname, t.relname, coalesce(server_location, ''));
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN location_id SET NOT NULL',
                       t.nspname, t.relname);
        EXECUTE format('ALTER TABLE %I.%I ADD COLUMN as_of timestamptz', t.nspname, t.relname);
        EXECUTE format('UPDATE %I.%I SET as_of = synced_at', t.nspname, t.relname);
        SELECT conname INTO pkey FROM pg_catalog.pg_constraint
        WHERE conrelid = t.relid AND contype = 'p';
        IF pkey IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', t.nspname, t.relname, pkey);
        END IF;
        EXECUTE format('ALTER TABLE %I.%I ADD PRIMARY KEY (location_id, id)', t.nspname, t.relname);
        IF t.relname <> 'contacts' THEN
            EXECUTE format('DROP INDEX IF EXISTS %I.%I', t.nspname, t.relname || '_contact_id_idx');
            EXECUTE format('CREATE INDEX ON %I.%I (location_id, contact_id)', t.nspname, t.relname);
        END IF;
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', t.nspname, t.relname,
                       'GHL ' || t.relname || ' synced by ghl_fdw; deleted_at marks rows gone upstream');
    END LOOP;
END $$;

-- pg_cron jobs made by schedule_sync call the procedure, which commits
-- step by step and fails the job when the run fails
DO $$
DECLARE
    job record;
BEGIN
    IF pg_catalog.to_regclass('cron.job') IS NULL THEN
        RETURN;
    END IF;
    FOR job IN EXECUTE $q$SELECT jobid, command FROM cron.job
                          WHERE jobname LIKE 'ghl\_fdw\_sync\_%'
                            AND command LIKE 'SELECT ghl\_fdw.sync(%'$q$
    LOOP
        EXECUTE 'SELECT cron.alter_job($1, command => $2)'
            USING job.jobid,
                  'CALL ghl_fdw.run_sync(' || substr(job.command, length('SELECT ghl_fdw.sync(') + 1);
    END LOOP;
END $$;

-- Data accuracy: re-read a sample of the synced records from the API and
-- say, per resource, how many match, differ (in which columns) or are
-- missing on either side.  For a daily pg_cron job.
CREATE FUNCTION ghl_fdw.verify(server_name text, sample integer DEFAULT 100,
    OUT resource text, OUT checked bigint, OUT matching bigint, OUT differing bigint,
    OUT missing_here bigint, OUT missing_there bigint, OUT differing_columns text[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ghl_fdw_verify'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION ghl_fdw.verify(text, integer) IS
  'compare a sample of a server''s synced records with the API: matching, differing, missing here or there';

-- The application's own tables: a BEFORE INSERT OR UPDATE trigger that
-- pulls a row's GHL contact (with its tasks, notes and appointments) into
-- the Rankr tables and fills the row's blank columns from it; and the
-- same fill for existing rows in bulk.
CREATE FUNCTION ghl_fdw.pull_contact_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ghl_fdw_pull_contact_trigger'
LANGUAGE C;

COMMENT ON FUNCTION ghl_fdw.pull_contact_trigger() IS
  'trigger (''<server>'', ''<kind>:<column>,...'', ''<column>=<contact column>'', ... [, ''on_error=fail|keep'']): pull the row''s GHL contact and fill its blank columns';

CREATE FUNCTION ghl_fdw.enrich(target regclass, server_name text, match text,
                               column_map jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ghl_fdw_enrich'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION ghl_fdw.enrich(regclass, text, text, jsonb) IS
  'fill blank columns of a table''s rows from their GHL contacts, synced ones first; returns a summary';

-- Backup and restore: the token store is keyed by the names of the server
-- and of the mapping's role, and pg_dump carries it.  The table is built
-- anew (the columns in the order of a fresh install); every row of a
-- mapping that still exists moves over, rotated refresh tokens included.
ALTER TABLE ghl_fdw.token_store RENAME TO token_store_1_0;
ALTER INDEX ghl_fdw.token_store_pkey RENAME TO token_store_1_0_pkey;
CREATE TABLE ghl_fdw.token_store (
    server_name text NOT NULL,
    role_name text NOT NULL,
    serverid oid NOT NULL,          -- pg_foreign_server.oid when last written
    umid oid NOT NULL,              -- pg_user_mapping.oid when last written
    seed_fingerprint text NOT NULL, -- SHA-256 of the mapping's seed credentials
    access_token text,              -- the location token in Company mode
    expires_at timestamptz,
    refresh_token text,
    agency_token text,              -- Company mode: the agency token
    agency_expires_at timestamptz,
    scopes text,                    -- space separated, as the API grants them
    user_type text,
    company_id text,
    location_id text,
    last_refresh timestamptz,
    PRIMARY KEY (server_name, role_name)
);
REVOKE ALL ON ghl_fdw.token_store FROM PUBLIC;
INSERT INTO ghl_fdw.token_store
SELECT s.srvname, CASE WHEN m.umuser = 0 THEN 'public'
                       ELSE pg_catalog.pg_get_userbyid(m.umuser) END,
       s.oid, m.oid, o.seed_fingerprint, o.access_token, o.expires_at,
       o.refresh_token, o.agency_token, o.agency_expires_at, o.scopes,
       o.user_type, o.company_id, o.location_id, o.last_refresh
FROM ghl_fdw.token_store_1_0 o
JOIN pg_catalog.pg_user_mapping m ON m.oid = o.umid
JOIN pg_catalog.pg_foreign_server s ON s.oid = m.umserver;
DROP TABLE ghl_fdw.token_store_1_0;
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.token_store', '');

-- the tokens of a dropped user mapping or server must not outlive it; this
-- runs as the store's owner, so nothing of the dropping role's may resolve
-- in it.  A row is matched by its names; by the mapping's OID only when
-- it holds no refresh token, since a restored row may carry the OID of an
-- unrelated mapping and must not lose its lineage to it.
CREATE OR REPLACE FUNCTION ghl_fdw.forget_dropped_tokens() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM ghl_fdw.token_store t
    USING pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE (d.object_type OPERATOR(pg_catalog.=) 'user mapping'
           AND ((t.role_name OPERATOR(pg_catalog.=) d.address_names[1]
                 AND t.server_name OPERATOR(pg_catalog.=) d.address_args[1])
                OR (t.umid OPERATOR(pg_catalog.=) d.objid
                    AND t.refresh_token IS NULL)))
       OR (d.object_type OPERATOR(pg_catalog.=) 'server'
           AND t.server_name OPERATOR(pg_catalog.=) d.address_names[1]);
END $$;

-- Security: request_stats() shows only the servers the caller may use, so
-- its view is open to everybody.
GRANT SELECT ON ghl_fdw.request_stats TO PUBLIC;

-- Webhooks: verified, deduplicated deliveries (src/webhook.c,
-- src/webhook_keys.c, src/webhook_apply.c; the receiver src/webhookd/)

-- The public keys a delivery's signature must verify with: X-GHL-Signature
-- is Ed25519, the legacy x-wh-signature RSA-SHA256.  Superusers manage
-- them; every backend re-reads them when they change.
CREATE TABLE ghl_fdw.webhook_keys (
    key_id text PRIMARY KEY,
    algorithm text NOT NULL CHECK (algorithm IN ('ed25519', 'rsa-sha256')),
    public_key text NOT NULL,       -- PEM, "-----BEGIN PUBLIC KEY-----"
    enabled boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE ghl_fdw.webhook_keys IS
  'trusted public keys of webhook signatures: any enabled key of its algorithm verifies a delivery';
REVOKE ALL ON ghl_fdw.webhook_keys FROM PUBLIC;

-- a key that cannot verify anything is refused when written
CREATE FUNCTION ghl_fdw._webhook_key_check() RETURNS trigger
AS 'MODULE_PATHNAME', 'ghl_fdw_webhook_key_check'
LANGUAGE C;
CREATE TRIGGER webhook_key_check BEFORE INSERT OR UPDATE ON ghl_fdw.webhook_keys
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw._webhook_key_check();

-- backends keep the keys parsed: tell them to read them again
CREATE FUNCTION ghl_fdw._webhook_keys_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'ghl_fdw_webhook_keys_changed'
LANGUAGE C;
CREATE TRIGGER webhook_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ghl_fdw.webhook_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ghl_fdw._webhook_keys_changed();

-- HighLevel's published keys.  pg_dump carries the keys added after
-- these, which the extension script recreates.
INSERT INTO ghl_fdw.webhook_keys (key_id, algorithm, public_key) VALUES
('highlevel-ed25519', 'ed25519', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
'),
('highlevel-rsa-legacy', 'rsa-sha256', '-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
');
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.webhook_keys',
    $$WHERE key_id NOT IN ('highlevel-ed25519', 'highlevel-rsa-legacy')$$);

-- The ledger: one row per webhookId ever accepted (until pruned), so that
-- a second delivery of it is a duplicate.  outcome is NULL only inside
-- the transaction of its delivery.
CREATE TABLE ghl_fdw.webhook_events (
    webhook_id text PRIMARY KEY,
    type text NOT NULL,
    location_id text,
    company_id text,
    event_time timestamptz NOT NULL,    -- the delivery's own timestamp
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome text CHECK (outcome IN ('applied', 'stale', 'ignored')),
    key_id text                         -- the key that verified it; NULL: unsigned
);
CREATE INDEX webhook_events_received_at ON ghl_fdw.webhook_events (received_at);
COMMENT ON TABLE ghl_fdw.webhook_events IS
  'ledger of accepted webhook deliveries, one row per webhookId, pruned after ghl_fdw.webhook_retention';
REVOKE ALL ON ghl_fdw.webhook_events FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.webhook_events', '');

-- What a receiver calls for each delivery.  Closed to PUBLIC: grant
-- EXECUTE to the receiver's role; it needs no privilege on the tables.
CREATE FUNCTION ghl_fdw.apply_webhook(body text, headers jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'ghl_fdw_apply_webhook'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) IS
  'verify, deduplicate and apply one webhook delivery: applied, duplicate, stale or ignored';
REVOKE ALL ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) FROM PUBLIC;

CREATE FUNCTION ghl_fdw.prune_webhook_events(older_than interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ghl_fdw_prune_webhook_events'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ghl_fdw.prune_webhook_events(interval) IS
  'delete webhook ledger rows older than older_than (default ghl_fdw.webhook_retention)';
REVOKE ALL ON FUNCTION ghl_fdw.prune_webhook_events(interval) FROM PUBLIC;

-- Contacts whose notes and appointments webhook events changed: their
-- payloads lack fields (a note's author, an appointment's status) that
-- the server's next incremental sync reads, with the contact's children.
CREATE TABLE ghl_fdw.sync_pending (
    server_name text NOT NULL,
    location_id text NOT NULL,
    contact_id text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_name, contact_id)
);
COMMENT ON TABLE ghl_fdw.sync_pending IS
  'contacts whose children webhook events changed, for the next incremental sync to read';
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_pending', '');
ALTER TABLE ghl_fdw.sync_pending ENABLE ROW LEVEL SECURITY;
CREATE POLICY server_usable ON ghl_fdw.sync_pending FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
                   WHERE s.srvname = sync_pending.server_name
                     AND pg_catalog.has_server_privilege(s.oid, 'USAGE')));
GRANT SELECT ON ghl_fdw.sync_pending TO PUBLIC;

-- The connection check an operator runs first: one row per thing that
-- has to be right (credentials, scopes, location, API version, rate-limit
-- headroom, clock, calendars, sync tables, runs and pg_cron job), with a
-- hint on each failing row and never a secret.  "check" is a reserved
-- word: call it qualified, and quote the column.
CREATE FUNCTION ghl_fdw.check(server_name text,
    OUT "check" text, OUT ok boolean, OUT detail text, OUT hint text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ghl_fdw_check'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION ghl_fdw.check(text) IS
  'check a GHL server end to end with the fewest requests: one row per check (check, ok, detail, hint); ok is NULL where nothing could be checked';

-- Agency installs (src/agency.c, src/option.c, src/token_worker.c): an
-- agency server holds the Company credentials once; each location where
-- the app is installed gets a server with agency_server and user mappings
-- with from_agency, whose tokens are bought with the Company token.

-- one page of GET /oauth/installedLocations, as the API answers it
CREATE FUNCTION ghl_fdw._installed_locations_page(agency_server text,
    skip integer, page_size integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ghl_fdw_installed_locations_page'
LANGUAGE C STRICT VOLATILE;

-- every location where the agency server's app is installed; pages until
-- the count the API gave, and no further than it could hold
CREATE FUNCTION ghl_fdw.installed_locations(agency_server text,
    OUT location_id text, OUT name text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    page jsonb;
    listed jsonb;
    skip integer := 0;
BEGIN
    LOOP
        page := ghl_fdw._installed_locations_page(agency_server, skip, 100);
        listed := page->'locations';
        IF jsonb_typeof(listed) IS DISTINCT FROM 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(listed) l
                      WHERE jsonb_typeof(l->'_id') IS DISTINCT FROM 'string')
           OR jsonb_typeof(page->'count') IS DISTINCT FROM 'number' THEN
            RAISE EXCEPTION 'GHL server "%" answered GET /oauth/installedLocations without a list of locations',
                agency_server
                USING ERRCODE = 'HV00L',
                      HINT = 'Check the server option base_url.';
        END IF;
        RETURN QUERY SELECT l->>'_id', l->>'name' FROM jsonb_array_elements(listed) l;
        skip := skip + jsonb_array_length(listed);
        EXIT WHEN jsonb_array_length(listed) = 0 OR skip >= (page->>'count')::numeric
                  OR skip >= 1000000;
    END LOOP;
END $$;

COMMENT ON FUNCTION ghl_fdw.installed_locations(text) IS
  'the locations where the agency server''s app is installed (GET /oauth/installedLocations)';

-- One server per installed location, named <agency_server>_<locationId>,
-- with the agency server's options, its USAGE grants and a from_agency
-- user mapping for each of its user mappings; optionally a sync job each,
-- staggered over the minutes of the interval.  Servers of locations no
-- longer installed are reported, never dropped.  Runs as the caller, who
-- must be allowed to create servers and own the agency server's
-- privileges (the validator of agency_server checks that).
CREATE FUNCTION ghl_fdw.create_location_servers(agency_server text,
    sync_every_minutes integer DEFAULT NULL, resources text[] DEFAULT NULL,
    OUT server_name text, OUT location_id text, OUT action text,
    OUT job_id bigint)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    agency record;
    installed text[];
    inherited text;
    grantee text;
    nth integer := 0;
    loc text;
BEGIN
    SELECT s.oid, s.srvoptions, s.srvacl, s.srvowner, w.fdwname INTO agency
    FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
    WHERE s.srvname = agency_server AND w.fdwname = 'ghl_fdw';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ghl_fdw server "%" does not exist', agency_server
            USING ERRCODE = 'undefined_object';
    END IF;
    IF sync_every_minutes NOT BETWEEN 1 AND 60 THEN
        RAISE EXCEPTION 'sync_every_minutes must be from 1 to 60'
            USING ERRCODE = '22023';
    END IF;

    installed := ARRAY(SELECT DISTINCT i.location_id
                       FROM ghl_fdw.installed_locations(agency_server) i
                       ORDER BY 1);
    SELECT string_agg(format('%I %L', split_part(o, '=', 1),
                             substr(o, strpos(o, '=') + 1)), ', ')
    INTO inherited
    FROM unnest(agency.srvoptions) o
    WHERE split_part(o, '=', 1) NOT IN ('location_id', 'app_id', 'agency_server');

    FOREACH loc IN ARRAY installed LOOP
        nth := nth + 1;
        location_id := loc;
        job_id := NULL;
        SELECT s.srvname INTO server_name
        FROM pg_foreign_server s
        WHERE ('agency_server=' || agency_server) = ANY (s.srvoptions)
          AND ('location_id=' || loc) = ANY (s.srvoptions)
        ORDER BY s.srvname LIMIT 1;
        IF FOUND THEN
            action := 'kept';
            RETURN NEXT;
            CONTINUE;
        END IF;

        server_name := agency_server || '_' || loc;
        IF octet_length(server_name) > 63 THEN
            RAISE EXCEPTION 'server name "%" is too long', server_name
                USING ERRCODE = '42622',
                      HINT = 'Location servers are named <agency_server>_<locationId>: use an agency server name of at most '
                             || (62 - octet_length(loc)) || ' bytes.';
        END IF;
        IF EXISTS (SELECT FROM pg_foreign_server s WHERE s.srvname = server_name) THEN
            RAISE EXCEPTION 'server "%" already exists and is not a location server of "%"',
                server_name, agency_server
                USING ERRCODE = '42710',
                      HINT = 'Rename or drop it, or give it the options agency_server and location_id of this location, then call again.';
        END IF;
        EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER %I OPTIONS (%s location_id %L, agency_server %L)',
                       server_name, agency.fdwname,
                       coalesce(inherited || ',', ''), loc, agency_server);
        FOR grantee IN
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                        ELSE quote_ident(pg_get_userbyid(a.grantee)) END
            FROM aclexplode(agency.srvacl) a
            WHERE a.privilege_type = 'USAGE' AND a.grantee <> agency.srvowner
        LOOP
            EXECUTE format('GRANT USAGE ON FOREIGN SERVER %I TO %s', server_name, grantee);
        END LOOP;
        FOR grantee IN
            SELECT CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(m.usename) END
            FROM pg_user_mappings m WHERE m.srvid = agency.oid
        LOOP
            EXECUTE format('CREATE USER MAPPING FOR %s SERVER %I OPTIONS (from_agency %L)',
                           grantee, server_name, 'true');
        END LOOP;
        IF sync_every_minutes IS NOT NULL THEN
            job_id := ghl_fdw.schedule_sync(server_name,
                CASE WHEN sync_every_minutes = 60
                     THEN format('%s * * * *', (nth - 1) % 60)
                     ELSE format('%s-59/%s * * * *', (nth - 1) % sync_every_minutes,
                                 sync_every_minutes) END,
                resources);
        END IF;
        action := 'created';
        RETURN NEXT;
    END LOOP;

    RETURN QUERY
    SELECT s.srvname::text, substr(o, length('location_id=') + 1), 'uninstalled', NULL::bigint
    FROM pg_foreign_server s, unnest(s.srvoptions) o
    WHERE ('agency_server=' || agency_server) = ANY (s.srvoptions)
      AND o LIKE 'location_id=%'
      AND substr(o, length('location_id=') + 1) <> ALL (installed)
    ORDER BY 1;
END $$;

COMMENT ON FUNCTION ghl_fdw.create_location_servers(text, integer, text[]) IS
  'create a server per location where the agency server''s app is installed; reports created, kept and uninstalled ones';

-- A dropped server's sync bookkeeping goes with it, so that a later
-- server of the same name starts from nothing instead of inheriting its
-- watermarks, unfinished passes, pending contacts and settings.  The
-- ledger stays: it is history, pruned by age.
CREATE FUNCTION ghl_fdw.forget_dropped_servers() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped text[];
BEGIN
    SELECT pg_catalog.array_agg(d.address_names[1]) INTO dropped
    FROM pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.object_type OPERATOR(pg_catalog.=) 'server';
    IF dropped IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM ghl_fdw.sync_state WHERE server_name OPERATOR(pg_catalog.=) ANY (dropped);
    DELETE FROM ghl_fdw.sync_passes WHERE server_name OPERATOR(pg_catalog.=) ANY (dropped);
    DELETE FROM ghl_fdw.sync_pending WHERE server_name OPERATOR(pg_catalog.=) ANY (dropped);
    DELETE FROM ghl_fdw.sync_settings WHERE server_name OPERATOR(pg_catalog.=) ANY (dropped);
END $$;
REVOKE ALL ON FUNCTION ghl_fdw.forget_dropped_servers() FROM PUBLIC;

CREATE EVENT TRIGGER ghl_fdw_forget_dropped_servers ON sql_drop
    WHEN TAG IN ('DROP SERVER', 'DROP OWNED')
    EXECUTE FUNCTION ghl_fdw.forget_dropped_servers();

-- The rows a sync is writing, as its own upsert statements read them;
-- nothing outside them (internal).
CREATE FUNCTION ghl_fdw._sync_batch() RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ghl_fdw_sync_batch'
LANGUAGE C VOLATILE;
