--
-- ghl_fdw.sync materializes a server's records into rankr.*: first sync,
-- incremental runs after the mock's data changed, full runs with
-- tombstones, a failed run that the next one resumes, cancel,
-- refresh_contact, notifications, the ledger's views and pg_cron.
-- test.sync_diff() and test.request_counts() come from setup.sql.
SELECT test.mock_reset(300, 7);
SELECT test.mock_forget();
-- the mock's appointments span years: read them all through the calendars
INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
VALUES ('ghl', '10 years', '2 years');

-- bad calls
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('nosuch')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('ghl', '{contacts,deals}')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('ghl', '{}')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('ghl', full => NULL)$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.refresh_contact('ghl', '')$$);
SELECT test.error_of($$CALL ghl_fdw.run_sync('ghl')$$);

-- the first sync is a full one and creates the tables
SELECT resource, mode, status, rows_upserted, rows_deleted, requests,
       watermark IS NOT NULL AS has_watermark, location_id, error
FROM ghl_fdw.sync('ghl');
\d rankr.contacts
\d rankr.tasks
-- one search page of contacts, one of tasks, the notes of each contact,
-- and the appointments of each calendar in yearly windows
SELECT * FROM test.request_counts();
SELECT * FROM test.sync_diff();
-- "status" is what the per-contact endpoint reports, or unknown
SELECT count(*) AS appointments_without_status FROM rankr.appointments WHERE status IS NULL;
-- the watermark is the newest date_updated the API reported
SELECT (SELECT watermark FROM ghl_fdw.sync_state WHERE server_name = 'ghl' AND resource = 'contacts')
       = (SELECT max(date_updated) FROM rankr.contacts) AS watermark_is_newest;
SELECT resource, mode, status, error IS NULL AS no_error, age < interval '1 minute' AS recent
FROM ghl_fdw.sync_status WHERE server_name = 'ghl' ORDER BY resource;
-- the new tables have statistics: reports are planned for their rows
-- (sync() answers first, its worker analyzes them right after)
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'ghl_fdw sync');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT relname, reltuples::bigint = (xpath('/row/n/text()',
           query_to_xml(format('SELECT count(*) AS n FROM rankr.%I', relname), false, true, '')))[1]::text::bigint
           AS analyzed
FROM pg_class WHERE relnamespace = 'rankr'::regnamespace AND relkind = 'r' ORDER BY 1;

-- a second full run finds nothing to write
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl', full => true);

-- an incremental run without changes reads the contacts in the overlap
-- window below the watermark (here: the newest one) with their notes and
-- appointments, and the location's tasks
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl');
SELECT * FROM test.request_counts();
-- the contact search asked for updates since the watermark less 5 minutes
SELECT body->'filters' AS filters, body->'sort' AS sort FROM test.requests()
WHERE path = '/contacts/search';

-- the mock changes: contacts updated, created and deleted, children edited
CREATE TEMP TABLE mut AS
SELECT m FROM test.mock('POST', '/_mock/mutate',
    '{"seed": 1, "update": 7, "create": 3, "delete": 2, "task_edits": 4,
      "note_edits": 3, "task_creates": 2, "note_deletes": 2}') AS m;
-- contacts the next incremental run must cover: the changed ones and
-- those within the overlap window below the watermark
CREATE TEMP TABLE due AS
SELECT id FROM rankr.contacts
WHERE date_updated >= (SELECT watermark FROM ghl_fdw.sync_state
                       WHERE server_name = 'ghl' AND resource = 'contacts') - interval '5 minutes'
UNION SELECT jsonb_array_elements_text(m->'updated') FROM mut
UNION SELECT jsonb_array_elements_text(m->'created') FROM mut;
SELECT count(*) AS due_contacts FROM due;
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl');
-- one contact search, the tasks of the location, one request per due
-- contact for its notes and one for its appointments, and one for each
-- task the task search no longer lists (the tasks of the deleted
-- contacts), confirming it is gone
SELECT * FROM test.request_counts();
SELECT (SELECT array_agg(DISTINCT substring(path FROM '^/contacts/([^/]+)/'))
        FROM test.requests() WHERE method = 'GET' AND path !~ '/tasks/')
       = (SELECT array_agg(id ORDER BY id) FROM due) AS children_of_due_contacts_only,
       (SELECT count(*) FROM test.requests())
       = (SELECT sum(requests) FROM ghl_fdw.sync_runs
          WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs)) AS ledger_counts_every_request;
