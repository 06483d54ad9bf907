#!/usr/bin/env python3
"""The floor a contacts scan is measured against: a client that only
downloads and parses the pages.  It pages POST /contacts/search at
pageLimit 500 with searchAfter cursors over one kept-alive connection,
asks for gzip as ghl_fdw does, and json-parses every page; nothing else.
Prints "<seconds> <contacts> <pages>".  Not part of the test suite.

    bench/fetch_only.py http://127.0.0.1:PORT [LOCATION_ID] [TOKEN]
"""
import gzip
import http.client
import json
import sys
import time
from urllib.parse import urlsplit

PAGE_LIMIT = 500


def post_search(conn, headers, body):
    """One POST /contacts/search over a kept-alive connection: the answer's
    bytes, gunzipped; exits on any status but 200."""
    conn.request("POST", "/contacts/search", json.dumps(body), headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit(f"POST /contacts/search answered {resp.status}: {data[:200]!r}")
    if resp.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def fetch_all(url, location, token):
    """Page through every contact; returns (contacts, pages)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Version": "2021-07-28",
               "Content-Type": "application/json", "Accept": "application/json",
               "Accept-Encoding": "gzip"}
    cursor, contacts, pages = None, 0, 0
    while True:
        body = {"locationId": location, "pageLimit": PAGE_LIMIT}
        if cursor is not None:
            body["searchAfter"] = cursor
        page = json.loads(post_search(conn, headers, body))["contacts"]
        pages += 1
        contacts += len(page)
        if len(page) < PAGE_LIMIT:
            return contacts, pages
        cursor = page[-1]["searchAfter"]


def main():
    url = sys.argv[1]
    location = sys.argv[2] if len(sys.argv) > 2 else "ve9EPM428h8vShlRW1KT"
    token = sys.argv[3] if len(sys.argv) > 3 else "pit-mock-token"
    started = time.monotonic()
    contacts, pages = fetch_all(url, location, token)
    print(f"{time.monotonic() - started:.3f} {contacts} {pages}")


if __name__ == "__main__":
    main()
