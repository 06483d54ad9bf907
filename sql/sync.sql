--
-- ghl_fdw.sync materializes the foreign tables into rankr.*: first sync,
-- incremental runs after the mock's data changed, full runs with
-- tombstones, a failed run, refresh_contact, notifications and pg_cron.
--
-- The Rankr tables compared field by field with the mock's state: per
-- resource, the mock's rows, the live local rows, mock rows without an
-- equal live row (missing), live rows without an equal mock row (extra),
-- and tombstones.  The Python tests use it too.
CREATE FUNCTION test.sync_diff(sync_schema text DEFAULT 'rankr')
RETURNS TABLE (resource text, mock_rows bigint, live_rows bigint, missing bigint,
               extra bigint, tombstones bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := (SELECT m FROM test.mock('GET', '/_mock/state') AS m);
BEGIN
    CREATE TEMP TABLE want_contacts ON COMMIT DROP AS
    SELECT c->>'id' AS id, c->>'locationId' AS location_id, c->>'firstName' AS first_name,
           c->>'lastName' AS last_name, c->>'name' AS name, c->>'email' AS email,
           c->>'phone' AS phone, c->>'companyName' AS company_name, c->>'source' AS source,
           c->>'type' AS type, c->>'assignedTo' AS assigned_to, c->>'address1' AS address1,
           c->>'city' AS city, c->>'state' AS state, c->>'postalCode' AS postal_code,
           c->>'country' AS country, c->>'website' AS website, c->>'timezone' AS timezone,
           (c->>'dnd')::boolean AS dnd,
           ARRAY(SELECT jsonb_array_elements_text(c->'tags')) AS tags,
           c->'customFields' AS custom_fields, c->>'businessId' AS business_id,
           (c->>'dateAdded')::timestamptz AS date_added,
           (c->>'dateUpdated')::timestamptz AS date_updated
    FROM jsonb_array_elements(s->'contacts') AS c;
    CREATE TEMP TABLE want_tasks ON COMMIT DROP AS
    SELECT t->>'id' AS id, t->>'contactId' AS contact_id, t->>'title' AS title,
           t->>'body' AS body, t->>'assignedTo' AS assigned_to,
           (t->>'dueDate')::timestamptz AS due_date, (t->>'completed')::boolean AS completed
    FROM jsonb_array_elements(s->'tasks') AS t;
    CREATE TEMP TABLE want_notes ON COMMIT DROP AS
    SELECT n->>'id' AS id, n->>'contactId' AS contact_id, n->>'body' AS body,
           n->>'userId' AS user_id, (n->>'dateAdded')::timestamptz AS date_added
    FROM jsonb_array_elements(s->'notes') AS n;
    -- the per-contact endpoint reports 'booked' for new and confirmed ones
    CREATE TEMP TABLE want_appointments ON COMMIT DROP AS
    SELECT a->>'id' AS id, a->>'contactId' AS contact_id, a->>'calendarId' AS calendar_id,
           a->>'locationId' AS location_id, a->>'title' AS title,
           CASE WHEN a->>'appointmentStatus' IN ('new', 'confirmed') THEN 'booked'
                ELSE a->>'appointmentStatus' END AS status,
           a->>'appointmentStatus' AS appointment_status,
           a->>'assignedUserId' AS assigned_user_id, a->>'address' AS address,
           a->>'notes' AS notes, (a->>'startTime')::timestamptz AS start_time,
           (a->>'endTime')::timestamptz AS end_time,
           (a->>'dateAdded')::timestamptz AS date_added,
           (a->>'dateUpdated')::timestamptz AS date_updated
    FROM jsonb_array_elements(s->'appointments') AS a;
    FOREACH resource IN ARRAY ARRAY['contacts', 'tasks', 'notes', 'appointments'] LOOP
        RETURN QUERY EXECUTE format(
            'WITH live AS (SELECT %3$s FROM %1$I.%2$I WHERE deleted_at IS NULL),'
            '     want AS (SELECT %3$s FROM pg_temp.%4$I)'
            ' SELECT %2$L, (SELECT count(*) FROM want), (SELECT count(*) FROM live),'
            '  (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM live) x),'
            '  (SELECT count(*) FROM (SELECT * FROM live EXCEPT ALL SELECT * FROM want) x),'
            '  (SELECT count(*) FROM %1$I.%2$I WHERE deleted_at IS NOT NULL)',
            sync_schema, resource,
            (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
             FROM pg_attribute WHERE attrelid = format('pg_temp.want_%s', resource)::regclass
               AND attnum > 0),
            'want_' || resource);
    END LOOP;
END $$;

-- the requests the mock received, grouped by endpoint
CREATE FUNCTION test.request_counts()
RETURNS TABLE (method text, endpoint text, requests bigint)
LANGUAGE sql AS $$
    SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{id}', 'g'), count(*)
    FROM test.requests() GROUP BY 1, 2 ORDER BY 2, 1
$$;

SELECT test.mock_reset(300, 7);
SELECT test.mock_forget();

-- bad calls
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('nosuch')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('ghl', '{contacts,deals}')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.sync('ghl', '{}')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.refresh_contact('ghl', '')$$);

