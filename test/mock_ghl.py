#!/usr/bin/env python3
"""A local stand-in for the HighLevel (GHL) API v2, used by the ghl_fdw tests.

It serves the contacts, tasks, notes, appointments, calendars, custom-field
and OAuth endpoints with the paths, headers, request bodies and response
shapes of the official OpenAPI specs, and reproduces the behaviour the FDW
has to survive on the real service: GET /contacts/ paging that only works
with both cursors, the 10,000-record window of POST /contacts/search,
single-use rotating refresh tokens, per-location rate limits reported in
X-RateLimit-* headers, and a validator that rejects unknown properties.

One company, any number of locations (--location-id is the default one;
--locations ID[:CONTACTS],... and --extra-locations N add more), each with
its own seeded records, rate-limit window and daily budget.  A token is
bound to one location (pit-<locationId> is each one's static token, and
--token the default's): elsewhere it gets 403.  Company tokens list the
app's installs (GET /oauth/installedLocations, app --app-id) and buy
location tokens where it is installed (POST /oauth/locationToken).
--latency-ms delays every API request outside the lock, so concurrent
requests overlap.  Every change to the data, through the API or the admin
API, appends the webhook delivery HighLevel would send (mock_webhooks.py).

Tests drive it through an unauthenticated admin API under /_mock/:
  GET|DELETE requests    the request log (?since=SEQ, ?location=, ?format=jsonl);
                         entries carry location, arrived_ms and done_ms
  GET|POST|DELETE faults scripted misbehaviour of matching requests
  GET|POST config        rate_limit, rate_interval_ms, daily_limit, retry_after,
                         token_lifetime, scopes, latency_ms; daily_remaining
                         (of "location"), expire_all_tokens; clock_skew_ms (the
                         Date header runs ahead, or behind if negative);
                         expire_refresh_tokens (every refresh token issued so
                         far is refused, as after HighLevel expired them)
  GET|DELETE stats       counters (requests, token_requests, refreshes,
                         location_token_requests, rate_limited, max_in_flight,
                         by_path, by_location, connections: TCP connections
                         accepted, api_connections: those that carried API
                         requests; in_flight: requests not answered yet), or
                         one location's (?location=)
  GET state, POST mutate one location's records, seeded random edits
  POST reset             all as started; with "location", that one's records
  GET|POST locations     the locations; add one or regenerate its records
  POST install|uninstall the app at a location, with its webhook delivery
  GET|DELETE events      webhook deliveries as {seq, event} (?since=SEQ, ?location=)
  GET issued_tokens      every token issued, for leak checks
Those about one location take ?location= or a "location" body key and
default to the default location.  Standard library only, so it runs
wherever the tests run.
"""

import argparse
import base64
import bisect
import copy
import gzip
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from datetime import timezone
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from mock_locations import LOCATION_ID, Locations, installed_locations
from mock_records import (
    APPT_STATUSES, ApiError, CALENDARS_VERSION, COMPANIES, CONTACTS_VERSION, ContactSearch,
    DATA_START, DEFAULT_SCOPES, DataGenerator, FILTER_VALUE_MAX, FIRST_NAMES, LAST_NAMES,
    LIST_MAX_LIMIT, NOTE_BODIES, PLACES, SEARCH_MAX_PAGE, SEARCH_WINDOW, SECRET_FIELDS,
    SORT_FIELDS, SearchPage, TAGS, TASK_TITLES, appointment_response,
    calendar_event_view, check_body, compile_filters, contact_event_view, int_param,
    iso_ms, normalize_phone, now_ms, parse_birth_date, query_matcher,
    status_phrase, to_json, to_ms, unprocessable)
from mock_webhooks import EventFeed, install_body


# ---------------------------------------------------------------- auth, limits, faults, records

class TokenAuthority:
    """Static Private Integration Tokens plus OAuth-issued tokens, each bound
    to one location or, for Company (agency) tokens, to the company.

    The static tokens are --token for the default location and
    pit-<locationId> for every location; the unspent seed refresh tokens are
    --refresh-token for the default location and rt-seed-<locationId> for
    the others.  Refresh tokens rotate and are single use, like the real
    service: a spent one is refused, so a lost rotation breaks the
    credentials.  A refresh keeps its lineage's location.
    """

    def __init__(self, args, config, locations):
        self.args, self.config, self.locations = args, config, locations
        self.issued = []        # every token ever issued, for leak checks; reset keeps it
        self.reset()

    def reset(self):
        self.access, self.used_codes, self.serial, self.refresh = {}, set(), 0, {}
        for location in self.locations:
            self.add_location(location.id)

    def add_location(self, location_id):
        seed = self.args.refresh_token if location_id == self.args.location_id else f"rt-seed-{location_id}"
        self.refresh[seed] = {"userType": "Location", "locationId": location_id}

    def _grant_of(self, token):
        """The grant behind a token, expired or not; None for a token never issued."""
        if token == self.args.token:
            location_id = self.args.location_id
        elif token.startswith("pit-") and self.locations.get(token[4:]) is not None:
            location_id = token[4:]
        else:
            return self.access.get(token)
        return {"userType": "Location", "locationId": location_id, "scopes": None,
                "companyId": self.args.company_id, "userId": "mock-user", "expires": None}

    def authenticate(self, header):
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Invalid JWT")
        grant = self._grant_of(token)
        if grant is None or (grant["expires"] is not None and grant["expires"] <= time.time()):
            raise ApiError(401, "Invalid JWT")
        return grant

    def location_of(self, header):
        """The location a request's bearer token is bound to, for the request log; None if none."""
        grant = self._grant_of((header or "").partition(" ")[2].strip())
        return grant["locationId"] if grant else None

    def _issue(self, user_type, location_id, with_refresh):
        self.serial += 1
        token, lifetime = f"at-{self.serial}-{uuid.uuid4().hex}", self.config["token_lifetime"]
        self.access[token] = {"userType": user_type, "locationId": location_id, "userId": "mock-user",
                              "companyId": self.args.company_id, "scopes": set(self.config["scopes"]),
                              "expires": time.time() + lifetime}
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        if with_refresh:
            answer["refresh_token"] = f"rt-{self.serial}-{uuid.uuid4().hex}"
            self.refresh[answer["refresh_token"]] = {"userType": user_type, "locationId": location_id}
        self.issued += [answer[k] for k in ("access_token", "refresh_token") if k in answer]
        answer.update(scope=" ".join(self.config["scopes"]), userType=user_type,
                      companyId=self.args.company_id, userId="mock-user")
        if location_id:
            answer["locationId"] = location_id
        else:
            answer["approvedLocations"] = self.locations.installed()
        return answer

    def grant(self, form):
        """POST /oauth/token: authorization_code, refresh_token and client_credentials grants."""
        missing = [f"{k} should not be empty" for k in ("client_id", "client_secret", "grant_type")
                   if not form.get(k)]
        if missing:
            raise unprocessable(*missing)
        grant_type, user_type = form["grant_type"], form.get("user_type")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise unprocessable("grant_type must be one of the following values: "
                                "authorization_code, refresh_token, client_credentials")
        if user_type not in (None, "", "Location", "Company"):
            raise unprocessable("user_type must be one of the following values: Company, Location")
        if (form["client_id"], form["client_secret"]) != (self.args.client_id, self.args.client_secret):
            text = "Invalid client: client credentials are invalid"
            raise ApiError(401, text, error="invalid_client", extra={"error_description": text})
        location = self.args.location_id
        if grant_type == "refresh_token":
            record = self.refresh.get(form.get("refresh_token") or "")
            if record is None or record.get("spent"):
                raise invalid_grant("Invalid grant: refresh token is invalid")
            record["spent"] = True
            user_type = user_type or record["userType"]
            location = record["locationId"] or location
        elif grant_type == "authorization_code":
            if not form.get("code") or form["code"] in self.used_codes:
                raise invalid_grant("Invalid grant: authorization code is invalid")
            self.used_codes.add(form["code"])
        location = None if user_type == "Company" else location
        return self._issue(user_type or "Location", location, grant_type != "client_credentials")

    def location_token(self, grant, form, app):
        """POST /oauth/locationToken: a Company token buys a token of a location with the app installed."""
        if grant["userType"] != "Company":
            raise ApiError(401, "The token is not authorized for this scope.")
        missing = [f"{k} should not be empty" for k in ("companyId", "locationId") if not form.get(k)]
        if missing:
            raise unprocessable(*missing)
        if form["companyId"] != grant["companyId"]:
            raise ApiError(403, "The token does not have access to this company.")
        if form["locationId"] not in self.locations.installed():
            raise ApiError(403, "The token does not have access to this location.")
        answer = self._issue("Location", form["locationId"], with_refresh=False)
        keep = ("access_token", "token_type", "expires_in", "scope", "locationId", "userId")
        return {**{k: answer[k] for k in keep}, **{k: app[k] for k in ("planId", "appId", "versionId")}}

    def revoke_location(self, location_id):
        """An uninstall ends the app's OAuth tokens at the location (Private Integration Tokens stay)."""
        for grant in self.access.values():
            if grant["locationId"] == location_id:
                grant["expires"] = 0
        for record in self.refresh.values():
            if record["locationId"] == location_id:
                record["spent"] = True

    def expire_all(self):
        for grant in self.access.values():
            grant["expires"] = 0

    def expire_refresh(self):
        """Refresh tokens issued so far are refused; the access tokens they bought still work."""
        for record in self.refresh.values():
            record["spent"] = True


