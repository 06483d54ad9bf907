#!/usr/bin/env python3
"""Search-paging benchmark of the mock GHL API: how many POST /contacts/search
pages (pageLimit 500, searchAfter cursors) per second it serves from one
location of 100,000 contacts, to one client and to 8 at once, with and
without gzip (which the FDW asks for).  The client reads only the last
cursor of each page, so the mock's own work is what is measured.  Not part
of the test suite.

    bench/mock_search.py                 100,000 contacts
    bench/mock_search.py --contacts 20000 --clients 4
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from fetch_only import post_search

MOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "mock_ghl.py")
LOCATION = "ve9EPM428h8vShlRW1KT"
CURSOR = b'"searchAfter":'


def start_mock(contacts):
    """The mock on a free loopback port; returns (process, port)."""
    port_file = os.path.join(tempfile.mkdtemp(), "port")
    proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", "--port-file", port_file,
                             "--contacts", str(contacts), "--rate-limit", "100000000"],
                            stdout=subprocess.DEVNULL)
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            sys.exit("the mock did not start")
        time.sleep(0.05)
    with open(port_file) as f:
        return proc, int(f.read())


def scan(port, gzipped):
    """Page through every contact; returns the number of pages."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": "Bearer pit-mock-token", "Version": "2021-07-28",
               "Content-Type": "application/json"}
    if gzipped:
        headers["Accept-Encoding"] = "gzip"
    cursor, pages = None, 0
    while True:
        body = {"locationId": LOCATION, "pageLimit": 500}
        if cursor:
            body["searchAfter"] = cursor
        data = post_search(conn, headers, body)
        pages += 1
        if data.count(CURSOR) < 500:
            return pages
        start = data.rindex(CURSOR) + len(CURSOR)
        cursor = json.loads(data[start:data.index(b"]", start) + 1])


def timed(label, clients, port, gzipped):
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(scan(port, gzipped))) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(f"{label:<38} {sum(counts):5d} pages in {elapsed:6.2f} s = {sum(counts) / elapsed:6.1f} pages/s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    started = time.monotonic()
    proc, port = start_mock(args.contacts)
    print(f"mock with {args.contacts} contacts up in {time.monotonic() - started:.1f} s")
    try:
        # the first scan sorts the contacts and encodes every row once; later ones reuse both
        timed("identity, 1 client, first scan", 1, port, False)
        for gzipped in (False, True):
            encoding = "gzip" if gzipped else "identity"
            timed(f"{encoding}, 1 client", 1, port, gzipped)
            timed(f"{encoding}, {args.clients} clients", args.clients, port, gzipped)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
