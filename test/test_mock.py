#!/usr/bin/env python3
"""Checks that the mock GHL API behaves like the real one where the FDW depends on it.

Starts test/mock_ghl.py on a free port with 10,500 contacts (past the 10,000
page-based search window) and talks to it over HTTP with the standard library.
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
import time
import unittest
import urllib.parse

MOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mock_ghl.py")
LOCATION = "ve9EPM428h8vShlRW1KT"
TOKEN = "pit-mock-token"
CONTACTS = 10_500


class MockGhlTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        port_file = os.path.join(cls.tmp.name, "port")
        cls.stderr = open(os.path.join(cls.tmp.name, "stderr"), "w+")
        cls.proc = subprocess.Popen(
            [sys.executable, MOCK, "--port", "0", "--port-file", port_file,
             "--contacts", str(CONTACTS), "--seed", "7", "--location-id", LOCATION,
             "--token", TOKEN, "--rate-limit", "100000"],
            stdout=subprocess.PIPE, stderr=cls.stderr)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if time.time() > deadline or cls.proc.poll() is not None:
                cls.stderr.seek(0)
                raise RuntimeError("mock did not start: " + cls.stderr.read())
            time.sleep(0.05)
        with open(port_file) as f:
            cls.port = int(f.read())
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

    # helpers

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

    def search(self, **body):
        return self.api("POST", "/contacts/search", dict(locationId=LOCATION, **body))

    # tests

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


if __name__ == "__main__":
    unittest.main()