def invalid_grant(description):
    """The token endpoint speaks OAuth on a bad grant; statusCode/message keep API parsers happy."""
    return ApiError(400, description, error="invalid_grant", extra={"error_description": description})


class RateLimiter:
    """Per-location fixed burst window plus a daily budget, as X-RateLimit-* headers report."""

    def __init__(self, config):
        self.config = config
        self.reset()

    def reset(self):
        self.windows, self.daily = {}, {}

    def _state(self, key):
        now = time.monotonic()
        window = self.windows.get(key)
        if window is None or now - window[0] >= self.config["rate_interval_ms"] / 1000:
            window = self.windows[key] = [now, 0]
        today = time.strftime("%Y-%m-%d", time.gmtime())
        if self.daily.get(key, [None])[0] != today:
            self.daily[key] = [today, 0]
        return window, self.daily[key]

    def consume(self, key):
        """Count one request; None when allowed, else the Retry-After seconds."""
        window, day = self._state(key)
        if day[1] >= self.config["daily_limit"]:
            return max(1, int(86400 - time.time() % 86400))
        if window[1] >= self.config["rate_limit"]:
            left = window[0] + self.config["rate_interval_ms"] / 1000 - time.monotonic()
            return max(1, int(left + 0.999))
        window[1] += 1
        day[1] += 1
        return None

    def headers(self, key):
        (_, used), (_, used_today), cfg = *self._state(key), self.config
        return {"X-RateLimit-Max": str(cfg["rate_limit"]),
                "X-RateLimit-Remaining": str(max(0, cfg["rate_limit"] - used)),
                "X-RateLimit-Interval-Milliseconds": str(cfg["rate_interval_ms"]),
                "X-RateLimit-Limit-Daily": str(cfg["daily_limit"]),
                "X-RateLimit-Daily-Remaining": str(max(0, cfg["daily_limit"] - used_today))}

    def set_daily_remaining(self, key, remaining):
        self._state(key)[1][1] = max(0, self.config["daily_limit"] - remaining)

    def forget(self, key):
        self.windows.pop(key, None)
        self.daily.pop(key, None)


FAULT_KINDS = {"status", "delay", "slow_body", "reset", "truncate", "html", "wrong_content_type",
               "bad_json", "wrong_types", "big", "raw", "headers", "patch"}
WRONG_TYPES = {"dnd": "maybe", "tags": "x", "dateAdded": 12, "dateUpdated": False, "customFields": "oops",
               "completed": "yes", "dueDate": 7, "firstName": 42, "phone": 5551234, "startTime": True,
               "total": "many", "searchAfter": "zzz"}


class FaultInjector:
    """Scripted misbehaviour for requests whose method and path match."""

    def __init__(self):
        self.faults, self.next_id = [], 1

    def add(self, spec):
        if not isinstance(spec, dict) or spec.get("kind", "status") not in FAULT_KINDS:
            raise ValueError(f"a fault is a JSON object whose kind is one of {sorted(FAULT_KINDS)}")
        fault = {"id": self.next_id, "kind": spec.get("kind", "status"), "method": spec.get("method"),
                 "path": spec.get("path", ".*"), "times": int(spec.get("times", 1)),
                 "skip": int(spec.get("skip", 0)), "status": spec.get("status"),
                 "body": spec.get("body"), "delay_ms": int(spec.get("delay_ms", 1000)),
                 "size_bytes": int(spec.get("size_bytes", 1 << 20)),
                 "retry_after": spec.get("retry_after"), "after_bytes": spec.get("after_bytes"),
                 "content_type": spec.get("content_type", "application/json"),
                 "body_base64": spec.get("body_base64", ""),
                 "headers": dict(spec.get("headers") or {}), "set": dict(spec.get("set") or {}),
                 "drop": list(spec.get("drop") or [])}
        base64.b64decode(fault["body_base64"], validate=True)     # refuse a bad one when added
        try:
            fault["regex"] = re.compile(fault["path"])
        except re.error as e:
            raise ValueError(f"bad path regex: {e}")
        self.next_id += 1
        self.faults.append(fault)
        return fault["id"]

    def take(self, method, path):
        """The fault that hits this request, if any; skips and hit counts are consumed."""
        for fault in self.faults:
            if (fault["method"] and fault["method"].upper() != method) or not fault["regex"].search(path):
                continue
            if fault["skip"] > 0:
                fault["skip"] -= 1
                continue
            fault["times"] -= 1 if fault["times"] > 0 else 0
            self.faults = [f for f in self.faults if f["times"] != 0]
            return dict(fault)
        return None

    def listing(self):
        return [{k: v for k, v in f.items() if k != "regex"} for f in self.faults]


def monotonic_ms():
    """When a request arrived or was answered, for tests that measure overlap."""
    return round(time.monotonic() * 1000, 3)


def mask_secrets(fields):
    return {k: ("***" if k in SECRET_FIELDS and v else v) for k, v in fields.items()}


class Recorder:
    """The request log (secrets masked) and counters that tests assert on.

    Each entry records the location its token is bound to and, in monotonic
    milliseconds, when the request arrived and when its answer was ready, so
    tests can see requests overlap; max_in_flight counts the most that did.
    """

    def __init__(self):
        self.in_flight = 0
        self.clear_log()
        self.clear_stats()

    def clear_log(self):
        self.entries, self.seq = deque(maxlen=500_000), 0

    def clear_stats(self):
        self.stats = {"requests": 0, "token_requests": 0, "refreshes": 0, "rate_limited": 0, "by_path": {},
                      "location_token_requests": 0, "max_in_flight": self.in_flight, "by_location": {},
                      "connections": 0, "api_connections": 0}

    def location_stats(self, location_id):
        return self.stats["by_location"].setdefault(location_id, {"requests": 0, "rate_limited": 0,
                                                                  "by_path": {}})

    def _counters(self, entry):
        """The global counters and, for a request bound to a location, that location's."""
        if entry["location"] is None:
            return (self.stats,)
        return self.stats, self.location_stats(entry["location"])

    def record(self, req, fault, template, location_id):
        """Log a request as it arrives; its status is filled in by answered()."""
        self.seq += 1
        body = req.logged_body()
        if isinstance(body, dict):
            body = mask_secrets(body)
        entry = {
            "seq": self.seq, "method": req.method, "path": req.path, "body": body, "status": None,
            "query": mask_secrets({k: v[0] if len(v) == 1 else v for k, v in req.query.items()}),
            "version": req.headers.get("Version"), "fault": fault,
            "auth": "bearer" if (req.headers.get("Authorization") or "").lower().startswith("bearer ")
            else "none", "location": location_id, "arrived_ms": monotonic_ms(), "done_ms": None}
        self.entries.append(entry)
        self.in_flight += 1
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)
        key = f"{req.method} {template}"
        for stats in self._counters(entry):
            stats["requests"] += 1
            stats["by_path"][key] = stats["by_path"].get(key, 0) + 1
        return entry

    def answered(self, entry, status):
        entry["status"], entry["done_ms"] = status, monotonic_ms()
        self.in_flight -= 1
        for stats in self._counters(entry):
            stats["rate_limited"] += status == 429


