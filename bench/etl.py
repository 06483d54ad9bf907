#!/usr/bin/env python3
"""The Python peer of a full contacts sync: a requests + psycopg2 ETL.  It
pages POST /contacts/search (pageLimit 500, searchAfter cursors) over one
requests.Session and upserts each page with psycopg2.extras.execute_values
into bench_etl.contacts, a table of the sync's contacts shape, committing
after every page.  Connects with the libpq environment (PGHOST, PGPORT,
PGDATABASE).  Prints "<seconds> <contacts> <pages>".  Not part of the test
suite.

    bench/etl.py http://127.0.0.1:PORT [LOCATION_ID] [TOKEN]
"""
import json
import sys
import time

import psycopg2
import psycopg2.extras
import requests

PAGE_LIMIT = 500

# (column, JSON key) of the standard contacts columns, as ghl_fdw maps them
COLUMNS = [
    ("id", "id"), ("location_id", "locationId"), ("first_name", "firstName"),
    ("last_name", "lastName"), ("name", "name"), ("email", "email"), ("phone", "phone"),
    ("company_name", "companyName"), ("source", "source"), ("type", "type"),
    ("assigned_to", "assignedTo"), ("address1", "address1"), ("city", "city"),
    ("state", "state"), ("postal_code", "postalCode"), ("country", "country"),
    ("website", "website"), ("timezone", "timezone"), ("dnd", "dnd"), ("tags", "tags"),
    ("custom_fields", "customFields"), ("business_id", "businessId"),
    ("date_added", "dateAdded"), ("date_updated", "dateUpdated"),
]
CASTS = {"custom_fields": "::jsonb", "date_added": "::timestamptz",
         "date_updated": "::timestamptz"}
NAMES = ", ".join(name for name, _ in COLUMNS)
TEMPLATE = "(" + ", ".join("%s" + CASTS.get(name, "") for name, _ in COLUMNS) + ")"
UPSERT = (f"INSERT INTO bench_etl.contacts ({NAMES}) VALUES %s "
          "ON CONFLICT (location_id, id) DO UPDATE SET "
          + ", ".join(f"{name} = EXCLUDED.{name}" for name, _ in COLUMNS[2:])
          + ", synced_at = now()")


def row(contact):
    """A contact's values in COLUMNS order ("address" stands in for address1)."""
    values = []
    for name, key in COLUMNS:
        value = contact.get(key)
        if name == "address1" and value is None:
            value = contact.get("address")
        elif name == "custom_fields" and value is not None:
            value = json.dumps(value)
        values.append(value)
    return values


def main():
    url = sys.argv[1] + "/contacts/search"
    location = sys.argv[2] if len(sys.argv) > 2 else "ve9EPM428h8vShlRW1KT"
    token = sys.argv[3] if len(sys.argv) > 3 else "pit-mock-token"
    db = psycopg2.connect("")
    with db.cursor() as cur:
        cur.execute("CREATE SCHEMA bench_etl; "
                    "CREATE TABLE bench_etl.contacts (LIKE rankr.contacts INCLUDING ALL)")
    db.commit()

    started = time.monotonic()
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Version": "2021-07-28"})
    request = {"locationId": location, "pageLimit": PAGE_LIMIT}
    contacts = pages = 0
    while True:
        resp = session.post(url, json=request, timeout=120)
        if resp.status_code != 200:
            sys.exit(f"POST /contacts/search answered {resp.status_code}: {resp.text[:200]}")
        page = resp.json()["contacts"]
        with db.cursor() as cur:
            psycopg2.extras.execute_values(cur, UPSERT, [row(c) for c in page],
                                           template=TEMPLATE, page_size=PAGE_LIMIT)
        db.commit()
        pages += 1
        contacts += len(page)
        if len(page) < PAGE_LIMIT:
            break
        request["searchAfter"] = page[-1]["searchAfter"]
    print(f"{time.monotonic() - started:.3f} {contacts} {pages}")


if __name__ == "__main__":
    main()
