--
-- Scans that repeat a request per key run up to max_concurrency requests
-- side by side: the mock's log shows them overlap (and not with 1), over
-- kept-alive connections.  Results and their order are the same either
-- way; retries, errors, timeouts and the rate-limit governor work in a
-- batch as for a request on its own, and nothing of a failed batch is
-- left behind.
--
SELECT test.mock_reset(100, 42);
SELECT test.mock_forget();
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
SELECT array_agg(id ORDER BY id) AS ids
FROM (SELECT c->>'id' AS id FROM state, jsonb_array_elements(s->'contacts') AS c
      ORDER BY 1 LIMIT 24) x \gset

-- the most requests the mock was serving at once, by its log
CREATE FUNCTION test.max_in_flight() RETURNS int LANGUAGE sql AS $$
    WITH r AS (
        SELECT (e->>'arrived_ms')::float8 AS arrived,
               coalesce((e->>'done_ms')::float8, 'infinity') AS done
        FROM test.mock('GET', '/_mock/requests?format=jsonl') AS e)
    SELECT max((SELECT count(*) FROM r AS o
                WHERE o.arrived <= r.arrived AND o.done > r.arrived))::int
    FROM r
$$;

-- wait until the mock has answered every request it holds, so that the
-- requests of an interrupted batch count against no later rate limit
CREATE FUNCTION test.mock_idle() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..300 LOOP
        IF (SELECT (s->>'in_flight')::int FROM test.mock('GET', '/_mock/stats') AS s) = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;

-- TCP connections that carried API requests since the last call
CREATE FUNCTION test.new_connections() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    SELECT (s->>'api_connections')::int INTO n FROM test.mock('GET', '/_mock/stats') AS s;
    PERFORM test.mock('DELETE', '/_mock/stats');
    RETURN n;
END $$;

-- the notes of 24 contacts, each request taking 50 ms at the mock, at the
-- default max_concurrency (8): the requests overlap, at most 8 at a time,
-- on at most 8 connections
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 50, "times": -1}');
CREATE TEMP TABLE notes8 AS
SELECT row_number() OVER () AS n, id, contact_id, body
FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
SELECT test.max_in_flight() BETWEEN 2 AND 8 AS overlapped_within_8,
       count(*) AS requests, count(*) FILTER (WHERE status = 200) AS answered
FROM test.requests();
SELECT test.new_connections() BETWEEN 1 AND 8 AS connections_opened;
-- the same scan again: every connection is reused
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 50, "times": -1}');
SELECT count(*) = (SELECT count(*) FROM notes8) AS same_count
FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
SELECT test.new_connections() AS connections_opened_again;
-- the rows are the mock's, in the order of the sorted contact ids
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'notes') AS n
                   WHERE n->>'contactId' = ANY (:'ids'::text[])) AS notes_ok,
       count(*) AS notes, count(DISTINCT contact_id) AS contacts_with_notes,
       bool_and(contact_id COLLATE "C" >= lag_contact) AS in_key_order
FROM (SELECT contact_id, lag(contact_id, 1, '') OVER (ORDER BY n) AS lag_contact
      FROM notes8) x;

-- one at a time with max_concurrency 1: no overlap, the same rows in the
-- same order
ALTER SERVER ghl OPTIONS (ADD max_concurrency '1');
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 50, "times": -1}');
CREATE TEMP TABLE notes1 AS
SELECT row_number() OVER () AS n, id, contact_id, body
FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
SELECT test.max_in_flight() AS max_in_flight, count(*) AS requests FROM test.requests();
SELECT array_agg(row(n, id, contact_id, body)::text ORDER BY n) =
       (SELECT array_agg(row(n, id, contact_id, body)::text ORDER BY n) FROM notes8)
       AS same_rows_same_order
FROM notes1;

-- the other scans with keys give the same rows in the same order with 1
-- and 8: a fan-out over every contact, the calendars of a window, contacts
-- by id (unknown ids are zero rows)
SELECT test.mock_forget();
ALTER FOREIGN TABLE ghl.appointments OPTIONS (ADD fan_out 'true');
CREATE TEMP TABLE keyed AS
SELECT 1 AS concurrency,
       (SELECT array_agg(id) FROM ghl.appointments) AS fan_out,
       (SELECT array_agg(id) FROM ghl.appointments
        WHERE start_time >= '2020-01-01 00:00:00+00' AND start_time < '2030-01-01 00:00:00+00') AS calendars,
       (SELECT array_agg(id) FROM ghl.contacts
        WHERE id = ANY (:'ids'::text[] || ARRAY['noSuchContact0000001', 'noSuchContact0000002'])) AS by_id;
