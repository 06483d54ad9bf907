--
-- Conditions the API can answer are pushed down.  Each one is asserted
-- twice: EXPLAIN (VERBOSE) shows it, and the mock's request log shows the
-- exact request it became.  Every condition is also rechecked locally.
--
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
CREATE TEMP VIEW st_contacts AS
SELECT c FROM state, jsonb_array_elements(s->'contacts') AS c;
CREATE TEMP VIEW st_tasks AS
SELECT t FROM state, jsonb_array_elements(s->'tasks') AS t;
-- values to look for, taken from the mock's data
SELECT c->>'email' AS email, c->>'phone' AS phone, c->>'assignedTo' AS assigned
FROM st_contacts WHERE c->>'email' IS NOT NULL AND c->>'phone' IS NOT NULL
  AND c->>'assignedTo' IS NOT NULL ORDER BY c->>'id' LIMIT 1 \gset
SELECT c->>'businessId' AS business FROM st_contacts
WHERE c->>'businessId' IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1 \gset
SELECT t->>'assignedTo' AS task_user FROM st_tasks
WHERE t->>'assignedTo' IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1 \gset

-- email = ...: one search request with an eq filter
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE email = :'email';
SELECT count(*) FROM ghl.contacts WHERE email = :'email';
SELECT method, path, body FROM test.requests();
-- the API matches email without case; SQL does not, and SQL wins
SELECT test.mock_forget();
SELECT count(*) FROM ghl.contacts WHERE email = upper(:'email');
SELECT method, path, body->'filters' AS filters FROM test.requests();

-- phone and assigned_to
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ghl.contacts WHERE phone = :'phone' AND assigned_to = :'assigned';
SELECT count(*) FROM ghl.contacts WHERE phone = :'phone' AND assigned_to = :'assigned';
SELECT method, path, body->'filters' AS filters FROM test.requests();

-- tags: 'x' = ANY(tags) and tags @> ARRAY[...]; the API's tag match ignores case
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE 'vip' = ANY (tags);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE tags @> ARRAY['vip', 'lead'];
SELECT (SELECT count(*) FROM ghl.contacts WHERE 'vip' = ANY (tags)) =
       (SELECT count(*) FROM st_contacts WHERE c->'tags' ? 'vip') AS any_ok,
       (SELECT count(*) FROM ghl.contacts WHERE tags @> ARRAY['vip', 'lead']) =
       (SELECT count(*) FROM st_contacts WHERE c->'tags' ?& ARRAY['vip', 'lead']) AS contains_ok,
       (SELECT count(*) FROM ghl.contacts WHERE 'VIP' = ANY (tags)) AS upper_case;
SELECT method, path, body->'filters' AS filters FROM test.requests();

-- ranges on date_added and date_updated, rounded outwards to milliseconds
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ghl.contacts
WHERE date_added >= '2024-01-01 00:00:00+00' AND date_added < '2024-07-01 00:00:00.0005+00'
  AND date_updated > '2024-02-01 00:00:00+00';
SELECT (SELECT count(*) FROM ghl.contacts
        WHERE date_added >= '2024-01-01 00:00:00+00' AND date_added < '2024-07-01 00:00:00.0005+00'
          AND date_updated > '2024-02-01 00:00:00+00') =
       (SELECT count(*) FROM st_contacts
        WHERE (c->>'dateAdded')::timestamptz >= '2024-01-01 00:00:00+00'
          AND (c->>'dateAdded')::timestamptz < '2024-07-01 00:00:00.0005+00'
          AND (c->>'dateUpdated')::timestamptz > '2024-02-01 00:00:00+00') AS range_ok;
SELECT method, path, body->'filters' AS filters FROM test.requests();

-- a value known only at run time: a Param
SELECT test.mock_forget();
SET plan_cache_mode = force_generic_plan;
PREPARE by_email(text) AS SELECT count(*) FROM ghl.contacts WHERE email = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_email('nobody@example.com');
EXECUTE by_email(:'email');
DEALLOCATE by_email;
RESET plan_cache_mode;
SELECT method, path, body->'filters' AS filters FROM test.requests();

-- business_id = X: the business's own endpoint
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE business_id = :'business';
SELECT (SELECT count(*) FROM ghl.contacts WHERE business_id = :'business') =
       (SELECT count(*) FROM st_contacts WHERE c->>'businessId' = :'business') AS business_ok;
SELECT method, regexp_replace(path, :'business', '{business}') AS path, query FROM test.requests();

-- ORDER BY a timestamp and LIMIT: sorted by the API, one small page
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ghl.contacts ORDER BY date_added DESC LIMIT 5;
SELECT array_agg(id) = (SELECT array_agg(c->>'id' ORDER BY (c->>'dateAdded')::timestamptz DESC)
                        FROM (SELECT c FROM st_contacts
                              ORDER BY (c->>'dateAdded')::timestamptz DESC LIMIT 5) s) AS top5_ok
