--
-- HTTP failures surface as errors with the right SQLSTATE, the API's own
-- message and trace id in DETAIL and the request in CONTEXT; never as
-- empty results.  The server has max_retries 0, so each fault is final.
--
SELECT test.mock_forget();

-- 401: a token the API does not know
CREATE SERVER ghl_badtoken FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', max_retries '0');
DO $$ BEGIN
    EXECUTE format('ALTER SERVER ghl_badtoken OPTIONS (ADD base_url %L)',
                   (SELECT mock_url FROM test.env));
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_badtoken
    OPTIONS (access_token 'pit-wrong-token-do-not-print');
CREATE FOREIGN TABLE contacts_badtoken (id text, email text)
    SERVER ghl_badtoken OPTIONS (resource 'contacts');
SELECT test.error_of('SELECT * FROM contacts_badtoken');
-- the same with the API's body, to show DETAIL and HINT
SELECT test.fault('{"path": "^/contacts/search$", "status": 401, "times": 1,
  "body": "{\"statusCode\":401,\"message\":\"Invalid JWT\",\"traceId\":\"trace-401\"}"}');
SELECT * FROM ghl.contacts;
DROP SERVER ghl_badtoken CASCADE;

-- 403: a location the token cannot see
CREATE SERVER ghl_otherloc FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 'someOtherLocation000', max_retries '0');
DO $$ BEGIN
    EXECUTE format('ALTER SERVER ghl_otherloc OPTIONS (ADD base_url %L)',
                   (SELECT mock_url FROM test.env));
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl_otherloc
    OPTIONS (access_token 'pit-mock-token');
CREATE FOREIGN TABLE contacts_otherloc (id text)
    SERVER ghl_otherloc OPTIONS (resource 'contacts');
SELECT test.error_of('SELECT * FROM contacts_otherloc');
DROP SERVER ghl_otherloc CASCADE;

-- 422 with the API's array of messages
SELECT test.fault('{"path": "^/contacts/search$", "status": 422, "times": 1,
  "body": "{\"statusCode\":422,\"message\":[\"pageLimit must not be greater than 500\",\"locationId should not be empty\"],\"error\":\"Unprocessable Entity\",\"traceId\":\"trace-422\"}"}');
SELECT * FROM ghl.contacts;

-- 429 after the retries (none here)
SELECT test.fault('{"path": "^/contacts/search$", "status": 429, "times": 1,
  "body": "{\"statusCode\":429,\"message\":\"Too Many Requests\",\"traceId\":\"trace-429\"}"}');
SELECT * FROM ghl.contacts;

-- 500 and 503
SELECT test.fault('{"path": "^/contacts/search$", "status": 500, "times": 1,
  "body": "{\"statusCode\":500,\"message\":\"Internal server error\",\"traceId\":\"trace-500\"}"}');
SELECT count(*) FROM ghl.contacts;
SELECT test.fault('{"path": "^/contacts/", "status": 503, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts WHERE id = ''abc''');

-- a redirect is not followed: it is an error that says so, and its
-- target is never asked
SELECT test.fault('{"path": "^/contacts/search$", "status": 302, "times": 1,
  "headers": {"Location": "http://127.0.0.1:1/elsewhere"},
  "body": "{\"statusCode\":302,\"message\":\"Found\",\"traceId\":\"trace-302\"}"}');
SELECT count(*) FROM ghl.contacts;

-- a failure on a later page is an error too, not a short result
SELECT test.mock_reset(1200, 5);
SELECT test.fault('{"path": "^/contacts/search$", "status": 500, "skip": 1, "times": 1}');
SELECT test.error_of('SELECT count(*) FROM ghl.contacts');

-- a long error body is cut in DETAIL
SELECT test.fault(jsonb_build_object('path', '^/contacts/search$', 'status', 400, 'times', 1,
  'body', jsonb_build_object('statusCode', 400, 'message', repeat('very long message ', 100),
                             'traceId', 'trace-400')::text));
SELECT count(*) FROM ghl.contacts;

-- with the faults used up, the same query works
SELECT count(*) FROM ghl.contacts;

-- what the mock saw since the reset: each failed request once, no retries
SELECT method, path, status FROM test.requests() WHERE status >= 400 ORDER BY seq;
SELECT test.mock_reset(100, 42);