# ---------------------------------------------------------------- requests and routing

class Request:
    """One HTTP request as the app sees it."""

    def __init__(self, method, path, query, headers, raw, host):
        self.method, self.path, self.query = method, path, query
        self.headers, self.raw, self.host = headers, raw, host

    def q(self, name):
        values = self.query.get(name)
        return values[0] if values else None

    def _content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _parse_json(self):
        try:
            return json.loads(self.raw)
        except ValueError as e:
            raise ApiError(400, f"Unexpected token in JSON at position {getattr(e, 'pos', 0)}")

    def form(self):
        if self._content_type() == "application/json" and self.raw:
            body = self._parse_json()
            return body if isinstance(body, dict) else {}
        parsed = parse_qs(self.raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}

    def json(self):
        """Like the API's body parser: only a JSON Content-Type yields a body."""
        return self._parse_json() if self.raw and self._content_type() == "application/json" else {}

    def logged_body(self):
        if not self.raw:
            return None
        if self._content_type() == "application/x-www-form-urlencoded":
            return self.form()
        try:
            return json.loads(self.raw)
        except ValueError:
            return self.raw.decode("utf-8", "replace")


class Route:
    def __init__(self, method, template, handler, scope, version, limited=True):
        self.method, self.template, self.handler = method, template, handler
        self.scope, self.version, self.limited = scope, version, limited
        self.regex = re.compile("^%s/?$" % re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template.rstrip("/")))


class Context:
    """What an endpoint handler needs: the caller's location and its store, the request, the grant."""

    def __init__(self, app, req, grant, params, location):
        self.app, self.req, self.grant, self.params = app, req, grant, params
        self.loc, self.store = location, location.store if location else None
        self.body = None

    def json(self):
        if self.body is None:
            self.body = self.req.json()
        return self.body

    def location(self, value):
        if value in (None, ""):
            raise unprocessable("locationId should not be empty")
        if value != self.store.location_id:
            raise ApiError(403, "The token does not have access to this location.")
        return value


# ---------------------------------------------------------------- endpoint handlers

CONTACT_TYPES = {k: "string" for k in (
    "firstName", "lastName", "name", "email", "locationId", "gender", "phone", "address1", "city",
    "state", "postalCode", "website", "timezone", "source", "country", "companyName", "assignedTo")}
CONTACT_TYPES.update(dnd="boolean", tags="array", customFields="array", dndSettings="object",
                     inboundDndSettings="object", createNewIfDuplicateAllowed="boolean")
UPDATE_KEYS = {"firstName", "lastName", "name", "email", "phone", "address1", "city", "state",
               "postalCode", "website", "timezone", "dnd", "dndSettings", "inboundDndSettings",
               "tags", "customFields", "source", "dateOfBirth", "country", "assignedTo"}
CREATE_KEYS = UPDATE_KEYS | {"locationId", "gender", "companyName"}
UPSERT_KEYS = CREATE_KEYS | {"createNewIfDuplicateAllowed"}
SEARCH_KEYS = {"locationId", "page", "pageLimit", "searchAfter", "filters", "sort", "query"}
APPT_EDIT_KEYS = {"title", "meetingLocationType", "meetingLocationId", "overrideLocationConfig",
                  "appointmentStatus", "assignedUserId", "description", "address", "ignoreDateRange",
                  "toNotify", "ignoreFreeSlotValidation", "rrule", "calendarId", "startTime", "endTime"}
APPT_STATUS_ENUM = ("new", "confirmed", "cancelled", "showed", "noshow", "invalid")
# Per-contact child resources: path parameter, response key, CreateXxx required fields, body types.
CHILDREN = {
    "tasks": {"param": "taskId", "one": "task", "label": "Task",
              "required": ("title", "dueDate", "completed"),
              "types": {"title": "string", "body": "string", "dueDate": "string", "completed": "boolean",
                        "assignedTo": "string"}},
    "notes": {"param": "id", "one": "note", "label": "Note", "required": ("body",),
              "types": {"userId": "string", "body": "string", "title": "string", "color": "string",
                        "pinned": "boolean"}},
}