-- the first sync is a full one and creates the tables
SELECT resource, mode, status, rows_upserted, rows_deleted, requests,
       watermark IS NOT NULL AS has_watermark, error
FROM ghl_fdw.sync('ghl') ORDER BY resource;
\d rankr.contacts
\d rankr.tasks
SELECT * FROM test.request_counts();
SELECT * FROM test.sync_diff();
-- the watermark is the newest date_updated the API reported
SELECT (SELECT watermark FROM ghl_fdw.sync_state WHERE server_name = 'ghl' AND resource = 'contacts')
       = (SELECT max(date_updated) FROM rankr.contacts) AS watermark_is_newest;

-- a second full run finds nothing to write
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl', full => true) ORDER BY resource;

-- an incremental run without changes reads only the contacts in the
-- overlap window below the watermark (here: the newest one)
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl') ORDER BY resource;
SELECT * FROM test.request_counts();

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
FROM ghl_fdw.sync('ghl') ORDER BY resource;
-- one contact search, and one request per due contact and child resource
SELECT * FROM test.request_counts();
SELECT (SELECT array_agg(DISTINCT substring(path FROM '^/contacts/([^/]+)/'))
        FROM test.requests() WHERE method = 'GET')
       = (SELECT array_agg(id ORDER BY id) FROM due) AS children_of_due_contacts_only,
       (SELECT count(*) FROM test.requests())
       = (SELECT sum(requests) FROM ghl_fdw.sync_runs
          WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs)) AS ledger_counts_every_request;
-- contacts now equal the mock's except the two deleted ones, which an
-- incremental run cannot see.  Children of due contacts are exact; the
-- others wait for the next full run: tasks missing = 4 edits + 2 creates,
-- extra = the 4 edited rows' old values + the 4 tasks of the deleted
-- contacts; notes missing = 2 of the 3 edits (one note belongs to a due
-- contact and was caught), extra = their old values + 2 deleted notes +
-- the note of a deleted contact
SELECT * FROM test.sync_diff();
SELECT count(*) AS deleted_still_live FROM rankr.contacts
WHERE deleted_at IS NULL AND id IN (SELECT jsonb_array_elements_text(m->'deleted') FROM mut);
SELECT count(*) FILTER (WHERE contact_id IN (SELECT id FROM due)) AS edited_tasks_of_due,
       count(*) FILTER (WHERE contact_id NOT IN (SELECT id FROM due)) AS edited_tasks_of_others
FROM rankr.tasks WHERE id IN (SELECT jsonb_array_elements_text(m->'task_edits') FROM mut);

-- a full run reconciles everything and tombstones what is gone
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted, rows_deleted, requests
FROM ghl_fdw.sync('ghl', full => true) ORDER BY resource;
SELECT * FROM test.sync_diff();
SELECT count(*) AS deleted_contacts_tombstoned FROM rankr.contacts
WHERE deleted_at IS NOT NULL AND id IN (SELECT jsonb_array_elements_text(m->'deleted') FROM mut);
-- a tombstoned row that exists upstream comes back
UPDATE rankr.contacts SET deleted_at = now()
WHERE id = (SELECT min(id) FROM rankr.contacts WHERE deleted_at IS NULL);
SELECT resource, rows_upserted, rows_deleted
FROM ghl_fdw.sync('ghl', '{contacts}', full => true);
SELECT count(*) AS tombstones FROM rankr.contacts WHERE deleted_at IS NOT NULL;

-- a failure in the middle of a run (the 4th notes request) leaves the
-- tables and the watermark as they were, and is recorded
SELECT count(*) FROM test.mock('POST', '/_mock/mutate', '{"seed": 2, "update": 5, "create": 2}');
CREATE TEMP VIEW fingerprint AS
SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM rankr.contacts t) AS contacts,
       (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM rankr.tasks t) AS tasks,
       (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM rankr.notes t) AS notes,
       (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM rankr.appointments t) AS appointments,
       (SELECT md5(string_agg(t::text, '|' ORDER BY resource)) FROM ghl_fdw.sync_state t) AS state;
CREATE TEMP TABLE before AS SELECT * FROM fingerprint;
SELECT test.mock_forget();
SELECT test.fault('{"method": "GET", "path": "/notes$", "status": 500, "skip": 3}');
SELECT resource, mode, status, rows_upserted, rows_deleted, requests, watermark, error
FROM ghl_fdw.sync('ghl') ORDER BY resource;
-- the tasks were fetched and written before the notes failed
SELECT * FROM test.request_counts();
SELECT (SELECT b FROM before b) = (SELECT f FROM fingerprint f) AS unchanged;
DROP VIEW fingerprint;
SELECT resource, status, error FROM ghl_fdw.sync_runs
WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs) ORDER BY resource;
-- a run cancelled by statement_timeout is a failed run too
SELECT test.mock_forget();
SELECT test.fault('{"method": "POST", "path": "^/contacts/search$", "kind": "delay", "delay_ms": 3000}');
SET statement_timeout = '500ms';
SELECT resource, status, error FROM ghl_fdw.sync('ghl', '{contacts}');
RESET statement_timeout;
-- the next run catches up
SELECT test.mock_forget();
SELECT resource, status, rows_upserted, rows_deleted FROM ghl_fdw.sync('ghl') ORDER BY resource;
SELECT resource, missing, extra FROM test.sync_diff() WHERE resource = 'contacts';