-- contacts now equal the mock's except the two deleted ones, which an
-- incremental run cannot see; tasks are exact (the location's task search
-- runs every time, and the tasks of the deleted contacts were confirmed
-- gone); notes of contacts that did not change wait for the next full run:
-- missing = 2 of the 3 edits (one note belongs to a due contact), extra =
-- their old values + 2 deleted notes + the note of a deleted contact
SELECT * FROM test.sync_diff();
SELECT count(*) AS deleted_still_live FROM rankr.contacts
WHERE deleted_at IS NULL AND id IN (SELECT jsonb_array_elements_text(m->'deleted') FROM mut);

-- a full run reconciles everything and tombstones what is gone
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl', full => true);
SELECT * FROM test.sync_diff();
SELECT count(*) AS deleted_contacts_tombstoned FROM rankr.contacts
WHERE deleted_at IS NOT NULL AND id IN (SELECT jsonb_array_elements_text(m->'deleted') FROM mut);
-- a tombstoned row that exists upstream comes back
UPDATE rankr.contacts SET deleted_at = now()
WHERE id = (SELECT min(id) FROM rankr.contacts WHERE deleted_at IS NULL);
SELECT resource, rows_upserted, rows_deleted
FROM ghl_fdw.sync('ghl', '{contacts}', full => true);
SELECT count(*) AS tombstones FROM rankr.contacts WHERE deleted_at IS NOT NULL;

-- A run that fails half-way keeps the pages it committed, and the next run
-- resumes where it stopped.  Pages of 50 contacts, read one request at a
-- time so that the failure lands at the same place every time: the notes
-- request of the 120th contact fails, after two pages were written.
ALTER SERVER ghl OPTIONS (ADD page_size '50', ADD max_concurrency '1');
SELECT count(*) FROM test.mock('POST', '/_mock/mutate', '{"seed": 2, "update": 5, "create": 2}');
SELECT test.mock_forget();
SELECT test.fault('{"method": "GET", "path": "/notes$", "status": 500, "skip": 119}');
SELECT resource, mode, status, rows_upserted, rows_deleted, requests, watermark, error,
       progress->>'phase' AS phase, progress->'contacts_done' AS contacts_done,
       progress->'pages' AS pages
FROM ghl_fdw.sync('ghl', full => true);
-- the position of the pass: two slices done... or where it was
SELECT pass, resources, jsonb_array_length(cursor->'slices') > 0 AS has_slices,
       cursor->'done' AS contacts_done, cursor->'pages' AS pages
FROM ghl_fdw.sync_passes WHERE server_name = 'ghl';
SELECT resource, status, error FROM ghl_fdw.sync_status WHERE server_name = 'ghl' ORDER BY resource;
-- the next run resumes: no page already written is read again
SELECT test.mock_forget();
SELECT resource, mode, status, requests, error
FROM ghl_fdw.sync('ghl', full => true);
SELECT * FROM test.request_counts() WHERE endpoint IN ('/contacts/search', '/contacts/{id}/notes');
SELECT count(*) AS passes_left FROM ghl_fdw.sync_passes;
SELECT * FROM test.sync_diff();
ALTER SERVER ghl OPTIONS (DROP page_size, DROP max_concurrency);

-- a run cancelled by statement_timeout stops its worker, which records it
SELECT test.mock_forget();
SELECT test.fault('{"method": "POST", "path": "^/contacts/search$", "kind": "delay", "delay_ms": 3000}');
SET statement_timeout = '500ms';
\set VERBOSITY terse
SELECT * FROM ghl_fdw.sync('ghl', '{contacts}');
\set VERBOSITY default
RESET statement_timeout;
SELECT pg_sleep(0.5);
SELECT resource, status, error FROM ghl_fdw.sync_runs
WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs);
-- the next run catches up
SELECT test.mock_forget();
SELECT resource, status FROM ghl_fdw.sync('ghl');
SELECT resource, missing, extra FROM test.sync_diff() WHERE resource = 'contacts';

-- the same run as a procedure, which commits step by step
SELECT test.mock_forget();
CALL ghl_fdw.run_sync('ghl', '{contacts}');
SELECT resource, mode, status FROM ghl_fdw.sync_runs
WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs);
-- a failed run fails the procedure, once its ledger rows are saved
SELECT test.fault('{"method": "POST", "path": "^/contacts/search$", "status": 500}');
\set VERBOSITY terse
CALL ghl_fdw.run_sync('ghl', '{contacts}');
\set VERBOSITY default
SELECT resource, status, error FROM ghl_fdw.sync_runs
WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs);

