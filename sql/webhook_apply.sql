--
-- What webhook deliveries do to the Rankr tables: each event type of
-- HighLevel's docs on its table and columns, out-of-order and repeated
-- deliveries, tombstones, the receiver's role and the tables' owners,
-- servers sharing a location, catch-up through the API, and the mock's
-- own change events followed by an incremental sync, compared with the
-- mock's state.  Deliveries are unsigned here (signatures are tested in
-- webhooks.sql and test/test_webhooks.py).
--
SELECT test.mock_reset(40, 11);
INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
VALUES ('ghl', '10 years', '2 years')
ON CONFLICT (server_name) DO UPDATE
SET appointments_back = EXCLUDED.appointments_back, appointments_ahead = EXCLUDED.appointments_ahead;
DROP SCHEMA IF EXISTS rankr CASCADE;
SELECT resource, status FROM ghl_fdw.sync('ghl');

-- the receiver's role may call apply_webhook and nothing else
CREATE ROLE regress_hooks;
GRANT EXECUTE ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) TO regress_hooks;
GRANT USAGE ON SCHEMA test TO regress_hooks;
SET ghl_fdw.webhook_allow_unsigned = on;

-- a delivery of event, sent "age" ago, as the receiver's role delivers it
CREATE FUNCTION test.hook(event jsonb, webhook_id text, age interval DEFAULT '0')
RETURNS text LANGUAGE sql AS $$
    SELECT ghl_fdw.apply_webhook(
        (event || jsonb_build_object(
            'locationId', coalesce(event->>'locationId', 've9EPM428h8vShlRW1KT'),
            'webhookId', webhook_id,
            'timestamp', to_char((now() - age) AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text, '{}')
$$;
-- HighLevel's examples, at our location
\set ContactCreate `cat test/webhooks/ContactCreate.example.json`
\set ContactUpdate `cat test/webhooks/ContactUpdate.example.json`
\set ContactTagUpdate `cat test/webhooks/ContactTagUpdate.example.json`
\set ContactDndUpdate `cat test/webhooks/ContactDndUpdate.example.json`
\set ContactDelete `cat test/webhooks/ContactDelete.example.json`
\set TaskCreate `cat test/webhooks/TaskCreate.example.json`
\set TaskComplete `cat test/webhooks/TaskComplete.example.json`
\set TaskDelete `cat test/webhooks/TaskDelete.example.json`
\set NoteCreate `cat test/webhooks/NoteCreate.example.json`
\set NoteUpdate `cat test/webhooks/NoteUpdate.example.json`
\set NoteDelete `cat test/webhooks/NoteDelete.example.json`
\set AppointmentCreate `cat test/webhooks/AppointmentCreate.example.json`
CREATE TABLE test.examples (type text PRIMARY KEY, event jsonb);
INSERT INTO test.examples VALUES
    ('ContactCreate', :'ContactCreate'), ('ContactUpdate', :'ContactUpdate'),
    ('ContactTagUpdate', :'ContactTagUpdate'), ('ContactDndUpdate', :'ContactDndUpdate'),
    ('ContactDelete', :'ContactDelete'), ('TaskCreate', :'TaskCreate'),
    ('TaskComplete', :'TaskComplete'), ('TaskDelete', :'TaskDelete'),
    ('NoteCreate', :'NoteCreate'), ('NoteUpdate', :'NoteUpdate'), ('NoteDelete', :'NoteDelete'),
    ('AppointmentCreate', :'AppointmentCreate');
-- the docs' appointment examples all say AppointmentCreate: the type is
-- ours; their records are of the docs' contact
UPDATE test.examples SET event = event - 'locationId';
UPDATE test.examples SET event = jsonb_set(event, '{contactId}', '"nmFmQEsNgz6AVpgLVUJ0"')
WHERE event ? 'contactId';
UPDATE test.examples
SET event = jsonb_set(event, '{appointment,contactId}', '"nmFmQEsNgz6AVpgLVUJ0"')
WHERE type = 'AppointmentCreate';
CREATE FUNCTION test.example(type text, changes jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_set(e.event, '{type}', to_jsonb(example.type)) || changes
    FROM test.examples e
    WHERE e.type = CASE WHEN example.type LIKE 'Appointment%' THEN 'AppointmentCreate'
                        ELSE example.type END
$$;
GRANT SELECT ON test.examples TO regress_hooks;
-- one contact, as the table holds it (for the receiver's role too)
CREATE FUNCTION test.contact(id text) RETURNS TABLE (
    first_name text, last_name text, email text, phone text, company_name text, city text,
    type text, dnd boolean, tags text[], custom_fields jsonb, date_added timestamptz,
    date_updated timestamptz, tombstone boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT first_name, last_name, email, phone, company_name, city, type, dnd, tags,
           custom_fields, date_added, date_updated, deleted_at IS NOT NULL
    FROM rankr.contacts WHERE id = contact.id
$$;

SET ROLE regress_hooks;
-- the role cannot read or write the tables it fills through deliveries
SELECT test.error_of('SELECT count(*) FROM rankr.contacts');

-- a contact created: a row with the payload's columns ("type" is the
-- event's, not the contact's: it stays unknown); 4 minutes ago, so that
-- later tests can deliver older and newer events
SELECT test.hook(test.example('ContactCreate'), 'regress-c1', '4 minutes');
SELECT * FROM test.contact('nmFmQEsNgz6AVpgLVUJ0');
-- the same webhookId again: a duplicate, whatever it says
SELECT test.hook(test.example('ContactDelete'), 'regress-c1');
-- updates: the newer one wins, whatever the order they arrive in
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Newer", "city": "Later"}'),
                 'regress-c2', '1 minute');
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Older", "email": "old@example.com"}'),
                 'regress-c3', '2 minutes');
SELECT first_name, city, email FROM test.contact('nmFmQEsNgz6AVpgLVUJ0');
-- contact events carry every field that has a value (tags and DND events
-- too): a field missing from one was cleared
SELECT test.hook(test.example('ContactTagUpdate', '{"tags": ["vip"]}') - 'city',
                 'regress-c4', '50 seconds');
SELECT first_name, city, tags, dnd FROM test.contact('nmFmQEsNgz6AVpgLVUJ0');
SELECT test.hook(test.example('ContactDndUpdate', '{"dnd": false, "tags": ["vip"]}'),
                 'regress-c5', '40 seconds');
SELECT first_name, city, tags, dnd FROM test.contact('nmFmQEsNgz6AVpgLVUJ0');
-- what no payload carries (a contact's type, timezone, dateUpdated,
-- business) keeps the value sync read
RESET ROLE;
SELECT id AS synced_contact FROM rankr.contacts
WHERE type IS NOT NULL AND timezone IS NOT NULL ORDER BY id LIMIT 1 \gset
CREATE TEMP TABLE synced AS SELECT * FROM rankr.contacts WHERE id = :'synced_contact';
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactUpdate', jsonb_build_object('id', :'synced_contact',
                                                                 'firstName', 'Hooked')),
                 'regress-c10');
