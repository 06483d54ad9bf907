--
-- Tasks, notes and appointments of a contact come from the per-contact
-- endpoints; id together with contact_id fetches one task or note.
--
SELECT test.mock_reset(200, 42);
-- a contact that has tasks, notes and appointments, by the mock's state
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
CREATE TEMP TABLE busy AS
SELECT t->>'contactId' AS contact_id
FROM state, jsonb_array_elements(s->'tasks') AS t
WHERE t->>'contactId' IN (SELECT n->>'contactId' FROM state, jsonb_array_elements(s->'notes') AS n)
  AND t->>'contactId' IN (SELECT a->>'contactId' FROM state, jsonb_array_elements(s->'appointments') AS a)
ORDER BY 1 LIMIT 1;
SELECT count(*) AS busy_contacts FROM busy;

SELECT test.mock_forget();
-- each table matches the mock's state for that contact, row for row
SELECT (SELECT count(*) FROM ghl.tasks WHERE contact_id = (SELECT contact_id FROM busy)) =
       (SELECT count(*) FROM state, jsonb_array_elements(s->'tasks') AS t
        WHERE t->>'contactId' = (SELECT contact_id FROM busy)) AS tasks_match,
       (SELECT count(*) FROM ghl.notes WHERE contact_id = (SELECT contact_id FROM busy)) =
       (SELECT count(*) FROM state, jsonb_array_elements(s->'notes') AS n
        WHERE n->>'contactId' = (SELECT contact_id FROM busy)) AS notes_match,
       (SELECT count(*) FROM ghl.appointments WHERE contact_id = (SELECT contact_id FROM busy)) =
       (SELECT count(*) FROM state, jsonb_array_elements(s->'appointments') AS a
        WHERE a->>'contactId' = (SELECT contact_id FROM busy)) AS appointments_match;
SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{contact}') AS path, status, version
FROM test.requests();

-- typed task values equal the API's
SELECT bool_and(t.title IS NOT DISTINCT FROM j->>'title') AS title_ok,
       bool_and(t.completed IS NOT DISTINCT FROM (j->>'completed')::boolean) AS completed_ok,
       bool_and(t.due_date IS NOT DISTINCT FROM (j->>'dueDate')::timestamptz) AS due_ok,
       bool_and(t.contact_id = j->>'contactId') AS contact_ok
FROM ghl.tasks t
JOIN (SELECT j FROM state, jsonb_array_elements(s->'tasks') AS j) x ON x.j->>'id' = t.id
WHERE t.contact_id = (SELECT contact_id FROM busy);

-- appointment times without a zone are read as UTC, whatever the session's
-- TimeZone (the mock's state has the same instants with an offset)
SET timezone = 'America/New_York';
SELECT count(*) > 0 AS some,
       bool_and(a.start_time = (j->>'startTime')::timestamptz) AS start_ok,
       bool_and(a.end_time = (j->>'endTime')::timestamptz) AS end_ok
FROM ghl.appointments a
JOIN (SELECT j FROM state, jsonb_array_elements(s->'appointments') AS j) x ON x.j->>'id' = a.id
WHERE a.contact_id = (SELECT contact_id FROM busy);
RESET timezone;

-- one task and one note by id: one GET each; an unknown id is zero rows
SELECT test.mock_forget();
CREATE TEMP TABLE one AS
SELECT (SELECT t->>'id' FROM state, jsonb_array_elements(s->'tasks') AS t
        WHERE t->>'contactId' = (SELECT contact_id FROM busy) ORDER BY 1 LIMIT 1) AS task_id,
       (SELECT n->>'id' FROM state, jsonb_array_elements(s->'notes') AS n
        WHERE n->>'contactId' = (SELECT contact_id FROM busy) ORDER BY 1 LIMIT 1) AS note_id;
SELECT count(*) FROM ghl.tasks
WHERE contact_id = (SELECT contact_id FROM busy) AND id = (SELECT task_id FROM one);
SELECT count(*) FROM ghl.notes
WHERE contact_id = (SELECT contact_id FROM busy) AND id = (SELECT note_id FROM one);
SELECT count(*) FROM ghl.tasks
WHERE contact_id = (SELECT contact_id FROM busy) AND id = 'noSuchTask0000000000';
SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{id}', 'g') AS path, status
FROM test.requests();

EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ghl.tasks WHERE contact_id = 'c1';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ghl.tasks WHERE contact_id = 'c1' AND id = 't1';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ghl.notes WHERE 'c1' = contact_id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ghl.appointments WHERE contact_id = 'c1';
-- an id alone is not enough: tasks and notes live under their contact
SELECT test.error_of('SELECT * FROM ghl.notes WHERE id = ''n1''');
SELECT * FROM ghl.notes;
SELECT test.mock_reset(100, 42);
