--
-- INSERT, UPDATE and DELETE on tasks, notes and appointments: the exact
-- requests each form sends, RETURNING, read-back through the foreign
-- tables, and required fields caught before any request.
--
SELECT test.mock_reset(100, 42);
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
SELECT c->>'id' AS cid FROM state, jsonb_array_elements(s->'contacts') AS c
ORDER BY 1 LIMIT 1 \gset
SELECT c->>'id' AS cal FROM state, jsonb_array_elements(s->'calendars') AS c
WHERE c->>'name' = 'Support' \gset
SET timezone = 'America/New_York';

-- tasks --------------------------------------------------------------

-- INSERT ... RETURNING: POST under the contact, completed defaults to false
SELECT test.mock_forget();
INSERT INTO ghl.tasks (contact_id, title, body, due_date)
VALUES (:'cid', 'Call back', 'About the renewal', '2027-03-01 09:30:00-05')
RETURNING id AS task \gset
SELECT * FROM test.writes();
SELECT title, body, due_date, completed, contact_id = :'cid' AS contact_ok,
       assigned_to, raw->>'id' = id AS raw_ok
FROM ghl.tasks WHERE contact_id = :'cid' AND id = :'task';

WITH ins AS (
    INSERT INTO ghl.tasks (contact_id, title, due_date, completed, assigned_to)
    VALUES (:'cid', 'Send the quote', '2027-03-02 12:00:00+00', true, 'user-1')
    RETURNING *)
SELECT length(id) AS id_length, contact_id = :'cid' AS contact_ok, title, body,
       due_date, completed, assigned_to
FROM ins;

-- required fields are caught before any request
SELECT test.mock_forget();
INSERT INTO ghl.tasks (contact_id, due_date) VALUES (:'cid', now());
INSERT INTO ghl.tasks (contact_id, title) VALUES (:'cid', 'No due date');
INSERT INTO ghl.tasks (title, due_date) VALUES ('No contact', now());
SELECT count(*) AS requests FROM test.writes();

-- completed alone has its own endpoint
SELECT test.mock_forget();
UPDATE ghl.tasks SET completed = true WHERE contact_id = :'cid' AND id = :'task'
RETURNING title, completed;
SELECT * FROM test.writes();
-- anything else is a PUT of the assigned columns only
SELECT test.mock_forget();
UPDATE ghl.tasks SET title = 'Call back soon', completed = false
WHERE contact_id = :'cid' AND id = :'task'
RETURNING title, body, completed, due_date;
SELECT * FROM test.writes();
SELECT title, body, completed, due_date
FROM ghl.tasks WHERE contact_id = :'cid' AND id = :'task';
-- a task stays with its contact
UPDATE ghl.tasks SET contact_id = 'other' WHERE contact_id = :'cid' AND id = :'task';

-- DELETE ... RETURNING; a second DELETE finds nothing
SELECT test.mock_forget();
DELETE FROM ghl.tasks WHERE contact_id = :'cid' AND id = :'task' RETURNING title, completed;
DELETE FROM ghl.tasks WHERE contact_id = :'cid' AND id = :'task';
SELECT method, path, status FROM test.writes();
-- vanished between the read and the write: 0 rows
INSERT INTO ghl.tasks (contact_id, title, due_date)
VALUES (:'cid', 'Ephemeral', '2027-01-01 00:00:00+00') RETURNING id AS eph \gset
SELECT test.mock_forget();
SELECT test.fault(jsonb_build_object('method', 'PUT', 'path', '/tasks/' || :'eph' || '$',
                                     'kind', 'status', 'status', 404, 'times', 1,
                                     'body', '{"statusCode": 404, "message": "Task not found"}'::jsonb));
UPDATE ghl.tasks SET title = 'x' WHERE contact_id = :'cid' AND id = :'eph';
SELECT test.fault(jsonb_build_object('method', 'DELETE', 'path', '/tasks/' || :'eph' || '$',
                                     'kind', 'status', 'status', 404, 'times', 1,
                                     'body', '{"statusCode": 404, "message": "Task not found"}'::jsonb));
DELETE FROM ghl.tasks WHERE contact_id = :'cid' AND id = :'eph';
SELECT method, path, status FROM test.writes();
-- a task under a contact the API does not have is an error, not 0 rows
SELECT test.error_detail_of($$INSERT INTO ghl.tasks (contact_id, title, due_date)
                              VALUES ('noSuchContact0000000', 't', now())$$);

-- notes --------------------------------------------------------------

SELECT test.mock_forget();
CREATE TEMP TABLE returned_note (LIKE ghl.notes);
WITH ins AS (
    INSERT INTO ghl.notes (contact_id, body) VALUES (:'cid', 'Met at the fair')
    RETURNING *)