class Endpoints:
    """The API endpoints, each answering (status, payload) per the OpenAPI specs."""

    def __init__(self, app):
        self.app = app

    def routes(self):
        c, k, r, w, ev = (CONTACTS_VERSION, CALENDARS_VERSION, "contacts.readonly", "contacts.write",
                          "calendars/events.write")
        routes = [
            Route("POST", "/contacts/search", self.search_contacts, r, c),
            Route("POST", "/contacts/upsert", self.upsert_contact, w, c),
            Route("GET", "/contacts/business/{businessId}", self.business_contacts, r, c),
            Route("GET", "/contacts/", self.list_contacts, r, c),
            Route("POST", "/contacts/", self.create_contact, w, c),
            Route("PUT", "/contacts/{contactId}/tasks/{taskId}/completed", self.complete_task, w, c),
            Route("GET", "/contacts/{contactId}/appointments", self.contact_appointments, r, c),
            Route("POST", "/contacts/{contactId}/tags", self.add_tags, w, c),
            Route("DELETE", "/contacts/{contactId}/tags", self.remove_tags, w, c),
            Route("POST", "/locations/{locationId}/tasks/search", self.search_tasks,
                  "locations/tasks.readonly", c),
            Route("GET", "/locations/{locationId}/customFields", self.custom_fields,
                  "locations/customFields.readonly", c),
            Route("GET", "/calendars/", self.list_calendars, "calendars.readonly", k),
            Route("GET", "/calendars/events", self.calendar_events, "calendars/events.readonly", k),
            Route("POST", "/calendars/events/appointments", self.create_appointment, ev, k),
            Route("GET", "/calendars/events/appointments/{eventId}", self.get_appointment,
                  "calendars/events.readonly", k),
            Route("PUT", "/calendars/events/appointments/{eventId}", self.update_appointment, ev, k),
            Route("DELETE", "/calendars/events/{eventId}", self.delete_appointment, ev, k),
            Route("POST", "/oauth/locationToken", self.location_token, None, c, limited=False),
            Route("GET", "/oauth/installedLocations", self.installed_locations, None, c, limited=False)]
        for kind, spec in CHILDREN.items():
            many = f"/contacts/{{contactId}}/{kind}"
            one = f"{many}/{{{spec['param']}}}"
            routes += [Route("GET", many, partial(self.list_children, kind), r, c),
                       Route("POST", many, partial(self.create_child, kind), w, c),
                       Route("GET", one, partial(self.get_child, kind), r, c),
                       Route("PUT", one, partial(self.update_child, kind), w, c),
                       Route("DELETE", one, partial(self.delete_child, kind), w, c)]
        return routes + [Route("GET", "/contacts/{contactId}", self.get_contact, r, c),
                         Route("PUT", "/contacts/{contactId}", self.update_contact, w, c),
                         Route("DELETE", "/contacts/{contactId}", self.delete_contact, w, c)]

    # contacts

    def get_contact(self, ctx):
        return 200, {"contact": ctx.store.contact(ctx.params["contactId"])}

    def list_contacts(self, ctx):
        """The deprecated list: dateAdded asc; the next page needs BOTH startAfter and startAfterId."""
        req = ctx.req
        location = ctx.location(req.q("locationId"))
        limit = int_param(req.q("limit"), "limit", 20, 1, LIST_MAX_LIMIT)
        query = req.q("query")
        keys = ctx.loc.search.view(query_matcher(query), ("list", query), "dateAdded")
        start, after, after_id = 0, req.q("startAfter"), req.q("startAfterId")
        if after and after_id:
            if not re.fullmatch(r"\d+", after):
                raise unprocessable("startAfter must be a number conforming to the specified constraints")
            start = bisect.bisect_right(keys, (0, int(after), after_id))
        chunk = keys[start:start + limit]
        more, last, page = start + len(chunk) < len(keys), chunk[-1] if chunk else None, start // limit + 1
        next_url = None
        if more:
            next_url = f"http://{req.host}/contacts/?" + urlencode(
                {"locationId": location, "startAfter": last[1], "startAfterId": last[2]})
        meta = {"total": len(keys), "nextPageUrl": next_url, "startAfterId": last[2] if last else None,
                "startAfter": last[1] if last else None, "currentPage": page,
                "nextPage": page + 1 if more else None, "prevPage": page - 1 if page > 1 else None}
        contacts = [ctx.store.contacts[key[2]] for key in chunk]
        return 200, {"contacts": contacts, "count": len(keys), "meta": meta}

    def search_contacts(self, ctx):
        """POST /contacts/search: filters, free text, one sort key, page or searchAfter paging."""
        body = check_body(ctx.json(), SEARCH_KEYS)
        errors, limit, page, query = [], body.get("pageLimit"), body.get("page", 1), body.get("query")
        if body.get("locationId") in (None, ""):
            errors.append("locationId should not be empty")
        if limit is None:
            errors.append("pageLimit should not be empty")
        elif not isinstance(limit, int) or isinstance(limit, bool):
            errors.append("pageLimit must be an integer number")
        elif not 1 <= limit <= SEARCH_MAX_PAGE:
            errors.append(f"pageLimit must not be {'less than 1' if limit < 1 else 'greater than 500'}")
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            errors.append("page must not be less than 1")
        if query is not None and (not isinstance(query, str) or len(query) > FILTER_VALUE_MAX):
            errors.append(f"query must be a string shorter than or equal to {FILTER_VALUE_MAX} characters")
        if errors:
            raise unprocessable(*errors)
        ctx.location(body["locationId"])
        sort_field, descending = self._search_sort(body.get("sort"))
        predicate, match_query = compile_filters(body.get("filters")), query_matcher(query)
        shape = json.dumps([body.get("filters"), query], sort_keys=True)
        search = ctx.loc.search
        keys = search.view(lambda c: predicate(c) and match_query(c), shape, sort_field, descending)
        if body.get("searchAfter") is not None:
            after = ContactSearch.cursor_key(body["searchAfter"], sort_field, descending)
            chunk = ContactSearch.page(keys, descending, limit, after=after)
        elif page * limit > SEARCH_WINDOW:
            raise ApiError(400, f"page * pageLimit must not exceed {SEARCH_WINDOW}; "
                                "use searchAfter to page deeper")
        else:
            chunk = ContactSearch.page(keys, descending, limit, offset=(page - 1) * limit)
        return 200, SearchPage(search, [(ctx.store.contacts[key[2]], key) for key in chunk], len(keys))

    @staticmethod
    def _search_sort(sort):
        """Only the first sort entry counts; the default is dateAdded ascending."""
        if sort in (None, []):
            return "dateAdded", False
        if not isinstance(sort, list) or not isinstance(sort[0], dict):
            raise unprocessable("sort must be an array of {field, direction}")
        field, direction = sort[0].get("field"), str(sort[0].get("direction", "asc")).lower()
        if field not in SORT_FIELDS:
            raise unprocessable("sort.0.field must be one of the following values: "
                                + ", ".join(sorted(SORT_FIELDS)))
        if direction not in ("asc", "desc"):
            raise unprocessable("sort.0.direction must be one of the following values: asc, desc")
        return field, direction == "desc"

    def business_contacts(self, ctx):
        req = ctx.req
        ctx.location(req.q("locationId"))
        limit, skip = int_param(req.q("limit"), "limit", 25, 1), int_param(req.q("skip"), "skip", 0, 0)
        business, query = ctx.params["businessId"], req.q("query")
        match_query = query_matcher(query)
        keys = ctx.loc.search.view(lambda c: c.get("businessId") == business and match_query(c),
                                   ("business", business, query), "dateAdded")
        return 200, {"contacts": [ctx.store.contacts[key[2]] for key in keys[skip:skip + limit]],
                     "count": len(keys)}

    def _contact_changes(self, ctx, body):
        """Validated DTO fields as store changes: E.164 phones, YYYY-MM-DD birth dates, (id, value)s."""
        changes = {k: v for k, v in body.items() if k not in ("locationId", "createNewIfDuplicateAllowed")}
        if changes.get("phone"):
            changes["phone"] = normalize_phone(changes["phone"])
        if "dateOfBirth" in changes:
            changes["dateOfBirth"] = parse_birth_date(changes["dateOfBirth"])
        if changes.get("tags") is not None:
            changes["tags"] = self._clean_tags(changes["tags"])
        if "customFields" in changes:
            fields = []
            for i, item in enumerate(changes["customFields"] or []):
                if not isinstance(item, dict) or set(item) - {"id", "key", "field_value"}:
                    raise unprocessable(f"customFields.{i} must be an object of id or key, and field_value")
                fid = ctx.store.custom_field_id(item.get("id") or item.get("key"))
                if fid is None:
                    raise unprocessable(f"customFields.{i} does not name a custom field of this location")
                fields.append((fid, item.get("field_value")))
            changes["customFields"] = fields
        return changes

    @staticmethod
    def _clean_tags(tags):
        if not all(isinstance(t, str) for t in tags):
            raise unprocessable("each value in tags must be a string")
        return list(dict.fromkeys(t.strip() for t in tags if t.strip()))

    def create_contact(self, ctx):
        body = check_body(ctx.json(), CREATE_KEYS, ("locationId",), CONTACT_TYPES)
        ctx.location(body["locationId"])
        contact = ctx.store.create_contact(self._contact_changes(ctx, body))
        return 201, {"contact": dict(contact, deleted=False)}

    def update_contact(self, ctx):
        body = check_body(ctx.json(), UPDATE_KEYS, (), CONTACT_TYPES)
        contact = ctx.store.update_contact(ctx.params["contactId"], self._contact_changes(ctx, body))
        return 200, {"succeded": True, "contact": contact}

    def delete_contact(self, ctx):
        ctx.store.delete_contact(ctx.params["contactId"])
        return 200, {"succeded": True}

    def upsert_contact(self, ctx):
        """Match on email (case-insensitive), then phone; update the match or create."""
        body = check_body(ctx.json(), UPSERT_KEYS, ("locationId",), CONTACT_TYPES)
        ctx.location(body["locationId"])
        changes, match = self._contact_changes(ctx, body), None
        email, phone = (changes.get("email") or "").lower(), changes.get("phone")
        if not body.get("createNewIfDuplicateAllowed"):
            match = next((c for c in ctx.store.contacts.values()
                          if (email and c.get("emailLowerCase") == email)
                          or (phone and c.get("phone") == phone)), None)
        contact = (ctx.store.create_contact(changes) if match is None
                   else ctx.store.update_contact(match["id"], changes))
        return 200, {"new": match is None, "contact": contact, "traceId": str(uuid.uuid4())}

    def _tags_change(self, ctx, combine, status):
        body = check_body(ctx.json(), {"tags"}, ("tags",), {"tags": "array"})
        contact = ctx.store.contact(ctx.params["contactId"])
        tags = combine(contact.get("tags") or [], self._clean_tags(body["tags"]))
        ctx.store.update_contact(contact["id"], {"tags": tags})
        return status, {"tags": tags}

    def add_tags(self, ctx):
        return self._tags_change(ctx, lambda old, new: list(dict.fromkeys(old + new)), 201)

    def remove_tags(self, ctx):
        return self._tags_change(ctx, lambda old, gone: [t for t in old if t not in gone], 200)

    # tasks and notes share one shape: a list per contact, CRUD by id

    def list_children(self, kind, ctx):
        return 200, {kind: ctx.store.children_of(kind, ctx.params["contactId"])}

    def _child(self, kind, ctx):
        ctx.store.contact(ctx.params["contactId"])
        spec = CHILDREN[kind]
        return ctx.store.child(kind, ctx.params[spec["param"]], ctx.params["contactId"], spec["label"])

    @staticmethod
    def _child_fields(kind, ctx, required):
        spec = CHILDREN[kind]
        fields = dict(check_body(ctx.json(), set(spec["types"]), required, spec["types"]))
        if "dueDate" in fields:
            due = to_ms(fields["dueDate"])
            if due is None:
                raise unprocessable("dueDate must be a valid ISO 8601 date string")
            fields["dueDate"] = iso_ms(due)
        return fields

    def create_child(self, kind, ctx):
        fields = self._child_fields(kind, ctx, CHILDREN[kind]["required"])
        contact = ctx.store.contact(ctx.params["contactId"])
        record = {"id": ctx.store.new_id(), **fields}
        if kind == "notes":
            record.setdefault("userId", ctx.store.users[0])
            record["dateAdded"] = iso_ms(now_ms())
        record["contactId"] = contact["id"]
        return 201, {CHILDREN[kind]["one"]: ctx.store.put_child(kind, record)}

    def get_child(self, kind, ctx):
        return 200, {CHILDREN[kind]["one"]: self._child(kind, ctx)}

    def update_child(self, kind, ctx):
        record = dict(self._child(kind, ctx), **self._child_fields(kind, ctx, ()))
        return 200, {CHILDREN[kind]["one"]: ctx.store.put_child(kind, record)}

    def delete_child(self, kind, ctx):
        ctx.store.drop_child(kind, self._child(kind, ctx)["id"])
        return 200, {"succeded": True}

    def complete_task(self, ctx):
        body = check_body(ctx.json(), {"completed"}, ("completed",), {"completed": "boolean"})
        task = dict(self._child("tasks", ctx), completed=body["completed"])
        return 200, {"task": ctx.store.put_child("tasks", task)}

    def search_tasks(self, ctx):
        """POST /locations/{id}/tasks/search: filters, then limit/skip over (dueDate, id) order."""
        ctx.location(ctx.params["locationId"])
        types = {"contactId": "array", "completed": "boolean", "assignedTo": "array", "query": "string",
                 "limit": "number", "skip": "number", "businessId": "string"}
        body = check_body(ctx.json(), set(types), (), types)
        limit, skip = int_param(body.get("limit"), "limit", 20, 1), int_param(body.get("skip"), "skip", 0, 0)
        shape = json.dumps({k: v for k, v in body.items() if k not in ("limit", "skip")}, sort_keys=True)
        versions = (ctx.store.versions["tasks"], ctx.store.versions["contacts"])
        tasks = ctx.loc.task_views.get((versions, shape), lambda: self._filter_tasks(ctx.store, body))
        return 200, {"tasks": tasks[skip:skip + limit]}

    @staticmethod
    def _filter_tasks(store, body):
        contacts, users = set(body.get("contactId") or ()), set(body.get("assignedTo") or ())
        needle, business = (body.get("query") or "").lower(), body.get("businessId")
        done = body.get("completed")
        out = [t for t in store.tables["tasks"].values()
               if (not contacts or t["contactId"] in contacts) and (done is None or t["completed"] == done)
               and (not users or t.get("assignedTo") in users)
               and (not needle or needle in f"{t.get('title', '')} {t.get('body', '')}".lower())
               and (not business or store.contacts.get(t["contactId"], {}).get("businessId") == business)]
        return sorted(out, key=lambda t: (t["dueDate"], t["id"]))

    # appointments, calendars, custom fields

    def contact_appointments(self, ctx):
        events = ctx.store.children_of("appointments", ctx.params["contactId"])
        return 200, {"events": [contact_event_view(a) for a in events]}

    def list_calendars(self, ctx):
        ctx.location(ctx.req.q("locationId"))
        group = ctx.req.q("groupId")
        return 200, {"calendars": [c for c in ctx.store.calendars if not group or c.get("groupId") == group]}

    def calendar_events(self, ctx):
        req = ctx.req
        ctx.location(req.q("locationId"))
        errors = [f"{k} should not be empty" for k in ("startTime", "endTime") if not req.q(k)]
        if errors:
            raise unprocessable(*errors)
        start, end = to_ms(req.q("startTime")), to_ms(req.q("endTime"))
        if start is None or end is None:
            raise unprocessable("startTime and endTime must be epoch milliseconds")
        calendar, user, group = req.q("calendarId"), req.q("userId"), req.q("groupId")
        if not (calendar or user or group):
            raise unprocessable("Either calendarId, userId or groupId must be provided")
        events = [a for a in ctx.store.tables["appointments"].values()
                  if start <= a["startTime"] <= end and (not calendar or a["calendarId"] == calendar)
                  and (not user or a["assignedUserId"] == user or user in a["users"])
                  and (not group or a["groupId"] == group)]
        events.sort(key=lambda a: (a["startTime"], a["id"]))
        return 200, {"events": [calendar_event_view(a) for a in events]}

    def _appointment_fields(self, ctx, body, current):
        """AppointmentCreate/EditSchema fields onto the stored appointment (times as epoch ms)."""
        fields = {k: body[k] for k in ("title", "appointmentStatus", "assignedUserId", "address",
                                       "calendarId") if k in body}
        if "description" in body:
            fields["notes"] = body["description"]
        if fields.get("appointmentStatus") not in (None, *APPT_STATUS_ENUM):
            raise unprocessable("appointmentStatus must be one of the following values: "
                                + ", ".join(APPT_STATUS_ENUM))
        calendar_id = fields.get("calendarId", current.get("calendarId"))
        calendar = next((c for c in ctx.store.calendars if c["id"] == calendar_id), None)
        if calendar is None:
            raise ApiError(400, "Calendar not found")
        fields["groupId"] = calendar.get("groupId")
        for key in ("startTime", "endTime"):
            if key in body:
                fields[key] = to_ms(body[key]) if isinstance(body[key], str) else None
                if fields[key] is None:
                    raise unprocessable(f"{key} must be a valid ISO 8601 date string")
        if "startTime" in fields and "endTime" not in fields:
            fields["endTime"] = fields["startTime"] + calendar["slotDuration"] * 60000
        if fields.get("assignedUserId") is None and current.get("assignedUserId") is None:
            fields["assignedUserId"] = calendar["teamMembers"][0]["userId"]
        if "assignedUserId" in fields:
            fields["users"] = [fields["assignedUserId"]]
        return fields

    def create_appointment(self, ctx):
        body = check_body(ctx.json(), APPT_EDIT_KEYS | {"locationId", "contactId"},
                          ("calendarId", "locationId", "contactId", "startTime"),
                          {k: "string" for k in ("calendarId", "locationId", "contactId", "title")})
        ctx.location(body["locationId"])
        if body["contactId"] not in ctx.store.contacts:
            raise ApiError(400, "Contact not found")
        appt = {"id": ctx.store.new_id(), "locationId": ctx.store.location_id, "contactId": body["contactId"],
                "title": "Appointment", "appointmentStatus": "new", "notes": "", "address": "", "users": [],
                "assignedUserId": None, "dateAdded": now_ms(), "dateUpdated": now_ms()}
        appt.update(self._appointment_fields(ctx, body, {}))
        return 200, appointment_response(ctx.store.put_child("appointments", appt))

    def _appointment(self, ctx):
        return ctx.store.child("appointments", ctx.params["eventId"], label="Appointment")

    def get_appointment(self, ctx):
        return 200, {"event": calendar_event_view(self._appointment(ctx))}

    def update_appointment(self, ctx):
        body = check_body(ctx.json(), APPT_EDIT_KEYS, (), {"calendarId": "string", "title": "string"})
        current = self._appointment(ctx)
        appt = dict(current, **self._appointment_fields(ctx, body, current), dateUpdated=now_ms())
        return 200, appointment_response(ctx.store.put_child("appointments", appt))

    def delete_appointment(self, ctx):
        ctx.store.drop_child("appointments", self._appointment(ctx)["id"])
        return 201, {"succeeded": True}

    def custom_fields(self, ctx):
        ctx.location(ctx.params["locationId"])
        model = ctx.req.q("model") or "contact"
        if model not in ("contact", "opportunity", "all"):
            raise unprocessable("model must be one of the following values: contact, opportunity, all")
        return 200, {"customFields": [f for f in ctx.store.custom_fields if model in ("all", f["model"])]}

    def location_token(self, ctx):
        self.app.recorder.stats["location_token_requests"] += 1
        return 200, self.app.tokens.location_token(ctx.grant, ctx.req.form(), self.app.identity)

    def installed_locations(self, ctx):
        """Agency tokens only, for their own company and the mock's app."""
        if ctx.grant["userType"] != "Company":
            raise ApiError(401, "The token is not authorized for this scope.")
        return 200, installed_locations(self.app.locations, ctx.req.q, self.app.identity)


