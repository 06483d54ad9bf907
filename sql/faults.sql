--
-- The fault matrix: whatever the network or the API does wrong, a query
-- either succeeds after retries or fails with a fitting SQLSTATE; it never
-- returns empty or partial rows.  Each row is run with max_retries 0 (the
-- fault is final) and, where retrying is right, with retries (the fault is
-- absorbed).  The request log shows every attempt.
--
SELECT test.mock_forget();
SELECT ghl_fdw.request_stats_reset();

-- inject a fault twice: with max_retries 0 it is final, with 1 a retry
-- absorbs it; leaves max_retries at 0
CREATE FUNCTION test.final_then_retried(spec jsonb)
RETURNS TABLE (max_retries int, outcome text) LANGUAGE plpgsql AS $$
BEGIN
    ALTER SERVER ghl OPTIONS (SET max_retries '0');
    PERFORM test.fault(spec);
    max_retries := 0;
    outcome := test.error_of('SELECT count(*) FROM ghl.contacts');
    RETURN NEXT;
    ALTER SERVER ghl OPTIONS (SET max_retries '1');
    PERFORM test.fault(spec);
    max_retries := 1;
    outcome := (SELECT count(*) FROM ghl.contacts) || ' rows';
    RETURN NEXT;
    ALTER SERVER ghl OPTIONS (SET max_retries '0');
END $$;

-- like test.error_of, with the error's CONTEXT
CREATE FUNCTION test.error_in_context(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    ctx text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            ctx = PG_EXCEPTION_CONTEXT;
    RETURN state || ': ' || msg || E'\n' || split_part(ctx, E'\n', 1);
END $$;

-- 500, 502, 503 without retries: HV000
SELECT test.fault('{"path": "^/contacts/search$", "status": 500, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "status": 502, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "status": 503, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT status, fault FROM test.attempts();

-- with retries, the same faults in a row end in every row
ALTER SERVER ghl OPTIONS (SET max_retries '3');
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/search$", "status": 500, "times": 1}');
SELECT test.fault('{"path": "^/contacts/search$", "status": 502, "times": 1}');
SELECT test.fault('{"path": "^/contacts/search$", "status": 503, "times": 1}');
SELECT count(*) FROM ghl.contacts;
SELECT method, path, status FROM test.attempts();
-- one fault more than max_retries allows is an error again
SELECT test.fault('{"path": "^/contacts/search$", "status": 503, "times": 4}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT retries, rate_limited FROM ghl_fdw.request_stats WHERE server_name = 'ghl';

-- connection reset mid-body: 08006, or the rows after a retry
SELECT test.mock_forget();
SELECT * FROM test.final_then_retried(
    '{"path": "^/contacts/search$", "kind": "reset", "after_bytes": 200, "times": 1}');
SELECT status, fault FROM test.attempts();

-- truncated JSON (the connection closes half-way through the body)
SELECT test.mock_forget();
SELECT * FROM test.final_then_retried(
    '{"path": "^/contacts/search$", "kind": "truncate", "times": 1}');
SELECT status, fault FROM test.attempts();

-- what a retry cannot fix is not retried: an HTML page with status 200,
-- a wrong Content-Type, broken JSON, wrong types in known fields
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/search$", "kind": "html", "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "wrong_content_type", "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "bad_json", "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
-- (CONTEXT names the column; an integer date is epoch milliseconds, a
-- number in a text column is text, and jsonb takes any JSON, so those are
-- no error)
SELECT test.fault('{"path": "^/contacts/search$", "kind": "wrong_types", "times": 1}');
SELECT test.error_in_context('SELECT id, dnd FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "wrong_types", "times": 1}');
SELECT test.error_in_context('SELECT id, tags FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "wrong_types", "times": 1}');
SELECT test.error_in_context('SELECT id, date_updated FROM ghl.contacts');
SELECT test.fault('{"path": "^/contacts/search$", "kind": "wrong_types", "times": 1}');
SELECT count(*), count(date_added), min(first_name) ~ '^[0-9]+$' AS numbers_as_text
FROM ghl.contacts;
SELECT status, fault FROM test.attempts();

-- slow headers past timeout_ms: 08006, or the rows after a retry (the
-- attempts are counted by the FDW's own counters here)
ALTER SERVER ghl OPTIONS (ADD timeout_ms '500');
SELECT ghl_fdw.request_stats_reset();
SELECT * FROM test.final_then_retried(
    '{"path": "^/contacts/search$", "kind": "delay", "delay_ms": 2000, "times": 1}');
ALTER SERVER ghl OPTIONS (DROP timeout_ms);
SELECT requests, retries FROM ghl_fdw.request_stats WHERE server_name = 'ghl';

-- a response larger than ghl_fdw.max_response_bytes: 54000, not retried
SET ghl_fdw.max_response_bytes = '100kB';
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/search$", "kind": "big", "size_bytes": 300000, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
RESET ghl_fdw.max_response_bytes;
SELECT status, fault FROM test.attempts();

-- statement_timeout is a deadline: a backoff that would outlast it is not
-- started, and the failure at hand is reported at once
ALTER SERVER ghl OPTIONS (SET max_retries '3');
SELECT test.mock_forget();
SELECT test.fault('{"path": "^/contacts/search$", "status": 503, "retry_after": 30, "times": 1}');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS started;
SET statement_timeout = '5s';
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');
RESET statement_timeout;
SELECT clock_timestamp() - started < interval '2 seconds' AS failed_fast FROM t0;
SELECT status FROM test.attempts();

ALTER SERVER ghl OPTIONS (SET max_retries '0');
SELECT test.mock_forget();
DROP FUNCTION test.error_in_context(text);
DROP FUNCTION test.final_then_retried(jsonb);
