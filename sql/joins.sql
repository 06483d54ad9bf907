--
-- Joins feed the contact id to tasks, notes and appointments: a
-- parameterized nested loop makes one request per outer contact instead of
-- reading the whole location.  Resources without a location-wide list
-- refuse to fan out silently.
--
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;

-- 50 contacts joined to their tasks: 1 search, then 50 task requests
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT c.id, t.title
FROM (SELECT id FROM ghl.contacts ORDER BY date_added LIMIT 50) c
JOIN ghl.tasks t ON t.contact_id = c.id;
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'tasks') AS t
                   WHERE t->>'contactId' IN (
                       SELECT c->>'id' FROM state, jsonb_array_elements(s->'contacts') AS c
                       ORDER BY (c->>'dateAdded')::timestamptz LIMIT 50)) AS tasks_ok
FROM (SELECT id FROM ghl.contacts ORDER BY date_added LIMIT 50) c
JOIN ghl.tasks t ON t.contact_id = c.id;
SELECT method, regexp_replace(path, '/contacts/[A-Za-z0-9]{20}/', '/contacts/{contact}/') AS path,
       count(*) AS requests
FROM test.requests() GROUP BY 1, 2 ORDER BY 2;

-- the join clause written the other way round, with a filter on contacts
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT c.email, n.body FROM ghl.contacts c JOIN ghl.notes n ON c.id = n.contact_id
WHERE c.email LIKE 'a%';
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'notes') AS n
                   WHERE n->>'contactId' IN (
                       SELECT c->>'id' FROM state, jsonb_array_elements(s->'contacts') AS c
                       WHERE c->>'email' LIKE 'a%')) AS notes_ok,
       count(*) > 0 AS found_some
FROM ghl.contacts c JOIN ghl.notes n ON c.id = n.contact_id WHERE c.email LIKE 'a%';
SELECT method, regexp_replace(path, '/contacts/[A-Za-z0-9]{20}/', '/contacts/{contact}/') AS path,
       count(*) AS requests
FROM test.requests() GROUP BY 1, 2 ORDER BY 2;

-- appointments of a few contacts; and a task's contact fetched by id
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT a.title FROM ghl.contacts c JOIN ghl.appointments a ON a.contact_id = c.id
WHERE c.date_added < '2021-06-01';
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'appointments') AS a
                   WHERE a->>'contactId' IN (
                       SELECT c->>'id' FROM state, jsonb_array_elements(s->'contacts') AS c
                       WHERE (c->>'dateAdded')::timestamptz < '2021-06-01')) AS appointments_ok
FROM ghl.contacts c JOIN ghl.appointments a ON a.contact_id = c.id
WHERE c.date_added < '2021-06-01';
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.title, c.email FROM ghl.tasks t JOIN ghl.contacts c ON c.id = t.contact_id
WHERE t.contact_id IN ('a0000000000000000000', 'b0000000000000000000');

-- appointments of the location: calendars, then one request per calendar
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ghl.appointments
WHERE start_time >= '2024-01-01 00:00:00+00' AND start_time < '2025-01-01 00:00:00+00';
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'appointments') AS a
                   WHERE (a->>'startTime')::timestamptz >= '2024-01-01 00:00:00+00'
                     AND (a->>'startTime')::timestamptz < '2025-01-01 00:00:00+00') AS window_ok,
       count(*) > 0 AS found_some
FROM ghl.appointments
WHERE start_time >= '2024-01-01 00:00:00+00' AND start_time < '2025-01-01 00:00:00+00';
SELECT method, path, query - 'calendarId' AS query, version, count(*) AS requests
FROM test.requests() GROUP BY 1, 2, 3, 4 ORDER BY 2;
SELECT count(*) AS calendars FROM state, jsonb_array_elements(s->'calendars');

-- missing conditions are errors with a hint, and make no request
SELECT test.mock_forget();
SELECT * FROM ghl.notes;
SELECT * FROM ghl.notes WHERE body LIKE '%call%';
SELECT * FROM ghl.appointments;
SELECT * FROM ghl.appointments WHERE start_time >= '2024-01-01';
SELECT count(*) AS requests FROM test.requests();

-- a table that allows the fan-out asks every contact, and EXPLAIN says what
-- that costs; a join still asks only the joined contacts
SET jit = off;
ALTER FOREIGN TABLE ghl.notes OPTIONS (ADD fan_out 'true');
EXPLAIN (VERBOSE) SELECT count(*) FROM ghl.notes;
SELECT test.mock_forget();
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'notes')) AS notes_ok
FROM ghl.notes;
SELECT method, regexp_replace(path, '/contacts/[A-Za-z0-9]{20}/', '/contacts/{contact}/') AS path,
       count(*) AS requests
FROM test.requests() GROUP BY 1, 2 ORDER BY 2;
EXPLAIN (COSTS OFF)
SELECT n.body FROM ghl.contacts c JOIN ghl.notes n ON n.contact_id = c.id WHERE c.email LIKE 'a%';
ALTER FOREIGN TABLE ghl.notes OPTIONS (DROP fan_out);
-- appointments without a window, paging through the contacts
ALTER SERVER ghl OPTIONS (ADD page_size '30');
ALTER FOREIGN TABLE ghl.appointments OPTIONS (ADD fan_out 'true');
SELECT test.mock_forget();
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'appointments'))
       AS appointments_ok
FROM ghl.appointments;
SELECT method, regexp_replace(path, '/contacts/[A-Za-z0-9]{20}/', '/contacts/{contact}/') AS path,
       body->'pageLimit' AS page_limit, count(*) AS requests
FROM test.requests() GROUP BY 1, 2, 3 ORDER BY 2;
ALTER FOREIGN TABLE ghl.appointments OPTIONS (DROP fan_out);
ALTER SERVER ghl OPTIONS (DROP page_size);
ALTER FOREIGN TABLE ghl.notes OPTIONS (ADD fan_out 'maybe');
RESET jit;

-- with costs, EXPLAIN (VERBOSE) states the estimated requests of each scan;
-- EXPLAIN ANALYZE the actual ones (over all the loops of a nested loop)
EXPLAIN (VERBOSE) SELECT id FROM ghl.contacts WHERE email = 'jo@example.com';
EXPLAIN (VERBOSE)
SELECT c.id, t.title
FROM (SELECT id FROM ghl.contacts ORDER BY date_added LIMIT 50) c
JOIN ghl.tasks t ON t.contact_id = c.id;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT c.id, t.title
FROM (SELECT id FROM ghl.contacts ORDER BY date_added LIMIT 50) c
JOIN ghl.tasks t ON t.contact_id = c.id;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM ghl.appointments
WHERE start_time >= '2024-01-01 00:00:00+00' AND start_time < '2025-01-01 00:00:00+00';

-- LIMIT 5 over 100,000 contacts: one request for five rows
SELECT test.mock_reset(100000, 42);
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, email FROM ghl.contacts LIMIT 5;
SELECT count(*) FROM (SELECT id, email FROM ghl.contacts LIMIT 5) s;
SELECT method, path, body FROM test.requests();
SELECT test.mock_reset(100, 42);