ALTER SERVER ghl OPTIONS (SET max_concurrency '8');
INSERT INTO keyed
SELECT 8,
       (SELECT array_agg(id) FROM ghl.appointments),
       (SELECT array_agg(id) FROM ghl.appointments
        WHERE start_time >= '2020-01-01 00:00:00+00' AND start_time < '2030-01-01 00:00:00+00'),
       (SELECT array_agg(id) FROM ghl.contacts
        WHERE id = ANY (:'ids'::text[] || ARRAY['noSuchContact0000001', 'noSuchContact0000002']));
ALTER FOREIGN TABLE ghl.appointments OPTIONS (DROP fan_out);
SELECT a.fan_out = b.fan_out AS fan_out_same,
       cardinality(a.fan_out) = (SELECT count(*) FROM state, jsonb_array_elements(s->'appointments'))
       AS fan_out_complete,
       a.calendars = b.calendars AS calendars_same, cardinality(a.calendars) > 0 AS some_in_window,
       a.by_id = b.by_id AS by_id_same, cardinality(a.by_id) AS contacts_found
FROM keyed a, keyed b WHERE a.concurrency = 1 AND b.concurrency = 8;
SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{id}', 'g') AS path,
       status, count(*) AS requests
FROM test.requests() GROUP BY 1, 2, 3 ORDER BY 2, 3;

-- a 503 and a 429 inside a batch are retried; the rows are complete
ALTER SERVER ghl OPTIONS (SET max_retries '2');
SELECT test.mock_forget();
SELECT ghl_fdw.request_stats_reset();
SELECT test.fault(jsonb_build_object('path', '^/contacts/' || (:'ids'::text[])[3] || '/notes$',
                                     'status', 503, 'times', 1));
SELECT test.fault(jsonb_build_object('path', '^/contacts/' || (:'ids'::text[])[6] || '/notes$',
                                     'status', 429, 'retry_after', 1, 'times', 1));
SELECT array_agg(row(n, id, contact_id, body)::text ORDER BY n) =
       (SELECT array_agg(row(n, id, contact_id, body)::text ORDER BY n) FROM notes8)
       AS same_rows_after_retries
FROM (SELECT row_number() OVER () AS n, id, contact_id, body
      FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[])) x;
SELECT (path = '/contacts/' || (:'ids'::text[])[3] || '/notes') AS contact_3,
       array_agg(status ORDER BY seq) AS statuses
FROM test.requests()
WHERE path IN ('/contacts/' || (:'ids'::text[])[3] || '/notes',
               '/contacts/' || (:'ids'::text[])[6] || '/notes')
GROUP BY 1 ORDER BY 1;
SELECT requests, retries, rate_limited FROM ghl_fdw.request_stats WHERE server_name = 'ghl';

-- a failure in the middle of a batch, with the others in flight: the
-- error names the failing request, and the next query on the connection
-- sends exactly its own requests and gets every row
ALTER SERVER ghl OPTIONS (SET max_retries '0');
SELECT test.mock_forget();
-- (the first fault that matches a request is the one it gets)
SELECT test.fault(jsonb_build_object('path', '^/contacts/' || (:'ids'::text[])[10] || '/notes$',
                                     'status', 500, 'times', 1,
                                     'body', '{"statusCode": 500, "message": "storage node down"}'));
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 300, "times": 12}');
SELECT count(*) FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
SELECT pg_sleep(0.5);
SELECT test.mock_forget();
SELECT count(*) = (SELECT count(*) FROM notes8) AS all_rows
FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
SELECT count(*) AS requests, count(DISTINCT path) AS contacts, count(*) FILTER (WHERE status = 200) AS answered
FROM test.requests();
-- no attempt of the failed batch holds the connection: it is rebuilt for
-- a changed option (a 300 ms timeout against a 1 s answer)
ALTER SERVER ghl OPTIONS (ADD timeout_ms '300');
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 1000, "times": 1}');
\set VERBOSITY terse
SELECT count(*) FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
\set VERBOSITY default
ALTER SERVER ghl OPTIONS (DROP timeout_ms);
SELECT pg_sleep(1);

-- statement_timeout during a batch of slow requests: 57014 within about
-- a second, and the next query works
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/[^/]+/notes$", "kind": "delay", "delay_ms": 5000, "times": 8}');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS started;
SET statement_timeout = '1s';
\set VERBOSITY sqlstate
SELECT count(*) FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);
\set VERBOSITY default
RESET statement_timeout;
SELECT clock_timestamp() - started < interval '3 seconds' AS interrupted_quickly FROM t0;
SELECT count(*) AS requests_sent FROM test.requests();
SELECT test.mock_idle();
SELECT test.mock_forget();
SELECT count(*) = (SELECT count(*) FROM notes8) AS all_rows
FROM ghl.notes WHERE contact_id = ANY (:'ids'::text[]);

