--
-- Shared setup of the regression suites: the extension, a server that
-- points at the mock GHL API, and helpers that talk to the mock's admin
-- API (its request log, fault injection and data reset).
--
\getenv mock_url MOCK_URL
SET client_min_messages = warning;
CREATE EXTENSION ghl_fdw;
CREATE SCHEMA test;
CREATE TABLE test.env AS SELECT :'mock_url'::text AS mock_url;

-- single-quote a string for the shell
CREATE FUNCTION test.shell_quote(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '''' || replace(s, '''', '''\''''') || '''' $$;

-- call the mock: one JSON value per line of its answer
CREATE FUNCTION test.mock(method text, path text, body jsonb DEFAULT NULL)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    cmd text := format('curl -sS --fail-with-body -X %s %s', method,
                       test.shell_quote((SELECT mock_url FROM test.env) || path));
BEGIN
    IF body IS NOT NULL THEN
        cmd := cmd || ' -H ''Content-Type: application/json'' --data-binary '
               || test.shell_quote(body::text);
    END IF;
    IF to_regclass('pg_temp.mock_out') IS NULL THEN
        CREATE TEMP TABLE mock_out (line text);
    END IF;
    TRUNCATE mock_out;
    EXECUTE format('COPY mock_out FROM PROGRAM %L WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')', cmd);
    RETURN QUERY SELECT line::jsonb FROM mock_out WHERE line <> '';
END $$;

-- the API requests the mock received since the last test.mock_forget()
CREATE FUNCTION test.requests()
RETURNS TABLE (seq int, method text, path text, query jsonb, body jsonb,
               version text, status int)
LANGUAGE sql AS $$
    SELECT (r->>'seq')::int, r->>'method', r->>'path', r->'query', r->'body',
           r->>'version', (r->>'status')::int
    FROM test.mock('GET', '/_mock/requests?format=jsonl') AS r
    ORDER BY 1
$$;

-- the attempts the mock saw, with the fault it acted out on each
CREATE FUNCTION test.attempts()
RETURNS TABLE (seq int, method text, path text, status int, fault text)
LANGUAGE sql AS $$
    SELECT (r->>'seq')::int, r->>'method', r->>'path', (r->>'status')::int,
           r->>'fault'
    FROM test.mock('GET', '/_mock/requests?format=jsonl') AS r
    ORDER BY 1
$$;

-- forget logged requests and injected faults
CREATE FUNCTION test.mock_forget() RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM test.mock('DELETE', '/_mock/requests');
    SELECT count(*) FROM test.mock('DELETE', '/_mock/faults');
$$;

CREATE FUNCTION test.fault(spec jsonb) RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM test.mock('POST', '/_mock/faults', spec);
$$;

-- regenerate the mock's data
CREATE FUNCTION test.mock_reset(contacts int, seed int DEFAULT 42)
RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM test.mock('POST', '/_mock/reset',
                                   jsonb_build_object('contacts', contacts, 'seed', seed));
$$;

-- run a statement that must fail; show its SQLSTATE and message
CREATE FUNCTION test.error_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN state || ': ' || msg;
END $$;

CREATE SERVER ghl FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url :'mock_url',
             max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl
    OPTIONS (access_token 'pit-mock-token');
CREATE SCHEMA ghl;
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO ghl;
RESET client_min_messages;

\d ghl.contacts
\d ghl.tasks
\d ghl.notes
\d ghl.appointments

-- run a statement that must fail; show its SQLSTATE, message and detail,
-- with 20-character ids and the API's random traceIds masked
CREATE FUNCTION test.error_detail_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    detail text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(regexp_replace(
               state || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(detail, ''), ''),
               ' \(traceId [^)]*\)', ''),
           '[A-Za-z0-9]{20}', '{id}', 'g');
END $$;

-- the requests since test.mock_forget(), with 20-character ids masked in
-- paths and bodies (the mock assigns them)
CREATE FUNCTION test.writes()
RETURNS TABLE (method text, path text, body jsonb, version text, status int)
LANGUAGE sql AS $$
    SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{id}', 'g'),
           regexp_replace(body::text, '"[A-Za-z0-9]{20}"', '"{id}"', 'g')::jsonb,
           version, status
    FROM test.requests()
$$;

-- The Rankr tables compared field by field with the mock's state: per
-- resource, the mock's rows, the live local rows, mock rows without an
-- equal live row (missing), live rows without an equal mock row (extra),
-- and tombstones.  Appointments are compared without "status", which only
-- the per-contact endpoint reports (checked on its own below).  The
-- Python tests use it too.
CREATE FUNCTION test.sync_diff(sync_schema text DEFAULT 'rankr',
                               location text DEFAULT 've9EPM428h8vShlRW1KT')