# ---------------------------------------------------------------- the application

class Reply:
    """What the HTTP layer sends, plus the fault it has to act out while sending."""

    def __init__(self, status, headers, body, fault=None):
        self.status, self.headers, self.body, self.fault = status, headers, body, fault


def json_reply(status, payload, headers=None):
    return Reply(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
                 to_json(payload) + b"\n")


def scramble_types(value):
    """Give known fields the wrong JSON types, recursively."""
    if isinstance(value, dict):
        return {k: WRONG_TYPES[k] if k in WRONG_TYPES else scramble_types(v) for k, v in value.items()}
    return [scramble_types(v) for v in value] if isinstance(value, list) else value


class MockGhl:
    """State, auth, limits, faults and routing behind the socket; one lock guards it all.

    The configured latency is slept outside the lock, so concurrent requests
    overlap as they do against the real service.
    """

    def __init__(self, args):
        self.args, self.lock = args, threading.RLock()
        self.config = {"rate_limit": args.rate_limit, "rate_interval_ms": args.rate_interval_ms,
                       "daily_limit": args.daily_limit, "retry_after": args.retry_after,
                       "token_lifetime": args.token_lifetime, "scopes": list(DEFAULT_SCOPES),
                       "latency_ms": args.latency_ms, "clock_skew_ms": 0}
        self.identity = {"appId": args.app_id, "companyId": args.company_id, "userId": "mock-user",
                         "planId": "mock-plan", "versionId": "mock-version", "companyName": "Mock Agency"}
        self.events = EventFeed()
        self.locations = Locations(args.location_id, args.seed, self.events.changed)
        for location_id, contacts in [(args.location_id, args.contacts)] + args.locations:
            self.locations.put(location_id, contacts, args.seed)
        for _ in range(args.extra_locations):
            self.locations.put(None, args.contacts, args.seed)
        self.initial_locations = [(location.id, location.contacts) for location in self.locations]
        self.tokens = TokenAuthority(args, self.config, self.locations)
        self.limiter = RateLimiter(self.config)
        self.faults, self.recorder = FaultInjector(), Recorder()
        self.routes = Endpoints(self).routes()
        self.admin = AdminApi(self)

    def match_route(self, method, path):
        """The route for this request; a known path with another method is still a 404."""
        for route in self.routes:
            m = route.regex.match(path) if route.method == method else None
            if m:
                return route, m.groupdict()
        raise ApiError(404, f"Cannot {method} {path}")

    def handle(self, req):
        """Serve one API request: fault injection around normal processing, then logging."""
        with self.lock:
            fault = self.faults.take(req.method, req.path)
            kind = fault["kind"] if fault else None
            try:
                template = self.match_route(req.method, req.path)[0].template
            except ApiError:
                template = req.path
            # logged on arrival, so a slow answer cannot show up in the log
            # of whatever a test does next
            entry = self.recorder.record(req, kind, template,
                                         self.tokens.location_of(req.headers.get("Authorization")))
            pause_ms = self.config["latency_ms"] + (fault["delay_ms"] if kind == "delay" else 0)
        if pause_ms > 0:
            time.sleep(pause_ms / 1000)
        if kind in ("status", "html", "bad_json", "raw") or (kind == "reset" and fault["after_bytes"] is None):
            reply = self._fault_reply(fault)
        else:
            reply = self._encode(*self._process(req), fault)
        with self.lock:
            self.recorder.answered(entry, reply.status)
        reply.fault = fault
        return reply

    def _process(self, req):
        """Auth, rate limit, routing, version and scope checks, then the endpoint."""
        rate_key, headers, location, params = self.args.location_id, {}, None, {}
        with self.lock:
            try:
                if req.path.rstrip("/") == "/oauth/token" and req.method == "POST":
                    self.recorder.stats["token_requests"] += 1
                    payload = self.tokens.grant(req.form())
                    self.recorder.stats["refreshes"] += req.form().get("grant_type") == "refresh_token"
                    return 200, self.limiter.headers(rate_key), payload
                grant = self.tokens.authenticate(req.headers.get("Authorization"))
                rate_key = grant["locationId"] or grant["companyId"]
                route, params = self.match_route(req.method, req.path)
                if route.limited:
                    wait = self.limiter.consume(rate_key)
                    if wait is not None:
                        headers = {"Retry-After": str(wait)} if self.config["retry_after"] else {}
                        raise ApiError(429, "Too Many Requests")
                version = req.headers.get("Version")
                if version is None:
                    raise unprocessable("version header was not found")
                if version != route.version:
                    raise unprocessable(f"version must be one of the following values: {route.version}")
                if route.scope and grant["scopes"] is not None and route.scope not in grant["scopes"]:
                    raise ApiError(401, "The token is not authorized for this scope.")
                location = self.locations.get(grant["locationId"])
                if route.scope and location is None:
                    raise ApiError(403, "The token does not have access to this location.")
                status, payload = route.handler(Context(self, req, grant, params, location))
            except ApiError as e:
                if e.status == 404 and self._elsewhere(location, params):
                    e = ApiError(403, "The token does not have access to this location.")
                status, payload = e.status, e.body()
                headers.update(e.headers)
            except Exception:      # a mock bug must surface as a 500, not as a dropped connection
                traceback.print_exc()
                status, payload = 500, ApiError(500, "Internal Server Error").body()
            headers.update(self.limiter.headers(rate_key))
        return status, headers, payload

    def _elsewhere(self, location, params):
        """Whether a record the path names belongs to another location: a 403 then, not a 404."""
        if location is None:
            return False
        ids = set(params.values())
        stores = [other.store for other in self.locations if other is not location]
        return any(not ids.isdisjoint(records) for store in stores
                   for records in (store.contacts, *store.tables.values()))

    @staticmethod
    def _encode(status, headers, payload, fault):
        """Serialise outside the lock; some faults corrupt the payload, its Content-Type or
        headers: "headers" overrides response headers, "patch" sets and drops top-level keys."""
        kind = fault["kind"] if fault else None
        if isinstance(payload, SearchPage) and kind is not None:
            payload = payload.value()       # faults act on the plain payload
        if kind == "headers":
            headers = {**headers, **fault["headers"]}
        if kind == "patch" and isinstance(payload, dict):
            payload = {**{k: v for k, v in payload.items() if k not in fault["drop"]}, **fault["set"]}
        if isinstance(payload, SearchPage):
            body = payload.to_json()
        else:
            body = to_json(scramble_types(payload) if kind == "wrong_types" else payload)
        if kind == "big" and isinstance(payload, dict):
            body = to_json(dict(payload, _padding="x" * max(0, fault["size_bytes"] - len(body) - 14)))
        content_type = "text/plain" if kind == "wrong_content_type" else "application/json"
        return Reply(status, {"Content-Type": f"{content_type}; charset=utf-8", **headers}, body)

    def _fault_reply(self, fault):
        """Answers that replace processing entirely: an error status, HTML, broken JSON, a reset."""
        with self.lock:
            headers = self.limiter.headers(self.args.location_id)
        kind = fault["kind"]
        if kind == "reset":
            return Reply(None, {}, b"")
        if kind == "html":
            body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            return Reply(200, {"Content-Type": "text/html", **headers}, body)
        if kind == "bad_json":
            return Reply(200, {"Content-Type": "application/json", **headers},
                         b'{"contacts": [{"id": "abc", "firstName": "trunc')
        if kind == "raw":
            # any bytes at all: invalid UTF-8, NULs, control characters
            return Reply(int(fault["status"] or 200), {"Content-Type": fault["content_type"], **headers},
                         base64.b64decode(fault["body_base64"]))
        status = int(fault["status"] or 500)
        if fault["retry_after"] is not None:
            headers["Retry-After"] = str(fault["retry_after"])
        body = fault["body"]
        if body is None:
            body = to_json(ApiError(status, status_phrase(status)).body())
        elif not isinstance(body, str):
            body = to_json(body)
        return Reply(status, {"Content-Type": "application/json; charset=utf-8", **headers},
                     body.encode() if isinstance(body, str) else body)


