--
-- The rate-limit governor: 429s are waited out (Retry-After when the API
-- sends one, else one rate interval), sustained load is paced under the
-- burst limit, and the daily-budget floor refuses requests before they
-- spend the last of the budget.
--
SELECT test.mock_forget();
SELECT ghl_fdw.request_stats_reset();
SELECT count(*) FROM test.mock('POST', '/_mock/config',
    '{"rate_limit": 5, "rate_interval_ms": 1000, "retry_after": false}');
ALTER SERVER ghl OPTIONS (SET max_retries '2');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS started;

-- a 429 with Retry-After: 1 is retried after about a second
SELECT test.fault('{"path": "^/contacts/search$", "status": 429, "retry_after": 1, "times": 1}');
UPDATE t0 SET started = clock_timestamp();
SELECT count(*) FROM ghl.contacts;
SELECT clock_timestamp() - started BETWEEN interval '1 second' AND interval '3 seconds'
    AS waited_retry_after FROM t0;

-- a 429 without Retry-After waits one rate interval (1 s here)
SELECT test.fault('{"path": "^/contacts/search$", "status": 429, "times": 1}');
UPDATE t0 SET started = clock_timestamp();
SELECT count(*) FROM ghl.contacts;
SELECT clock_timestamp() - started BETWEEN interval '1 second' AND interval '3 seconds'
    AS waited_interval FROM t0;
SELECT status FROM test.attempts();

-- with no retries left, a 429 is 53400
ALTER SERVER ghl OPTIONS (SET max_retries '0');
SELECT test.fault('{"path": "^/contacts/search$", "status": 429, "retry_after": 1, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');

-- 12 requests against 5 per second: paced, without a 429 (a "delay"
-- request of an earlier suite may still take a slot of the mock's window,
-- and the governor cannot know of it in advance: at most one 429)
SELECT pg_sleep(1.1);
SELECT test.mock_forget();
SELECT ghl_fdw.request_stats_reset();
UPDATE t0 SET started = clock_timestamp();
DO $$
BEGIN
    FOR i IN 1..12 LOOP
        PERFORM count(*) FROM ghl.contacts;
    END LOOP;
END $$;
SELECT clock_timestamp() - started >= interval '1.9 seconds' AS paced FROM t0;
SELECT count(*) FILTER (WHERE status = 200) AS answered,
       count(*) FILTER (WHERE status = 429) <= 1 AS at_most_one_429
FROM test.attempts();
SELECT requests - rate_limited AS answered, retries = rate_limited AS only_429s_retried,
       throttle_waits > 0 AS throttled, shared
FROM ghl_fdw.request_stats WHERE server_name = 'ghl';

-- the daily floor: once the API reports 9 requests left (8 if a late
-- request of an earlier suite took one), a floor of 20
-- refuses the next query without sending it
SELECT count(*) FROM test.mock('POST', '/_mock/config', '{"daily_remaining": 10}');
ALTER SERVER ghl OPTIONS (ADD daily_budget_floor '20');
SELECT test.mock_forget();
SELECT count(*) FROM ghl.contacts;
SELECT regexp_replace(test.error_of('SELECT count(*) FROM ghl.contacts'),
                      '\d+ requests', 'N requests');
SELECT count(*) AS requests_sent FROM test.attempts();
SELECT budget_refusals FROM ghl_fdw.request_stats WHERE server_name = 'ghl';
-- lowering the floor lets requests through again
ALTER SERVER ghl OPTIONS (SET daily_budget_floor '5');
SELECT count(*) FROM ghl.contacts;
ALTER SERVER ghl OPTIONS (DROP daily_budget_floor);
SELECT test.error_of($$ALTER SERVER ghl OPTIONS (ADD daily_budget_floor '-1')$$);

-- the counters name servers, nothing else
SELECT * FROM ghl_fdw.request_stats WHERE false;

SELECT count(*) FROM test.mock('POST', '/_mock/config',
    '{"rate_limit": 100000, "rate_interval_ms": 10000, "daily_remaining": 200000}');
SELECT count(*) FROM ghl.contacts;
SELECT test.mock_forget();
