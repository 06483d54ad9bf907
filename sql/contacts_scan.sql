--
-- Scanning contacts: a full scan pages past the search API's 10,000-row
-- window with searchAfter, lookups by id use GET /contacts/{id}, and JSON
-- becomes typed columns.
--
SELECT test.mock_reset(10500, 7);
SELECT test.mock_forget();

-- every contact arrives exactly once
SELECT count(*), count(DISTINCT id) FROM ghl.contacts;
-- the mock agrees on how many there are
SELECT count(*) AS mock_contacts
FROM test.mock('GET', '/_mock/state') AS s, jsonb_array_elements(s->'contacts');

-- 10,500 rows in pages of 500: 21 full pages, then one empty page; each
-- page after the first carries the previous page's last searchAfter cursor
SELECT count(*) AS requests,
       count(*) FILTER (WHERE method = 'POST' AND path = '/contacts/search') AS searches,
       count(*) FILTER (WHERE body ? 'searchAfter') AS with_cursor,
       count(*) FILTER (WHERE (body->>'pageLimit')::int = 500) AS page_limit_500,
       count(*) FILTER (WHERE body->>'locationId' = 've9EPM428h8vShlRW1KT') AS with_location,
       min(version) AS version
FROM test.requests();

-- typed values: a row picked by the mock's own state, compared field by field
SELECT test.mock_forget();
CREATE TEMP TABLE picked AS
SELECT c AS api FROM test.mock('GET', '/_mock/state') AS s,
       jsonb_array_elements(s->'contacts') AS c
WHERE jsonb_array_length(c->'tags') > 0 AND c->>'email' IS NOT NULL
ORDER BY c->>'id' LIMIT 1;
SELECT c.id = p.api->>'id' AS id_ok,
       c.email IS NOT DISTINCT FROM p.api->>'email' AS email_ok,
       c.first_name IS NOT DISTINCT FROM p.api->>'firstName' AS first_name_ok,
       c.tags = ARRAY(SELECT jsonb_array_elements_text(p.api->'tags')) AS tags_ok,
       c.dnd IS NOT DISTINCT FROM (p.api->>'dnd')::boolean AS dnd_ok,
       c.date_added = (p.api->>'dateAdded')::timestamptz AS date_added_ok,
       c.date_updated = (p.api->>'dateUpdated')::timestamptz AS date_updated_ok,
       c.custom_fields IS NOT DISTINCT FROM p.api->'customFields' AS custom_fields_ok,
       c.address1 IS NOT DISTINCT FROM p.api->>'address1' AS address_ok,
       c.raw->>'id' = c.id AS raw_ok,
       pg_typeof(c.tags) AS tags_type, pg_typeof(c.date_added) AS date_type
FROM ghl.contacts c JOIN picked p ON c.id = p.api->>'id';

-- the search spelling "address" fills address1 in full scans too
SELECT count(*) FILTER (WHERE c.address1 IS DISTINCT FROM s.api->>'address1') AS address_mismatches
FROM ghl.contacts c
JOIN (SELECT x AS api FROM test.mock('GET', '/_mock/state') AS s,
             jsonb_array_elements(s->'contacts') AS x) s ON s.api->>'id' = c.id;

-- lookup by id: a hit is one GET, a miss is zero rows (the API answers 404)
SELECT test.mock_forget();
SELECT id = (SELECT api->>'id' FROM picked) AS found
FROM ghl.contacts WHERE id = (SELECT api->>'id' FROM picked);
SELECT count(*) FROM ghl.contacts WHERE id = 'doesNotExist00000000';
SELECT count(*) FROM ghl.contacts WHERE id = NULL;
SELECT method, regexp_replace(path, '/contacts/[A-Za-z0-9]{20}$', '/contacts/{picked}') AS path,
       status, version
FROM test.requests();

-- an id with characters that need escaping stays one path segment
SELECT test.mock_forget();
SELECT count(*) FROM ghl.contacts WHERE id = 'a/b?c d';
SELECT method, path, status FROM test.requests();

-- a column whose field option names another key, and unknown keys are NULL
CREATE FOREIGN TABLE ghl.contacts_custom (
    id text,
    mail text OPTIONS (field 'email'),
    not_there text,
    added timestamptz OPTIONS (field 'dateAdded'),
    everything jsonb OPTIONS (field '*')
) SERVER ghl OPTIONS (resource 'contacts');
SELECT c.mail = p.api->>'email' AS mail_ok, c.not_there IS NULL AS missing_is_null,
       c.added = (p.api->>'dateAdded')::timestamptz AS added_ok,
       c.everything->>'id' = c.id AS whole_object_ok
FROM ghl.contacts_custom c JOIN picked p ON c.id = p.api->>'id';

-- a value that does not fit its column is an error naming column and table
CREATE FOREIGN TABLE ghl.contacts_badtype (
    id text,
    email integer
) SERVER ghl OPTIONS (resource 'contacts');
SELECT * FROM ghl.contacts_badtype WHERE id = (SELECT api->>'id' FROM picked);
CREATE FOREIGN TABLE ghl.contacts_badraw (id text, raw text)
    SERVER ghl OPTIONS (resource 'contacts');
SELECT * FROM ghl.contacts_badraw LIMIT 1;
DROP FOREIGN TABLE ghl.contacts_custom, ghl.contacts_badtype, ghl.contacts_badraw;

-- raw is the object the API sent, as jsonb_in would read it: keys in
-- jsonb's order whatever their order in the answer, a repeated key keeping
-- its last value, nested objects, arrays and numbers as they came; objects
-- with the same keys in the same order (the second contact) or in another
-- order (the third) alike
CREATE TEMP TABLE raw_page AS SELECT $${"total": 4, "contacts": [
  {"id": "rawContact0000000001", "zeta": 1, "b": {"y": [1, 2.50, {"k": null}], "x": true},
   "aa": "first", "a": -0.0},
  {"id": "rawContact0000000002", "zeta": 2e3, "b": {"y": [], "x": false},
   "aa": "second", "a": "str"},
  {"a": 1, "aa": "third", "b": {"x": null, "y": [3]}, "zeta": 3, "id": "rawContact0000000003"},
  {"id": "rawContact0000000004", "dup": 1, "zeta": 4, "dup": {"last": 2}, "b": {}, "aa": "",
   "a": 12345678901234567890.5}]}$$::text AS body;
SELECT test.fault(jsonb_build_object(
    'method', 'POST', 'path', '^/contacts/search$', 'kind', 'raw', 'status', 200,
    'body_base64', translate(encode(convert_to(body, 'UTF8'), 'base64'), E'\n', '')))
FROM raw_page;
SELECT c.id, c.raw = a.api AS same, c.raw->'b'->'y' AS b_y, c.raw->'dup' AS dup
FROM ghl.contacts c
JOIN (SELECT x AS api FROM raw_page, jsonb_array_elements(body::jsonb->'contacts') AS x) a
  ON a.api->>'id' = c.id
ORDER BY c.id;
DROP TABLE raw_page;

-- a small page size pages correctly too
ALTER SERVER ghl OPTIONS (ADD page_size '100');
SELECT test.mock_reset(1050, 3);
SELECT test.mock_forget();
SELECT count(*), count(DISTINCT id) FROM ghl.contacts;
SELECT count(*) AS requests FROM test.requests();
ALTER SERVER ghl OPTIONS (DROP page_size);
SELECT test.mock_reset(100, 42);