-- refresh_contact pulls one contact and its children now
CREATE TEMP TABLE one AS
SELECT contact_id AS id FROM rankr.tasks WHERE deleted_at IS NULL
INTERSECT SELECT contact_id FROM rankr.notes WHERE deleted_at IS NULL
ORDER BY 1 LIMIT 1;
DELETE FROM rankr.tasks WHERE contact_id = (SELECT id FROM one);
UPDATE rankr.contacts SET city = 'Nowhere' WHERE id = (SELECT id FROM one);
SELECT test.mock_forget();
SELECT resource, mode, status, rows_upserted > 0 AS wrote, rows_deleted, requests, watermark
FROM ghl_fdw.refresh_contact('ghl', (SELECT id FROM one)) ORDER BY resource;
SELECT * FROM test.request_counts();
SELECT resource, missing, extra FROM test.sync_diff();
-- a contact gone upstream is tombstoned with its children
UPDATE rankr.tasks SET contact_id = 'noSuchContact0000000' WHERE id = (SELECT min(id) FROM rankr.tasks);
INSERT INTO rankr.contacts (id) VALUES ('noSuchContact0000000');
SELECT resource, rows_upserted, rows_deleted, requests
FROM ghl_fdw.refresh_contact('ghl', 'noSuchContact0000000') ORDER BY resource;

-- NOTIFY: a summary of each run, and the appointments it changed, once
-- the transaction commits.  psql prints notifications with the sender's
-- PID, so they go to a file that is read back without it.
SELECT '/tmp/ghl_fdw_sync_notify_' || pg_backend_pid() AS notify_file \gset
CREATE TEMP TABLE edited AS
SELECT m FROM test.mock('POST', '/_mock/mutate', '{"seed": 3, "appointment_edits": 2}') AS m;
LISTEN ghl_fdw_sync;
LISTEN ghl_fdw_appointments;
\o :notify_file
SELECT count(*) FROM ghl_fdw.sync('ghl', '{appointments}', full => true);
\o
UNLISTEN *;
CREATE TEMP TABLE notes AS
SELECT n[1] AS channel, n[2]::jsonb AS payload
FROM regexp_matches(pg_read_file(:'notify_file'),
                    'Asynchronous notification "([a-z_]+)" with payload "([^\n]*)" received', 'g') AS n;
SELECT channel, jsonb_pretty(payload - 'run_id' - 'ids') AS payload,
       payload->'run_id' = (SELECT to_jsonb(max(run_id)) FROM ghl_fdw.sync_runs) AS this_run,
       (SELECT array_agg(i ORDER BY i) FROM jsonb_array_elements_text(payload->'ids') AS i)
       = (SELECT array_agg(i ORDER BY i) FROM edited, jsonb_array_elements_text(m->'appointment_edits') AS i)
       AS ids_are_the_edited_ones
FROM notes;
\setenv NOTIFY_FILE :notify_file
\! rm -f "$NOTIFY_FILE"

-- ledger retention: rows older than the server's keep_runs are pruned
INSERT INTO ghl_fdw.sync_runs (run_id, server_name, resource, mode, status, started_at)
VALUES (0, 'ghl', 'contacts', 'full', 'succeeded', now() - interval '31 days'),
       (-1, 'ghl', 'contacts', 'full', 'succeeded', now() - interval '2 days');
SELECT ghl_fdw.prune_sync_runs('ghl');
INSERT INTO ghl_fdw.sync_settings (server_name, keep_runs) VALUES ('ghl', '1 day');
SELECT count(*) FROM ghl_fdw.sync('ghl', '{contacts}');
SELECT count(*) AS old_rows FROM ghl_fdw.sync_runs WHERE run_id <= 0;
DELETE FROM ghl_fdw.sync_settings;

-- pg_cron
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl')$$);
CREATE EXTENSION pg_cron;
SELECT ghl_fdw.schedule_sync('ghl') AS job \gset
SELECT jobname, schedule, command, database, username = current_user AS mine
FROM cron.job WHERE jobid = :job;
SELECT ghl_fdw.schedule_sync('ghl', '*/5 * * * *', '{contacts,tasks}') = :job AS same_job;
SELECT jobname, schedule, command FROM cron.job;
SELECT test.error_of($$SELECT ghl_fdw.schedule_sync('ghl', 'every now and then')$$);
SELECT ghl_fdw.unschedule_sync('ghl');
SELECT ghl_fdw.unschedule_sync('ghl');
SELECT count(*) AS jobs FROM cron.job;

-- leave things as they were
DROP SCHEMA rankr CASCADE;
DROP SCHEMA ghl_fdw_src_ghl CASCADE;
DELETE FROM ghl_fdw.sync_state;
DELETE FROM ghl_fdw.sync_runs;
SELECT test.mock_reset(100, 42);
