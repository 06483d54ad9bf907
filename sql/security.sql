--
-- No role gains more than it was granted.  A role that may only use a
-- server, or create its own through USAGE on the wrapper, cannot make the
-- database connect where the administrator did not allow, cannot steer a
-- request to another endpoint, and nothing the API answers corrupts the
-- database or shows a secret.  Each block is one attack, made as the
-- non-superuser ghl_tenant; the mock's request log and connection count
-- show what reached it.
--
\getenv mock_url MOCK_URL
SELECT replace(:'mock_url', 'http://', 'https://') AS tls_url,
       replace(:'mock_url', 'http://127.0.0.1', 'https://localhost') AS tls_localhost,
       :'mock_url' || '/oauth/token' AS mock_token_url,
       split_part(:'mock_url', ':', 3) AS mock_port \gset

-- a tenant as a deployment would grant it: USAGE on the wrapper to create
-- its own servers, USAGE on the administrator's server to read through it
CREATE ROLE ghl_tenant;
GRANT USAGE ON FOREIGN DATA WRAPPER ghl_fdw TO ghl_tenant;
GRANT USAGE ON FOREIGN SERVER ghl TO ghl_tenant;
CREATE SCHEMA ghl_tenant AUTHORIZATION ghl_tenant;
GRANT USAGE ON SCHEMA test TO ghl_tenant;

-- run a statement; its SQLSTATE, message, detail and hint, or 'no error'
CREATE FUNCTION test.outcome(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    detail text;
    hint text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN state || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(detail, ''), '')
           || coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END $$;

