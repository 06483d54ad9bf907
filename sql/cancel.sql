--
-- A slow API call is interrupted by statement_timeout within about a
-- second, with SQLSTATE 57014, and the connection is usable afterwards.
--
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/search$", "kind": "delay", "delay_ms": 20000, "times": 1}');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS started;
SET statement_timeout = '1s';
SELECT count(*) FROM ghl.contacts;
RESET statement_timeout;
-- the statement ended well before the 20 s delay (and the 30 s timeout)
SELECT clock_timestamp() - started < interval '5 seconds' AS interrupted_quickly FROM t0;

-- a slow body is interrupted the same way
SELECT test.fault('{"path": "^/contacts/search$", "kind": "slow_body", "delay_ms": 20000, "times": 1}');
UPDATE t0 SET started = clock_timestamp();
SET statement_timeout = '1s';
\set VERBOSITY sqlstate
SELECT count(*) FROM ghl.contacts;
\set VERBOSITY default
RESET statement_timeout;
SELECT clock_timestamp() - started < interval '5 seconds' AS interrupted_quickly FROM t0;

-- the next query on the same connection works
SELECT count(*) FROM ghl.contacts;

-- timeout_ms bounds a request on its own
ALTER SERVER ghl OPTIONS (ADD timeout_ms '500');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "delay", "delay_ms": 5000, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
ALTER SERVER ghl OPTIONS (DROP timeout_ms);
SELECT count(*) FROM ghl.contacts;
