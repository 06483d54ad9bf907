--
-- INSERT, UPDATE and DELETE on contacts: the exact requests each form
-- sends (through the mock's request log), RETURNING, read-back through the
-- foreign table, and the errors caught before any request.
--
SELECT test.mock_reset(100, 42);
-- a custom field of the mock's location, by id and by key
SELECT f->>'id' AS cf_id, f->>'fieldKey' AS cf_key
FROM test.mock('GET', '/_mock/state') AS s, jsonb_array_elements(s->'customFields') AS f
WHERE f->>'fieldKey' = 'contact.favourite_colour' \gset
-- INSERT ... RETURNING id: one POST /contacts/ with locationId from the
-- server, companyName (settable only at creation), custom fields in the
-- API's input form and tags
SELECT test.mock_forget();
INSERT INTO ghl.contacts (first_name, last_name, email, phone, company_name,
                          city, dnd, tags, custom_fields)
VALUES ('Ada', 'Lovelace', 'ada@example.com', '+14155550100', 'Analytical Engines',
        'London', false, ARRAY['vip', 'math'],
        jsonb_build_array(jsonb_build_object('id', :'cf_id', 'value', 'green')))
RETURNING id AS ada \gset
SELECT length(:'ada') AS id_length;
SELECT * FROM test.writes();

-- RETURNING shows what the API returned: the name it derived, its dates
SELECT test.mock_forget();
CREATE TEMP TABLE returned_contact (LIKE ghl.contacts);
WITH ins AS (
    INSERT INTO ghl.contacts (first_name, last_name, custom_fields)
    VALUES ('Grace', 'Hopper',
            jsonb_build_array(jsonb_build_object('key', :'cf_key', 'field_value', 'blue')))
    RETURNING *)
INSERT INTO returned_contact SELECT * FROM ins;
SELECT id IS NOT NULL AS has_id, first_name, last_name, name, location_id, type,
       tags, custom_fields = jsonb_build_array(jsonb_build_object('id', :'cf_id', 'value', 'blue')) AS cf_ok,
       date_added IS NOT NULL AND date_added = date_updated AS dated,
       raw->>'id' = id AS raw_ok
FROM returned_contact;
SELECT * FROM test.writes();
-- read back: every column but raw is what RETURNING gave (the create's
-- answer also carries "deleted": false)
SELECT to_jsonb(c) - 'raw' = to_jsonb(r) - 'raw' AS same_row,
       r.raw - 'deleted' = c.raw AS same_raw
FROM ghl.contacts c, returned_contact r
WHERE c.id = (SELECT id FROM returned_contact);

-- read-back of the first insert through the foreign table
SELECT first_name, last_name, name, email, phone, company_name, city, dnd, tags,
       custom_fields = jsonb_build_array(jsonb_build_object('id', :'cf_id', 'value', 'green')) AS cf_ok
FROM ghl.contacts WHERE id = :'ada';

-- a one-column UPDATE sends that one field; RETURNING carries the API's
-- new dateUpdated
SELECT test.mock_forget();
UPDATE ghl.contacts SET city = 'Paris' WHERE id = :'ada'
RETURNING city, name, date_updated >= date_added AS updated_later;
SELECT * FROM test.writes();

-- tags: only the difference, through the tag endpoints, so tags someone
-- else adds meanwhile are not overwritten
SELECT test.mock_forget();
UPDATE ghl.contacts SET tags = ARRAY['vip', 'poet'] WHERE id = :'ada'
RETURNING tags;
SELECT * FROM test.writes();
SELECT test.mock_forget();
UPDATE ghl.contacts SET tags = tags || 'speaker'::text WHERE id = :'ada' RETURNING tags;
UPDATE ghl.contacts SET tags = array_remove(tags, 'vip') WHERE id = :'ada' RETURNING tags;
SELECT * FROM test.writes();
-- nothing changes: no request at all
SELECT test.mock_forget();
UPDATE ghl.contacts SET tags = tags WHERE id = :'ada' RETURNING tags;
SELECT method, path FROM test.writes();

-- several columns, custom fields and a NULL in one PUT
SELECT test.mock_forget();
UPDATE ghl.contacts
SET first_name = 'Augusta Ada', website = NULL, dnd = true,
    custom_fields = jsonb_build_array(jsonb_build_object('key', 'favourite_colour', 'value', 'red'))
WHERE id = :'ada'
RETURNING first_name, name, website, dnd,
          custom_fields = jsonb_build_array(jsonb_build_object('id', :'cf_id', 'value', 'red')) AS cf_ok;
SELECT * FROM test.writes();
SELECT first_name, last_name, name, city, website, dnd, tags, company_name,
       custom_fields = jsonb_build_array(jsonb_build_object('id', :'cf_id', 'value', 'red')) AS cf_ok
FROM ghl.contacts WHERE id = :'ada';

-- refused before any request: the API cannot change companyName, nor
-- anything it assigns
SELECT test.mock_forget();
UPDATE ghl.contacts SET company_name = 'Babbage & Co' WHERE id = :'ada';
UPDATE ghl.contacts SET date_added = now() WHERE id = :'ada';
INSERT INTO ghl.contacts (id, first_name) VALUES ('x', 'y');
INSERT INTO ghl.contacts (first_name) VALUES ('y') ON CONFLICT DO NOTHING;
SELECT count(*) AS requests FROM test.writes();

-- a 422 carries the API's messages in errdetail, and names the row
SELECT test.mock_forget();
SELECT test.error_detail_of(format(
    'UPDATE ghl.contacts SET custom_fields = ''[{"id": "noSuchField", "value": 1}]'' WHERE id = %L',
    :'ada'));
-- custom fields that are not a list are caught before any request
INSERT INTO ghl.contacts (first_name, custom_fields) VALUES ('x', '{"id": 1}');
INSERT INTO ghl.contacts (first_name, custom_fields) VALUES ('x', '[{"value": 1}]');
SELECT * FROM test.writes();

-- the API is not transactional: rows before a failing one stay written,
-- and the error names the failing row
SELECT test.mock_forget();
SELECT test.fault('{"method": "POST", "path": "^/contacts/$", "skip": 1, "times": 1, "kind": "status", "status": 422, "body": {"statusCode": 422, "message": ["email must be an email"]}}');
INSERT INTO ghl.contacts (first_name, last_name)
VALUES ('Row', 'One'), ('Row', 'Two'), ('Row', 'Three');
SELECT method, path, status FROM test.writes();
SELECT count(*) AS written FROM test.mock('GET', '/_mock/state') AS s,
       jsonb_array_elements(s->'contacts') AS c
WHERE c->>'lastName' IN ('One', 'Two', 'Three');

-- with retries allowed, a create that may have reached the API is not
-- repeated (it could create the contact twice); an update is
ALTER SERVER ghl OPTIONS (SET max_retries '2');
SELECT test.mock_forget();
SELECT test.fault('{"method": "POST", "path": "^/contacts/$", "times": 1, "kind": "status", "status": 503}');
SELECT test.error_of($$INSERT INTO ghl.contacts (first_name) VALUES ('Once')$$);
SELECT test.fault('{"method": "PUT", "path": "^/contacts/", "times": 1, "kind": "status", "status": 503}');
UPDATE ghl.contacts SET city = 'Lyon' WHERE id = :'ada' RETURNING city;
SELECT method, path, status FROM test.writes();
ALTER SERVER ghl OPTIONS (SET max_retries '0');

-- statement_timeout interrupts a write that hangs (the value is the one
-- the contact already has, so the outcome does not matter)
SELECT test.mock_forget();
SELECT test.fault('{"method": "PUT", "path": "^/contacts/", "times": 1, "kind": "delay", "delay_ms": 1500}');
SET statement_timeout = '300ms';
\set VERBOSITY terse
UPDATE ghl.contacts SET city = 'Lyon' WHERE id = :'ada';
\set VERBOSITY default
RESET statement_timeout;
-- the mock answers the abandoned PUT when its delay ends: wait for that,
-- so the write is done before the next test
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT FROM test.requests() WHERE method = 'PUT' AND status IS NOT NULL);
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT method, path, status FROM test.writes();