RETURNS TABLE (resource text, mock_rows bigint, live_rows bigint, missing bigint,
               extra bigint, tombstones bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := (SELECT m FROM test.mock('GET', '/_mock/state?location=' || location) AS m);
BEGIN
    CREATE TEMP TABLE want_contacts ON COMMIT DROP AS
    SELECT c->>'id' AS id, c->>'locationId' AS location_id, c->>'firstName' AS first_name,
           c->>'lastName' AS last_name, c->>'name' AS name, c->>'email' AS email,
           c->>'phone' AS phone, c->>'companyName' AS company_name, c->>'source' AS source,
           c->>'type' AS type, c->>'assignedTo' AS assigned_to, c->>'address1' AS address1,
           c->>'city' AS city, c->>'state' AS state, c->>'postalCode' AS postal_code,
           c->>'country' AS country, c->>'website' AS website, c->>'timezone' AS timezone,
           (c->>'dnd')::boolean AS dnd,
           ARRAY(SELECT jsonb_array_elements_text(c->'tags')) AS tags,
           c->'customFields' AS custom_fields, c->>'businessId' AS business_id,
           (c->>'dateAdded')::timestamptz AS date_added,
           (c->>'dateUpdated')::timestamptz AS date_updated
    FROM jsonb_array_elements(s->'contacts') AS c;
    CREATE TEMP TABLE want_tasks ON COMMIT DROP AS
    SELECT t->>'id' AS id, location AS location_id, t->>'contactId' AS contact_id,
           t->>'title' AS title, t->>'body' AS body, t->>'assignedTo' AS assigned_to,
           (t->>'dueDate')::timestamptz AS due_date, (t->>'completed')::boolean AS completed
    FROM jsonb_array_elements(s->'tasks') AS t;
    CREATE TEMP TABLE want_notes ON COMMIT DROP AS
    SELECT n->>'id' AS id, location AS location_id, n->>'contactId' AS contact_id,
           n->>'body' AS body, n->>'userId' AS user_id,
           (n->>'dateAdded')::timestamptz AS date_added
    FROM jsonb_array_elements(s->'notes') AS n;
    CREATE TEMP TABLE want_appointments ON COMMIT DROP AS
    SELECT a->>'id' AS id, a->>'contactId' AS contact_id, a->>'calendarId' AS calendar_id,
           a->>'locationId' AS location_id, a->>'title' AS title,
           a->>'appointmentStatus' AS appointment_status,
           a->>'assignedUserId' AS assigned_user_id, a->>'address' AS address,
           a->>'notes' AS notes, (a->>'startTime')::timestamptz AS start_time,
           (a->>'endTime')::timestamptz AS end_time,
           (a->>'dateAdded')::timestamptz AS date_added,
           (a->>'dateUpdated')::timestamptz AS date_updated
    FROM jsonb_array_elements(s->'appointments') AS a;
    FOREACH resource IN ARRAY ARRAY['contacts', 'tasks', 'notes', 'appointments'] LOOP
        RETURN QUERY EXECUTE format(
            'WITH live AS (SELECT %3$s FROM %1$I.%2$I WHERE deleted_at IS NULL AND location_id = %5$L),'
            '     want AS (SELECT %3$s FROM pg_temp.%4$I)'
            ' SELECT %2$L, (SELECT count(*) FROM want), (SELECT count(*) FROM live),'
            '  (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM live) x),'
            '  (SELECT count(*) FROM (SELECT * FROM live EXCEPT ALL SELECT * FROM want) x),'
            '  (SELECT count(*) FROM %1$I.%2$I WHERE deleted_at IS NOT NULL AND location_id = %5$L)',
            sync_schema, resource,
            (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
             FROM pg_attribute WHERE attrelid = format('pg_temp.want_%s', resource)::regclass
               AND attnum > 0),
            'want_' || resource, location);
    END LOOP;
END $$;

-- the requests the mock received, grouped by endpoint
CREATE FUNCTION test.request_counts()
RETURNS TABLE (method text, endpoint text, requests bigint)
LANGUAGE sql AS $$
    SELECT method, regexp_replace(path, '[A-Za-z0-9]{20}', '{id}', 'g'), count(*)
    FROM test.requests() GROUP BY 1, 2 ORDER BY 2, 1
$$;
