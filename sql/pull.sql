--
-- The application's own tables: ghl_fdw.pull_contact_trigger() pulls the
-- GHL contact of a new row (by id, else email, else phone) into the Rankr
-- tables and fills the row's blank columns, never those the application
-- set; ghl_fdw.enrich() fills existing rows, from synced contacts first
-- and through the API only for the rest.
--
SELECT test.mock_reset(100, 42);
INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
VALUES ('ghl', '10 years', '2 years');
CREATE SCHEMA rankr_app;
CREATE TABLE rankr_app.clients (
    id serial PRIMARY KEY,
    ghl_contact_id text,
    email text,
    phone text,
    first_name text,
    business_name text,
    city text,
    tags text[]
);
CREATE TRIGGER pull BEFORE INSERT OR UPDATE OF ghl_contact_id, email, phone ON rankr_app.clients
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger(
        'ghl', 'id:ghl_contact_id,email:email,phone:phone',
        'ghl_contact_id=id', 'email=email', 'first_name=first_name', 'business_name=company_name',
        'city=city', 'phone=phone', 'tags=tags');
-- three contacts of the mock, to find by id, by email and by phone
CREATE TEMP TABLE picks AS
SELECT c->>'id' AS id, c->>'email' AS email, c->>'phone' AS phone,
       c->>'firstName' AS first_name, c->>'companyName' AS company_name, c->>'city' AS city,
       ARRAY(SELECT jsonb_array_elements_text(c->'tags')) AS tags, n
FROM test.mock('GET', '/_mock/state') AS s,
     jsonb_array_elements(s->'contacts') WITH ORDINALITY AS x(c, n)
WHERE c->>'email' IS NOT NULL AND c->>'phone' IS NOT NULL AND c->>'companyName' IS NOT NULL
ORDER BY n LIMIT 3;

-- by id: the contact, its tasks, notes and appointments, and the blanks filled
SELECT test.mock_forget();
INSERT INTO rankr_app.clients (ghl_contact_id) SELECT id FROM picks WHERE n = (SELECT min(n) FROM picks);
SELECT * FROM test.request_counts();
SELECT c.ghl_contact_id = p.id AS same_contact, c.email = p.email AS email,
       c.first_name = p.first_name AS first_name, c.business_name = p.company_name AS business_name,
       c.city IS NOT DISTINCT FROM p.city AS city, c.tags = p.tags AS tags
FROM rankr_app.clients c JOIN picks p ON p.id = c.ghl_contact_id;
SELECT count(*) AS synced FROM rankr.contacts WHERE id = (SELECT ghl_contact_id FROM rankr_app.clients);

-- by email, with a value the application set: it is kept
SELECT test.mock_forget();
INSERT INTO rankr_app.clients (email, city)
SELECT upper(email), 'Our own city' FROM picks ORDER BY n OFFSET 1 LIMIT 1;
SELECT method, endpoint, requests FROM test.request_counts() WHERE method = 'POST';
SELECT body->'filters' AS search FROM test.requests() WHERE path = '/contacts/search';
SELECT c.ghl_contact_id = p.id AS found, c.city AS city, c.first_name = p.first_name AS first_name
FROM rankr_app.clients c JOIN picks p ON lower(p.email) = lower(c.email);

-- by phone
SELECT test.mock_forget();
INSERT INTO rankr_app.clients (phone) SELECT phone FROM picks ORDER BY n OFFSET 2 LIMIT 1;
SELECT c.ghl_contact_id = p.id AS found, c.email = p.email AS email
FROM rankr_app.clients c JOIN picks p ON p.phone = c.phone WHERE c.email IS NOT NULL;

-- nobody: the row stays as it is
SELECT test.mock_forget();
INSERT INTO rankr_app.clients (email) VALUES ('nobody@example.invalid') RETURNING ghl_contact_id, first_name;
SELECT method, endpoint, requests FROM test.request_counts();

-- an UPDATE of other columns asks nothing; an UPDATE of a match column pulls
SELECT test.mock_forget();
UPDATE rankr_app.clients SET city = 'Elsewhere' WHERE email = 'nobody@example.invalid';
SELECT count(*) AS requests FROM test.requests();
UPDATE rankr_app.clients SET email = (SELECT email FROM picks ORDER BY n LIMIT 1)
WHERE email = 'nobody@example.invalid' RETURNING ghl_contact_id = (SELECT id FROM picks ORDER BY n LIMIT 1) AS found, city;

-- an API failure fails the INSERT (on_error=fail, the default) ...
SELECT test.mock_forget();
SELECT test.fault('{"method": "POST", "path": "^/contacts/search$", "status": 500}');
SELECT test.error_of($$INSERT INTO rankr_app.clients (email) VALUES ('x@example.com')$$);
-- ... or keeps the row and records the failure (on_error=keep)
CREATE TABLE rankr_app.leads (id serial, email text, first_name text);
CREATE TRIGGER pull BEFORE INSERT ON rankr_app.leads
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger(
        'ghl', 'email:email', 'first_name=first_name', 'on_error=keep');
SELECT test.fault('{"method": "POST", "path": "^/contacts/search$", "status": 500}');
INSERT INTO rankr_app.leads (email) VALUES ('x@example.com') RETURNING email, first_name;
SELECT mode, status, error FROM ghl_fdw.sync_runs
WHERE run_id = (SELECT max(run_id) FROM ghl_fdw.sync_runs) AND resource = 'contacts';