-- the governor keeps 8 at a time under a limit of 20 requests per 2 s:
-- no 429, never more than 20 arrivals in 2 s, and waits were counted
SELECT array_agg(id ORDER BY id) AS ids50
FROM (SELECT c->>'id' AS id FROM state, jsonb_array_elements(s->'contacts') AS c
      ORDER BY 1 LIMIT 50) x \gset
SELECT count(*) FROM test.mock('POST', '/_mock/config',
    '{"rate_limit": 20, "rate_interval_ms": 2000, "retry_after": false}');
SELECT pg_sleep(2.1);
SELECT count(*) FROM ghl.contacts WHERE id = 'noSuchContact0000001';
SELECT test.mock_forget();
SELECT ghl_fdw.request_stats_reset();
SELECT count(*) = (SELECT count(*) FROM state, jsonb_array_elements(s->'notes') AS n
                   WHERE n->>'contactId' = ANY (:'ids50'::text[])) AS notes_ok
FROM ghl.notes WHERE contact_id = ANY (:'ids50'::text[]);
WITH r AS (SELECT (e->>'arrived_ms')::float8 AS arrived, (e->>'status')::int AS status
           FROM test.mock('GET', '/_mock/requests?format=jsonl') AS e)
SELECT count(*) AS requests, count(*) FILTER (WHERE status = 429) AS rate_limited,
       max((SELECT count(*) FROM r AS o
            WHERE o.arrived >= r.arrived AND o.arrived < r.arrived + 2000)) <= 20
       AS within_limit
FROM r;
SELECT throttle_waits > 0 AS throttled, rate_limited FROM ghl_fdw.request_stats
WHERE server_name = 'ghl';
SELECT count(*) FROM test.mock('POST', '/_mock/config',
    '{"rate_limit": 100000, "rate_interval_ms": 10000}');
SELECT count(*) FROM ghl.contacts WHERE id = 'noSuchContact0000001';

-- a paged scan asks for the next page as soon as it has parsed the
-- current one, so that the next page travels while the current rows are
-- returned: a cursor that has read one row of 100 contacts paged by 30 has
-- made two requests, the second with the first page's searchAfter; one
-- that stops early leaves the connection usable; a pushed-down LIMIT
-- never asks for a page beyond the rows it needs
CREATE FUNCTION test.wait_requests(n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) FROM test.requests()) >= n;
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM pg_sleep(0.2);  -- and no more than n
    RETURN (SELECT count(*) FROM test.requests());
END $$;
ALTER SERVER ghl OPTIONS (ADD page_size '30');
SELECT test.mock_forget();
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM ghl.contacts;
FETCH 1 FROM c \g /dev/null
SELECT test.wait_requests(2) AS requests_after_one_row;
SELECT seq, body->'searchAfter' IS NOT NULL AS continues FROM test.requests();
FETCH 30 FROM c \g /dev/null
SELECT test.wait_requests(3) AS requests_after_31_rows;
CLOSE c;
COMMIT;
SELECT test.mock_idle();
SELECT test.mock_forget();
SELECT count(*) = jsonb_array_length(s->'contacts') AS all_rows, count(DISTINCT id) AS distinct_ids
FROM ghl.contacts, state GROUP BY s;
SELECT count(*) AS requests, count(*) FILTER (WHERE (body->>'pageLimit')::int = 30) AS full_pages
FROM test.requests();
SELECT test.mock_forget();
SELECT id FROM ghl.contacts LIMIT 30 \g /dev/null
SELECT test.wait_requests(1) AS requests_with_limit_30;
SELECT test.mock_forget();
SELECT id FROM ghl.contacts LIMIT 45 \g /dev/null
SELECT test.wait_requests(2) AS requests_with_limit_45;
ALTER SERVER ghl OPTIONS (DROP page_size);
DROP FUNCTION test.wait_requests(int);

-- the option's bounds
SELECT test.error_of($$ALTER SERVER ghl OPTIONS (SET max_concurrency '0')$$);
SELECT test.error_of($$ALTER SERVER ghl OPTIONS (SET max_concurrency '33')$$);
SELECT test.error_of($$ALTER SERVER ghl OPTIONS (SET max_concurrency 'eight')$$);
ALTER SERVER ghl OPTIONS (SET max_concurrency '32');
ALTER SERVER ghl OPTIONS (DROP max_concurrency);

DROP FUNCTION test.mock_idle();
DROP FUNCTION test.new_connections();
DROP FUNCTION test.max_in_flight();
SELECT test.mock_forget();