-- as the current role: a server with this URL option, a user mapping and a
-- contacts table on it, and a read; always ends in an error, so that
-- test.outcome() rolls it all back ("read N rows" when the read worked)
CREATE FUNCTION test.reach(option text, url text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('CREATE SERVER sec_attack FOREIGN DATA WRAPPER ghl_fdw OPTIONS '
                   '(location_id %L, max_retries %L, %I %L)',
                   've9EPM428h8vShlRW1KT', '0', option, url);
    CREATE USER MAPPING FOR CURRENT_USER SERVER sec_attack
        OPTIONS (access_token 'pit-mock-token');
    CREATE FOREIGN TABLE sec_attack_contacts (id text)
        SERVER sec_attack OPTIONS (resource 'contacts');
    SELECT count(*) INTO n FROM sec_attack_contacts;
    RAISE EXCEPTION 'read % rows', n;
END $$;

-- as the current role: create a server with one option; the outcome, and
-- no server left behind
CREATE FUNCTION test.server_with(option text, value text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    result text := test.outcome(format(
        'CREATE SERVER sec_ddl FOREIGN DATA WRAPPER ghl_fdw OPTIONS (location_id %L, %I %L)',
        've9EPM428h8vShlRW1KT', option, value));
BEGIN
    IF EXISTS (SELECT FROM pg_foreign_server WHERE srvname = 'sec_ddl') THEN
        DROP SERVER sec_ddl;
    END IF;
    RETURN result;
END $$;

-- TCP connections the mock has accepted; each call is one of them
CREATE FUNCTION test.connections() RETURNS int LANGUAGE sql AS $$
    SELECT (s->>'connections')::int FROM test.mock('GET', '/_mock/stats') AS s
$$;

-- answer the next request whose path matches with exactly these bytes;
-- the tenant plays the hostile API, so it may call this
CREATE FUNCTION test.raw_fault(path text, status int, content_type text, body bytea)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT test.fault(jsonb_build_object(
        'path', path, 'kind', 'raw', 'status', status, 'content_type', content_type,
        'body_base64', translate(encode(body, 'base64'), E'\n', '')));
$$;

-- the tenant's own mapping and tables on the administrator's server
SET ROLE ghl_tenant;
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl OPTIONS (access_token 'pit-mock-token');
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO ghl_tenant;
RESET ROLE;

--
-- 1. Where a server may connect is the administrator's decision: only a
-- superuser sets ghl_fdw.allowed_hosts, whose default is HighLevel's API.
--
SHOW ghl_fdw.allowed_hosts;
SET ROLE ghl_tenant;
SELECT test.outcome('SET ghl_fdw.allowed_hosts = ''*.attacker.example''');
SELECT test.outcome('ALTER ROLE ghl_tenant SET ghl_fdw.allowed_hosts = ''*.attacker.example''');
RESET ROLE;
-- a malformed list is refused when it is set
SELECT test.outcome('SET ghl_fdw.allowed_hosts = ''api.example.com, *''');
SELECT test.outcome('SET ghl_fdw.allowed_hosts = ''api.example.com/path''');

--
-- 2. SSRF through base_url to the mock on 127.0.0.1: plain http and
-- https, both refused, and nothing reaches the mock.
--
SELECT test.mock_forget();
SET ROLE ghl_tenant;
SELECT test.outcome(format('SELECT test.reach(%L, %L)', 'base_url', :'mock_url'));
SELECT test.outcome(format('SELECT test.reach(%L, %L)', 'base_url', :'tls_url'));
RESET ROLE;
SELECT method, path, status FROM test.requests();

--
-- 3. SSRF through token_url, and to the cloud metadata service: refused
-- when the server is created (never connected to, in this test or by a
-- regression of it).  HighLevel's own host stays allowed, in any case and
-- with a trailing dot; look-alikes do not.
--
SET ROLE ghl_tenant;
\x on
SELECT option, replace(value, :'mock_port', '{port}') AS value,
       test.server_with(option, value) AS outcome
FROM (VALUES ('token_url', :'mock_token_url'),
             ('token_url', :'tls_url' || '/oauth/token'),
             ('base_url', 'http://169.254.169.254/latest/meta-data/'),
             ('base_url', 'https://169.254.169.254/'),
             ('token_url', 'https://169.254.169.254/oauth/token'),
             ('base_url', 'https://[fd00:ec2::254]/'),
             ('base_url', 'https://metadata.google.internal/'),
             ('base_url', 'https://services.leadconnectorhq.com.attacker.example/'),
             ('base_url', 'https://attacker.example/services.leadconnectorhq.com'),
             ('base_url', 'https://services.leadconnectorhq.com'),
             ('token_url', 'https://SERVICES.LeadConnectorHQ.com./oauth/token')) AS t(option, value);
\x off
RESET ROLE;

--
-- 4. URLs that curl might read otherwise than the check does are refused
-- for everybody, superusers included: user information (never quoted: it
-- may be a password), a query or fragment, whitespace, a backslash, a bad
-- port, no host, another scheme.
--
CREATE TABLE test.malformed_urls (value text);
INSERT INTO test.malformed_urls VALUES
    ('https://user:s3cret@services.leadconnectorhq.com'),
    ('https://services.leadconnectorhq.com@attacker.example'),
    ('https://services.leadconnectorhq.com?x=.attacker.example'),
    ('https://attacker.example#.services.leadconnectorhq.com'),
    ('https://services.leadconnectorhq.com /'),
    (E'https://services.leadconnectorhq.com\t/'),
    ('https://attacker.example\@services.leadconnectorhq.com'),
    ('https://services.leadconnectorhq.com:99999/'),
    ('https://:443/'),
    ('https://[::1%25lo]/'),
    ('gopher://services.leadconnectorhq.com/');
GRANT SELECT ON test.malformed_urls TO ghl_tenant;
SET ROLE ghl_tenant;
\x on
SELECT value, test.server_with('base_url', value) AS outcome FROM test.malformed_urls;
\x off
RESET ROLE;
SELECT count(*) AS refused_for_superusers_too
FROM test.malformed_urls WHERE test.server_with('base_url', value) LIKE 'HV024: %';

--
-- 5. A host name the administrator allowed that resolves to loopback
-- (localhost), and loopback in other spellings: refused at connect time,
-- after DNS resolution, for a server of a non-superuser.  No request, not
-- even a connection, reaches the mock: the count grows by one, the call
-- that reads it.
--
SET ghl_fdw.allowed_hosts = 'services.leadconnectorhq.com, localhost, 127.0.0.2, 0.0.0.0, [::1], [::ffff:127.0.0.1]';
SELECT test.mock_forget();
SELECT test.connections() AS connections_before \gset
SET ROLE ghl_tenant;
SELECT regexp_replace(test.outcome(format('SELECT test.reach(%L, %L)', 'base_url', :'tls_localhost')),
                      'address [0-9a-f.:]+', 'address (127.0.0.1 or ::1)') AS outcome;
\x on
SELECT replace(url, :'mock_port', '{port}') AS url,
       test.outcome(format('SELECT test.reach(%L, %L)', 'base_url', url)) AS outcome
FROM (VALUES ('https://127.0.0.2:' || :'mock_port'),
             ('https://0.0.0.0:' || :'mock_port'),
             ('https://[::1]:' || :'mock_port'),
             ('https://[::ffff:127.0.0.1]:' || :'mock_port')) AS t(url);
\x off
RESET ROLE;
SELECT test.connections() - :connections_before AS connections_since;
SELECT method, path, status FROM test.requests();

--
-- 6. The rules are checked again at request time: a server created while
-- its host was allowed stops working once the administrator removes it.
--
SET ROLE ghl_tenant;
CREATE SERVER sec_later FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', max_retries '0', base_url :'tls_localhost');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_later OPTIONS (access_token 'pit-mock-token');
CREATE FOREIGN TABLE sec_later_contacts (id text) SERVER sec_later OPTIONS (resource 'contacts');
RESET ROLE;
RESET ghl_fdw.allowed_hosts;
SET ROLE ghl_tenant;
SELECT test.outcome('SELECT count(*) FROM sec_later_contacts');
DROP SERVER sec_later CASCADE;
RESET ROLE;

--
-- 7. A superuser's server handed to a non-superuser (ALTER SERVER ...
-- OWNER TO) loses the superuser's freedom: its http base_url, and its
-- http token_url, used by the token worker, are refused at request time.
--
SELECT test.mock_forget();
CREATE SERVER sec_given FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', max_retries '0', base_url :'mock_url');
CREATE USER MAPPING FOR ghl_tenant SERVER sec_given OPTIONS (access_token 'pit-mock-token');
CREATE SERVER sec_given_oauth FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', max_retries '0', base_url :'tls_localhost',
             token_url :'mock_token_url');