-- refresh_contact pulls one contact and its children now
CREATE TEMP TABLE one AS
SELECT contact_id AS id FROM rankr.tasks WHERE deleted_at IS NULL
INTERSECT SELECT contact_id FROM rankr.notes WHERE deleted_at IS NULL
INTERSECT SELECT contact_id FROM rankr.appointments WHERE deleted_at IS NULL
ORDER BY 1 LIMIT 1;
DELETE FROM rankr.tasks WHERE contact_id = (SELECT id FROM one);
UPDATE rankr.contacts SET city = 'Nowhere', as_of = NULL WHERE id = (SELECT id FROM one);
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted > 0 AS wrote, rows_deleted, requests, watermark
FROM ghl_fdw.refresh_contact('ghl', (SELECT id FROM one));
SELECT * FROM test.request_counts();
SELECT resource, missing, extra FROM test.sync_diff();
-- the per-contact endpoint reports status, derived from appointmentStatus
SELECT count(*) AS appointments_of_contact,
       count(*) FILTER (WHERE status = CASE WHEN appointment_status IN ('new', 'confirmed')
                                            THEN 'booked' ELSE appointment_status END) AS status_as_reported
FROM rankr.appointments WHERE contact_id = (SELECT id FROM one);
-- a contact gone upstream is tombstoned with its children
UPDATE rankr.tasks SET contact_id = 'noSuchContact0000000' WHERE id = (SELECT min(id) FROM rankr.tasks);
INSERT INTO rankr.contacts (id, location_id) VALUES ('noSuchContact0000000', 've9EPM428h8vShlRW1KT');
SELECT resource, rows_upserted, rows_deleted, requests
FROM ghl_fdw.refresh_contact('ghl', 'noSuchContact0000000');
-- a failure is recorded and returned, not raised
SELECT test.fault('{"method": "GET", "path": "^/contacts/[^/]+$", "status": 500}');
SELECT resource, status, error FROM ghl_fdw.refresh_contact('ghl', (SELECT id FROM one));
-- a trigger may read the rows a sync is writing, but only as what they
-- are: other column types are refused, never reinterpreted
SELECT test.mock_forget();
CREATE FUNCTION test.peek_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM ghl_fdw._sync_batch() AS u(id integer);
    RETURN NEW;
END $$;
CREATE TRIGGER peek_batch BEFORE UPDATE ON rankr.contacts
    FOR EACH ROW EXECUTE FUNCTION test.peek_batch();
SELECT resource, status, error FROM ghl_fdw.refresh_contact('ghl', (SELECT id FROM one))
WHERE resource = 'contacts';
DROP TRIGGER peek_batch ON rankr.contacts;
DROP FUNCTION test.peek_batch();

-- NOTIFY: a summary of each run, and the appointments it changed, once
-- the step that wrote them commits.  psql prints notifications with the
-- sender's PID, so they go to a file that is read back without it.
SELECT '/tmp/ghl_fdw_sync_notify_' || pg_backend_pid() AS notify_file \gset
CREATE TEMP TABLE edited AS
SELECT m FROM test.mock('POST', '/_mock/mutate', '{"seed": 3, "appointment_edits": 2}') AS m;
LISTEN ghl_fdw_sync;
LISTEN ghl_fdw_appointments;
\o :notify_file
SELECT count(*) FROM ghl_fdw.sync('ghl', '{appointments}', full => true);
SELECT pg_sleep(0.1);
\o
UNLISTEN *;
CREATE TEMP TABLE notes AS
SELECT n[1] AS channel, n[2]::jsonb AS payload
FROM regexp_matches(pg_read_file(:'notify_file'),
                    'Asynchronous notification "([a-z_]+)" with payload "([^\n]*)" received', 'g') AS n;
SELECT channel, jsonb_pretty(payload - 'run_id' - 'ids') AS payload,
       payload->'run_id' = (SELECT to_jsonb(max(run_id)) FROM ghl_fdw.sync_runs) AS this_run
