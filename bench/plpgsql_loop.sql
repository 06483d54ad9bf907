-- The PL/pgSQL peer of a full contacts sync, run by bench/run.sh with psql
-- variables url (the API), location and token.  It pages POST
-- /contacts/search like bench/etl.py and upserts each page into
-- bench_plpgsql.contacts (the shape of the sync's contacts table), all in
-- the one transaction of its DO block, as a sync run is.
--
-- Debian 12 has no pgsql-http package, so http_post() here is a stand-in
-- with its shape: PL/Python over a kept-alive http.client connection,
-- returning status, content type and content.  Unlike pgsql-http's
-- three-argument http_post() it also takes the request headers (which
-- pgsql-http sets through http() and http_header()).  Not part of the test
-- suite.

CREATE EXTENSION IF NOT EXISTS plpython3u;

CREATE TYPE http_response AS (status integer, content_type text, content text);

CREATE FUNCTION http_post(url text, content text, content_type text, headers jsonb)
RETURNS http_response
LANGUAGE plpython3u AS $py$
import gzip
import http.client
import json
from urllib.parse import urlsplit

parts = urlsplit(url)
conn = GD.get("conn")
if conn is None or GD.get("netloc") != parts.netloc:
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    GD["conn"], GD["netloc"] = conn, parts.netloc
request_headers = dict(json.loads(headers), **{"Content-Type": content_type,
                                              "Accept-Encoding": "gzip"})
path = parts.path + ("?" + parts.query if parts.query else "")
conn.request("POST", path, content.encode(), request_headers)
resp = conn.getresponse()
data = resp.read()
if resp.getheader("Content-Encoding") == "gzip":
    data = gzip.decompress(data)
return resp.status, resp.getheader("Content-Type"), data.decode()
$py$;

CREATE SCHEMA bench_plpgsql;
CREATE TABLE bench_plpgsql.contacts (LIKE rankr.contacts INCLUDING ALL);

-- psql does not expand variables inside the DO body: pass them as settings
SET bench.url = :'url';
SET bench.location = :'location';
SET bench.token = :'token';
SELECT extract(epoch FROM clock_timestamp()) AS started \gset
DO $loop$
DECLARE
    url text := current_setting('bench.url') || '/contacts/search';
    headers jsonb := jsonb_build_object('Authorization', 'Bearer ' || current_setting('bench.token'),
                                        'Version', '2021-07-28');
    request jsonb := jsonb_build_object('locationId', current_setting('bench.location'),
                                        'pageLimit', 500);
    answer http_response;
    page jsonb;
BEGIN
    LOOP
        answer := http_post(url, request::text, 'application/json', headers);
        IF answer.status <> 200 THEN
            RAISE EXCEPTION 'POST /contacts/search answered %: %',
                answer.status, left(answer.content, 200);
        END IF;
        page := answer.content::jsonb -> 'contacts';
        INSERT INTO bench_plpgsql.contacts AS t
            (id, location_id, first_name, last_name, name, email, phone,
             company_name, source, type, assigned_to, address1, city, state,
             postal_code, country, website, timezone, dnd, tags, custom_fields,
             business_id, date_added, date_updated)
        SELECT c->>'id', c->>'locationId', c->>'firstName', c->>'lastName',
               c->>'name', c->>'email', c->>'phone', c->>'companyName',
               c->>'source', c->>'type', c->>'assignedTo',
               coalesce(c->>'address1', c->>'address'), c->>'city', c->>'state',
               c->>'postalCode', c->>'country', c->>'website', c->>'timezone',
               (c->>'dnd')::boolean,
               CASE WHEN jsonb_typeof(c->'tags') = 'array'
                    THEN ARRAY(SELECT jsonb_array_elements_text(c->'tags')) END,
               c->'customFields', c->>'businessId',
               (c->>'dateAdded')::timestamptz, (c->>'dateUpdated')::timestamptz
        FROM jsonb_array_elements(page) AS c
        ON CONFLICT (location_id, id) DO UPDATE SET
            first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
            name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
            company_name = EXCLUDED.company_name, source = EXCLUDED.source,
            type = EXCLUDED.type, assigned_to = EXCLUDED.assigned_to,
            address1 = EXCLUDED.address1, city = EXCLUDED.city,
            state = EXCLUDED.state, postal_code = EXCLUDED.postal_code,
            country = EXCLUDED.country, website = EXCLUDED.website,
            timezone = EXCLUDED.timezone, dnd = EXCLUDED.dnd, tags = EXCLUDED.tags,
            custom_fields = EXCLUDED.custom_fields,
            business_id = EXCLUDED.business_id, date_added = EXCLUDED.date_added,
            date_updated = EXCLUDED.date_updated, synced_at = now();
        EXIT WHEN jsonb_array_length(page) < 500;
        request := jsonb_set(request, '{searchAfter}', page -> -1 -> 'searchAfter');
    END LOOP;
END
$loop$;
SELECT round((extract(epoch FROM clock_timestamp()) - :started)::numeric, 3) AS seconds;