CREATE USER MAPPING FOR ghl_tenant SERVER sec_given_oauth
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret');
ALTER SERVER sec_given OWNER TO ghl_tenant;
ALTER SERVER sec_given_oauth OWNER TO ghl_tenant;
SET ghl_fdw.allowed_hosts = 'localhost';
SET ROLE ghl_tenant;
CREATE FOREIGN TABLE sec_given_contacts (id text) SERVER sec_given OPTIONS (resource 'contacts');
CREATE FOREIGN TABLE sec_given_oauth_contacts (id text)
    SERVER sec_given_oauth OPTIONS (resource 'contacts');
SELECT test.outcome('SELECT count(*) FROM sec_given_contacts');
SELECT test.outcome('SELECT count(*) FROM sec_given_oauth_contacts');
DROP SERVER sec_given, sec_given_oauth CASCADE;
RESET ROLE;
RESET ghl_fdw.allowed_hosts;
SELECT method, path, status FROM test.requests();

--
-- 8. The administrator's own server may point at loopback: that is the
-- administrator's decision, and the tenant reads through it.
--
SET ROLE ghl_tenant;
SELECT count(*) FROM ghl_tenant.contacts;
RESET ROLE;

--
-- 9. An id cannot steer a request to another endpoint: every byte but
-- letters, digits, '-', '_' and '~' is percent-encoded, dots included
-- ("/contacts/../tasks" would be normalized into "/tasks").  The unknown
-- contact is a 404, which a list of a contact's tasks reads as no rows.
--
SELECT test.mock_forget();
SET ROLE ghl_tenant;
SELECT count(*) FROM ghl_tenant.tasks WHERE contact_id = '..';
SELECT count(*) FROM ghl_tenant.contacts WHERE id = '../x?y#z%2F';
RESET ROLE;
SELECT method, path, status FROM test.requests();

--
-- 10. An empty id would make "/contacts/" (the list endpoint) or
-- "/contacts//tasks" of a path: an error before any request.
--
SELECT test.mock_forget();
SET ROLE ghl_tenant;
SELECT test.outcome('SELECT * FROM ghl_tenant.contacts WHERE id = ''''');
SELECT test.outcome('SELECT * FROM ghl_tenant.tasks WHERE contact_id = ''''');
SELECT test.outcome($$INSERT INTO ghl_tenant.tasks (contact_id, title, due_date)
                      VALUES ('', 'Call back', '2030-01-01')$$);
