--
-- OAuth user mappings: rotating refresh tokens kept in ghl_fdw.token_store,
-- client credentials, Company -> location tokens, scopes, and what survives
-- a ROLLBACK.  No token or secret is ever printed: only booleans about them.
--
-- a fresh token authority: the seed refresh token rt-seed-0 is unspent
SELECT test.mock_reset(100);

CREATE FUNCTION test.stats(key text) RETURNS int LANGUAGE sql AS $$
    SELECT (s->>key)::int FROM test.mock('GET', '/_mock/stats') AS s
$$;
CREATE FUNCTION test.mock_config(config jsonb) RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM test.mock('POST', '/_mock/config', config);
$$;
-- a failing statement's SQLSTATE, message, detail (without the random
-- traceId) and hint
CREATE FUNCTION test.error_full(stmt text)
RETURNS TABLE (state text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN QUERY SELECT NULL::text, 'no error', NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    detail := regexp_replace(detail, ' \(traceId [^)]*\)$', '');
    RETURN NEXT;
END $$;
CREATE FUNCTION test.stored(server text) RETURNS ghl_fdw.token_store
LANGUAGE sql AS $$
    SELECT s.* FROM ghl_fdw.token_store s
    JOIN pg_user_mappings m ON m.umid = s.umid
    WHERE m.srvname = server AND m.usename = current_user
$$;

-- a server on the mock, the current user's mapping for it, and its contacts
-- in schema target
CREATE FUNCTION test.oauth_server(server text, target text, mapping_options text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER ghl_fdw OPTIONS '
                   '(location_id %L, base_url %L, max_retries %L)', server,
                   've9EPM428h8vShlRW1KT', (SELECT mock_url FROM test.env), '0');
    EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (%s)',
                   server, mapping_options);
    EXECUTE format('CREATE SCHEMA %I', target);
    EXECUTE format('IMPORT FOREIGN SCHEMA ghl LIMIT TO (contacts) FROM SERVER %I INTO %I',
                   server, target);
END $$;

SELECT test.oauth_server('ghl_oauth', 'oauth', $$client_id 'mock-client',
    client_secret 'mock-secret', refresh_token 'rt-seed-0'$$);

-- nothing stored before the first use
SELECT * FROM ghl_fdw.token_status('ghl_oauth');

-- first use: one refresh with the seed, then the search
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts;
SELECT method, path, version, status FROM test.requests();
SELECT mode, user_type, location_id, company_id, scopes,
       expires_at > now() + interval '23 hours' AS expires_tomorrow,
       last_refresh > now() - interval '1 minute' AS refreshed_now
FROM ghl_fdw.token_status('ghl_oauth');
-- the rotated refresh token superseded the seed
SELECT refresh_token <> 'rt-seed-0' AS rotated, access_token IS NOT NULL AS has_token
FROM test.stored('ghl_oauth');

-- the same session and a new one reuse the token: no token request
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
\c
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();

-- the API stops accepting the token: a 401, one refresh, the retry succeeds
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts;
SELECT method, path, status FROM test.requests();

-- a token about to expire is refreshed before it is used, with no 401:
-- tokens of 302 s are due for refresh 2 s after they are issued
SELECT test.mock_config('{"token_lifetime": 302, "expire_all_tokens": true}');
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT pg_sleep(2.5);
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();
-- back to day-long tokens (one refresh, whether by expiry or by 401)
SELECT test.mock_config('{"token_lifetime": 86399, "expire_all_tokens": true}');
SELECT test.mock('DELETE', '/_mock/stats');
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT test.stats('refreshes') AS refreshes;

-- a refresh inside a transaction that rolls back is kept all the same
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT test.mock('DELETE', '/_mock/stats');
BEGIN;
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
ROLLBACK;
\c
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();
SELECT test.stats('refreshes') AS refreshes;

-- a spent refresh token (say, a copy another tool already used): the error
-- asks for re-authorization and the store is left as it was
CREATE TEMP TABLE spent AS SELECT refresh_token FROM test.stored('ghl_oauth');
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
CREATE TEMP TABLE good AS SELECT refresh_token FROM test.stored('ghl_oauth');
UPDATE ghl_fdw.token_store s SET refresh_token = (SELECT refresh_token FROM spent)
FROM test.stored('ghl_oauth') t WHERE s.umid = t.umid;
CREATE TEMP TABLE before AS SELECT * FROM test.stored('ghl_oauth');
SELECT test.mock_config('{"expire_all_tokens": true}');
\x on
SELECT * FROM test.error_full('SELECT count(*) FROM oauth.contacts');
\x off
SELECT (SELECT b FROM before b) IS NOT DISTINCT FROM test.stored('ghl_oauth') AS store_intact;
-- the good token put back, all is well again
UPDATE ghl_fdw.token_store s SET refresh_token = (SELECT refresh_token FROM good)
FROM test.stored('ghl_oauth') t WHERE s.umid = t.umid;
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';

