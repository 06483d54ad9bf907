--
-- EXPLAIN shows the API plan and never calls the API.
--
SELECT test.mock_forget();
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ghl.contacts;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, email FROM ghl.contacts WHERE id = 'abc';
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM ghl.contacts WHERE email = 'jo@example.com';
EXPLAIN (COSTS OFF) SELECT * FROM ghl.contacts;
PREPARE by_id(text) AS SELECT id FROM ghl.contacts WHERE id = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_id('abc');
DEALLOCATE by_id;
-- no request reached the mock
SELECT count(*) AS requests FROM test.requests();

-- EXPLAIN ANALYZE runs the scan and counts its requests
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT count(*) FROM ghl.contacts;
SELECT count(*) AS requests FROM test.requests();