RESET ROLE;
SELECT c.first_name, c.last_name, c.type = s.type AS type_kept,
       c.timezone = s.timezone AS timezone_kept, c.date_updated = s.date_updated AS date_updated_kept,
       c.business_id IS NOT DISTINCT FROM s.business_id AS business_kept
FROM rankr.contacts c JOIN synced s USING (location_id, id);
DROP TABLE synced;
SET ROLE regress_hooks;

-- its task, note and appointment
SELECT test.hook(test.example('TaskCreate'), 'regress-t1', '30 seconds');
SELECT test.hook(test.example('NoteCreate'), 'regress-n1', '30 seconds');
SELECT test.hook(test.example('AppointmentCreate'), 'regress-a1', '30 seconds');
RESET ROLE;
SELECT id, contact_id, title, body, assigned_to, due_date, completed, deleted_at IS NULL AS live
FROM rankr.tasks WHERE id = 'UlRWGLSXh0ji5qbiGu4i';
SELECT id, contact_id, body, user_id, date_added FROM rankr.notes WHERE id = 'otg8dTQqGLh3Q6iQI55w';
SELECT id, contact_id, calendar_id, title, status, appointment_status, assigned_user_id,
       address, notes, start_time, end_time, date_added, date_updated
FROM rankr.appointments WHERE id = '0007BWpSzSwfiuSl0tR2';
-- notes and appointments lack fields that only sync reads: their contact
-- waits for the next incremental run
SELECT server_name, contact_id FROM ghl_fdw.sync_pending;
SET ROLE regress_hooks;