FROM notes WHERE channel = 'ghl_fdw_sync';
-- each step announces the appointments it changed: here, the edited ones
SELECT bool_and(payload->'run_id' = (SELECT to_jsonb(max(run_id)) FROM ghl_fdw.sync_runs)) AS this_run,
       bool_and(payload->>'server' = 'ghl') AS server,
       array_agg(i ORDER BY i)
       = (SELECT array_agg(i ORDER BY i) FROM edited, jsonb_array_elements_text(m->'appointment_edits') AS i)
       AS ids_are_the_edited_ones
FROM notes, jsonb_array_elements_text(payload->'ids') AS i
WHERE channel = 'ghl_fdw_appointments';
\setenv NOTIFY_FILE :notify_file
\! rm -f "$NOTIFY_FILE"

-- ledger retention: rows older than the server's keep_runs are pruned
INSERT INTO ghl_fdw.sync_runs (run_id, server_name, resource, mode, status, started_at)
VALUES (0, 'ghl', 'contacts', 'full', 'succeeded', now() - interval '31 days'),
       (-1, 'ghl', 'contacts', 'full', 'succeeded', now() - interval '2 days');
SELECT ghl_fdw.prune_sync_runs('ghl');
UPDATE ghl_fdw.sync_settings SET keep_runs = '1 day' WHERE server_name = 'ghl';
SELECT count(*) FROM ghl_fdw.sync('ghl', '{contacts}');
SELECT count(*) AS old_rows FROM ghl_fdw.sync_runs WHERE run_id <= 0;
UPDATE ghl_fdw.sync_settings SET keep_runs = '30 days' WHERE server_name = 'ghl';

-- a server moved to another location reads that location in full: the
-- old location's watermark does not hold there
SELECT count(*) FROM test.mock('POST', '/_mock/locations',
    '{"id": "syncMovedLocation001", "contacts": 30, "seed": 3}');
ALTER SERVER ghl OPTIONS (SET location_id 'syncMovedLocation001');
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl OPTIONS (SET access_token 'pit-syncMovedLocation001');
SELECT resource, mode, status, rows_upserted FROM ghl_fdw.sync('ghl', '{contacts}');
SELECT count(*) AS moved_rows FROM rankr.contacts WHERE location_id = 'syncMovedLocation001';
SELECT resource, location_id FROM ghl_fdw.sync_state WHERE server_name = 'ghl' ORDER BY 1;
ALTER SERVER ghl OPTIONS (SET location_id 've9EPM428h8vShlRW1KT');
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl OPTIONS (SET access_token 'pit-mock-token');
SELECT resource, mode FROM ghl_fdw.sync('ghl', '{contacts}');
DELETE FROM rankr.contacts WHERE location_id = 'syncMovedLocation001';

-- a dropped server's bookkeeping goes with it: a new server of the same
-- name starts from nothing
\getenv mock_url MOCK_URL
CREATE SERVER ghl_dropped FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url :'mock_url', sync_schema 'rankr_dropped');
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_dropped OPTIONS (access_token 'pit-mock-token');
INSERT INTO ghl_fdw.sync_settings (server_name, overlap) VALUES ('ghl_dropped', '1 minute');
SELECT resource, status FROM ghl_fdw.sync('ghl_dropped', '{contacts}');
SELECT (SELECT count(*) FROM ghl_fdw.sync_state WHERE server_name = 'ghl_dropped') AS state_rows,
       (SELECT count(*) FROM ghl_fdw.sync_settings WHERE server_name = 'ghl_dropped') AS settings_rows;
DROP SERVER ghl_dropped CASCADE;
SELECT (SELECT count(*) FROM ghl_fdw.sync_state WHERE server_name = 'ghl_dropped') AS state_rows,
       (SELECT count(*) FROM ghl_fdw.sync_settings WHERE server_name = 'ghl_dropped') AS settings_rows,
       (SELECT count(*) FROM ghl_fdw.sync_passes WHERE server_name = 'ghl_dropped') AS pass_rows;
DROP SCHEMA rankr_dropped CASCADE;
DELETE FROM ghl_fdw.sync_runs WHERE server_name = 'ghl_dropped';

-- pg_cron: jobs call the procedure
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl')$$);
CREATE EXTENSION pg_cron;
SELECT ghl_fdw.schedule_sync('ghl') AS job \gset
SELECT jobname, schedule, command, database, username = current_user AS mine
FROM cron.job WHERE jobid = :job;
SELECT ghl_fdw.schedule_sync('ghl', '*/5 * * * *', '{contacts,tasks}') = :job AS same_job;
SELECT jobname, schedule, command FROM cron.job;
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl', 'every now and then')$$);
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl', '* * * * *', '{deals}')$$);
SELECT ghl_fdw.unschedule_sync('ghl');
SELECT ghl_fdw.unschedule_sync('ghl');
SELECT count(*) AS jobs FROM cron.job;

