--
-- Pushdown changes which requests are made, never the result: each query
-- returns the same rows with ghl_fdw.enable_pushdown on and off.
--
-- run a query both ways; report its row count and whether the rows agree
-- (as multisets, or in order when ordered is true; rows that tie in ORDER
-- BY may come in either order, so ordered queries with ties in their
-- window select only the sort key)
CREATE FUNCTION test.same_both_ways(query text, ordered boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    agg text := CASE WHEN ordered
                     THEN 'string_agg(r::text, E''\n'')'
                     ELSE 'string_agg(r::text, E''\n'' ORDER BY r::text)' END;
    n_on bigint;
    n_off bigint;
    on_rows text;
    off_rows text;
BEGIN
    PERFORM set_config('ghl_fdw.enable_pushdown', 'on', true);
    EXECUTE format('SELECT count(*), %s FROM (%s) r', agg, query) INTO n_on, on_rows;
    PERFORM set_config('ghl_fdw.enable_pushdown', 'off', true);
    EXECUTE format('SELECT count(*), %s FROM (%s) r', agg, query) INTO n_off, off_rows;
    PERFORM set_config('ghl_fdw.enable_pushdown', 'on', true);
    RETURN n_on || ' rows, ' ||
        CASE WHEN n_on = n_off AND on_rows IS NOT DISTINCT FROM off_rows
             THEN 'same' ELSE 'DIFFERENT (' || n_off || ' rows without pushdown)' END;
END $$;

CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
SELECT c->>'email' AS email, c->>'phone' AS phone, c->>'assignedTo' AS assigned
FROM state, jsonb_array_elements(s->'contacts') AS c
WHERE c->>'email' IS NOT NULL AND c->>'phone' IS NOT NULL AND c->>'assignedTo' IS NOT NULL
ORDER BY c->>'id' LIMIT 1 \gset
SELECT c->>'businessId' AS business FROM state, jsonb_array_elements(s->'contacts') AS c
WHERE c->>'businessId' IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1 \gset
SELECT t->>'contactId' AS task_contact, t->>'assignedTo' AS task_user
FROM state, jsonb_array_elements(s->'tasks') AS t
WHERE t->>'assignedTo' IS NOT NULL ORDER BY t->>'id' LIMIT 1 \gset
SELECT a->>'contactId' AS appt_contact FROM state, jsonb_array_elements(s->'appointments') AS a
ORDER BY a->>'id' LIMIT 1 \gset
SELECT n->>'contactId' AS note_contact FROM state, jsonb_array_elements(s->'notes') AS n
ORDER BY n->>'id' LIMIT 1 \gset

SELECT n, test.same_both_ways(q, o) AS result FROM (VALUES
 (1, format('SELECT * FROM ghl.contacts WHERE email = %L', :'email'), false),
 (2, format('SELECT id FROM ghl.contacts WHERE email = upper(%L)', :'email'), false),
 (3, format('SELECT id FROM ghl.contacts WHERE lower(email) = lower(%L)', :'email'), false),
 (4, format('SELECT id, phone FROM ghl.contacts WHERE phone = %L', :'phone'), false),
 (5, format('SELECT id FROM ghl.contacts WHERE assigned_to = %L AND city IS NOT NULL', :'assigned'), false),
 (6, 'SELECT id, tags FROM ghl.contacts WHERE ''vip'' = ANY (tags)', false),
 (7, 'SELECT id FROM ghl.contacts WHERE tags @> ARRAY[''vip'', ''lead'']', false),
 (8, 'SELECT id FROM ghl.contacts WHERE ''VIP'' = ANY (tags) OR email LIKE ''z%''', false),
 (9, 'SELECT id, date_added FROM ghl.contacts WHERE date_added >= ''2024-01-01'' AND date_added < ''2024-07-01''', false),
 (10, 'SELECT id FROM ghl.contacts WHERE date_updated > ''2024-06-01'' ORDER BY date_updated DESC LIMIT 7', true),
 (11, 'SELECT id, date_added FROM ghl.contacts ORDER BY date_added LIMIT 5', true),
 (12, 'SELECT date_added FROM ghl.contacts ORDER BY date_added DESC LIMIT 10 OFFSET 3', true),
 (13, format('SELECT id, business_id FROM ghl.contacts WHERE business_id = %L', :'business'), false),
 (14, format('SELECT id FROM ghl.contacts WHERE business_id = %L AND date_added > ''2022-01-01''', :'business'), false),
 (15, 'SELECT id FROM ghl.contacts WHERE date_added = (SELECT max(date_added) FROM ghl.contacts)', false),
 (16, 'SELECT id FROM ghl.contacts WHERE id = ANY (ARRAY(SELECT id FROM ghl.contacts ORDER BY date_updated LIMIT 4))', false),
 (17, 'SELECT * FROM ghl.tasks WHERE completed', false),
 (18, format('SELECT id FROM ghl.tasks WHERE NOT completed AND assigned_to = %L', :'task_user'), false),
 (19, format('SELECT * FROM ghl.tasks WHERE contact_id = %L', :'task_contact'), false),
 (20, format('SELECT id FROM ghl.tasks WHERE contact_id IN (%L, %L, ''nobody00000000000000'')', :'task_contact', :'task_contact'), false),
 (21, 'SELECT id, title FROM ghl.tasks WHERE due_date < ''2025-01-01'' AND completed = false ORDER BY due_date, id LIMIT 5', true),
 (22, 'SELECT c.id, t.id FROM ghl.contacts c JOIN ghl.tasks t ON t.contact_id = c.id WHERE c.date_added < ''2023-01-01''', false),
 (23, 'SELECT c.id, t.title FROM (SELECT id FROM ghl.contacts ORDER BY date_added LIMIT 20) c JOIN ghl.tasks t ON t.contact_id = c.id', false),
 (24, 'SELECT c.email, n.body FROM ghl.contacts c JOIN ghl.notes n ON n.contact_id = c.id WHERE c.email LIKE ''a%''', false),
 (25, format('SELECT * FROM ghl.notes WHERE contact_id = %L', :'note_contact'), false),
 (26, format('SELECT id, start_time FROM ghl.appointments WHERE contact_id = %L', :'appt_contact'), false),
 (27, 'SELECT id FROM ghl.appointments WHERE start_time >= ''2024-01-01'' AND start_time < ''2025-01-01''', false),
 (28, 'SELECT a.id, c.email FROM ghl.appointments a JOIN ghl.contacts c ON c.id = a.contact_id WHERE a.start_time >= ''2023-01-01'' AND a.start_time <= ''2026-01-01''', false),
 (29, 'SELECT assigned_to, count(*) FROM ghl.contacts WHERE date_updated >= ''2022-01-01'' GROUP BY assigned_to', false),
 (30, 'SELECT t.title, c.email FROM ghl.tasks t JOIN ghl.contacts c ON c.id = t.contact_id WHERE t.completed ORDER BY t.id LIMIT 10', true)
) AS v(n, q, o) ORDER BY n;