# ---------------------------------------------------------------- admin API

class AdminApi:
    """Unauthenticated /_mock/ endpoints that tests use to observe and steer the mock.

    Those about one location's data or counters take it as ?location= or a
    "location" body key; without it they mean the default location.
    """

    def __init__(self, app):
        self.app = app

    def _location(self, req, body):
        return self.app.locations[req.q("location") or body.get("location")]

    def handle(self, req):
        handler = getattr(self, f"{req.method.lower()}_{req.path[len('/_mock/'):].strip('/')}", None)
        if handler is None:
            return json_reply(404, {"error": f"no admin endpoint {req.method} {req.path}"})
        try:
            body = json.loads(req.raw) if req.raw else {}
            with self.app.lock:
                result = handler(req, body)
        except Exception as e:     # admin misuse: answer with the reason instead of dropping the line
            return json_reply(400, {"error": f"{type(e).__name__}: {e}"})
        return result if isinstance(result, Reply) else json_reply(200, result)

    def get_health(self, req, body):
        return {"ok": True}

    def get_requests(self, req, body):
        since, location = int(req.q("since") or 0), req.q("location")
        return listing(req, [e for e in self.app.recorder.entries
                             if e["seq"] > since and location in (None, e["location"])])

    def delete_requests(self, req, body):
        self.app.recorder.clear_log()
        return {"ok": True}

    def get_faults(self, req, body):
        return self.app.faults.listing()

    def post_faults(self, req, body):
        return {"id": self.app.faults.add(body)}

    def delete_faults(self, req, body):
        self.app.faults.faults = []
        return {"ok": True}

    def get_config(self, req, body):
        return dict(self.app.config)

    def post_config(self, req, body):
        config, app = self.app.config, self.app
        for key, value in body.items():
            if key == "daily_remaining":
                app.limiter.set_daily_remaining(self._location(req, body).id, int(value))
            elif key == "location":
                continue
            elif key == "expire_all_tokens":
                if value:
                    app.tokens.expire_all()
            elif key == "expire_refresh_tokens":
                if value:
                    app.tokens.expire_refresh()
            elif key in config and type(value) is type(config[key]):
                config[key] = value
            else:
                raise ValueError(f"unknown config key or wrong type: {key}")
        return dict(config)

    def get_issued_tokens(self, req, body):
        """Every access and refresh token issued since the mock started, so tests can grep for leaks."""
        return {"tokens": list(self.app.tokens.issued)}

    def get_stats(self, req, body):
        """All counters, or one location's (?location=); copied, as they are serialised after the lock."""
        recorder = self.app.recorder
        if req.q("location"):
            return copy.deepcopy(recorder.location_stats(self._location(req, body).id))
        return dict(copy.deepcopy(recorder.stats), in_flight=recorder.in_flight)

    def delete_stats(self, req, body):
        self.app.recorder.clear_stats()
        return {"ok": True}

    def get_state(self, req, body):
        location = self._location(req, body)
        store, order = location.store, location.search.view(lambda c: True, "state", "dateAdded")
        return {"contacts": [store.contacts[k[2]] for k in order],
                "tasks": list(store.tables["tasks"].values()), "notes": list(store.tables["notes"].values()),
                "appointments": [calendar_event_view(a) for a in store.tables["appointments"].values()],
                "calendars": store.calendars, "customFields": store.custom_fields}

    def post_reset(self, req, body):
        """With a location, regenerate its records and forget its rate-limit counters.  Without,
        return the whole mock to how it started: the locations of its command line only, their
        data regenerated from the body's seed (and the default one's with its contacts count),
        the app installed everywhere, no faults, log, counters, events or issued tokens."""
        app = self.app
        if req.q("location") or body.get("location"):
            return self._put_location(self._location(req, body), body)
        seed, default = body.get("seed", app.args.seed), app.args.location_id
        app.locations.reset([(location_id, body.get("contacts", contacts) if location_id == default else contacts,
                              seed) for location_id, contacts in app.initial_locations])
        app.faults.faults = []
        app.recorder.clear_log()
        app.recorder.clear_stats()
        app.tokens.reset()
        app.limiter.reset()
        app.events.clear()
        return {"ok": True, "contacts": len(app.locations[None].store.contacts)}

    def post_mutate(self, req, body):
        return mutate(self._location(req, body).store, body)

    def get_locations(self, req, body):
        return [location.summary() for location in self.app.locations]

    def post_locations(self, req, body):
        """Add a location ({"id"} optional: one is made up; "installed": false for none), or
        regenerate an existing one's records ({"id", "contacts", "seed"})."""
        app = self.app
        location = app.locations.get(body.get("id"))
        if location is None:
            location = app.locations.put(body.get("id"), body.get("contacts", app.args.contacts),
                                         body.get("seed", app.args.seed))
            app.tokens.add_location(location.id)
            if not body.get("installed", True):
                location.installed_at = None
            return location.summary()
        return self._put_location(location, body)

    def _put_location(self, location, body):
        self.app.locations.put(location.id, body.get("contacts", location.contacts),
                               body.get("seed", location.seed))
        self.app.limiter.forget(location.id)
        return location.summary()

    def post_install(self, req, body):
        return self._install(self._location(req, body), True)

    def post_uninstall(self, req, body):
        return self._install(self._location(req, body), False)

    def _install(self, location, installed):
        """Change the app's install at a location, with the INSTALL or UNINSTALL delivery it causes;
        an uninstall ends the app's OAuth tokens there."""
        app = self.app
        if (location.installed_at is not None) != installed:
            location.installed_at = iso_ms(now_ms()) if installed else None
            app.events.emit("INSTALL" if installed else "UNINSTALL", location.id,
                            install_body(app.identity, installed))
            if not installed:
                app.tokens.revoke_location(location.id)
        return location.summary()

    def get_events(self, req, body):
        """The webhook deliveries after ?since=SEQ, optionally of one ?location=, as {seq, event}."""
        return listing(req, self.app.events.since(int(req.q("since") or 0), req.q("location")))

    def delete_events(self, req, body):
        self.app.events.clear()
        return {"ok": True}