RESET ROLE;
SELECT method, path, status FROM test.requests();

--
-- 11. Strings from the API must be valid UTF-8 without NUL characters:
-- invalid bytes in a text column, in a text[] element or anywhere in the
-- raw jsonb are 22021, "\u0000" is 22P05, each naming the column; nothing
-- is returned, and nothing is cut short.  Columns the query does not read
-- do not matter.
--
SET ROLE ghl_tenant;
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "firstName": "Jos\351"}}');
SELECT id, first_name FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "tags": ["vip", "\300\257"]}}');
SELECT id, tags FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "source": "\377\376"}}');
SELECT id, raw FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "firstName": "Jo\\u0000hn"}}');
SELECT id, first_name FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "source": "\377\376"}}');
SELECT id FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
-- NaN and Infinity, which the JSON parser reads though JSON has no such
-- numbers, are 22P02 in raw and in a column alike
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "score": NaN}}');
SELECT id, raw FROM ghl_tenant.contacts WHERE id = 'sec-bytes';
SELECT test.raw_fault('^/contacts/sec-bytes$', 200, 'application/json',
                      '{"contact": {"id": "sec-bytes", "firstName": -Infinity}}');
SELECT id, first_name FROM ghl_tenant.contacts WHERE id = 'sec-bytes';

--
-- 12. Epoch milliseconds outside PostgreSQL's timestamp range (after
-- 294276 AD, before 4713 BC) are 22008 naming the column, never a wrapped
-- or out-of-range timestamp.
--
SELECT test.raw_fault('^/contacts/sec-time$', 200, 'application/json',
                      '{"contact": {"id": "sec-time", "dateAdded": 9300000000000000}}');
SELECT id, date_added IS NOT NULL AS has_date FROM ghl_tenant.contacts WHERE id = 'sec-time';
SELECT test.raw_fault('^/contacts/sec-time$', 200, 'application/json',
                      '{"contact": {"id": "sec-time", "dateUpdated": -9000000000000000}}');
SELECT id, date_updated IS NOT NULL AS has_date FROM ghl_tenant.contacts WHERE id = 'sec-time';

--
-- 13. What a failed request's body says is shown only as a short excerpt,
-- with control characters neutralized and only valid UTF-8: an answer
-- cannot flood the log or forge lines in it.
--
SELECT test.raw_fault('^/contacts/search$', 400, 'application/json',
                      convert_to(jsonb_build_object(
                          'statusCode', 400, 'traceId', 'trace-sec',
                          'message', E'first line\nFORGED: line \u001b[31mred\u0085' || repeat(' padding', 40))::text,
                      'UTF8'));
SELECT count(*) FROM ghl_tenant.contacts;
SELECT test.raw_fault('^/contacts/search$', 502, 'text/html',
                      '<html>\033[2J' || repeat('x', 200)::bytea || '</html>');
SELECT count(*) FROM ghl_tenant.contacts;
SELECT test.raw_fault('^/contacts/search$', 200, 'text/html',
                      E'<title>Portal</title>\r\nFORGED: \\377'::bytea);
SELECT count(*) FROM ghl_tenant.contacts;
RESET ROLE;

--
-- 14. A token endpoint's answer is never echoed, since it may hold
-- secrets (an endpoint that reflects its request would show the client
-- secret), and it is read as JSON whatever its Content-Type.
--
CREATE SERVER sec_oauth FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', max_retries '0', base_url :'mock_url');
GRANT USAGE ON FOREIGN SERVER sec_oauth TO ghl_tenant;
SET ROLE ghl_tenant;
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_oauth
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret');
CREATE FOREIGN TABLE sec_oauth_contacts (id text) SERVER sec_oauth OPTIONS (resource 'contacts');
RESET ROLE;
SELECT test.mock_forget();
SET ROLE ghl_tenant;
SELECT test.raw_fault('^/oauth/token$', 400, 'application/json',
                      '{"error": "invalid_request", "error_description": "you sent client_secret=mock-secret"}');
SELECT test.outcome('SELECT count(*) FROM sec_oauth_contacts');
SELECT test.raw_fault('^/oauth/token$', 200, 'text/plain',
                      '{"access_token": "pit-mock-token", "token_type": "Bearer", "expires_in": 3600, "scope": "contacts.readonly"}');
