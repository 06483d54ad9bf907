/* ghl_fdw--1.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION ghl_fdw" to load this file. \quit

CREATE FUNCTION ghl_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION ghl_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER ghl_fdw
  HANDLER ghl_fdw_handler
  VALIDATOR ghl_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER ghl_fdw
  IS 'HighLevel (GHL) Contacts API: contacts, tasks, notes and appointments';

-- ---------------------------------------------------------------------
-- Sync: materialize a server's contacts, tasks, notes and appointments
-- into ordinary tables of its sync_schema (default rankr), through the
-- FDW's own scan path, with a ledger, watermarks and pg_cron scheduling.
-- ---------------------------------------------------------------------

CREATE SEQUENCE ghl_fdw.sync_run_id_seq;

-- one row per resource per run: what a run did, or why it failed
CREATE TABLE ghl_fdw.sync_runs (
    run_id bigint NOT NULL,
    server_name text NOT NULL,
    resource text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('incremental', 'full', 'contact')),
    status text NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    rows_upserted bigint,
    rows_deleted bigint,
    requests bigint,
    watermark timestamptz,
    error text,
    PRIMARY KEY (run_id, resource)
);
CREATE INDEX sync_runs_server_started ON ghl_fdw.sync_runs (server_name, started_at);
COMMENT ON TABLE ghl_fdw.sync_runs IS
  'ledger of ghl_fdw.sync runs: one row per resource per run';

-- per-server knobs; a server without a row gets the defaults
CREATE TABLE ghl_fdw.sync_settings (
    server_name text PRIMARY KEY,
    overlap interval NOT NULL DEFAULT '5 minutes' CHECK (overlap >= interval '0'),
    keep_runs interval NOT NULL DEFAULT '30 days' CHECK (keep_runs > interval '0')
);
COMMENT ON TABLE ghl_fdw.sync_settings IS
  'sync settings per server: incremental overlap window, ledger retention';

-- the newest contact date_updated each resource has been synced up to
CREATE TABLE ghl_fdw.sync_state (
    server_name text NOT NULL,
    resource text NOT NULL,
    watermark timestamptz NOT NULL,
    PRIMARY KEY (server_name, resource)
);

SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_settings', '');
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.sync_state', '');

-- The server's row, or a clear error: every sync entry point starts here.
CREATE FUNCTION ghl_fdw._sync_server(server_name text)
RETURNS pg_foreign_server
LANGUAGE plpgsql STABLE AS $$
DECLARE
    srv pg_foreign_server;
BEGIN
    SELECT s.* INTO srv
    FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
    WHERE s.srvname = _sync_server.server_name AND w.fdwname = 'ghl_fdw';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ghl_fdw server "%" does not exist', server_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE SERVER ... FOREIGN DATA WRAPPER ghl_fdw first.';
    END IF;
    RETURN srv;
END $$;

-- The foreign tables a sync reads, in a schema of their own per server so
-- that the user's own foreign tables (and their options) never matter.
CREATE FUNCTION ghl_fdw._sync_source(server_name text)
RETURNS name
LANGUAGE plpgsql AS $$
DECLARE
    src name := 'ghl_fdw_src_' || server_name;
    missing text[];
BEGIN
    IF octet_length('ghl_fdw_src_' || server_name) >= 64 THEN
        RAISE EXCEPTION 'ghl_fdw server name "%" is too long to sync', server_name
            USING ERRCODE = 'name_too_long',
                  HINT = 'Sync needs a server name of at most 51 characters.';
    END IF;
    SELECT array_agg(r) INTO missing
    FROM unnest(ARRAY['contacts', 'tasks', 'notes', 'appointments']) AS r
    WHERE to_regclass(format('%I.%I', src, r)) IS NULL;
    IF missing IS NOT NULL THEN
        IF to_regnamespace(quote_ident(src)) IS NULL THEN
            EXECUTE format('CREATE SCHEMA %I', src);
        END IF;
        EXECUTE format('IMPORT FOREIGN SCHEMA ghl LIMIT TO (%s) FROM SERVER %I INTO %I',
                       (SELECT string_agg(quote_ident(m), ', ') FROM unnest(missing) AS m),
                       server_name, src);
    END IF;
    RETURN src;
END $$;

-- The columns a resource materializes: the foreign table's standard
-- columns in order, without raw (the foreign table keeps the whole object).
CREATE FUNCTION ghl_fdw._sync_columns(src name, resource text)
RETURNS TABLE (column_name name, column_type text)
LANGUAGE sql STABLE AS $$
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    WHERE a.attrelid = format('%I.%I', src, resource)::regclass
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'raw'
    ORDER BY a.attnum
$$;

-- Create the target table on first sync, and this session's staging table
-- that one run fills from the API before it touches the target.
CREATE FUNCTION ghl_fdw._sync_prepare(src name, sync_schema name, resource text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stage text := 'ghl_fdw_stage_' || resource;
BEGIN
    IF to_regnamespace(quote_ident(sync_schema)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', sync_schema);
    END IF;
    IF to_regclass(format('%I.%I', sync_schema, resource)) IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I (%s, synced_at timestamptz NOT NULL DEFAULT now(), '
                       'deleted_at timestamptz, PRIMARY KEY (id))',
                       sync_schema, resource,
                       (SELECT string_agg(format('%I %s', column_name, column_type), ', ')
                        FROM ghl_fdw._sync_columns(src, resource)));
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', sync_schema, resource,
                       'GHL ' || resource || ' synced by ghl_fdw.sync; deleted_at marks rows gone upstream');
        IF resource <> 'contacts' THEN
            EXECUTE format('CREATE INDEX ON %I.%I (contact_id)', sync_schema, resource);
        END IF;
    END IF;
    IF to_regclass(format('pg_temp.%I', stage)) IS NULL THEN
        EXECUTE format('CREATE TEMP TABLE %I ON COMMIT DROP AS SELECT %s FROM %I.%I WITH NO DATA',
                       stage,
                       (SELECT string_agg(quote_ident(column_name), ', ')
                        FROM ghl_fdw._sync_columns(src, resource)),
                       sync_schema, resource);
    ELSE
        EXECUTE format('TRUNCATE pg_temp.%I', stage);
    END IF;
END $$;

-- Run one statement that reads foreign tables and return how many API
-- requests its scans made, as the scans themselves count them (EXPLAIN
-- ANALYZE executes the statement and reports each scan's "GHL Requests").
CREATE FUNCTION ghl_fdw._sync_fetch(stmt text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) ' || stmt
        INTO plan;
    RETURN (SELECT coalesce(sum(n::bigint), 0)
            FROM jsonb_path_query(plan, 'strict $.**."GHL Requests"') AS n);
END $$;

-- Upsert a staging table into its target: insert new rows, update only
-- rows whose values changed (or that come back after a tombstone), and
-- return the ids written.
CREATE FUNCTION ghl_fdw._sync_upsert(src name, sync_schema name, resource text)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    cols text;
    excluded text;
    current text;
    ids text[];
BEGIN
    SELECT string_agg(quote_ident(column_name), ', '),
           string_agg('EXCLUDED.' || quote_ident(column_name), ', '),
           string_agg('t.' || quote_ident(column_name), ', ')
    INTO cols, excluded, current
    FROM ghl_fdw._sync_columns(src, resource);
    EXECUTE format(
        'WITH written AS ('
        ' INSERT INTO %1$I.%2$I AS t (%3$s, synced_at, deleted_at)'
        ' SELECT DISTINCT ON (id) %3$s, now(), NULL FROM pg_temp.%6$I ORDER BY id'
        ' ON CONFLICT (id) DO UPDATE SET (%3$s, synced_at, deleted_at) = (%4$s, EXCLUDED.synced_at, NULL)'
        ' WHERE (%5$s, t.deleted_at) IS DISTINCT FROM (%4$s, NULL)'
        ' RETURNING t.id)'
        ' SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM written',
        sync_schema, resource, cols, excluded, current, 'ghl_fdw_stage_' || resource)
        INTO ids;
    RETURN ids;
END $$;

-- Tombstone live rows of a target that the run proved gone upstream: rows
-- missing from the staging table among those the run covered (scope is a
-- condition on the target's columns).  Returns the ids tombstoned.
CREATE FUNCTION ghl_fdw._sync_tombstone(sync_schema name, resource text, scope text)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    EXECUTE format(
        'WITH gone AS ('
        ' UPDATE %1$I.%2$I AS t SET deleted_at = now()'
        ' WHERE t.deleted_at IS NULL AND (%3$s)'
        '   AND NOT EXISTS (SELECT 1 FROM pg_temp.%4$I s WHERE s.id = t.id)'
        ' RETURNING t.id)'
        ' SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM gone',
        sync_schema, resource, scope, 'ghl_fdw_stage_' || resource)
        INTO ids;
    RETURN ids;
END $$;

-- Announce appointment rows a run changed, for reminder jobs that LISTEN
-- on ghl_fdw_appointments; ids go in chunks that keep each payload well
-- under NOTIFY's 8000-byte limit.
CREATE FUNCTION ghl_fdw._sync_announce_appointments(server_name text, run_id bigint, ids text[])
RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('ghl_fdw_appointments',
                     jsonb_build_object('server', server_name, 'run_id', run_id,
                                        'ids', to_jsonb(ids[i:i + 249]))::text)
    FROM generate_series(1, coalesce(cardinality(ids), 0), 250) AS i
$$;

-- One run: fetch from the API into staging tables, then reconcile the
-- targets, all inside one subtransaction so that a failure (an API error,
-- a cancel) leaves targets and watermarks as they were; the ledger rows
-- are written either way.  mode is 'incremental', 'full' or 'contact'
-- (one contact, for refresh_contact).  The API writes some times without
-- a zone (appointments of a contact) and means UTC: the run reads them in
-- UTC whatever the session's TimeZone, so cron and psql agree.
CREATE FUNCTION ghl_fdw._sync_run(run_id bigint, server_name text, resources text[],
                                  mode text, contact_id text DEFAULT NULL)
RETURNS SETOF ghl_fdw.sync_runs
LANGUAGE plpgsql
SET timezone = 'UTC'
AS $$
DECLARE
    srv pg_foreign_server := ghl_fdw._sync_server(server_name);
    sync_schema name := coalesce((SELECT substr(o, length('sync_schema=') + 1)
                                  FROM unnest(srv.srvoptions) AS o
                                  WHERE o LIKE 'sync_schema=%'), 'rankr');
    overlap interval := coalesce((SELECT s.overlap FROM ghl_fdw.sync_settings s
                                  WHERE s.server_name = _sync_run.server_name), '5 minutes');
    started timestamptz := clock_timestamp();
    since timestamptz;
    new_watermark timestamptz;
    src name;
    r text;
    cond text;
    contact_requests bigint;
    upserted text[];
    deleted text[];
    changed_appointments text[] := '{}';
    runs ghl_fdw.sync_runs[] := '{}';
    run ghl_fdw.sync_runs;
    err_state text;
    err_message text;
BEGIN
    IF mode = 'incremental' THEN
        SELECT CASE WHEN bool_and(st.watermark IS NOT NULL) THEN min(st.watermark) END
        INTO since
        FROM unnest(resources) AS res
        LEFT JOIN ghl_fdw.sync_state st
               ON st.server_name = _sync_run.server_name AND st.resource = res;
        IF since IS NULL THEN
            mode := 'full';     -- a resource never synced needs everything
        END IF;
    END IF;

    BEGIN
        src := ghl_fdw._sync_source(server_name);
        FOREACH r IN ARRAY ghl_fdw._sync_resources(ARRAY['contacts'] || resources) LOOP
            PERFORM ghl_fdw._sync_prepare(src, sync_schema, r);
        END LOOP;

        -- the contacts this run covers: all of them, the changed ones, or one
        cond := CASE mode WHEN 'full' THEN 'true'
                          WHEN 'contact' THEN format('id = %L', contact_id)
                          ELSE format('date_updated >= %L', since - overlap) END;
        contact_requests := ghl_fdw._sync_fetch(format(
            'INSERT INTO pg_temp.ghl_fdw_stage_contacts SELECT %s FROM %I.contacts WHERE %s',
            (SELECT string_agg(quote_ident(column_name), ', ')
             FROM ghl_fdw._sync_columns(src, 'contacts')), src, cond));
        SELECT max(date_updated) INTO new_watermark FROM pg_temp.ghl_fdw_stage_contacts;

        FOREACH r IN ARRAY resources LOOP
            run := ROW(run_id, server_name, r, mode, 'succeeded', started, NULL,
                       0, 0, 0, NULL, NULL);
            IF r = 'contacts' THEN
                run.requests := contact_requests;
            ELSIF r = 'tasks' AND mode = 'full' THEN
                -- the location-wide task search pages through every task
                -- at once, instead of one request per contact
                run.requests := ghl_fdw._sync_fetch(format(
                    'INSERT INTO pg_temp.ghl_fdw_stage_tasks SELECT %s FROM %I.tasks t',
                    (SELECT string_agg('t.' || quote_ident(column_name), ', ')
                     FROM ghl_fdw._sync_columns(src, r)), src));
            ELSE
                -- the children of every covered contact, one request per
                -- contact and resource (the API lists them per contact);
                -- OFFSET 0 keeps the subquery a per-contact scan whose
                -- contact_id = c.id becomes the request path
                run.requests := ghl_fdw._sync_fetch(format(
                    'INSERT INTO pg_temp.%I SELECT x.* FROM pg_temp.ghl_fdw_stage_contacts c '
                    'CROSS JOIN LATERAL (SELECT %s FROM %I.%I t WHERE t.contact_id = c.id OFFSET 0) x',
                    'ghl_fdw_stage_' || r,
                    (SELECT string_agg('t.' || quote_ident(column_name), ', ')
                     FROM ghl_fdw._sync_columns(src, r)), src, r));
            END IF;
            -- without a contacts row, the contact scan counts here
            IF r <> 'contacts' AND r = resources[1] THEN
                run.requests := run.requests + contact_requests;
            END IF;
            upserted := ghl_fdw._sync_upsert(src, sync_schema, r);

            -- what the run proves gone: everything unseen after a full run;
            -- the unseen children of the contacts it covered otherwise
            deleted := ghl_fdw._sync_tombstone(sync_schema, r, CASE
                WHEN mode = 'full' THEN 'true'
                WHEN mode = 'contact' AND r = 'contacts' THEN format('t.id = %L', contact_id)
                WHEN mode = 'contact' THEN format('t.contact_id = %L', contact_id)
                WHEN r = 'contacts' THEN 'false'
                ELSE 't.contact_id IN (SELECT id FROM pg_temp.ghl_fdw_stage_contacts)' END);
            run.rows_upserted := cardinality(upserted);
            run.rows_deleted := cardinality(deleted);
            IF r = 'appointments' THEN
                changed_appointments := upserted || deleted;
            END IF;

            IF mode <> 'contact' THEN
                run.watermark := CASE WHEN mode = 'full' THEN new_watermark
                    ELSE greatest(new_watermark,
                                  (SELECT st.watermark FROM ghl_fdw.sync_state st
                                   WHERE st.server_name = _sync_run.server_name
                                     AND st.resource = r)) END;
                IF run.watermark IS NOT NULL THEN
                    INSERT INTO ghl_fdw.sync_state AS st (server_name, resource, watermark)
                    VALUES (server_name, r, run.watermark)
                    ON CONFLICT ON CONSTRAINT sync_state_pkey
                    DO UPDATE SET watermark = EXCLUDED.watermark;
                END IF;
            END IF;
            runs := runs || run;
        END LOOP;
    EXCEPTION WHEN query_canceled OR others THEN
        GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT;
        runs := ARRAY(SELECT ROW(run_id, server_name, res, mode, 'failed', started, NULL,
                                 NULL, NULL, NULL, NULL, err_state || ': ' || err_message)::ghl_fdw.sync_runs
                      FROM unnest(resources) WITH ORDINALITY AS u(res, n) ORDER BY n);
        changed_appointments := '{}';
    END;

    RETURN QUERY
    INSERT INTO ghl_fdw.sync_runs
    SELECT (u).run_id, (u).server_name, (u).resource, (u).mode, (u).status, (u).started_at,
           clock_timestamp(), (u).rows_upserted, (u).rows_deleted, (u).requests,
           (u).watermark, (u).error
    FROM unnest(runs) AS u
    RETURNING *;

    -- delivered when the caller's transaction commits, like the rows
    PERFORM pg_notify('ghl_fdw_sync', jsonb_build_object(
        'run_id', run_id, 'server', server_name, 'mode', mode,
        'status', (runs[1]).status, 'error', left((runs[1]).error, 1000),
        'resources', (SELECT jsonb_object_agg((u).resource, jsonb_build_object(
                                 'upserted', (u).rows_upserted, 'deleted', (u).rows_deleted,
                                 'requests', (u).requests))
                      FROM unnest(runs) AS u))::text);
    PERFORM ghl_fdw._sync_announce_appointments(server_name, run_id, changed_appointments);
END $$;

-- The resources a call names, checked and in sync order (contacts first).
CREATE FUNCTION ghl_fdw._sync_resources(resources text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad text;
BEGIN
    SELECT r INTO bad FROM unnest(resources) AS r
    WHERE r IS NULL OR r NOT IN ('contacts', 'tasks', 'notes', 'appointments') LIMIT 1;
    IF FOUND OR cardinality(resources) = 0 THEN
        RAISE EXCEPTION 'invalid sync resource "%"', coalesce(bad, '')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Resources are contacts, tasks, notes and appointments; NULL means all.';
    END IF;
    RETURN ARRAY(SELECT r FROM unnest(ARRAY['contacts', 'tasks', 'notes', 'appointments']) AS r
                 WHERE resources IS NULL OR r = ANY (resources));
END $$;

-- Prune ledger rows older than each server's keep_runs (default 30 days),
-- or than older_than when given.  Every sync prunes its own server.
CREATE FUNCTION ghl_fdw.prune_sync_runs(server_name text DEFAULT NULL,
                                        older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE sql AS $$
    WITH pruned AS (
        DELETE FROM ghl_fdw.sync_runs r
        WHERE (prune_sync_runs.server_name IS NULL OR r.server_name = prune_sync_runs.server_name)
          AND r.started_at < now() - coalesce(older_than,
                (SELECT s.keep_runs FROM ghl_fdw.sync_settings s WHERE s.server_name = r.server_name),
                interval '30 days')
        RETURNING 1)
    SELECT count(*) FROM pruned
$$;

-- Materialize a server's resources into its sync_schema.  Incremental by
-- default; full => true reconciles everything and tombstones what is gone.
-- Runs of one server never overlap: a second one returns 'skipped' rows.
CREATE FUNCTION ghl_fdw.sync(server_name text, resources text[] DEFAULT NULL,
                             full boolean DEFAULT false)
RETURNS SETOF ghl_fdw.sync_runs
LANGUAGE plpgsql AS $$
DECLARE
    is_full ALIAS FOR $3;
    wanted text[] := ghl_fdw._sync_resources(resources);
    run_id bigint;
BEGIN
    PERFORM ghl_fdw._sync_server(server_name);
    IF is_full IS NULL THEN
        RAISE EXCEPTION 'full must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    run_id := nextval('ghl_fdw.sync_run_id_seq');
    -- held until the transaction ends, so the run's commit is covered too
    IF NOT pg_try_advisory_xact_lock(hashtext('ghl_fdw.sync'), hashtext(server_name)) THEN
        RETURN QUERY
        INSERT INTO ghl_fdw.sync_runs (run_id, server_name, resource, mode, status,
                                       started_at, finished_at, error)
        SELECT run_id, server_name, r,
               CASE WHEN is_full THEN 'full' ELSE 'incremental' END, 'skipped',
               clock_timestamp(), clock_timestamp(), 'another sync of this server is running'
        FROM unnest(wanted) AS r
        RETURNING *;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM ghl_fdw._sync_run(run_id, server_name, wanted,
        CASE WHEN is_full THEN 'full' ELSE 'incremental' END);
    PERFORM ghl_fdw.prune_sync_runs(server_name);
END $$;

COMMENT ON FUNCTION ghl_fdw.sync(text, text[], boolean) IS
  'materialize a ghl_fdw server into its sync_schema; one ghl_fdw.sync_runs row per resource';

-- Pull one contact with its tasks, notes and appointments now, e.g. from a
-- trigger when the contact appears on the Rankr side.  It does not wait
-- for or block a running sync, and leaves the watermarks alone.
CREATE FUNCTION ghl_fdw.refresh_contact(server_name text, contact_id text)
RETURNS SETOF ghl_fdw.sync_runs
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(contact_id, '') = '' THEN
        RAISE EXCEPTION 'contact_id must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM ghl_fdw._sync_run(nextval('ghl_fdw.sync_run_id_seq'),
        server_name, ghl_fdw._sync_resources(NULL), 'contact', contact_id);
END $$;

-- pg_cron must be preloaded and installed in this database.
CREATE FUNCTION ghl_fdw._sync_require_cron()
RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')
       OR NOT 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
    THEN
        RAISE EXCEPTION 'scheduled sync needs the pg_cron extension'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Install pg_cron, add it to shared_preload_libraries (and set cron.database_name), '
                         'restart PostgreSQL and run CREATE EXTENSION pg_cron in this database.';
    END IF;
END $$;

-- Schedule ghl_fdw.sync with pg_cron as job ghl_fdw_sync_<server>; calling
-- again replaces the job.  Returns the pg_cron job id.
CREATE FUNCTION ghl_fdw.schedule_sync(server_name text, schedule text DEFAULT '*/15 * * * *',
                                      resources text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    job_id bigint;