def listing(req, entries):
    """A JSON array, or with ?format=jsonl one sorted-key JSON object per line (for psql's COPY)."""
    if req.q("format") != "jsonl":
        return entries
    text = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
                   for e in entries)
    return Reply(200, {"Content-Type": "application/x-ndjson; charset=utf-8"}, text.encode())


def mutate(store, spec):
    """Seeded random edits through the store's own write paths, for incremental-sync tests."""
    rng = random.Random(spec.get("seed", 0))
    gen = DataGenerator(rng.random(), store.location_id, seen=store.seen)
    gen.users, gen.calendars = store.users, store.calendars

    def pick(pool, name):
        return rng.sample(sorted(pool), min(int(spec.get(name, 0)), len(pool)))

    out = {"deleted": pick(store.contacts, "delete")}
    for cid in out["deleted"]:
        store.delete_contact(cid)
    out["updated"] = pick(store.contacts, "update")
    for cid in out["updated"]:
        edits = [{"firstName": rng.choice(FIRST_NAMES)[0]}, {"city": rng.choice(PLACES)[0]},
                 {"tags": rng.sample(TAGS, rng.randint(0, 3))}, {"dnd": not store.contacts[cid].get("dnd")},
                 {"companyName": rng.choice(COMPANIES + [None])}]
        store.update_contact(cid, {k: v for e in rng.sample(edits, rng.randint(1, 2)) for k, v in e.items()})
    out["created"] = []
    for _ in range(int(spec.get("create", 0))):
        (first, _), (last, last_ascii) = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"new.{last_ascii}{rng.randrange(10 ** 6)}@example.com"
        contact = store.create_contact({"firstName": first, "lastName": last, "email": email,
                                        "tags": rng.sample(TAGS, rng.randint(0, 2))})
        out["created"].append(contact["id"])
    for kind, label in (("tasks", "task"), ("notes", "note")):
        out[f"{label}_deletes"] = pick(store.tables[kind], f"{label}_deletes")
        for rid in out[f"{label}_deletes"]:
            store.drop_child(kind, rid)
        out[f"{label}_edits"] = pick(store.tables[kind], f"{label}_edits")
        for rid in out[f"{label}_edits"]:
            record = dict(store.tables[kind][rid])
            if kind == "tasks":
                record.update(completed=not record["completed"], title=rng.choice(TASK_TITLES))
            else:
                record["body"] = f"{rng.choice(NOTE_BODIES)} (edited {rng.randrange(1000)})"
            store.put_child(kind, record)
        out[f"{label}_creates"] = []
        for cid in pick(store.contacts, f"{label}_creates"):
            if kind == "tasks":
                record = gen.task(cid)
            else:
                record = dict(gen.note(cid, DATA_START), dateAdded=iso_ms(now_ms()))
            out[f"{label}_creates"].append(store.put_child(kind, record)["id"])
    # appointments carry their own dateUpdated, which every edit moves
    out["appointment_deletes"] = pick(store.tables["appointments"], "appointment_deletes")
    for rid in out["appointment_deletes"]:
        store.drop_child("appointments", rid)
    out["appointment_edits"] = pick(store.tables["appointments"], "appointment_edits")
    for rid in out["appointment_edits"]:
        record = dict(store.tables["appointments"][rid], appointmentStatus=rng.choice(APPT_STATUSES),
                      dateUpdated=now_ms() // 1000 * 1000)
        store.put_child("appointments", record)
    out["appointment_creates"] = [
        store.put_child("appointments", gen.appointment(cid, "Booked call"))["id"]
        for cid in pick(store.contacts, "appointment_creates")]
    return out


# ---------------------------------------------------------------- HTTP layer

class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive transport; acts out transport-level faults while writing."""

    protocol_version = "HTTP/1.1"
    server_version = "mock-ghl/1.0"
    app = None

    def log_message(self, fmt, *args):
        pass

    def date_time_string(self, timestamp=None):
        """The Date header of every answer, by a clock that config clock_skew_ms can set off."""
        if timestamp is None:
            timestamp = time.time() + self.app.config["clock_skew_ms"] / 1000
        return super().date_time_string(timestamp)

    def setup(self):
        super().setup()
        with self.app.lock:     # every TCP connection, even one that never sends a request
            self.app.recorder.stats["connections"] += 1
        # Headers and body go out in separate writes; Nagle plus delayed ACKs would add ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self):
        url = urlsplit(self.path)
        if not url.path.startswith("/_mock/") and not getattr(self, "counted", False):
            self.counted = True     # a TCP connection that carries API requests
            with self.app.lock:
                self.app.recorder.stats["api_connections"] += 1
        req = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                      self.headers, self._read_body(), self.headers.get("Host") or "127.0.0.1")
        self._write(self.app.admin.handle(req) if url.path.startswith("/_mock/") else self.app.handle(req))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def _write(self, reply):
        fault = reply.fault or {}
        kind = fault.get("kind")
        if reply.status is None:
            self._reset()
            return
        body, headers = reply.body, dict(reply.headers)
        if body and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            # the fastest level: a 500-contact page takes 4 ms, twice as long at level 5
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "slow_body":
            step = max(1, -(-len(body) // 10))
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(fault["delay_ms"] / 10000)
        elif kind == "truncate":
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
        elif kind == "reset":
            self.wfile.write(body[:int(fault["after_bytes"])])
            self.wfile.flush()
            time.sleep(0.05)
            self._reset()
        else:
            self.wfile.write(body)

    def _reset(self):
        """Close with RST (SO_LINGER 0) so the client sees a connection reset, not a clean EOF."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request, client_address):
        """A client that hangs up mid-response (a cancelled query) is
        normal here; anything else is still reported."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Mock HighLevel (GHL) API v2 server for ghl_fdw tests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--contacts", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--location-id", default="ve9EPM428h8vShlRW1KT")
    p.add_argument("--company-id", default="5DP4iH6HLkQsiKESj6rh")
    p.add_argument("--token", default="pit-mock-token", help="static Private Integration Token")
    p.add_argument("--rate-limit", type=int, default=100)
    p.add_argument("--rate-interval-ms", type=int, default=10_000)
    p.add_argument("--daily-limit", type=int, default=200_000)
    p.add_argument("--token-lifetime", type=int, default=86399)
    p.add_argument("--client-id", default="mock-client")
    p.add_argument("--client-secret", default="mock-secret")
    p.add_argument("--refresh-token", default="rt-seed-0")
    p.add_argument("--retry-after", action="store_true", help="send Retry-After on 429")
    p.add_argument("--locations", type=location_list, default=[], metavar="ID[:CONTACTS],...",
                   help="more locations of the company, each with its own data (default --contacts each)")
    p.add_argument("--extra-locations", type=int, default=0, metavar="N",
                   help="N more locations with made-up ids and --contacts contacts each")
    p.add_argument("--app-id", default="mock-app", help="the marketplace app the OAuth tokens belong to")
    p.add_argument("--latency-ms", type=int, default=0, help="added to every API request, as by a network")
    args = p.parse_args(argv)
    args.locations = [(lid, args.contacts if n is None else n) for lid, n in args.locations]
    return args


def location_list(text):
    """--locations ID[:CONTACTS],...: [(id, contacts or None)]."""
    out = []
    for item in filter(None, text.split(",")):
        location_id, _, contacts = item.partition(":")
        if not LOCATION_ID.fullmatch(location_id) or not re.fullmatch(r"\d*", contacts):
            raise argparse.ArgumentTypeError(f"not ID[:CONTACTS]: {item!r}")
        out.append((location_id, int(contacts) if contacts else None))
    return out


def main(argv=None):
    args = parse_args(argv)
    Handler.app = MockGhl(args)
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = f"{args.port_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"mock_ghl listening on http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    sys.stdout.flush()
    os._exit(0)     # skip tearing down 100k+ records one by one; nothing is left to flush


if __name__ == "__main__":
    sys.exit(main())