-- ALTER USER MAPPING with a new seed (a fresh authorization) wins over the store
SELECT r->>'refresh_token' AS new_seed
FROM test.mock('POST', '/oauth/token',
               '{"grant_type": "authorization_code", "code": "oauth-suite-1",
                 "client_id": "mock-client", "client_secret": "mock-secret"}') AS r
\gset
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl_oauth
    OPTIONS (SET refresh_token :'new_seed');
CREATE TEMP TABLE old_store AS SELECT * FROM test.stored('ghl_oauth');
SELECT test.mock_forget();
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();
SELECT s.seed_fingerprint <> o.seed_fingerprint AS new_fingerprint,
       s.refresh_token <> o.refresh_token AS rotated
FROM test.stored('ghl_oauth') s, old_store o;

-- scopes: a token without contacts.write fails the write check before any
-- request; static tokens leave the decision to the API
SELECT test.mock_config('{"scopes": ["contacts.readonly"], "expire_all_tokens": true}');
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT scopes FROM ghl_fdw.token_status('ghl_oauth');
SELECT test.mock_forget();
SELECT ghl_fdw.require_scope('ghl_oauth');
SELECT ghl_fdw.require_scope('ghl_oauth', 'contacts.readonly');
SELECT ghl_fdw.require_scope('ghl');
-- real writes with that token are refused the same way, before the scan
-- of an UPDATE or DELETE sends anything
SELECT test.error_of($$INSERT INTO oauth.contacts (email) VALUES ('scope@example.com')$$);
SELECT test.error_of($$DELETE FROM oauth.contacts WHERE id = 'nonexistent-id'$$);
SELECT count(*) AS requests FROM test.requests();
ALTER SERVER ghl_oauth OPTIONS (ADD read_only 'true');
SELECT ghl_fdw.require_scope('ghl_oauth');
ALTER SERVER ghl_oauth OPTIONS (DROP read_only);
SELECT test.mock_config('{"scopes": ["contacts.readonly", "contacts.write", "locations/tasks.readonly", "calendars.readonly", "calendars/events.readonly", "calendars/events.write", "locations/customFields.readonly"], "expire_all_tokens": true}');
SELECT count(*) FROM oauth.contacts WHERE id = 'nonexistent-id';
SELECT ghl_fdw.require_scope('ghl_oauth');

-- the client_credentials grant: no refresh token to keep
SELECT test.oauth_server('ghl_cc', 'oauth_cc',
    $$client_id 'mock-client', client_secret 'mock-secret'$$);
SELECT test.mock_forget();
SELECT count(*) FROM oauth_cc.contacts;
SELECT method, path, body->>'grant_type' AS grant_type, status FROM test.requests();
SELECT mode, user_type, location_id, expires_at IS NOT NULL AS has_expiry
FROM ghl_fdw.token_status('ghl_cc');
SELECT refresh_token IS NULL AS no_refresh_token FROM test.stored('ghl_cc');
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT count(*) FROM oauth_cc.contacts WHERE id = 'nonexistent-id';
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT test.mock_forget();
SELECT count(*) FROM oauth_cc.contacts WHERE id = 'nonexistent-id';
SELECT method, path, body->>'grant_type' AS grant_type, status FROM test.requests();

-- wrong client credentials: a clear error, and the store keeps the tokens
-- of the old client, which are good again once it is back
CREATE TEMP TABLE cc_before AS SELECT * FROM test.stored('ghl_cc');
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl_cc
    OPTIONS (SET client_id 'other-client');
\x on
SELECT * FROM test.error_full('SELECT count(*) FROM oauth_cc.contacts');
\x off
SELECT (SELECT b FROM cc_before b) IS NOT DISTINCT FROM test.stored('ghl_cc') AS store_intact;
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl_cc
    OPTIONS (SET client_id 'mock-client');