-- a task completed: only "completed" changes; a TaskCreate without
-- contactId or body keeps the stored ones
SELECT test.hook(test.example('TaskComplete', '{"id": "UlRWGLSXh0ji5qbiGu4i", "title": "Done it"}')
                 - 'body' - 'contactId', 'regress-t2', '20 seconds');
SELECT test.hook(test.example('TaskCreate', '{"title": "Again"}') - 'body' - 'contactId',
                 'regress-t3', '10 seconds');
SELECT test.hook(test.example('NoteUpdate', '{"body": "Edited"}'), 'regress-n2', '20 seconds');
SELECT test.hook(jsonb_set(test.example('AppointmentUpdate'), '{appointment,appointmentStatus}',
                           '"cancelled"'), 'regress-a2', '20 seconds');
RESET ROLE;
SELECT title, body, contact_id, completed FROM rankr.tasks WHERE id = 'UlRWGLSXh0ji5qbiGu4i';
SELECT body FROM rankr.notes WHERE id = 'otg8dTQqGLh3Q6iQI55w';
SELECT appointment_status FROM rankr.appointments WHERE id = '0007BWpSzSwfiuSl0tR2';
SET ROLE regress_hooks;

-- the contact deleted: it and its children become tombstones; a late
-- update, or an older Create, does not bring them back
SELECT test.hook(test.example('ContactDelete'), 'regress-c6', '5 seconds');
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Late"}'), 'regress-c7', '3 seconds');
SELECT test.hook(test.example('NoteUpdate', '{"body": "Late"}'), 'regress-n3', '3 seconds');
SELECT test.hook(test.example('ContactCreate'), 'regress-c8', '10 seconds');
RESET ROLE;
SELECT first_name, deleted_at IS NOT NULL AS tombstone FROM rankr.contacts
WHERE id = 'nmFmQEsNgz6AVpgLVUJ0';
SELECT 'tasks' AS resource, count(*) FILTER (WHERE deleted_at IS NOT NULL) AS tombstones, count(*)
FROM rankr.tasks WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0'
UNION ALL
SELECT 'notes', count(*) FILTER (WHERE deleted_at IS NOT NULL), count(*)
FROM rankr.notes WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0'
UNION ALL
SELECT 'appointments', count(*) FILTER (WHERE deleted_at IS NOT NULL), count(*)
FROM rankr.appointments WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0';
SET ROLE regress_hooks;
-- a newer Create does
SELECT test.hook(test.example('ContactCreate', '{"firstName": "Back"}'), 'regress-c9');
SELECT first_name, tombstone FROM test.contact('nmFmQEsNgz6AVpgLVUJ0');

-- deletions of records never seen are kept as tombstones: the Create that
-- was sent before the deletion, delivered after it, changes nothing
SELECT test.hook(test.example('NoteDelete', '{"id": "regressNote000000001"}'), 'regress-n4', '5 seconds');
SELECT test.hook(test.example('NoteCreate', '{"id": "regressNote000000001"}'), 'regress-n5', '10 seconds');
SELECT test.hook(test.example('TaskDelete', '{"id": "regressTask000000001"}'), 'regress-t4');
RESET ROLE;
SELECT id, deleted_at IS NOT NULL AS tombstone FROM rankr.notes WHERE id = 'regressNote000000001';
SELECT id, deleted_at IS NOT NULL AS tombstone FROM rankr.tasks WHERE id = 'regressTask000000001';
SET ROLE regress_hooks;

-- what no server syncs is ignored; app installs are announced
SELECT test.hook(test.example('ContactCreate', '{"locationId": "someOtherLocation000"}'), 'regress-i1');
SELECT test.hook('{"type": "OpportunityCreate", "id": "x"}', 'regress-i2');
SELECT test.hook('{"type": "INSTALL", "appId": "app", "companyId": "company"}', 'regress-i3');
-- a change event without its record is not a HighLevel delivery
SELECT test.error_of($$SELECT test.hook('{"type": "AppointmentUpdate", "appointment": "x"}', 'regress-e1')$$);
SELECT test.error_of($$SELECT test.hook('{"type": "NoteCreate", "body": "x"}', 'regress-e2')$$);
SELECT test.error_of($$SELECT test.hook(test.example('ContactUpdate', '{"dateAdded": "yesterday-ish"}'),
                                        'regress-e3')$$);
