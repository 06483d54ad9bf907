--
-- IMPORT FOREIGN SCHEMA: the four standard tables, LIMIT TO and EXCEPT,
-- and the location's contact custom fields as typed columns.
--
CREATE SCHEMA imp;
SELECT test.mock_forget();
IMPORT FOREIGN SCHEMA ghl LIMIT TO (tasks, notes) FROM SERVER ghl INTO imp;
SELECT relname FROM pg_class WHERE relnamespace = 'imp'::regnamespace ORDER BY 1;
DROP SCHEMA imp CASCADE;
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA ghl EXCEPT (contacts, appointments, nosuchtable) FROM SERVER ghl INTO imp;
SELECT relname FROM pg_class WHERE relnamespace = 'imp'::regnamespace ORDER BY 1;
DROP SCHEMA imp CASCADE;
CREATE SCHEMA imp;
-- without the option, no request is made
SELECT count(*) AS requests FROM test.requests();

-- custom fields: one GET, one column per contact field, typed
IMPORT FOREIGN SCHEMA ghl LIMIT TO (contacts) FROM SERVER ghl INTO imp
    OPTIONS (custom_fields 'true');
SELECT method, path, query, version FROM test.requests();
SELECT attname, format_type(atttypid, atttypmod) AS type,
       regexp_replace(array_to_string(attfdwoptions, ','), '[A-Za-z0-9]{20}', '{id}') AS options
FROM pg_attribute WHERE attrelid = 'imp.contacts'::regclass AND attnum > 25 ORDER BY attnum;
-- their values are the contacts' custom field values
CREATE TEMP TABLE state AS SELECT s FROM test.mock('GET', '/_mock/state') AS s;
SELECT count(*) AS with_colour,
       bool_and(favourite_colour = (SELECT f->>'value'
                                    FROM state, jsonb_array_elements(s->'contacts') AS c,
                                         jsonb_array_elements(c->'customFields') AS f,
                                         jsonb_array_elements(s->'customFields') AS d
                                    WHERE c->>'id' = x.id AND d->>'id' = f->>'id'
                                      AND d->>'fieldKey' = 'contact.favourite_colour')) AS colour_ok
FROM imp.contacts x WHERE favourite_colour IS NOT NULL;
SELECT count(*) FILTER (WHERE lifetime_value IS NOT NULL) =
       (SELECT count(*) FROM state, jsonb_array_elements(s->'contacts') AS c,
               jsonb_array_elements(c->'customFields') AS f,
               jsonb_array_elements(s->'customFields') AS d
        WHERE d->>'id' = f->>'id' AND d->>'fieldKey' = 'contact.lifetime_value')
       AS lifetime_count_ok,
       count(*) FILTER (WHERE lifetime_value IS NOT NULL) > 0 AS some_lifetime,
       pg_typeof(max(lifetime_value)) AS lifetime_type,
       pg_typeof(max(renewal_date)) AS renewal_type,
       bool_and(cardinality(interests) >= 1) AS interests_ok
FROM imp.contacts;
DROP SCHEMA imp CASCADE;

-- bad imports
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO imp OPTIONS (custom_field 'true');
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO imp OPTIONS (custom_fields 'maybe');
IMPORT FOREIGN SCHEMA public FROM SERVER ghl INTO imp;
DROP SCHEMA imp;