INSERT INTO returned_note SELECT * FROM ins;
SELECT length(id) AS id_length, contact_id = :'cid' AS contact_ok, body,
       user_id IS NOT NULL AS has_user, date_added IS NOT NULL AS dated
FROM returned_note;
SELECT * FROM test.writes();
SELECT id AS note FROM returned_note \gset
-- read back: the row is exactly what RETURNING gave
SELECT to_jsonb(n) = to_jsonb(r) AS same_row
FROM ghl.notes n, returned_note r WHERE n.contact_id = :'cid' AND n.id = :'note';
INSERT INTO ghl.notes (contact_id, body, user_id) VALUES (:'cid', 'By a user', 'user-7')
RETURNING body, user_id;
INSERT INTO ghl.notes (contact_id) VALUES (:'cid');

-- COPY into a foreign table creates one note per line
SELECT test.mock_forget();
CREATE TEMP TABLE copy_lines AS
SELECT :'cid' || E'\tcopied one\n' || :'cid' || E'\tcopied two\n' AS lines;
DO $$
BEGIN
    EXECUTE format('COPY ghl.notes (contact_id, body) FROM PROGRAM %L',
                   'printf %s ' || test.shell_quote((SELECT lines FROM copy_lines)));
END $$;
SELECT * FROM test.writes();

SELECT test.mock_forget();
UPDATE ghl.notes SET body = 'Met at the spring fair'
WHERE contact_id = :'cid' AND id = :'note' RETURNING body, user_id IS NOT NULL AS has_user;
SELECT * FROM test.writes();
SELECT body FROM ghl.notes WHERE contact_id = :'cid' AND id = :'note';
UPDATE ghl.notes SET date_added = now() WHERE contact_id = :'cid' AND id = :'note';

SELECT test.mock_forget();
DELETE FROM ghl.notes WHERE contact_id = :'cid' AND id = :'note' RETURNING body;
DELETE FROM ghl.notes WHERE contact_id = :'cid' AND id = :'note';
SELECT method, path, status FROM test.writes();

-- appointments -------------------------------------------------------

SELECT test.mock_forget();
INSERT INTO ghl.appointments (contact_id, calendar_id, title, start_time, notes, address)
VALUES (:'cid', :'cal', 'Kick-off', '2027-04-01 10:00:00+00', 'Bring slides', 'Zoom')
RETURNING id AS appt \gset
SELECT * FROM test.writes();
SELECT title, calendar_id = :'cal' AS calendar_ok, start_time, end_time, notes, address,
       appointment_status
FROM ghl.appointments WHERE contact_id = :'cid' AND id = :'appt';

WITH ins AS (
    INSERT INTO ghl.appointments (contact_id, calendar_id, start_time, end_time)
    VALUES (:'cid', :'cal', '2027-04-02 15:00:00+00', '2027-04-02 16:00:00+00')
    RETURNING *)
SELECT length(id) AS id_length, title, start_time, end_time, appointment_status,
       location_id
FROM ins;
INSERT INTO ghl.appointments (contact_id, title) VALUES (:'cid', 'No calendar');

SELECT test.mock_forget();
UPDATE ghl.appointments SET title = 'Kick-off call', appointment_status = 'confirmed'
WHERE contact_id = :'cid' AND id = :'appt'
RETURNING title, appointment_status, start_time;
SELECT * FROM test.writes();
SELECT title, appointment_status, start_time
FROM ghl.appointments WHERE contact_id = :'cid' AND id = :'appt';

SELECT test.mock_forget();
DELETE FROM ghl.appointments WHERE contact_id = :'cid' AND id = :'appt' RETURNING title;
DELETE FROM ghl.appointments WHERE contact_id = :'cid' AND id = :'appt';
SELECT method, path, version, status FROM test.writes();

-- EXPLAIN of DML shows the requests and makes none
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
UPDATE ghl.tasks SET completed = true WHERE contact_id = 'c1' AND id = 't1';
EXPLAIN (VERBOSE, COSTS OFF)
UPDATE ghl.tasks SET completed = true, title = 'x' WHERE contact_id = 'c1' AND id = 't1';
EXPLAIN (COSTS OFF) DELETE FROM ghl.notes WHERE contact_id = 'c1' AND id = 'n1';
EXPLAIN (COSTS OFF) INSERT INTO ghl.appointments (contact_id) VALUES ('c1');
EXPLAIN (COSTS OFF) DELETE FROM ghl.appointments WHERE contact_id = 'c1' AND id = 'a1';
SELECT count(*) AS requests FROM test.writes();

-- EXPLAIN ANALYZE counts the requests the writes made
CREATE TEMP TABLE who AS SELECT :'cid' AS cid;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
UPDATE ghl.notes SET body = 'x' WHERE contact_id = (SELECT cid FROM who);

RESET timezone;
SELECT test.mock_reset(100, 42);
