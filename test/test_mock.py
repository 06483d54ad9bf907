#!/usr/bin/env python3
"""Checks that the mock GHL API behaves like the real one where the FDW depends on it.

MockGhlTest starts test/mock_ghl.py on a free port with 10,500 contacts (past
the 10,000 page-based search window); MockLocationsTest starts it with three
locations of one company for the agency, latency and webhook-feed tests.
Both talk to it over HTTP with the standard library.
Run: python3 -m unittest test/test_mock.py -v
"""

import base64
import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "mock_ghl.py")
LOCATION = "ve9EPM428h8vShlRW1KT"
TOKEN = "pit-mock-token"
CONTACTS = 10_500


def start_mock(args, port_file, stderr):
    """The mock on a free loopback port: (process, port); stderr is an open file."""
    proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", "--port-file", port_file] + args,
                            stdout=subprocess.PIPE, stderr=stderr)
    deadline = time.time() + 30
    while not os.path.exists(port_file):
        if time.time() > deadline or proc.poll() is not None:
            stderr.seek(0)
            raise RuntimeError("mock did not start: " + stderr.read())
        time.sleep(0.05)
    with open(port_file) as f:
        return proc, int(f.read())


class MockServerCase(unittest.TestCase):
    """Starts the mock with the class's ARGS for the tests of the class."""

    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.stderr = open(os.path.join(cls.tmp.name, "stderr"), "w+")
        cls.proc, cls.port = start_mock(cls.ARGS, os.path.join(cls.tmp.name, "port"), cls.stderr)
        banner = cls.proc.stdout.readline().decode()
        assert banner.startswith("mock_ghl listening on http://127.0.0.1:"), banner

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        cls.proc.stdout.close()
        cls.stderr.seek(0)
        errors = cls.stderr.read()
        cls.stderr.close()
        cls.tmp.cleanup()
        assert not errors, f"the mock wrote to stderr:\n{errors}"

    def setUp(self):
        self.admin("DELETE", "/_mock/faults")
        self.admin("POST", "/_mock/config", {"rate_limit": 100000, "retry_after": False})

    def request(self, method, path, body=None, headers=None, form=None, raw=False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            if raw:
                return resp.status, resp.headers, payload
            return resp.status, resp.headers, json.loads(payload) if payload else None
        finally:
            conn.close()

    def api(self, method, path, body=None, version="2021-07-28", token=TOKEN, **kw):
        headers = {"Version": version} if version else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request(method, path, body, headers, **kw)

    def admin(self, method, path, body=None):
        status, _, payload = self.request(method, path, body)
        self.assertEqual(status, 200, payload)
        return payload



class MockGhlTest(MockServerCase):

    ARGS = ["--contacts", str(CONTACTS), "--seed", "7", "--location-id", LOCATION, "--token", TOKEN,
            "--rate-limit", "100000"]

    def search(self, **body):
        return self.api("POST", "/contacts/search", dict(locationId=LOCATION, **body))

    def test_auth_version_and_location_errors(self):
        status, headers, body = self.api("GET", "/contacts/x", token=None)
        self.assertEqual((status, body["message"]), (401, "Invalid JWT"))
        self.assertIn("traceId", body)
        self.assertIn("X-RateLimit-Remaining", headers)
        status, _, body = self.api("GET", "/contacts/x", token="nope")
        self.assertEqual(status, 401)
        status, _, body = self.api("GET", "/contacts/x", version=None)
        self.assertEqual((status, body["message"]), (422, ["version header was not found"]))
        status, _, _ = self.api("GET", f"/calendars/?locationId={LOCATION}")   # needs 2021-04-15
        self.assertEqual(status, 422)
        status, _, body = self.api("GET", f"/calendars/?locationId={LOCATION}", version="2021-04-15")
        self.assertEqual(status, 200)
        self.assertTrue(body["calendars"])
        status, _, body = self.api("GET", "/contacts/?locationId=otherLocation")
        self.assertEqual((status, body["message"]),
                         (403, "The token does not have access to this location."))
        status, _, body = self.api("GET", "/contacts/doesNotExist")
        self.assertEqual((status, body["message"]), (404, "Contact not found"))

    def test_list_paging_needs_both_cursors(self):
        path = f"/contacts/?locationId={LOCATION}&limit=5"
        _, _, first = self.api("GET", path)
        meta = first["meta"]
        self.assertEqual(meta["total"], CONTACTS)
        ids = [c["id"] for c in first["contacts"]]
        _, _, only_one = self.api("GET", f"{path}&startAfter={meta['startAfter']}")
        self.assertEqual([c["id"] for c in only_one["contacts"]], ids)
        _, _, only_id = self.api("GET", f"{path}&startAfterId={meta['startAfterId']}")
        self.assertEqual([c["id"] for c in only_id["contacts"]], ids)
        _, _, second = self.api(
            "GET", f"{path}&startAfter={meta['startAfter']}&startAfterId={meta['startAfterId']}")
        self.assertEqual(second["meta"]["currentPage"], 2)
        self.assertTrue(set(ids).isdisjoint(c["id"] for c in second["contacts"]))
        _, _, ten = self.api("GET", f"/contacts/?locationId={LOCATION}&limit=10")
        self.assertEqual([c["id"] for c in ten["contacts"]],
                         ids + [c["id"] for c in second["contacts"]])

    def test_search_after_scans_past_ten_thousand(self):
        seen, cursor, total = [], None, None
        while True:
            body = {"pageLimit": 500}
            if cursor:
                body["searchAfter"] = cursor
            status, _, page = self.search(**body)
            self.assertEqual(status, 200, page)
            total = page["total"]
            seen += [c["id"] for c in page["contacts"]]
            if len(page["contacts"]) < 500:
                break
            cursor = page["contacts"][-1]["searchAfter"]
        self.assertEqual(total, CONTACTS)
        self.assertEqual(len(seen), CONTACTS)
        self.assertEqual(len(set(seen)), CONTACTS)

    def test_search_page_window_and_validation(self):
        status, _, body = self.search(pageLimit=500, page=20)
        self.assertEqual((status, len(body["contacts"])), (200, 500))
        status, _, body = self.search(pageLimit=500, page=21)
        self.assertEqual(status, 400)
        self.assertIn("searchAfter", body["message"])
        status, _, body = self.api("POST", "/contacts/search", {"locationId": LOCATION})
        self.assertEqual((status, body["message"]), (422, ["pageLimit should not be empty"]))
        status, _, body = self.search(pageLimit=501)
        self.assertEqual(status, 422)

    def test_search_filters_sort_and_row_shape(self):
        status, _, body = self.search(
            pageLimit=100, sort=[{"field": "dateUpdated", "direction": "desc"}],
            filters=[{"field": "tags", "operator": "eq", "value": "vip"},
                     {"group": "OR", "filters": [{"field": "dnd", "operator": "eq", "value": True},
                                                 {"field": "type", "operator": "eq", "value": "customer"}]}])
        self.assertEqual(status, 200, body)
        rows = body["contacts"]
        self.assertTrue(rows)
        for row in rows:
            self.assertIn("vip", row["tags"])
            self.assertTrue(row["dnd"] or row["type"] == "customer")
            self.assertNotIn("address1", row)
            self.assertEqual(row["searchAfter"][1], row["id"])
        stamps = [r["searchAfter"][0] for r in rows]
        self.assertEqual(stamps, sorted(stamps, reverse=True))

    def test_contact_crud_and_children(self):
        status, _, body = self.api("POST", "/contacts/", {
            "locationId": LOCATION, "firstName": "Zoë", "lastName": "Test", "email": "Zoe@Example.com",
            "tags": ["vip"], "customFields": [{"key": "favourite_colour", "field_value": "teal"}]})
        self.assertEqual(status, 201, body)
        cid = body["contact"]["id"]
        self.assertEqual(len(cid), 20)
        self.assertEqual(body["contact"]["customFields"][0]["value"], "teal")
        status, _, body = self.api("PUT", f"/contacts/{cid}", {"companyName": "not allowed"})
        self.assertEqual((status, body["message"]), (422, ["property companyName should not exist"]))
        status, _, body = self.api("PUT", f"/contacts/{cid}", {"city": "Köln"})
        self.assertEqual((status, body["succeded"], body["contact"]["city"]), (200, True, "Köln"))
        status, _, body = self.api("POST", f"/contacts/{cid}/tags", {"tags": ["new"]})
        self.assertEqual((status, body["tags"]), (201, ["vip", "new"]))
        status, _, body = self.api("DELETE", f"/contacts/{cid}/tags", {"tags": ["vip"]})
        self.assertEqual(body["tags"], ["new"])
        status, _, body = self.api("POST", f"/contacts/{cid}/tasks", {"title": "t"})
        self.assertEqual(status, 422)
        status, _, body = self.api("POST", f"/contacts/{cid}/tasks", {
            "title": "t", "dueDate": "2025-01-01T10:00:00Z", "completed": False})
        self.assertEqual((status, body["task"]["dueDate"]), (201, "2025-01-01T10:00:00.000Z"))
        _, _, body = self.api("GET", f"/contacts/{cid}/tasks")
        self.assertEqual(len(body["tasks"]), 1)
        status, _, body = self.api("DELETE", f"/contacts/{cid}")
        self.assertEqual((status, body), (200, {"succeded": True}))
        status, _, _ = self.api("GET", f"/contacts/{cid}/tasks")
        self.assertEqual(status, 404)

    def test_refresh_token_rotation(self):
        self.admin("POST", "/_mock/reset", {"contacts": CONTACTS, "seed": 7})
        form = {"client_id": "mock-client", "client_secret": "mock-secret",
                "grant_type": "refresh_token", "refresh_token": "rt-seed-0", "user_type": "Location"}
        status, _, first = self.request("POST", "/oauth/token", form=form)
        self.assertEqual(status, 200, first)
        self.assertEqual((first["token_type"], first["userType"], first["locationId"]),
                         ("Bearer", "Location", LOCATION))
        self.assertNotEqual(first["refresh_token"], "rt-seed-0")
        status, _, body = self.request("POST", "/oauth/token", form=form)
        self.assertEqual((status, body["error"]), (400, "invalid_grant"))
        status, _, second = self.request("POST", "/oauth/token",
                                         form=dict(form, refresh_token=first["refresh_token"]))
        self.assertEqual(status, 200)
        status, _, _ = self.request("POST", "/oauth/token", form=dict(form, client_secret="bad"))
        self.assertEqual(status, 401)
        token = second["access_token"]
        status, _, _ = self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1", token=token)
        self.assertEqual(status, 200)
        self.admin("POST", "/_mock/config", {"expire_all_tokens": True})
        status, _, _ = self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1", token=token)
        self.assertEqual(status, 401)
        stats = self.admin("GET", "/_mock/stats")
        self.assertEqual((stats["token_requests"], stats["refreshes"]), (4, 2))

    def test_rate_limit_headers_and_429(self):
        self.admin("POST", "/_mock/config", {"rate_limit": 3, "rate_interval_ms": 60000,
                                             "retry_after": True})
        statuses = []
        for _ in range(5):
            status, headers, body = self.api("GET", "/contacts/x")
            statuses.append(status)
        self.assertEqual(statuses[-1], 429)
        self.assertEqual(body["message"], "Too Many Requests")
        self.assertEqual(headers["X-RateLimit-Max"], "3")
        self.assertEqual(headers["X-RateLimit-Remaining"], "0")
        self.assertEqual(headers["X-RateLimit-Interval-Milliseconds"], "60000")
        self.assertTrue(int(headers["Retry-After"]) >= 1)
        self.admin("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000})

    def test_faults(self):
        self.admin("POST", "/_mock/faults", {"path": "^/contacts/", "status": 503, "times": 1})
        self.assertEqual(self.api("GET", "/contacts/x")[0], 503)
        self.assertEqual(self.api("GET", "/contacts/x")[0], 404)
        self.admin("POST", "/_mock/faults", {"path": "^/contacts/", "kind": "reset"})
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.api("GET", "/contacts/x")
        self.admin("POST", "/_mock/faults", {"path": "^/contacts/search", "kind": "truncate"})
        with self.assertRaises(http.client.IncompleteRead):
            self.search(pageLimit=50)
        self.admin("POST", "/_mock/faults", {"path": "^/contacts/", "kind": "wrong_types"})
        _, _, body = self.search(pageLimit=1)
        self.assertEqual(body["contacts"][0]["tags"], "x")

    def test_raw_fault_and_connections(self):
        body = b'{"contact": {"id": "x", "firstName": "\xff\x00\x1b"}}'
        self.admin("POST", "/_mock/faults", {"path": "^/contacts/x$", "kind": "raw", "status": 203,
                                             "content_type": "text/odd",
                                             "body_base64": base64.b64encode(body).decode()})
        status, headers, raw = self.request("GET", "/contacts/x", raw=True)
        self.assertEqual((status, headers["Content-Type"], raw), (203, "text/odd", body))
        status, _, payload = self.request("POST", "/_mock/faults", {"kind": "raw", "body_base64": "*"})
        self.assertEqual(status, 400, payload)
        # a connection that never sends a request is counted all the same
        before = self.admin("GET", "/_mock/stats")["connections"]
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        time.sleep(0.2)
        self.assertEqual(self.admin("GET", "/_mock/stats")["connections"], before + 2)

    def test_request_log_masks_secrets(self):
        self.admin("DELETE", "/_mock/requests")
        self.search(pageLimit=1, query="smith")
        self.request("POST", "/oauth/token", form={"client_id": "mock-client",
                                                   "client_secret": "mock-secret",
                                                   "grant_type": "refresh_token",
                                                   "refresh_token": "whatever"})
        status, headers, raw = self.request("GET", "/_mock/requests?format=jsonl", raw=True)
        lines = [json.loads(line) for line in raw.decode().splitlines()]
        self.assertEqual([e["seq"] for e in lines], [1, 2])
        search, token = lines
        self.assertEqual((search["path"], search["version"], search["status"], search["auth"]),
                         ("/contacts/search", "2021-07-28", 200, "bearer"))
        self.assertEqual(search["body"]["query"], "smith")
        self.assertEqual((token["body"]["client_secret"], token["body"]["refresh_token"]), ("***", "***"))
        self.assertNotIn(b"mock-secret", raw)
        first_line = raw.decode().splitlines()[0]
        self.assertEqual(list(json.loads(first_line)), sorted(json.loads(first_line)))

    def test_gzip_and_mutate(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", f"/contacts/?locationId={LOCATION}&limit=3",
                     headers={"Authorization": f"Bearer {TOKEN}", "Version": "2021-07-28",
                              "Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        self.assertEqual(resp.headers["Content-Encoding"], "gzip")
        self.assertEqual(len(json.loads(gzip.decompress(resp.read()))["contacts"]), 3)
        conn.close()
        result = self.admin("POST", "/_mock/mutate", {"seed": 3, "update": 5, "create": 2, "delete": 1,
                                                      "task_edits": 2, "note_creates": 1})
        self.assertEqual((len(result["updated"]), len(result["created"]), len(result["deleted"])),
                         (5, 2, 1))
        status, _, _ = self.api("GET", f"/contacts/{result['deleted'][0]}")
        self.assertEqual(status, 404)
        state = self.admin("GET", "/_mock/state")
        self.assertEqual(len(state["contacts"]), CONTACTS + 1)
        before = {a["id"]: a for a in state["appointments"]}
        result = self.admin("POST", "/_mock/mutate", {"seed": 4, "appointment_edits": 1,
                                                      "appointment_deletes": 1, "appointment_creates": 1})
        after = {a["id"]: a for a in self.admin("GET", "/_mock/state")["appointments"]}
        self.assertNotIn(result["appointment_deletes"][0], after)
        self.assertNotIn(result["appointment_creates"][0], before)
        edited = result["appointment_edits"][0]
        self.assertGreater(after[edited]["dateUpdated"], before[edited]["dateUpdated"])
        self.admin("POST", "/_mock/reset", {"contacts": CONTACTS, "seed": 7})


LOCATION_B, LOCATION_C = "LocBbbbbbbbbbbbbbbbb", "LocCcccccccccccccccc"
COMPANY = "5DP4iH6HLkQsiKESj6rh"
CLIENT = {"client_id": "mock-client", "client_secret": "mock-secret"}
JSON_TYPES = {"string": str, "Date": str, "boolean": bool, "number": (int, float), "array": list,
              "object": dict}


def webhook_doc(event_type, kind):
    """The schema or an example of HighLevel's docs for a delivery type, from test/webhooks/."""
    app_events = {"INSTALL": "AppInstall", "UNINSTALL": "AppUninstall"}
    name = app_events.get(event_type, event_type)
    suffix = "example.1" if kind == "example" and event_type in app_events else kind
    with open(os.path.join(HERE, "webhooks", f"{name}.{suffix}.json")) as f:
        return json.load(f)


def schema_errors(value, schema, where="$"):
    """How a value departs from a webhook schema: keys it does not know, wrong types, nulls."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(isinstance(value, JSON_TYPES[t]) and not (t == "number" and isinstance(value, bool))
               for t in types):
        return [f"{where}: {value!r} is not of type {types}"]
    errors = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                errors += schema_errors(item, schema["properties"][key], f"{where}.{key}")
            else:
                errors.append(f"{where}.{key}: not in the schema")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


class MockLocationsTest(MockServerCase):
    """Several locations of one company: isolation, agency installs, latency, webhook events."""

    ARGS = ["--contacts", "60", "--seed", "3", "--location-id", LOCATION, "--rate-limit", "100000",
            "--locations", f"{LOCATION_B}:40,{LOCATION_C}:30"]

    def setUp(self):
        self.admin("POST", "/_mock/reset", {})
        self.admin("POST", "/_mock/config", {"rate_limit": 100000, "rate_interval_ms": 10000,
                                             "latency_ms": 0})

    def state(self, location):
        return self.admin("GET", f"/_mock/state?location={location}")

    def events(self, since=0, location=None):
        query = f"since={since}" + (f"&location={location}" if location else "")
        return self.admin("GET", f"/_mock/events?{query}")

    def token_grant(self, **form):
        status, _, body = self.request("POST", "/oauth/token", form=dict(CLIENT, **form))
        self.assertEqual(status, 200, body)
        return body

    def agency_token(self):
        return self.token_grant(grant_type="client_credentials", user_type="Company")["access_token"]

    def installed(self, token, **params):
        query = urllib.parse.urlencode(dict({"companyId": COMPANY, "appId": "mock-app"}, **params))
        return self.api("GET", f"/oauth/installedLocations?{query}", token=token)

    def buy_location_token(self, agency, location):
        return self.api("POST", "/oauth/locationToken", token=agency,
                        form={"companyId": COMPANY, "locationId": location})

    # locations

    def test_each_location_has_its_own_stable_data(self):
        listed = self.admin("GET", "/_mock/locations")
        self.assertEqual([(loc["id"], loc["contacts"], loc["installed"]) for loc in listed],
                         [(LOCATION, 60, True), (LOCATION_B, 40, True), (LOCATION_C, 30, True)])
        a, b = self.state(LOCATION), self.state(LOCATION_B)
        self.assertEqual(self.admin("GET", "/_mock/state"), a)
        self.assertEqual({c["locationId"] for c in b["contacts"]}, {LOCATION_B})
        self.assertTrue(b["tasks"] and b["notes"] and b["appointments"])
        for kind in ("contacts", "tasks", "notes", "appointments", "calendars", "customFields"):
            self.assertTrue({r["id"] for r in a[kind]}.isdisjoint(r["id"] for r in b[kind]), kind)
        # the same seed gives the same records, another seed others
        self.admin("POST", "/_mock/reset", {"location": LOCATION_B, "contacts": 40, "seed": 3})
        self.assertEqual(self.state(LOCATION_B), b)
        self.admin("POST", f"/_mock/reset?location={LOCATION_B}", {"contacts": 40, "seed": 4})
        other = self.state(LOCATION_B)
        self.assertEqual(len(other["contacts"]), 40)
        self.assertNotEqual([c["id"] for c in other["contacts"]], [c["id"] for c in b["contacts"]])
        self.assertEqual(self.state(LOCATION), a)
        status, _, body = self.request("GET", "/_mock/state?location=nowhere")
        self.assertEqual((status, body["error"]), (400, "ValueError: no location nowhere"))

    def test_other_locations_leave_the_default_one_as_it_was(self):
        """The default location's records are those of a mock that serves it alone."""
        alone, port = start_mock(self.ARGS[:self.ARGS.index("--locations")],
                                 os.path.join(self.tmp.name, "port-alone"), self.stderr)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/state", timeout=30) as resp:
                state = json.load(resp)
        finally:
            alone.terminate()
            alone.wait(timeout=10)
            alone.stdout.close()
        self.assertEqual(len(state["contacts"]), 60)
        self.assertEqual(state, self.state(LOCATION))

    def test_a_location_token_reaches_only_its_location(self):
        own = self.state(LOCATION_B)["contacts"][0]
        foreign = self.state(LOCATION)["contacts"][0]
        token = f"pit-{LOCATION_B}"
        status, _, body = self.api("POST", "/contacts/search", {"locationId": LOCATION_B, "pageLimit": 100},
                                   token=token)
        self.assertEqual((status, body["total"]), (200, 40))
        self.assertEqual(self.api("GET", f"/contacts/{own['id']}", token=token)[2]["contact"], own)
        forbidden = (403, "The token does not have access to this location.")
        for method, path, body in (
                ("POST", "/contacts/search", {"locationId": LOCATION, "pageLimit": 10}),
                ("GET", f"/contacts/{foreign['id']}", None),
                ("GET", f"/contacts/{foreign['id']}/notes", None),
                ("PUT", f"/contacts/{foreign['id']}", {"city": "Elsewhere"}),
                ("DELETE", f"/contacts/{foreign['id']}", None),
                ("POST", "/contacts/", {"locationId": LOCATION, "firstName": "Intruder"})):
            status, _, answer = self.api(method, path, body, token=token)
            self.assertEqual((status, answer["message"]), forbidden, (method, path))
        self.assertEqual(self.api("GET", "/contacts/noSuchContactAnywhere", token=token)[0], 404)
        self.assertEqual(self.api("GET", f"/contacts/{own['id']}")[:1], (403,))   # pit-mock-token
        self.assertEqual(self.state(LOCATION)["contacts"][0], foreign)

    def test_rate_limits_and_counters_per_location(self):
        self.admin("POST", "/_mock/config", {"rate_limit": 3, "rate_interval_ms": 60000})
        self.admin("DELETE", "/_mock/stats")
        self.admin("DELETE", "/_mock/requests")
        path = f"/contacts/?locationId={LOCATION_B}&limit=1"
        statuses = [self.api("GET", path, token=f"pit-{LOCATION_B}")[0] for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])
        status, headers, _ = self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1")
        self.assertEqual((status, headers["X-RateLimit-Remaining"]), (200, "2"))
        self.admin("POST", "/_mock/config", {"daily_remaining": 5, "location": LOCATION_C})
        _, headers, _ = self.api("GET", f"/contacts/?locationId={LOCATION_C}&limit=1",
                                 token=f"pit-{LOCATION_C}")
        self.assertEqual(headers["X-RateLimit-Daily-Remaining"], "4")
        _, headers, _ = self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1")
        self.assertEqual(headers["X-RateLimit-Daily-Remaining"], str(200_000 - 2))
        stats = self.admin("GET", f"/_mock/stats?location={LOCATION_B}")
        self.assertEqual((stats["requests"], stats["rate_limited"]), (4, 1))
        self.assertEqual(stats["by_path"], {"GET /contacts/": 4})
        everything = self.admin("GET", "/_mock/stats")
        self.assertEqual((everything["requests"], everything["rate_limited"]), (7, 1))
        self.assertEqual({k: v["requests"] for k, v in everything["by_location"].items()},
                         {LOCATION_B: 4, LOCATION: 2, LOCATION_C: 1})
        logged = self.admin("GET", f"/_mock/requests?location={LOCATION_B}")
        self.assertEqual([(e["location"], e["status"]) for e in logged],
                         [(LOCATION_B, 200)] * 3 + [(LOCATION_B, 429)])

    # agency installs

    def test_installed_locations_validation_and_paging(self):
        agency = self.agency_token()
        status, _, body = self.api("GET", "/oauth/installedLocations", token=agency)
        self.assertEqual((status, body["message"]),
                         (422, ["companyId should not be empty", "appId should not be empty"]))
        query = f"companyId={COMPANY}&appId=mock-app"
        self.assertEqual(self.api("GET", f"/oauth/installedLocations?{query}", token=agency,
                                  version=None)[0], 422)
        self.assertEqual(self.installed(f"pit-{LOCATION_B}")[0], 401)
        self.assertEqual(self.installed(agency, companyId="otherCompany")[0], 403)
        self.assertEqual(self.installed(agency, appId="other-app")[0], 403)
        self.assertEqual(self.installed(agency, limit="0")[0], 422)
        self.assertEqual(self.installed(agency, isInstalled="yes")[0], 422)
        status, _, body = self.installed(agency)
        self.assertEqual((status, body["count"], body["installToFutureLocations"]), (200, 3, True))
        self.assertEqual([loc["_id"] for loc in body["locations"]], [LOCATION, LOCATION_B, LOCATION_C])
        for loc in body["locations"]:
            self.assertEqual(set(loc), {"_id", "name", "address", "isInstalled", "versionId", "installedAt"})
            self.assertTrue(loc["isInstalled"] and loc["name"] and loc["address"])
        pages = [self.installed(agency, skip=str(skip), limit="2")[2] for skip in (0, 2, 4)]
        self.assertEqual([[loc["_id"] for loc in p["locations"]] for p in pages],
                         [[LOCATION, LOCATION_B], [LOCATION_C], []])
        self.assertEqual({p["count"] for p in pages}, {3})
        name = body["locations"][1]["name"]
        found = self.installed(agency, query=name.upper())[2]["locations"]
        self.assertIn(LOCATION_B, [loc["_id"] for loc in found])
        self.assertEqual(self.installed(agency, planId="other-plan")[2]["count"], 0)
        self.assertEqual(self.installed(agency, locationId=LOCATION_C)[2]["count"], 1)

    def test_location_tokens_only_where_the_app_is_installed(self):
        agency = self.agency_token()
        status, _, bought = self.buy_location_token(agency, LOCATION_C)
        self.assertEqual((status, bought["locationId"], bought["appId"]), (200, LOCATION_C, "mock-app"))
        self.admin("POST", "/_mock/uninstall", {"location": LOCATION_C})
        listing = self.installed(agency, isInstalled="true")[2]
        self.assertEqual(([loc["_id"] for loc in listing["locations"]], listing["count"]),
                         ([LOCATION, LOCATION_B], 2))
        not_installed = self.installed(agency, isInstalled="false")[2]["locations"]
        self.assertEqual(not_installed, [{"_id": LOCATION_C, "name": not_installed[0]["name"],
                                          "address": not_installed[0]["address"], "isInstalled": False}])
        status, _, body = self.buy_location_token(agency, LOCATION_C)
        self.assertEqual((status, body["message"]), (403, "The token does not have access to this location."))
        # the uninstall ended the token bought before it
        self.assertEqual(self.api("GET", f"/contacts/?locationId={LOCATION_C}&limit=1",
                                  token=bought["access_token"])[0], 401)
        self.assertEqual(self.buy_location_token(agency, "noSuchLocation")[0], 403)
        status, _, body = self.api("POST", "/oauth/locationToken", token=agency,
                                   form={"companyId": "otherCompany", "locationId": LOCATION_B})
        self.assertEqual((status, body["message"]), (403, "The token does not have access to this company."))
        self.assertEqual(self.buy_location_token(f"pit-{LOCATION_B}", LOCATION_B)[0], 401)
        status, _, body = self.buy_location_token(agency, LOCATION_B)
        self.assertEqual(status, 200)
        token = body["access_token"]
        self.assertEqual(self.api("GET", f"/contacts/?locationId={LOCATION_B}&limit=1", token=token)[0], 200)
        self.assertEqual(self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1", token=token)[0], 403)
        self.admin("POST", "/_mock/install", {"location": LOCATION_C})
        self.assertEqual(self.buy_location_token(agency, LOCATION_C)[0], 200)
        self.assertEqual([e["event"]["type"] for e in self.events(location=LOCATION_C)],
                         ["UNINSTALL", "INSTALL"])

    def test_agency_refresh_token_rotates_once_for_many_location_tokens(self):
        first = self.token_grant(grant_type="authorization_code", code="agency-1", user_type="Company")
        self.assertEqual((first["userType"], first["approvedLocations"]),
                         ("Company", [LOCATION, LOCATION_B, LOCATION_C]))
        self.admin("DELETE", "/_mock/stats")
        agency = self.token_grant(grant_type="refresh_token", refresh_token=first["refresh_token"])
        self.assertEqual((agency["userType"], agency["companyId"]), ("Company", COMPANY))
        for location in (LOCATION, LOCATION_B, LOCATION_C, LOCATION_B, LOCATION):
            status, _, body = self.buy_location_token(agency["access_token"], location)
            self.assertEqual((status, body["locationId"]), (200, location))
        stats = self.admin("GET", "/_mock/stats")
        self.assertEqual((stats["refreshes"], stats["token_requests"], stats["location_token_requests"]),
                         (1, 1, 5))
        status, _, _ = self.request("POST", "/oauth/token", form=dict(
            CLIENT, grant_type="refresh_token", refresh_token=first["refresh_token"]))
        self.assertEqual(status, 400)
        # a location's own seed refresh token keeps its lineage there
        own = self.token_grant(grant_type="refresh_token", refresh_token=f"rt-seed-{LOCATION_C}")
        again = self.token_grant(grant_type="refresh_token", refresh_token=own["refresh_token"])
        self.assertEqual((own["locationId"], again["locationId"]), (LOCATION_C, LOCATION_C))

    # latency and concurrency

    def concurrently(self, count, call):
        results, threads = [None] * count, []
        for i in range(count):
            threads.append(threading.Thread(target=lambda i=i: results.__setitem__(i, call())))
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results, time.monotonic() - started

    def test_latency_overlaps_concurrent_requests(self):
        contact = self.state(LOCATION)["contacts"][0]["id"]
        self.admin("POST", "/_mock/config", {"latency_ms": 300})
        self.admin("DELETE", "/_mock/stats")
        self.admin("DELETE", "/_mock/requests")
        started = time.monotonic()
        self.assertEqual(self.api("GET", f"/contacts/{contact}")[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        statuses, elapsed = self.concurrently(8, lambda: self.api("GET", f"/contacts/{contact}")[0])
        self.assertEqual(statuses, [200] * 8)
        self.assertLess(elapsed, 0.9, "8 requests of 300 ms took longer than 3 one after another")
        entries = self.admin("GET", "/_mock/requests")[1:]
        for e in entries:
            self.assertGreaterEqual(e["done_ms"] - e["arrived_ms"], 300)
        overlap = max(sum(o["arrived_ms"] <= e["arrived_ms"] < o["done_ms"] for o in entries)
                      for e in entries)
        self.assertEqual(overlap, 8)
        self.assertEqual(self.admin("GET", "/_mock/stats")["max_in_flight"], 8)
        started = time.monotonic()
        self.admin("GET", "/_mock/health")
        self.assertLess(time.monotonic() - started, 0.2, "the admin API has no latency")

    def test_many_connections_at_once(self):
        self.admin("POST", "/_mock/config", {"latency_ms": 500})
        self.admin("DELETE", "/_mock/stats")
        statuses, elapsed = self.concurrently(
            200, lambda: self.api("GET", f"/contacts/?locationId={LOCATION}&limit=1")[0])
        self.assertEqual(statuses, [200] * 200)
        self.assertLess(elapsed, 5)
        self.assertGreaterEqual(self.admin("GET", "/_mock/stats")["max_in_flight"], 100)

    # the webhook event feed

    def assert_delivery(self, entry, event_type, location, full=True):
        """A delivery of the type, conforming to its schema; with full, exactly the docs' example keys."""
        event = entry["event"]
        self.assertEqual((event["type"], event["locationId"]), (event_type, location))
        body = {k: v for k, v in event.items() if k not in ("webhookId", "timestamp")}
        self.assertEqual(schema_errors(body, webhook_doc(event_type, "schema")), [], event)
        if full:
            example = webhook_doc(event_type, "example")
            self.assertEqual(set(body), set(example), event_type)
            if "appointment" in example:
                self.assertEqual(set(body["appointment"]), set(example["appointment"]))
        return event

    def test_every_change_through_the_api_emits_its_webhook(self):
        b = self.state(LOCATION_B)
        calendar = next(c for c in b["calendars"] if c.get("groupId"))
        token, cal = f"pit-{LOCATION_B}", {"version": "2021-04-15", "token": f"pit-{LOCATION_B}"}
        self.admin("DELETE", "/_mock/events")
        since = self.admin("GET", "/_mock/events?since=0")
        self.assertEqual(since, [])
        before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))

        _, _, body = self.api("POST", "/contacts/", {
            "locationId": LOCATION_B, "firstName": "Zoë", "lastName": "Event", "email": "zoe@example.com",
            "phone": "+14155550100", "address1": "1 Main Street", "city": "Austin", "state": "TX",
            "postalCode": "78701", "country": "US", "website": "https://zoe.example.com",
            "companyName": "Acme Corp", "source": "webhook test", "assignedTo": "someUser",
            "dateOfBirth": "1990-05-01", "tags": ["vip"],
            "customFields": [{"key": "favourite_colour", "field_value": "teal"}]}, token=token)
        cid = body["contact"]["id"]
        writes = [("PUT", f"/contacts/{cid}", {"city": "Berlin"}, {}),
                  ("POST", f"/contacts/{cid}/tags", {"tags": ["new"]}, {}),
                  ("PUT", f"/contacts/{cid}", {"dnd": True}, {}),
                  ("PUT", f"/contacts/{cid}", {"city": "Berlin"}, {}),
                  ("PUT", f"/contacts/{cid}", {"firstName": "Zoey", "tags": ["only"]}, {}),
                  ("PUT", f"/contacts/{cid}", {"companyName": "not allowed"}, {})]
        for method, path, data, kw in writes:
            self.api(method, path, data, token=token, **kw)
        _, _, body = self.api("POST", f"/contacts/{cid}/tasks", {
            "title": "Call", "body": "About the event", "assignedTo": "someUser",
            "dueDate": "2030-01-01T10:00:00Z", "completed": False}, token=token)
        task = f"/contacts/{cid}/tasks/{body['task']['id']}"
        _, _, body = self.api("POST", f"/contacts/{cid}/notes", {"body": "A note"}, token=token)
        note = f"/contacts/{cid}/notes/{body['note']['id']}"
        _, _, body = self.api("POST", "/calendars/events/appointments", {
            "calendarId": calendar["id"], "locationId": LOCATION_B, "contactId": cid,
            "startTime": "2030-01-02T10:00:00Z", "title": "Demo"}, **cal)
        appointment = body["id"]
        for method, path, data, kw in (
                ("PUT", task, {"title": "Call again"}, {}),
                ("PUT", f"{task}/completed", {"completed": True}, {}),
                ("PUT", f"{task}/completed", {"completed": True}, {}), ("DELETE", task, None, {}),
                ("PUT", note, {"body": "An edited note"}, {}), ("DELETE", note, None, {}),
                ("PUT", f"/calendars/events/appointments/{appointment}", {"title": "Demo 2"}, cal),
                ("DELETE", f"/calendars/events/{appointment}", None, cal),
                ("POST", f"/contacts/{cid}/tasks", {"title": "Orphan", "dueDate": "2030-01-01T10:00:00Z",
                                                    "completed": False}, {}),
                ("DELETE", f"/contacts/{cid}", None, {})):
            status, _, answer = self.api(method, path, data, **dict({"token": token}, **kw))
            self.assertLess(status, 300, (method, path, answer))
        after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))

        feed = self.events()
        self.assertEqual([e["event"]["type"] for e in feed], [
            "ContactCreate", "ContactUpdate", "ContactTagUpdate", "ContactDndUpdate",
            "ContactUpdate", "ContactTagUpdate", "TaskCreate", "NoteCreate", "AppointmentCreate",
            "TaskComplete", "TaskDelete", "NoteUpdate", "NoteDelete", "AppointmentUpdate",
            "AppointmentDelete", "TaskCreate", "ContactDelete"])
        self.assertEqual([e["seq"] for e in feed], sorted(e["seq"] for e in feed))
        self.assertEqual(len({e["event"]["webhookId"] for e in feed}), len(feed))
        stamps = [e["event"]["timestamp"] for e in feed]
        self.assertEqual(stamps, sorted(stamps))
        for stamp in stamps:
            self.assertRegex(stamp, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertTrue(before <= stamp <= after, stamp)
        partial = {"ContactUpdate", "ContactTagUpdate", "TaskCreate"}   # no dndSettings; the orphan task
        events = [self.assert_delivery(e, e["event"]["type"], LOCATION_B,
                                       full=e["event"]["type"] not in partial) for e in feed]
        create, dnd = events[0], events[3]
        self.assertEqual((create["id"], create["firstName"], create["dateOfBirth"], create["customFields"]),
                         (cid, "Zoë", "1990-05-01T00:00:00.000Z",
                          [{"id": create["customFields"][0]["id"], "value": "teal"}]))
        self.assertEqual((events[1]["city"], events[2]["tags"], events[5]["tags"]),
                         ("Berlin", ["vip", "new"], ["only"]))
        self.assertEqual((dnd["dnd"], dnd["dndSettings"]["Email"]["status"]), (True, "active"))
        self.assertEqual(events[6]["dateAdded"], events[10]["dateAdded"])
        self.assertEqual((events[9]["title"], events[12]["body"]), ("Call again", "An edited note"))
        self.assertEqual(events[13]["appointment"]["title"], "Demo 2")
        self.assertNotIn("body", events[15])
        self.assertEqual(self.events(since=feed[-2]["seq"]), feed[-1:])
        self.assertEqual(self.events(location=LOCATION), [])
        self.admin("DELETE", "/_mock/events")
        self.api("PUT", f"/contacts/{self.state(LOCATION)['contacts'][0]['id']}", {"city": "Rome"})
        (last,) = self.events()
        self.assertEqual((last["seq"], last["event"]["type"]), (feed[-1]["seq"] + 1, "ContactUpdate"))

    def test_failed_writes_emit_nothing(self):
        cid = self.state(LOCATION_B)["contacts"][0]["id"]
        self.admin("DELETE", "/_mock/events")
        self.admin("POST", "/_mock/faults", {"method": "PUT", "path": "^/contacts/", "status": 503})
        token = f"pit-{LOCATION_B}"
        self.assertEqual(self.api("PUT", f"/contacts/{cid}", {"city": "X"}, token=token)[0], 503)
        self.assertEqual(self.api("PUT", f"/contacts/{cid}", {"bogus": 1}, token=token)[0], 422)
        self.assertEqual(self.api("PUT", f"/contacts/{cid}", {"city": "X"})[0], 403)
        self.assertEqual(self.events(), [])

    def test_mutations_emit_their_webhooks(self):
        self.admin("DELETE", "/_mock/events")
        done = self.admin("POST", "/_mock/mutate", {
            "location": LOCATION_C, "seed": 5, "create": 2, "update": 4, "delete": 1, "task_creates": 2,
            "task_deletes": 1, "note_creates": 1, "note_edits": 1, "note_deletes": 1,
            "appointment_creates": 1, "appointment_edits": 1, "appointment_deletes": 1})
        feed = self.events()
        self.assertEqual({e["event"]["locationId"] for e in feed}, {LOCATION_C})
        ids = {}
        for entry in feed:
            event = self.assert_delivery(entry, entry["event"]["type"], LOCATION_C, full=False)
            record = event.get("appointment", event)
            ids.setdefault(event["type"], []).append(record["id"])
        self.assertEqual(ids["ContactCreate"], done["created"])
        self.assertEqual(ids["ContactDelete"], done["deleted"])
        updated = set(ids.get("ContactUpdate", []) + ids.get("ContactTagUpdate", [])
                      + ids.get("ContactDndUpdate", []))
        self.assertEqual(updated, set(done["updated"]))
        for event_type, key in (("TaskCreate", "task_creates"), ("TaskDelete", "task_deletes"),
                                ("NoteCreate", "note_creates"), ("NoteUpdate", "note_edits"),
                                ("NoteDelete", "note_deletes"), ("AppointmentCreate", "appointment_creates"),
                                ("AppointmentUpdate", "appointment_edits"),
                                ("AppointmentDelete", "appointment_deletes")):
            self.assertEqual(ids[event_type], done[key], event_type)
        self.assertEqual(self.events(location=LOCATION), [])

    def test_added_locations_and_install_events(self):
        added = self.admin("POST", "/_mock/locations", {"contacts": 5, "seed": 1, "installed": False})
        location = added["id"]
        self.assertRegex(location, r"^[A-Za-z0-9]{20}$")
        self.assertEqual((added["contacts"], added["installed"]), (5, False))
        status, _, body = self.api("POST", "/contacts/search", {"locationId": location, "pageLimit": 10},
                                   token=f"pit-{location}")
        self.assertEqual((status, body["total"]), (200, 5))
        agency = self.agency_token()
        self.assertEqual(self.buy_location_token(agency, location)[0], 403)
        self.admin("POST", "/_mock/install", {"location": location})
        self.admin("POST", "/_mock/install", {"location": location})     # already installed: no event
        self.assertEqual(self.buy_location_token(agency, location)[0], 200)
        self.admin("POST", f"/_mock/uninstall?location={location}", {})
        self.assertEqual(self.buy_location_token(agency, location)[0], 403)
        install, uninstall = self.events(location=location)
        event = self.assert_delivery(install, "INSTALL", location, full=False)
        self.assertEqual(set(event) - {"webhookId", "timestamp"},
                         set(webhook_doc("INSTALL", "example")) - {"trial"})
        self.assertEqual((event["appId"], event["companyId"]), ("mock-app", COMPANY))
        self.assert_delivery(uninstall, "UNINSTALL", location)
        self.admin("POST", "/_mock/locations", {"id": location, "contacts": 7})
        self.assertEqual(len(self.state(location)["contacts"]), 7)
        # a reset of the whole mock returns to the locations it started with, and forgets the events
        self.admin("POST", "/_mock/uninstall", {"location": LOCATION_B})
        self.admin("POST", "/_mock/reset", {})
        self.assertEqual(self.events(), [])
        self.assertEqual([(loc["id"], loc["installed"]) for loc in self.admin("GET", "/_mock/locations")],
                         [(LOCATION, True), (LOCATION_B, True), (LOCATION_C, True)])
        self.assertEqual(self.api("GET", "/contacts/x", token=f"pit-{location}")[0], 401)
        status, _, body = self.request("POST", "/_mock/locations", {"id": "not/an id"})
        self.assertEqual(status, 400)


if __name__ == "__main__":
    unittest.main()