BEGIN
    PERFORM ghl_fdw._sync_server(server_name);
    PERFORM ghl_fdw._sync_resources(resources);
    PERFORM ghl_fdw._sync_require_cron();
    EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, current_database())'
        INTO job_id
        USING 'ghl_fdw_sync_' || server_name, schedule,
              CASE WHEN resources IS NULL THEN format('SELECT ghl_fdw.sync(%L)', server_name)
                   ELSE format('SELECT ghl_fdw.sync(%L, %L)', server_name, resources) END;
    RETURN job_id;
END $$;

-- Remove the job schedule_sync made; false if there was none.
CREATE FUNCTION ghl_fdw.unschedule_sync(server_name text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    found_job boolean;
BEGIN
    PERFORM ghl_fdw._sync_require_cron();
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND username = current_user)'
        INTO found_job USING 'ghl_fdw_sync_' || server_name;
    IF found_job THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING 'ghl_fdw_sync_' || server_name;
    END IF;
    RETURN found_job;
END $$;

-- OAuth: the token store, token_status() and require_scope() (src/auth.c,
-- src/token_store.c, src/token_worker.c)

-- Current tokens of each OAuth user mapping.  The refresh token of a USER
-- MAPPING is only the seed: once rotated, the one here is the live one.
-- Secrets: readable only by the extension's owner (and superusers).
CREATE TABLE ghl_fdw.token_store (
    umid oid PRIMARY KEY,           -- pg_user_mapping.oid
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
    last_refresh timestamptz
);
REVOKE ALL ON ghl_fdw.token_store FROM PUBLIC;