SELECT test.mock_forget();
SELECT count(*) FROM oauth_cc.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();

-- Company: the agency token buys a token of the server's location
SELECT test.oauth_server('ghl_company', 'oauth_company',
    $$client_id 'mock-client', client_secret 'mock-secret', user_type 'Company'$$);
SELECT test.mock_forget();
SELECT count(*) FROM oauth_company.contacts;
SELECT method, path, version, body, status FROM test.requests();
SELECT mode, user_type, location_id, company_id,
       'contacts.write' = ANY (scopes) AS can_write
FROM ghl_fdw.token_status('ghl_company');
SELECT agency_token IS NOT NULL AND agency_token <> access_token AS two_tokens
FROM test.stored('ghl_company');
-- both tokens revoked: a 401, then a new agency token and a new location token
SELECT test.mock_config('{"expire_all_tokens": true}');
SELECT test.mock_forget();
SELECT count(*) FROM oauth_company.contacts WHERE id = 'nonexistent-id';
SELECT method, path, status FROM test.requests();

-- Company with a rotating refresh token: the refresh_token grant gives the
-- agency token, which buys the location token
SELECT r->>'refresh_token' AS company_seed
FROM test.mock('POST', '/oauth/token',
               '{"grant_type": "authorization_code", "code": "oauth-suite-2",
                 "client_id": "mock-client", "client_secret": "mock-secret",
                 "user_type": "Company"}') AS r
\gset
ALTER USER MAPPING FOR CURRENT_USER SERVER ghl_company
    OPTIONS (ADD refresh_token :'company_seed');
SELECT test.mock_forget();
SELECT count(*) FROM oauth_company.contacts WHERE id = 'nonexistent-id';
SELECT method, path, body->>'grant_type' AS grant_type, body->>'user_type' AS user_type,
       status
FROM test.requests();
SELECT mode, user_type, location_id, company_id FROM ghl_fdw.token_status('ghl_company');
SELECT refresh_token IS NOT NULL AS has_refresh_token FROM test.stored('ghl_company');

-- a static token: nothing to store or refresh
SELECT * FROM ghl_fdw.token_status('ghl');

-- other roles: no mapping, a clear error; the store is closed to them even
-- when their own queries go through it
CREATE ROLE ghl_oauth_other;
GRANT USAGE ON FOREIGN SERVER ghl_cc TO ghl_oauth_other;
GRANT USAGE ON SCHEMA oauth_cc, test TO ghl_oauth_other;
GRANT SELECT ON oauth_cc.contacts TO ghl_oauth_other;
GRANT EXECUTE ON FUNCTION test.error_of(text) TO ghl_oauth_other;
SET ROLE ghl_oauth_other;
SELECT test.error_of($$SELECT * FROM ghl_fdw.token_status('ghl_cc')$$);
SELECT test.error_of('SELECT count(*) FROM oauth_cc.contacts');
SELECT test.error_of('SELECT count(*) FROM ghl_fdw.token_store');
RESET ROLE;
CREATE USER MAPPING FOR ghl_oauth_other SERVER ghl_cc
    OPTIONS (client_id 'mock-client', client_secret 'mock-secret');
SET ROLE ghl_oauth_other;
SELECT count(*) FROM oauth_cc.contacts WHERE id = 'nonexistent-id';
SELECT mode, expires_at IS NOT NULL AS has_expiry FROM ghl_fdw.token_status('ghl_cc');
SELECT test.error_of('SELECT count(*) FROM ghl_fdw.token_store');
SELECT test.error_of('UPDATE ghl_fdw.token_store SET refresh_token = NULL');
RESET ROLE;

-- dropping a mapping or a server forgets its tokens
SELECT count(*) AS stored FROM ghl_fdw.token_store;
DROP USER MAPPING FOR ghl_oauth_other SERVER ghl_cc;
SELECT count(*) AS stored FROM ghl_fdw.token_store;
SET client_min_messages = warning;
DROP SCHEMA oauth, oauth_cc, oauth_company CASCADE;
DROP SERVER ghl_oauth, ghl_cc, ghl_company CASCADE;
RESET client_min_messages;
SELECT count(*) AS stored FROM ghl_fdw.token_store;
REVOKE ALL ON SCHEMA test FROM ghl_oauth_other;
REVOKE ALL ON FUNCTION test.error_of(text) FROM ghl_oauth_other;
DROP ROLE ghl_oauth_other;
SELECT test.mock_reset(100);