-- bad arguments
CREATE TABLE rankr_app.bad (email text);
CREATE TRIGGER pull BEFORE INSERT ON rankr_app.bad
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger('ghl', 'mail:email');
SELECT test.error_of($$INSERT INTO rankr_app.bad VALUES ('x@example.com')$$);
CREATE OR REPLACE TRIGGER pull BEFORE INSERT ON rankr_app.bad
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger('ghl', 'email:email', 'nick=first_name');
SELECT test.error_of($$INSERT INTO rankr_app.bad VALUES ('x@example.com')$$);
CREATE OR REPLACE TRIGGER pull BEFORE INSERT ON rankr_app.bad
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger('ghl', 'email:email', 'email=shoe_size');
SELECT test.error_of($$INSERT INTO rankr_app.bad VALUES ('x@example.com')$$);
CREATE OR REPLACE TRIGGER pull AFTER INSERT ON rankr_app.bad
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw.pull_contact_trigger('ghl', 'email:email');
SELECT test.error_of($$INSERT INTO rankr_app.bad VALUES ('x@example.com')$$);
DROP TABLE rankr_app.bad;

-- enrich: 10,000 rows of the application, found by email or else by phone,
-- their contacts synced but for five created since: only those five are
-- looked up through the API
DROP SCHEMA rankr CASCADE;
SELECT test.mock_reset(10100, 5);
SELECT resource, status FROM ghl_fdw.sync('ghl', '{contacts}');
CREATE TEMP TABLE created AS
SELECT jsonb_array_elements_text(m->'created') AS id
FROM test.mock('POST', '/_mock/mutate', '{"seed": 4, "create": 5}') AS m;
CREATE TABLE rankr_app.customers (id serial PRIMARY KEY, email text, phone text,
                                  name text, company text);
INSERT INTO rankr_app.customers (email, phone)
SELECT email, phone FROM rankr.contacts WHERE email IS NOT NULL OR phone IS NOT NULL
ORDER BY id LIMIT 9995;
INSERT INTO rankr_app.customers (email)
SELECT c->>'email' FROM test.mock('GET', '/_mock/state') AS s, jsonb_array_elements(s->'contacts') AS c
WHERE c->>'id' IN (SELECT id FROM created);
-- a value the application set stays
UPDATE rankr_app.customers SET company = 'Set by us' WHERE id = 1;
SELECT count(*) AS customers FROM rankr_app.customers;
SELECT test.mock_forget();
SELECT jsonb_pretty(ghl_fdw.enrich('rankr_app.customers', 'ghl', 'email:email,phone:phone',
                                   '{"name": "name", "company": "company_name"}'));
SELECT * FROM test.request_counts();
-- every row got its contact's values, but for the company the application set
SELECT count(*) AS rows, count(*) FILTER (WHERE name = co_name) AS names_filled,
       count(*) FILTER (WHERE company IS NOT DISTINCT FROM co_company) AS companies_equal,
       (SELECT company FROM rankr_app.customers WHERE id = 1) AS kept
FROM (SELECT cu.name, cu.company, co.name AS co_name, co.company_name AS co_company
      FROM rankr_app.customers cu JOIN rankr.contacts co ON lower(co.email) = lower(cu.email)
      UNION ALL
      SELECT cu.name, cu.company, co.name, co.company_name
      FROM rankr_app.customers cu JOIN rankr.contacts co ON co.phone = cu.phone
      WHERE cu.email IS NULL) AS matched;
-- nothing left to fill: nothing to do
SELECT test.mock_forget();
SELECT ghl_fdw.enrich('rankr_app.customers', 'ghl', 'email:email,phone:phone',
                      '{"name": "name"}')->'rows' AS rows;
SELECT count(*) AS requests FROM test.requests();
SELECT test.error_of($$SELECT ghl_fdw.enrich('rankr_app.customers', 'ghl', 'email:email', '{"name": "nickname"}')$$);
-- a column of the application's own type, which the caller's search_path
-- finds: enrich names the type whatever path its statements run with
CREATE DOMAIN rankr_app.nickname AS text;
ALTER TABLE rankr_app.customers ADD COLUMN nick rankr_app.nickname;
SET search_path = rankr_app, public;
SELECT ghl_fdw.enrich('rankr_app.customers', 'ghl', 'email:email,phone:phone',
                      '{"nick": "first_name"}')->'filled' AS filled;
RESET search_path;
SELECT count(*) FILTER (WHERE cu.nick IS NOT DISTINCT FROM co.first_name) AS nicks_filled,
       count(*) AS rows
FROM rankr_app.customers cu JOIN rankr.contacts co ON lower(co.email) = lower(cu.email);

-- leave things as they were
SET client_min_messages = warning;
DROP SCHEMA rankr_app CASCADE;
DROP SCHEMA rankr CASCADE;
RESET client_min_messages;
DELETE FROM ghl_fdw.sync_state;
DELETE FROM ghl_fdw.sync_runs;
DELETE FROM ghl_fdw.sync_passes;
DELETE FROM ghl_fdw.sync_settings;
SELECT test.mock_reset(100, 42);