-- mapping owners call token_status(); the store itself stays closed
GRANT USAGE ON SCHEMA ghl_fdw TO PUBLIC;

-- the tokens of a dropped user mapping must not outlive it; this runs as
-- the store's owner, so nothing of the dropping role's may resolve in it
CREATE FUNCTION ghl_fdw.forget_dropped_tokens() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM ghl_fdw.token_store
    WHERE umid OPERATOR(pg_catalog.=) ANY (
        SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
        WHERE object_type OPERATOR(pg_catalog.=) 'user mapping');
END $$;
REVOKE ALL ON FUNCTION ghl_fdw.forget_dropped_tokens() FROM PUBLIC;

CREATE EVENT TRIGGER ghl_fdw_forget_dropped_tokens ON sql_drop
    WHEN TAG IN ('DROP USER MAPPING', 'DROP SERVER', 'DROP OWNED')
    EXECUTE FUNCTION ghl_fdw.forget_dropped_tokens();

CREATE FUNCTION ghl_fdw.token_status(server_name text,
    OUT mode text, OUT user_type text, OUT location_id text,
    OUT company_id text, OUT scopes text[], OUT expires_at timestamptz,
    OUT last_refresh timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'ghl_fdw_token_status'
LANGUAGE C STRICT;

COMMENT ON FUNCTION ghl_fdw.token_status(text)
  IS 'the current user''s token on a GHL server: mode, user type, scopes, expiry; never a secret';

CREATE FUNCTION ghl_fdw.require_scope(server_name text,
    scope text DEFAULT 'contacts.write')
RETURNS void
AS 'MODULE_PATHNAME', 'ghl_fdw_require_scope'
LANGUAGE C STRICT;

COMMENT ON FUNCTION ghl_fdw.require_scope(text, text)
  IS 'fail unless the current user''s token on a GHL server has the scope (and, for a write scope, the server is not read_only)';

-- Request counters per server: requests sent, retries, 429s received,
-- waits of the rate-limit governor (and their total length), response
-- bytes, and requests refused by daily_budget_floor.  "shared" tells
-- whether they cover the whole cluster (ghl_fdw preloaded) or only this
-- backend.
CREATE FUNCTION request_stats(
    OUT server_name text,
    OUT requests bigint,
    OUT retries bigint,
    OUT rate_limited bigint,
    OUT throttle_waits bigint,
    OUT throttle_wait_ms bigint,
    OUT bytes bigint,
    OUT budget_refusals bigint,
    OUT shared boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ghl_fdw_request_stats'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW request_stats AS SELECT * FROM request_stats();
-- everybody sees the counters of the servers it may use, and only those
GRANT SELECT ON request_stats TO PUBLIC;

CREATE FUNCTION request_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'ghl_fdw_request_stats_reset'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION request_stats_reset() FROM PUBLIC;

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