RESET ROLE;
SELECT webhook_id, type, outcome FROM ghl_fdw.webhook_events
WHERE webhook_id LIKE 'regress-%' ORDER BY event_time, webhook_id;

-- a hostile search_path and operators of the caller's never run as the
-- tables' owner
CREATE SCHEMA regress_evil;
GRANT USAGE, CREATE ON SCHEMA regress_evil TO regress_hooks;
SELECT (test.example('ContactUpdate', '{"firstName": "Safe"}')
        || '{"locationId": "ve9EPM428h8vShlRW1KT", "webhookId": "regress-s1"}'
        || jsonb_build_object('timestamp', to_char(now() AT TIME ZONE 'UTC',
                                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text AS body \gset
SET ROLE regress_hooks;
CREATE FUNCTION regress_evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'regress_evil.texteq ran as %', current_user; END $$;
CREATE OPERATOR regress_evil.= (FUNCTION = regress_evil.texteq, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'regress_evil.now ran as %', current_user; END $$;
SET search_path = regress_evil, pg_catalog;
SELECT test.error_of($$SELECT 'x'::text = 'x'::text$$) AS evil_is_live;
SELECT ghl_fdw.apply_webhook(:'body', '{}');
RESET search_path;
RESET ROLE;
SELECT first_name FROM rankr.contacts WHERE id = 'nmFmQEsNgz6AVpgLVUJ0';
DROP SCHEMA regress_evil CASCADE;

-- the tables are written as their owner, and only for servers the owner
-- may use: a second server of the location, syncing into a schema of a
-- role without USAGE on it, gets nothing
CREATE ROLE regress_other;
CREATE SCHEMA rankr_other AUTHORIZATION regress_other;
CREATE TABLE rankr_other.contacts (LIKE rankr.contacts INCLUDING ALL);
ALTER TABLE rankr_other.contacts OWNER TO regress_other;
CREATE SERVER ghl_other FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', sync_schema 'rankr_other');
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Both"}'), 'regress-o1');
RESET ROLE;
SELECT count(*) AS other_rows FROM rankr_other.contacts;
-- once it may, its tables follow too
GRANT USAGE ON FOREIGN SERVER ghl_other TO regress_other;
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Both"}'), 'regress-o2');
RESET ROLE;
SELECT s.first_name, o.first_name AS other_first_name
FROM rankr.contacts s JOIN rankr_other.contacts o USING (location_id, id);
DROP SERVER ghl_other;
DROP SCHEMA rankr_other CASCADE;
DROP ROLE regress_other;

-- a role that may create servers cannot point one at another role's
-- tables: granting that role USAGE on its server is not the tables'
-- owner's consent.  A server is followed only when its owner holds the
-- rights of the tables' owner.
CREATE ROLE regress_server_owner;
CREATE ROLE regress_table_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER ghl_fdw TO regress_server_owner;
CREATE SCHEMA rankr_owned AUTHORIZATION regress_table_owner;
CREATE TABLE rankr_owned.contacts (LIKE rankr.contacts INCLUDING ALL);
ALTER TABLE rankr_owned.contacts OWNER TO regress_table_owner;
SET ROLE regress_server_owner;
CREATE SERVER ghl_foreign_owner FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', sync_schema 'rankr_owned');
GRANT USAGE ON FOREIGN SERVER ghl_foreign_owner TO regress_table_owner;
RESET ROLE;
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Pushed"}'), 'regress-o3');
RESET ROLE;
SELECT count(*) AS rows_written_for_another_owner FROM rankr_owned.contacts;
-- once the server's owner may act as the tables' owner, they follow
GRANT regress_table_owner TO regress_server_owner;
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactUpdate', '{"firstName": "Granted"}'), 'regress-o4');
RESET ROLE;
SELECT first_name FROM rankr_owned.contacts;
DROP SERVER ghl_foreign_owner;
DROP SCHEMA rankr_owned CASCADE;
REVOKE USAGE ON FOREIGN DATA WRAPPER ghl_fdw FROM regress_server_owner;
DROP ROLE regress_server_owner, regress_table_owner;


-- every applied change is announced on ghl_fdw_webhook, appointments on
-- ghl_fdw_appointments too, when the delivery commits; stale, ignored and
-- rolled-back ones are not.  psql prints notifications with the sender's
-- PID, so they go to a file that is read back without it.
SELECT '/tmp/ghl_fdw_webhook_notify_' || pg_backend_pid() AS notify_file \gset
LISTEN ghl_fdw_webhook;
LISTEN ghl_fdw_appointments;
SET ROLE regress_hooks;
\o :notify_file
SELECT test.hook(jsonb_set(test.example('AppointmentCreate'), '{appointment,id}',
                           '"regressAppt000000001"'), 'regress-m1');
SELECT test.hook(test.example('NoteCreate', '{"id": "regressNote000000002"}'), 'regress-m2');
SELECT test.hook(test.example('NoteUpdate', '{"id": "regressNote000000002"}'), 'regress-m3',
                 '1 minute');
SELECT test.hook(test.example('NoteUpdate', '{"locationId": "someOtherLocation000"}'), 'regress-m4');
BEGIN;
SELECT test.hook(test.example('NoteUpdate', '{"id": "regressNote000000002"}'), 'regress-m5');
ROLLBACK;
SELECT pg_sleep(0.1);
\o
RESET ROLE;
UNLISTEN *;
SELECT n[1] AS channel, jsonb_pretty(n[2]::jsonb) AS payload
FROM regexp_matches(pg_read_file(:'notify_file'),
                    'Asynchronous notification "([a-z_]+)" with payload "([^\n]*)" received', 'g') AS n;
\setenv NOTIFY_FILE :notify_file
\! rm -f "$NOTIFY_FILE"
SELECT webhook_id, outcome FROM ghl_fdw.webhook_events
WHERE webhook_id LIKE 'regress-m%' ORDER BY webhook_id;

-- catch-up: with webhook_catch_up a change to a contact the tables lack
-- reads it, with its children, through the API
SELECT id AS missing_contact FROM rankr.contacts ORDER BY id LIMIT 1 \gset
DELETE FROM rankr.notes WHERE contact_id = :'missing_contact';
DELETE FROM rankr.contacts WHERE id = :'missing_contact';
ALTER SERVER ghl OPTIONS (ADD webhook_catch_up 'true');
SELECT test.mock_forget();
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactTagUpdate', jsonb_build_object('id', :'missing_contact',
                                                                    'tags', '["caught"]'::jsonb)),
                 'regress-u1');
RESET ROLE;
SELECT * FROM test.request_counts();
SELECT count(*) AS contacts FROM rankr.contacts WHERE id = :'missing_contact' AND deleted_at IS NULL;
-- the contact's own data, read now, is newer than the event's
SELECT c.first_name = g.first_name AS from_api, c.tags = g.tags AS tags_from_api,
       c.type IS NOT NULL AS has_type
FROM rankr.contacts c JOIN ghl.contacts g USING (id)
WHERE c.id = :'missing_contact';
-- one it has needs no request
SELECT test.mock_forget();
SET ROLE regress_hooks;
SELECT test.hook(test.example('ContactTagUpdate', jsonb_build_object('id', :'missing_contact',
                                                                    'tags', '["again"]'::jsonb)),
                 'regress-u2');
RESET ROLE;
SELECT count(*) AS requests FROM test.requests();
ALTER SERVER ghl OPTIONS (DROP webhook_catch_up);
SELECT test.error_of($$ALTER SERVER ghl OPTIONS (ADD webhook_catch_up 'maybe')$$);

-- times in every form the API writes are read as timestamptz_in reads
-- them (a time without a zone is UTC); forms it does not write too
SET ROLE regress_hooks;
CREATE TEMP TABLE times (n int, t text);
INSERT INTO times VALUES
    (1, '2021-11-26T12:41:02.193Z'), (2, '2021-11-26T12:41:02Z'), (3, '2021-11-26t12:41:02z'),
    (4, '2023-09-25T16:00:00+05:30'), (5, '2023-09-25T16:00:00-0800'), (6, '2023-09-25T16:00:00+05'),
    (7, '2021-07-16 11:00:00'), (8, '2021-07-16'), (9, '2024-02-29T00:00:00.5Z'),
    (10, '2021-11-26T12:41:02.1234567Z'), (11, '2021-11-26T24:00:00Z'), (12, '2016-12-31T23:59:60Z'),
    (13, '0001-01-01T00:00:00Z'), (14, '9999-12-31T23:59:59.999999Z'), (15, '2021-11-26T12:41:02.193+00:00'),
    (16, '2021-11-26T12:41:02.000001-14:59'), (17, 'Nov 26 2021 12:41:02 UTC'), (18, '2021-01-01T00:00:00.Z');
SELECT n, test.hook(test.example('ContactUpdate', jsonb_build_object(
           'id', 'regressTime' || lpad(n::text, 9, '0'), 'dateAdded', t)), 'regress-time-' || n)
FROM times ORDER BY n;
RESET ROLE;
SELECT t.n, t.t, c.date_added,
       c.date_added = (CASE WHEN t.t ~ '^\d{4}-\d\d-\d\d$' THEN t.t || ' 00:00:00+00'
                            WHEN t.t ~ '^\d{4}-\d\d-\d\d[ T][^Zz+-]*$' THEN t.t || '+00'
                            ELSE t.t END)::timestamptz AS as_timestamptz_in_reads_it
FROM times t JOIN rankr.contacts c ON c.id = 'regressTime' || lpad(t.n::text, 9, '0')
ORDER BY t.n;
SELECT test.error_of($$SELECT test.hook(test.example('ContactUpdate',
    '{"id": "regressTime000000099", "dateAdded": "2023-02-29T00:00:00Z"}'), 'regress-time-99')$$);
DELETE FROM rankr.contacts WHERE id LIKE 'regressTime%';
DROP TABLE times;

-- The mock's own change events, delivered in order, then an incremental
-- sync: the tables equal the mock's state field by field.  The events
-- alone already carry every change; the run reads what their payloads
-- lack (note authors, contacts' dateUpdated), and the children of the
-- contacts the note and appointment events queued.
DELETE FROM rankr.contacts WHERE id = 'nmFmQEsNgz6AVpgLVUJ0';
DELETE FROM rankr.tasks WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0' OR id LIKE 'regress%';
DELETE FROM rankr.notes WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0' OR id LIKE 'regress%';
DELETE FROM rankr.appointments WHERE contact_id = 'nmFmQEsNgz6AVpgLVUJ0';
DELETE FROM ghl_fdw.sync_pending;
SELECT resource, status FROM ghl_fdw.sync('ghl', full => true);
SELECT * FROM test.sync_diff();
SELECT coalesce(max((e->>'seq')::bigint), 0) AS seq
FROM test.mock('GET', '/_mock/events') AS m, jsonb_array_elements(m) AS e \gset
SELECT key AS mutated, jsonb_array_length(value) AS records
FROM test.mock('POST', '/_mock/mutate',
    '{"seed": 5, "update": 4, "create": 2, "delete": 1, "note_edits": 3, "note_creates": 2,
      "note_deletes": 1, "task_edits": 3, "task_creates": 2, "task_deletes": 1,
      "appointment_edits": 2, "appointment_creates": 1, "appointment_deletes": 1}') AS m,
     jsonb_each(m) ORDER BY 1;
CREATE TEMP TABLE events AS
SELECT (e->>'seq')::bigint AS seq, e->'event' AS event
FROM test.mock('GET', '/_mock/events?since=' || :seq) AS m, jsonb_array_elements(m) AS e;
GRANT SELECT ON events TO regress_hooks;
SELECT event->>'type' AS type, count(*) FROM events GROUP BY 1 ORDER BY 1;
SET ROLE regress_hooks;
SELECT outcome, count(*)
FROM (SELECT ghl_fdw.apply_webhook(event::text, '{}') AS outcome FROM pg_temp.events ORDER BY seq) d
GROUP BY 1 ORDER BY 1;
RESET ROLE;
SELECT count(*) AS contacts_queued FROM ghl_fdw.sync_pending;
-- what the payloads carry is there already
SELECT * FROM test.sync_diff();
-- without webhooks an incremental run could not see the notes and
-- appointments that changed: their contacts did not
SELECT test.mock_forget();
SELECT resource, mode, status FROM ghl_fdw.sync('ghl');
SELECT * FROM test.request_counts();
SELECT * FROM test.sync_diff();
SELECT count(*) AS contacts_queued FROM ghl_fdw.sync_pending;

DROP FUNCTION test.hook(jsonb, text, interval), test.example(text, jsonb), test.contact(text);
DROP TABLE test.examples, events;
REVOKE ALL ON SCHEMA test FROM regress_hooks;
REVOKE ALL ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) FROM regress_hooks;
DROP ROLE regress_hooks;
RESET ghl_fdw.webhook_allow_unsigned;
