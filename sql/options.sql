--
-- The validator: every option per catalog, unknown names, bad values and
-- auth-mode combinations fail at DDL time with a clear message.
--
-- unknown option names, with the valid ones in the hint
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (locationid 'x');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (access_token 'secret-value');
CREATE FOREIGN DATA WRAPPER ghl_fdw2 HANDLER ghl_fdw.ghl_fdw_handler
    VALIDATOR ghl_fdw.ghl_fdw_validator OPTIONS (base_url 'http://x');
CREATE FOREIGN TABLE bad_t (id text) SERVER ghl OPTIONS (table 'contacts');
CREATE FOREIGN TABLE bad_t (id text OPTIONS (column 'x')) SERVER ghl;

-- bad values, each naming its option
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (base_url 'ftp://example.com');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (base_url 'services.leadconnectorhq.com');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (token_url 'file:///etc/passwd');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (timeout_ms 'soon');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (timeout_ms '-5');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (timeout_ms '0');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (connect_timeout_ms '1.5');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (max_retries '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (max_retries '99999999999');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (page_size '0');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (page_size '501');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (read_only 'perhaps');
CREATE SERVER bad FOREIGN DATA WRAPPER ghl_fdw OPTIONS (location_id '');
CREATE FOREIGN TABLE bad_t (id text) SERVER ghl OPTIONS (resource 'opportunities');
CREATE FOREIGN TABLE bad_t (id text OPTIONS (field '')) SERVER ghl OPTIONS (resource 'contacts');

-- auth modes: exactly one per user mapping
CREATE SERVER auth_test FOREIGN DATA WRAPPER ghl_fdw OPTIONS (location_id 'loc');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test OPTIONS (token 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test;
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (access_token 'tok', client_id 'id', client_secret 'sec');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (client_id 'id', refresh_token 'rt');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (client_secret 'sec');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (access_token 'tok', user_type 'Agency');

-- good ones are accepted, and ALTER is validated on the result
CREATE SERVER good FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 'loc', base_url 'https://example.com/', timeout_ms '1000',
             connect_timeout_ms '500', max_retries '0', page_size '500',
             read_only 'true', api_version '2021-07-28', sync_schema 'crm',
             token_url 'https://example.com/oauth/token');
CREATE USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (client_id 'id', client_secret 'sec', user_type 'Company');
ALTER USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (ADD access_token 'tok');
ALTER USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (DROP client_id);
ALTER USER MAPPING FOR CURRENT_USER SERVER auth_test
    OPTIONS (ADD refresh_token 'rt');
ALTER SERVER good OPTIONS (SET page_size '1000');
CREATE FOREIGN TABLE good_t (id text, mail text OPTIONS (field 'email'))
    SERVER good OPTIONS (resource 'contacts');

-- the secrets given above appear in no message
SELECT count(*) FROM pg_user_mappings WHERE srvname = 'auth_test';

-- a server without location_id is refused when used
CREATE SERVER no_loc FOREIGN DATA WRAPPER ghl_fdw OPTIONS (base_url 'http://127.0.0.1:9');
CREATE USER MAPPING FOR CURRENT_USER SERVER no_loc OPTIONS (access_token 'tok');
CREATE FOREIGN TABLE no_loc_t (id text) SERVER no_loc OPTIONS (resource 'contacts');
SELECT * FROM no_loc_t;

-- a table whose name is no resource and that has no resource option
CREATE FOREIGN TABLE whatever (id text) SERVER good;
SELECT * FROM whatever;

-- a role without a user mapping
CREATE ROLE ghl_nobody;
GRANT USAGE ON SCHEMA ghl TO ghl_nobody;
GRANT SELECT ON ghl.contacts TO ghl_nobody;
SET ROLE ghl_nobody;
SELECT count(*) FROM ghl.contacts;
RESET ROLE;
REVOKE ALL ON ghl.contacts FROM ghl_nobody;
REVOKE ALL ON SCHEMA ghl FROM ghl_nobody;
DROP ROLE ghl_nobody;

DROP SERVER good, auth_test, no_loc CASCADE;