FROM (SELECT id FROM ghl.contacts ORDER BY date_added DESC LIMIT 5) s;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ghl.contacts WHERE date_added > '2023-01-01' ORDER BY date_updated LIMIT 3 OFFSET 2;
SELECT count(*) FROM (SELECT id FROM ghl.contacts WHERE date_added > '2023-01-01'
                      ORDER BY date_updated LIMIT 3 OFFSET 2) s;
SELECT method, path, body FROM test.requests();
-- orders the API cannot give stay local: names sort by collation
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts ORDER BY last_name LIMIT 5;
-- LIMIT with a local filter: the first page is small, later pages full
SELECT test.mock_forget();
SELECT count(*) FROM (SELECT id FROM ghl.contacts WHERE city = 'Austin' LIMIT 2) s;
SELECT method, path, body->'pageLimit' AS page_limit FROM test.requests();

-- free-text search through a filter-only column
CREATE FOREIGN TABLE test.contacts_search (
    id text, name text, date_added timestamptz, search text OPTIONS (field '@query')
) SERVER ghl OPTIONS (resource 'contacts');
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, search FROM test.contacts_search WHERE search = 'smith';
SELECT count(*) = (SELECT count(*) FROM st_contacts
                   WHERE lower(concat_ws(' ', c->>'name', c->>'email', c->>'phone',
                                         c->>'companyName')) LIKE '%smith%') AS search_ok,
       count(*) > 0 AS found_some,
       bool_and(search = 'smith') AS reads_back
FROM test.contacts_search WHERE search = 'smith';
SELECT method, path, body FROM test.requests();
-- with an id too, the query still goes to the search: a lookup cannot match text
SELECT c->>'id' AS smith_id FROM st_contacts
WHERE c->>'name' ILIKE '%smith%' ORDER BY 1 LIMIT 1 \gset
SELECT test.mock_forget();
SELECT count(*) FROM test.contacts_search WHERE search = 'smith' AND id = :'smith_id';
SELECT method, path, body->'query' AS query FROM test.requests();
-- without the condition the column is NULL; it must be text
SELECT count(*) FILTER (WHERE search IS NULL) AS null_search
FROM (SELECT search FROM test.contacts_search LIMIT 3) s;
CREATE FOREIGN TABLE test.bad_search (search int OPTIONS (field '@query'))
    SERVER ghl OPTIONS (resource 'contacts');
SELECT test.error_of('SELECT * FROM test.bad_search');
DROP FOREIGN TABLE test.contacts_search, test.bad_search;

-- tasks of the location: completed and assigned_to go to the task search
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.tasks WHERE NOT completed AND assigned_to = :'task_user';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.tasks WHERE completed;
SELECT (SELECT count(*) FROM ghl.tasks WHERE NOT completed AND assigned_to = :'task_user') =
       (SELECT count(*) FROM st_tasks WHERE NOT (t->>'completed')::boolean
                                        AND t->>'assignedTo' = :'task_user') AS open_ok,
       (SELECT count(*) FROM ghl.tasks WHERE completed) =
       (SELECT count(*) FROM st_tasks WHERE (t->>'completed')::boolean) AS done_ok,
       (SELECT count(*) FROM ghl.tasks) = (SELECT count(*) FROM st_tasks) AS all_ok;
SELECT method, path, body FROM test.requests();

-- contact_id = ANY(...): one request per distinct contact
SELECT test.mock_forget();
SELECT array_agg(contact_id) AS task_contacts
FROM (SELECT DISTINCT t->>'contactId' AS contact_id FROM st_tasks ORDER BY 1 LIMIT 3) s \gset
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.tasks WHERE contact_id IN ('a', 'b', 'a');
SELECT count(*) = (SELECT count(*) FROM st_tasks
                   WHERE t->>'contactId' = ANY (:'task_contacts'::text[])) AS any_ok
FROM ghl.tasks WHERE contact_id = ANY (:'task_contacts'::text[] || :'task_contacts'::text[]);
SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{contact}') AS path FROM test.requests();
-- id = ANY(...) on contacts: one GET per id
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE id = ANY (ARRAY['x', 'y']);
SELECT count(*) FROM ghl.contacts WHERE id IN ('noSuchContact0000001', 'noSuchContact0000002');
-- (the two GETs run side by side: listed by path, not by arrival)
SELECT method, path, status FROM test.requests() ORDER BY path;

-- with pushdown off, the same queries read everything and filter locally
SET ghl_fdw.enable_pushdown = off;
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.contacts WHERE email = :'email' ORDER BY date_added LIMIT 1;
SELECT count(*) FROM ghl.contacts WHERE email = :'email';
SELECT method, path, body FROM test.requests();
RESET ghl_fdw.enable_pushdown;

-- plain EXPLAIN never calls the API
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ghl.tasks WHERE completed AND contact_id = 'c1';
SELECT count(*) AS requests FROM test.requests();