SELECT count(*) FROM sec_oauth_contacts;
RESET ROLE;
SELECT method, path, status FROM test.requests();

--
-- 15. An answer is read as JSON and nothing else: escapes and surrogate
-- pairs decode, a lone surrogate becomes U+FFFD, a key given twice keeps
-- its last value (in a column and in raw alike, as jsonb does); nesting
-- deeper than 64 and anything after the document are 22032, and nothing
-- of such an answer is returned.
--
SET ROLE ghl_tenant;
SELECT test.raw_fault('^/contacts/sec-json$', 200, 'application/json',
                      convert_to('{"contact": {"id": "sec-json", '
                                 '"firstName": "q\"b\\s\/e\u00e9 \ud83d\ude00 \ud800!", '
                                 '"lastName": "first", "lastName": "last", '
                                 '"tags": ["tab\t", "\u0041"], "score": 1.50e+2, '
                                 '"dateAdded": 1609462466220}} ', 'UTF8'));
SELECT to_json(first_name) AS first_name, last_name, to_json(tags) AS tags,
       date_added AT TIME ZONE 'UTC' AS date_added,
       raw->'lastName' AS raw_last_name, raw->'score' AS raw_score,
       raw->>'firstName' = first_name AS same_in_raw
FROM ghl_tenant.contacts WHERE id = 'sec-json';
-- the same in an object of more keys than the API's
SELECT test.raw_fault('^/contacts/sec-json$', 200, 'application/json',
                      convert_to('{"contact": {"id": "sec-json", "firstName": "first", '
                                 || string_agg(format('"k%s": %s', g, g), ', ')
                                 || ', "firstName": "last", "k7": "seven"}}', 'UTF8'))
FROM generate_series(1, 100) AS g;
SELECT first_name, (SELECT count(*) FROM jsonb_object_keys(raw)) AS keys, raw->'k7' AS k7
FROM ghl_tenant.contacts WHERE id = 'sec-json';
SELECT test.raw_fault('^/contacts/sec-json$', 200, 'application/json',
                      convert_to('{"contact": {"id": "sec-json", "customFields": '
                                 || repeat('[', 70) || repeat(']', 70) || '}}', 'UTF8'));
SELECT id FROM ghl_tenant.contacts WHERE id = 'sec-json';
SELECT test.raw_fault('^/contacts/sec-json$', 200, 'application/json',
                      '{"contact": {"id": "sec-json"}} {"contact": {"id": "forged"}}');
SELECT id FROM ghl_tenant.contacts WHERE id = 'sec-json';
-- a custom field is found by its whole id: "\u0000" in an id makes no
-- prefix of it match
CREATE FOREIGN TABLE ghl_tenant.sec_custom (id text, pet text OPTIONS (field 'customFields.petId'))
    SERVER ghl OPTIONS (resource 'contacts');
SELECT test.raw_fault('^/contacts/sec-json$', 200, 'application/json',
                      convert_to('{"contact": {"id": "sec-json", "customFields": '
                                 '[{"id": "petId\u0000x", "value": "forged"}, '
                                 '{"id": "petId", "value": "cat"}]}}', 'UTF8'));
SELECT id, pet FROM ghl_tenant.sec_custom WHERE id = 'sec-json';
DROP FOREIGN TABLE ghl_tenant.sec_custom;
-- the function through which a sync's statements read the rows they write
-- has nothing for anyone else
SELECT * FROM ghl_fdw._sync_batch() AS u(id text);
RESET ROLE;

-- clean up
SELECT test.mock_forget();
DROP SERVER sec_oauth CASCADE;
DROP USER MAPPING FOR ghl_tenant SERVER ghl;
DROP SCHEMA ghl_tenant CASCADE;
DROP TABLE test.malformed_urls;
REVOKE ALL ON SCHEMA test FROM ghl_tenant;
REVOKE ALL ON FOREIGN SERVER ghl FROM ghl_tenant;
REVOKE ALL ON FOREIGN DATA WRAPPER ghl_fdw FROM ghl_tenant;
DROP ROLE ghl_tenant;
DROP FUNCTION test.outcome(text), test.reach(text, text), test.server_with(text, text),
    test.connections(), test.raw_fault(text, int, text, bytea);