-- DELETE ... RETURNING shows the row as it was read
SELECT test.mock_forget();
DELETE FROM ghl.contacts WHERE id = :'ada' RETURNING first_name, city, tags;
SELECT * FROM test.writes();
SELECT count(*) AS still_there FROM ghl.contacts WHERE id = :'ada';

-- a row that vanished between the read and the write: 0 rows, no error
SELECT test.mock_forget();
INSERT INTO ghl.contacts (first_name) VALUES ('Ephemeral') RETURNING id AS eph \gset
SELECT test.fault(jsonb_build_object('method', 'DELETE', 'path', '^/contacts/' || :'eph' || '$',
                                     'kind', 'status', 'status', 404, 'times', 1,
                                     'body', '{"statusCode": 404, "message": "Contact not found"}'::jsonb));
DELETE FROM ghl.contacts WHERE id = :'eph';
SELECT test.fault(jsonb_build_object('method', 'PUT', 'path', '^/contacts/' || :'eph' || '$',
                                     'kind', 'status', 'status', 404, 'times', 1,
                                     'body', '{"statusCode": 404, "message": "Contact not found"}'::jsonb));
UPDATE ghl.contacts SET city = 'Nowhere' WHERE id = :'eph';
-- gone for real: the read finds nothing, so nothing is written
DELETE FROM ghl.contacts WHERE id = :'eph';
DELETE FROM ghl.contacts WHERE id = :'eph';
UPDATE ghl.contacts SET city = 'Nowhere' WHERE id = :'eph';
SELECT method, path, status FROM test.writes();

-- EXPLAIN of DML shows the requests and makes none
SELECT test.mock_forget();
EXPLAIN (COSTS OFF) INSERT INTO ghl.contacts (first_name) VALUES ('x');
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ghl.contacts SET city = 'x', tags = '{}' WHERE id = 'c1';
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ghl.contacts WHERE id = 'c1' RETURNING id;
SELECT count(*) AS requests FROM test.writes();

-- a read_only server refuses every write before any request
SELECT test.mock_forget();
ALTER SERVER ghl OPTIONS (ADD read_only 'true');
INSERT INTO ghl.contacts (first_name) VALUES ('x');
UPDATE ghl.contacts SET city = 'x' WHERE id = :'eph';
DELETE FROM ghl.contacts WHERE id = :'eph';
ALTER SERVER ghl OPTIONS (DROP read_only);
SELECT count(*) AS requests FROM test.writes();

SELECT test.mock_reset(100, 42);