-- a role that may use the server schedules its own job once a superuser
-- has let it use pg_cron's scheduling (pg_cron grants nothing by itself)
CREATE ROLE regress_scheduler;
GRANT USAGE ON FOREIGN SERVER ghl TO regress_scheduler;
GRANT USAGE ON SCHEMA cron, test TO regress_scheduler;
CREATE USER MAPPING FOR regress_scheduler SERVER ghl OPTIONS (access_token 'pit-mock-token');
SET ROLE regress_scheduler;
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean)
    TO regress_scheduler;
SET ROLE regress_scheduler;
SELECT ghl_fdw.schedule_sync('ghl') > 0 AS scheduled;
SELECT jobname, username FROM cron.job;
SELECT ghl_fdw.unschedule_sync('ghl');
RESET ROLE;
SELECT count(*) AS jobs FROM cron.job;
DROP USER MAPPING FOR regress_scheduler SERVER ghl;
REVOKE ALL ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean)
    FROM regress_scheduler;
REVOKE ALL ON SCHEMA cron, test FROM regress_scheduler;
REVOKE ALL ON FOREIGN SERVER ghl FROM regress_scheduler;
DROP ROLE regress_scheduler;

-- leave things as they were
DROP SCHEMA rankr CASCADE;
DELETE FROM ghl_fdw.sync_state;
DELETE FROM ghl_fdw.sync_runs;
DELETE FROM ghl_fdw.sync_passes;
DELETE FROM ghl_fdw.sync_settings;
SELECT test.mock_reset(100, 42);

-- A page that lists contacts more than once (A, B, A, B, A): one row per
-- id, holding its last copy's values, in a sync table of its own
ALTER SERVER ghl OPTIONS (ADD sync_schema 'rankr_dup');
SELECT test.fault(jsonb_build_object(
    'method', 'POST', 'path', '^/contacts/search$', 'kind', 'raw', 'status', 200,
    'body_base64', translate(encode(convert_to(jsonb_build_object(
        'total', 5,
        'contacts', (SELECT jsonb_agg(jsonb_build_object(
                         'id', id, 'locationId', 've9EPM428h8vShlRW1KT',
                         'firstName', 'copy ' || n,
                         'dateAdded', '2024-01-0' || n || 'T00:00:00.000Z',
                         'searchAfter', jsonb_build_array(n, id)) ORDER BY n)
                     FROM (VALUES (1, 'dupContactAAAAAAAAAA'), (2, 'dupContactBBBBBBBBBB'),
                                  (3, 'dupContactAAAAAAAAAA'), (4, 'dupContactBBBBBBBBBB'),
                                  (5, 'dupContactAAAAAAAAAA')) AS c(n, id)))::text,
        'UTF8'), 'base64'), E'\n', '')));
SELECT resource, mode, status, rows_upserted, error FROM ghl_fdw.sync('ghl', '{contacts}');
SELECT id, first_name, date_added FROM rankr_dup.contacts ORDER BY id;
DROP SCHEMA rankr_dup CASCADE;
ALTER SERVER ghl OPTIONS (DROP sync_schema);
DELETE FROM ghl_fdw.sync_state;
DELETE FROM ghl_fdw.sync_runs;
DELETE FROM ghl_fdw.sync_passes;
SELECT test.mock_forget();

-- A run that fails in its first step, before any request (its table is a
-- view), still leaves its "failed" rows in the ledger and returns them
CREATE SCHEMA rankr_view;
CREATE VIEW rankr_view.contacts AS SELECT 'x'::text AS id;
ALTER SERVER ghl OPTIONS (ADD sync_schema 'rankr_view');
SELECT resource, mode, status, requests, error FROM ghl_fdw.sync('ghl', '{contacts}');
SELECT resource, status, finished_at IS NOT NULL AS finished FROM ghl_fdw.sync_runs;
DROP SCHEMA rankr_view CASCADE;
ALTER SERVER ghl OPTIONS (DROP sync_schema);
DELETE FROM ghl_fdw.sync_runs;
