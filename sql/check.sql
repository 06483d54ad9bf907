--
-- ghl_fdw.check(): a healthy server, then one broken thing at a time
-- (a missing write scope, a wrong location, a skewed clock, an exhausted
-- daily budget, an expired refresh token, an unreachable host), each
-- showing its failing row with a hint while the others stay ok; the
-- requests each call sends; the sync rows; privileges; and no secret in
-- any output.  Called as a role that has USAGE on the servers and a
-- mapping, nothing more.
--
SELECT test.mock_reset(100);
CREATE OR REPLACE FUNCTION test.mock_config(config jsonb) RETURNS void
LANGUAGE sql AS $$
    SELECT count(*) FROM test.mock('POST', '/_mock/config', config);
$$;

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
RESET client_min_messages;
CREATE ROLE ghl_checker;
GRANT USAGE ON SCHEMA test TO ghl_checker;
CREATE SCHEMA check_rankr AUTHORIZATION ghl_checker;

-- an OAuth server (rotating refresh tokens), a Private Integration Token
-- server, and one whose API is a closed loopback port
DO $$
DECLARE
    server text;
BEGIN
    FOREACH server IN ARRAY ARRAY['ghl_check', 'ghl_check_pit'] LOOP
        EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER ghl_fdw OPTIONS '
                       '(location_id %L, base_url %L, max_retries %L, sync_schema %L)',
                       server, 've9EPM428h8vShlRW1KT',
                       (SELECT mock_url FROM test.env), '0', 'check_rankr');
    END LOOP;
END $$;
CREATE SERVER ghl_check_down FOREIGN DATA WRAPPER ghl_fdw OPTIONS
    (location_id 've9EPM428h8vShlRW1KT', base_url 'http://127.0.0.1:1',
     max_retries '0', connect_timeout_ms '2000');
GRANT USAGE ON FOREIGN SERVER ghl_check, ghl_check_pit, ghl_check_down
    TO ghl_checker;
CREATE USER MAPPING FOR ghl_checker SERVER ghl_check
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret',
             refresh_token 'rt-seed-0');
CREATE USER MAPPING FOR ghl_checker SERVER ghl_check_pit
    OPTIONS (access_token 'pit-mock-token');
CREATE USER MAPPING FOR ghl_checker SERVER ghl_check_down
    OPTIONS (access_token 'pit-mock-token');

-- every row check() returned, unmasked, for the secret check at the end
CREATE TABLE test.check_seen (server text, "check" text, ok boolean,
                              detail text, hint text);
GRANT INSERT ON test.check_seen TO ghl_checker;

-- check() with what changes from run to run masked: times, ages, the
-- time a request took, burst counts, large daily counts, job ids, the
-- API's traceIds
CREATE FUNCTION test.mask_check(t text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(
           regexp_replace(regexp_replace(regexp_replace(t,
        '\w{3} \w{3} \d\d \d\d:\d\d:\d\d(\.\d+)? \d{4} \w+', '{time}', 'g'),
        ' \(traceId [^)]*\)', '', 'g'),
        '\d\d:\d\d:\d\d ago', '{age} ago', 'g'),
        '(in|after) \d+ ms', '\1 {n} ms', 'g'),
        '\d+ of (\d+) requests left in the current burst', '{n} of \1 requests left in the current burst', 'g'),
        '\d{4,} of (\d+) requests of the day', '{n} of \1 requests of the day', 'g'),
        '(pg_cron job |alter_job\()\d+', '\1{id}', 'g')
$$;
CREATE FUNCTION test.check(server text)
RETURNS TABLE ("check" text, ok boolean, detail text, hint text)
LANGUAGE sql AS $$
    WITH c AS (SELECT * FROM ghl_fdw.check(server) WITH ORDINALITY),
         seen AS (INSERT INTO test.check_seen
                  SELECT server, c."check", c.ok, c.detail, c.hint FROM c)
    SELECT c."check", c.ok, test.mask_check(c.detail), test.mask_check(c.hint)
    FROM c ORDER BY c.ordinality
$$;

\pset format unaligned
\pset fieldsep ' | '

-- healthy: the first call refreshes with the seed, searches for one
-- contact and lists the calendars (nothing of the server is in use yet,
-- so every resource counts); sync rows have nothing to check yet
SELECT test.mock_forget();
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
SELECT method, path, version, status FROM test.requests();
-- a later call renews the token it holds, which proves the refresh works
SELECT test.mock_forget();
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
SELECT method, path, version, status FROM test.requests();

-- a Private Integration Token lists no scopes: what is needed is said,
-- not judged; two requests
SELECT test.mock_forget();
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check_pit');
RESET ROLE;
SELECT method, path, version, status FROM test.requests();

