#!/usr/bin/env bash
# The demo's queries, run inside the throwaway cluster of test/demo.sh.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. test/lib.sh

if [ -n "${GHL_ACCESS_TOKEN:-}" ] && [ -n "${GHL_LOCATION_ID:-}" ]; then
    echo "== using HighLevel itself, location $GHL_LOCATION_ID"
    base_url=https://services.leadconnectorhq.com
    token=$GHL_ACCESS_TOKEN
    location=$GHL_LOCATION_ID
else
    echo "== using the bundled mock GHL API (set GHL_ACCESS_TOKEN and GHL_LOCATION_ID for the real one)"
    start_mock --contacts 2000 --seed 1
    trap stop_mock EXIT
    base_url=$MOCK_URL
    token=pit-mock-token
    location=ve9EPM428h8vShlRW1KT
fi

# The token travels in a psql variable, never on a command line.
psql -X -q -v ON_ERROR_STOP=1 -v base_url="$base_url" -v location="$location" \
     -v token="$token" <<'SQL'
\pset border 2
\pset null '(null)'
CREATE EXTENSION ghl_fdw;
CREATE SERVER ghl FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id :'location', base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl OPTIONS (access_token :'token');
\unset token
CREATE SCHEMA ghl;
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO ghl;

\echo
\echo '-- the foreign tables'
\dE ghl.*

\echo '-- how many contacts the location has (pages through the search API)'
SELECT count(*) AS contacts FROM ghl.contacts;

\echo '-- the newest five contacts: ORDER BY and LIMIT go to the API, one request'
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, name FROM ghl.contacts ORDER BY date_added DESC LIMIT 5;
SELECT id, name, email, tags, date_added
FROM ghl.contacts ORDER BY date_added DESC LIMIT 5;

\echo '-- open tasks of the 20 newest contacts: one request per contact'
SELECT c.name, t.title, t.due_date
FROM (SELECT id, name FROM ghl.contacts ORDER BY date_added DESC LIMIT 20) c
JOIN ghl.tasks t ON t.contact_id = c.id
WHERE NOT t.completed
ORDER BY t.due_date, t.id;

\echo '-- contacts per tag'
SELECT tag, count(*) FROM ghl.contacts, unnest(tags) AS tag
GROUP BY tag ORDER BY count(*) DESC, tag;

\echo '-- one contact by id: a single GET /contacts/{id}'
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, email FROM ghl.contacts WHERE id = 'some-id';
SELECT id, name, email, phone, city, custom_fields
FROM ghl.contacts WHERE id = (SELECT min(id) FROM ghl.contacts);

\echo '-- materialize contacts and tasks into rankr.* (pg_cron can run this)'
SELECT resource, mode, status, rows_upserted, requests
FROM ghl_fdw.sync('ghl', ARRAY['contacts', 'tasks']) ORDER BY resource;
SELECT count(DISTINCT c.id) AS contacts, count(t.id) AS open_tasks
FROM rankr.contacts c LEFT JOIN rankr.tasks t ON t.contact_id = c.id AND NOT t.completed;
SQL