-- broken: the app lost contacts.write; the renewed token shows it
SELECT test.mock_config('{"scopes": ["contacts.readonly", "locations/tasks.readonly",
    "calendars.readonly", "calendars/events.readonly", "calendars/events.write"]}');
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
-- a read_only server needs no write scope
ALTER SERVER ghl_check OPTIONS (ADD read_only 'true');
SET ROLE ghl_checker;
SELECT "check", ok, detail FROM test.check('ghl_check') WHERE "check" = 'scopes';
RESET ROLE;
ALTER SERVER ghl_check OPTIONS (DROP read_only);
SELECT test.mock_config(jsonb_build_object('scopes',
    '["contacts.readonly", "contacts.write", "locations/tasks.readonly", "calendars.readonly",
      "calendars/events.readonly", "calendars/events.write",
      "locations/customFields.readonly"]'::jsonb));

-- broken: the server names a location the token does not belong to
ALTER SERVER ghl_check OPTIONS (SET location_id 'wrongLocationId00000');
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
ALTER SERVER ghl_check OPTIONS (SET location_id 've9EPM428h8vShlRW1KT');

-- broken: the API's clock is an hour behind this server's
SELECT test.mock_config('{"clock_skew_ms": -3600000}');
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
SELECT test.mock_config('{"clock_skew_ms": 0}');

-- broken: 5 requests of the day are left; the check spends 2 of them
SELECT test.mock_config('{"daily_remaining": 5}');
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
SELECT test.mock_config('{"daily_remaining": 200000}');

-- broken: the refresh token expired; the token in hand still works, so
-- the other checks go on with it
SELECT test.mock_config('{"expire_refresh_tokens": true}');
SELECT test.mock_forget();
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check');
RESET ROLE;
SELECT method, path, version, status FROM test.requests();

-- broken: nothing listens where the API should be
SET ROLE ghl_checker;
SELECT * FROM test.check('ghl_check_down');
RESET ROLE;

-- the sync rows: after a sync of contacts, only contacts are in use (no
-- calendars request, no appointment scopes); then the pg_cron job, which
-- the role may only see with USAGE on schema cron; then a dropped table
SELECT test.mock_forget();
SET ROLE ghl_checker;
SELECT resource, status FROM ghl_fdw.sync('ghl_check_pit', '{contacts}');
SELECT "check", ok, detail, hint FROM test.check('ghl_check_pit')
WHERE "check" IN ('scopes', 'calendars', 'sync_tables', 'sync_runs', 'sync_schedule');
RESET ROLE;
GRANT USAGE ON SCHEMA cron TO ghl_checker;
SET ROLE ghl_checker;
SELECT "check", ok, detail, hint FROM test.check('ghl_check_pit')
WHERE "check" = 'sync_schedule';
RESET ROLE;
-- pg_cron lets only a superuser schedule a job in a database: the job of
-- server ghl, seen by its owner
SELECT ghl_fdw.schedule_sync('ghl') > 0 AS scheduled;
SELECT "check", ok, detail, hint FROM test.check('ghl')
WHERE "check" = 'sync_schedule';
SELECT count(cron.alter_job(jobid, active => false)) AS deactivated
FROM cron.job WHERE jobname = 'ghl_fdw_sync_ghl';
SELECT "check", ok, detail, hint FROM test.check('ghl')
WHERE "check" = 'sync_schedule';
SELECT ghl_fdw.unschedule_sync('ghl');
DROP TABLE check_rankr.contacts;
SET ROLE ghl_checker;
SELECT "check", ok, detail, hint FROM test.check('ghl_check_pit')
WHERE "check" = 'sync_tables';
RESET ROLE;

\pset format aligned
\pset fieldsep '|'

-- privileges: USAGE and a mapping, like every entry point
CREATE ROLE ghl_check_stranger;
GRANT USAGE ON SCHEMA test TO ghl_check_stranger;
SET ROLE ghl_check_stranger;
SELECT test.error_of($$SELECT * FROM ghl_fdw.check('ghl_check')$$);
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER ghl_check TO ghl_check_stranger;
SET ROLE ghl_check_stranger;
SELECT test.error_of($$SELECT * FROM ghl_fdw.check('ghl_check')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.check('nosuch')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.check(NULL)$$);
RESET ROLE;

-- no secret in any row: not the mapping's, not any token the mock issued
SELECT count(*) > 0 AS tokens_issued
FROM test.mock('GET', '/_mock/issued_tokens') AS m,
     jsonb_array_elements_text(m->'tokens') AS t;
SELECT count(*) AS rows_seen, count(*) FILTER (WHERE EXISTS (
    SELECT 1 FROM test.mock('GET', '/_mock/issued_tokens') AS m,
         jsonb_array_elements_text(m->'tokens') AS t
    WHERE concat_ws(' ', s.detail, s.hint) LIKE '%' || t || '%')
    OR concat_ws(' ', s.detail, s.hint) ~ 'pit-mock-token|mock-secret|rt-seed-0')
    AS rows_with_secrets
FROM test.check_seen s;

-- leave things as they were
SET client_min_messages = warning;
DROP SERVER ghl_check, ghl_check_pit, ghl_check_down CASCADE;
DELETE FROM ghl_fdw.sync_runs WHERE server_name LIKE 'ghl_check%';
DELETE FROM ghl_fdw.sync_state WHERE server_name LIKE 'ghl_check%';
DELETE FROM ghl_fdw.sync_passes WHERE server_name LIKE 'ghl_check%';
DROP SCHEMA check_rankr CASCADE;
REVOKE USAGE ON SCHEMA cron FROM ghl_checker;
REVOKE ALL ON SCHEMA test FROM ghl_checker, ghl_check_stranger;
DROP TABLE test.check_seen;
DROP ROLE ghl_checker, ghl_check_stranger;
RESET client_min_messages;
SELECT test.mock_reset(100, 42);
