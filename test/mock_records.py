"""The records of the mock GHL API: formats and request validation shared
by the endpoints, the seeded deterministic data set, the record store and
contact search (filters, sort, paging).  The HTTP side is mock_ghl.py.
"""
import base64
import bisect
import gc
import json
import random
import re
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

CONTACTS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"
SEARCH_WINDOW = 10_000      # deepest record page-based search may reach
SEARCH_MAX_PAGE = 500
LIST_MAX_LIMIT = 100
FILTER_VALUE_MAX = 75       # the API's character limit on filter values and query
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEFAULT_SCOPES = ("contacts.readonly contacts.write locations/tasks.readonly calendars.readonly "
                  "calendars/events.readonly calendars/events.write "
                  "locations/customFields.readonly").split()
SECRET_FIELDS = ("client_secret", "refresh_token", "code", "access_token")


# ---------------------------------------------------------------- formats and validation

def now_ms():
    return time.time_ns() // 1_000_000


def iso_ms(ms):
    """Contacts, tasks and notes carry UTC timestamps like 2024-03-01T10:00:00.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def space_time(ms):
    """GET /contacts/{id}/appointments uses 2021-07-16 11:00:00 (no zone, no T)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000))


def offset_time(ms):
    """The calendars API uses ISO 8601 with an offset: 2023-09-25T16:00:00+00:00."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ms // 1000))


NUMBER = re.compile(r"-?\d+(\.\d+)?")


def to_ms(value):
    """Epoch ms from an int, a numeric string or an ISO 8601 string; None if unparseable.
    Sorting 100,000 contacts by a date calls it 100,000 times: its pattern is compiled once."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if NUMBER.fullmatch(text):
        return int(float(text))
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - EPOCH) // timedelta(milliseconds=1)


def parse_birth_date(value):
    """UpdateContactDto accepts YYYY-MM-DD, MM/DD/YYYY and friends; GET returns YYYY-MM-DD."""
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    for pattern, order in ((r"(\d{4})[-/._](\d{2})[-/._](\d{2})(T.*)?", (1, 2, 3)),
                           (r"(\d{2})[-/._](\d{2})[-/._](\d{4})", (3, 1, 2))):
        m = re.fullmatch(pattern, text)
        if m:
            return "%s-%s-%s" % m.group(*order)
    raise unprocessable("dateOfBirth must be a valid date")


def normalize_phone(value):
    """The API stores phones in E.164: keep the digits, default to +1 for 10-digit numbers."""
    digits = re.sub(r"\D", "", value)
    if not value.strip().startswith("+") and len(digits) == 10:
        return "+1" + digits
    return "+" + digits


JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def to_json(payload):
    """Compact UTF-8 JSON; one shared encoder, as json.dumps would build one per call."""
    return JSON_ENCODER.encode(payload).encode()


def status_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiError(Exception):
    """An error answered in the API's shape {statusCode, message, error, traceId}."""

    def __init__(self, status, message, error=None, headers=None, extra=None):
        super().__init__(str(message))
        self.status, self.message, self.error = status, message, error or status_phrase(status)
        self.headers, self.extra = headers or {}, extra or {}

    def body(self):
        body = {"statusCode": self.status, "message": self.message, "error": self.error}
        return {**body, **self.extra, "traceId": str(uuid.uuid4())}


def unprocessable(*messages):
    """422s list their validation messages in an array, as the API does."""
    return ApiError(422, list(messages))


def not_found(what):
    return ApiError(404, f"{what} not found")


TYPE_CHECKS = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
               "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}


def check_body(body, allowed, required=(), types=None):
    """Validate like the API's whitelisting validator: unknown, missing and mistyped properties."""
    if not isinstance(body, dict):
        raise unprocessable("request body must be a JSON object")
    errors = [f"property {k} should not exist" for k in body if k not in allowed]
    errors += [f"{k} should not be empty" for k in required if body.get(k) in (None, "")]
    errors += [f"{k} must be a {kind}" for k, kind in (types or {}).items()
               if body.get(k) is not None and not TYPE_CHECKS[kind](body[k])]
    if errors:
        raise unprocessable(*errors)
    return body


def int_param(raw, name, default, low, high=None):
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise unprocessable(f"{name} must be a number conforming to the specified constraints")
    if value < low:
        raise unprocessable(f"{name} must not be less than {low}")
    if high is not None and value > high:
        raise unprocessable(f"{name} must not be greater than {high}")
    return value


# ---------------------------------------------------------------- deterministic data

FIRST_NAMES = [("Ana", "ana"), ("José", "jose"), ("Zoë", "zoe"), ("Björn", "bjorn"),
               ("Łukasz", "lukasz"), ("Siobhán", "siobhan"), ("Li", "li"), ("Chloé", "chloe"),
               ("Mohammed", "mohammed"), ("Olivia", "olivia"), ("Noah", "noah"), ("Emma", "emma"),
               ("Sofía", "sofia"), ("Hiroshi", "hiroshi"), ("花子", "hanako"), ("Zoey 🌸", "zoey")]
LAST_NAMES = [("Smith", "smith"), ("O'Brien", "obrien"), ("Müller", "muller"), ("Straße", "strasse"),
              ("García", "garcia"), ("Nguyễn", "nguyen"), ("日本", "nihon"), ("Dubois", "dubois"),
              ("Kowalski", "kowalski"), ("Smith, Jr.", "smithjr"), ("van der Berg", "vanderberg"),
              ("Ødegaard", "odegaard"), ("Johnson", "johnson"), ("Rossi", "rossi")]
PLACES = [("Austin", "TX", "US", "78701", "America/Chicago"),
          ("Berlin", "BE", "DE", "10115", "Europe/Berlin"),
          ("São Paulo", "SP", "BR", "01000-000", "America/Sao_Paulo"),
          ("Tokyo", "13", "JP", "100-0001", "Asia/Tokyo"),
          ("Dolomite", "AL", "US", "35061", "America/Chicago"),
          ("Zürich", "ZH", "CH", "8001", "Europe/Zurich")]
DOMAINS = ["example.com", "mail.test", "acme.io", "Example.ORG"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella GmbH", "Société Générale Test", "東京 Trading",
             "Stark & Wayne, LLC"]
STREETS = ["1st St N", "Main Street", "Hauptstraße", "Rue de la Paix", "Elm Ave"]
SOURCES = ["public api", "web form", "import", "facebook", "referral"]
TAGS = ["vip", "newsletter", "lead", "customer", "náñez-ünïcode", "webinar 2024", "do-not-call"]
TASK_TITLES = ["Call back", "Send proposal", "Follow up", "Renewal reminder", "Prüfen & senden"]
NOTE_BODIES = ["Left a voicemail.", "Interested in the premium plan — call next week.",
               "Prefers email. 日本語 OK.", "Met at the conference 🎉", "Line one\nline two"]
COLOURS = ["red", "blue", "grün", "紫", 'light "sky" blue']
APPT_STATUSES = ["confirmed", "confirmed", "new", "cancelled", "showed", "noshow"]
DATA_START = 1609459200000      # 2021-01-01
DATA_END = 1735689600000        # 2025-01-01
DAY_MS = 86_400_000
ID_TRANSLATION = bytes.maketrans(b"+/", b"Xz")


def random_id(rng):
    """20 alphanumerics like the API's ids (base64 of 15 random bytes, symbols swapped)."""
    return base64.b64encode(rng.randbytes(15)).translate(ID_TRANSLATION).decode()


class DataGenerator:
    """Builds the seeded records of one location; the same seed yields the same data."""

    def __init__(self, seed, location_id, seen=None):
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.location_id = location_id
        self.seen = set() if seen is None else seen
        self.users = [self.new_id() for _ in range(4)]
        self.businesses = ["%024x" % self.rng.getrandbits(96) for _ in range(5)]
        self.custom_fields = self._custom_fields()
        self.calendars = self._calendars()

    def new_id(self):
        while True:
            rid = random_id(self.rng)
            if rid not in self.seen:
                self.seen.add(rid)
                return rid

    def pick(self, seq):
        """random.choice without its overhead: generating 100k contacts must stay fast."""
        return seq[int(self.r() * len(seq))]

    def between(self, low, high):
        return low + int(self.r() * (high - low))

    def _custom_fields(self):
        specs = [("Favourite colour", "favourite_colour", "TEXT", "contact", []),
                 ("Lifetime value", "lifetime_value", "NUMERICAL", "contact", []),
                 ("Interests", "interests", "MULTIPLE_OPTIONS", "contact", ["golf", "chess", "sailing"]),
                 ("Renewal date", "renewal_date", "DATE", "contact", []),
                 ("Deal size", "deal_size", "NUMERICAL", "opportunity", [])]
        return [{"id": self.new_id(), "name": name, "fieldKey": f"{model}.{key}", "placeholder": name,
                 "dataType": kind, "position": pos * 50, "picklistOptions": options,
                 "picklistImageOptions": [], "isAllowedCustomOption": False, "isMultiFileAllowed": False,
                 "maxFileLimit": 0, "locationId": self.location_id, "model": model}
                for pos, (name, key, kind, model, options) in enumerate(specs)]

    def _calendars(self):
        group = self.new_id()
        calendars = []
        for i, (name, group_id, minutes) in enumerate(
                [("Sales calls", group, 30), ("Demos 日本", group, 60), ("Support", None, 30)]):
            cal = {"id": self.new_id(), "locationId": self.location_id, "name": name,
                   "description": f"{name} calendar", "slug": f"cal-{i}", "widgetSlug": f"cal-{i}",
                   "calendarType": "round_robin" if group_id else "event", "widgetType": "classic",
                   "eventTitle": "{{contact.name}}", "eventColor": "#039be5", "isActive": True,
                   "slotDuration": minutes, "slotDurationUnit": "mins",
                   "teamMembers": [{"userId": u, "priority": 0.5, "meetingLocationType": "custom",
                                    "isPrimary": j == 0} for j, u in enumerate(self.users[i:i + 2])]}
            if group_id:
                cal["groupId"] = group_id
            calendars.append(cal)
        return calendars

    def custom_value(self, field):
        kind = field["dataType"]
        if kind == "NUMERICAL":
            return self.between(0, 100000) if self.r() < 0.5 else round(self.r() * 5000, 2)
        if kind == "MULTIPLE_OPTIONS":
            return self.rng.sample(field["picklistOptions"], self.between(1, 4))
        if kind == "DATE":
            return space_time(self.between(DATA_START, DATA_END))[:10]
        return self.pick(COLOURS)

    def contact(self, added, updated, index):
        """One contact in GET /contacts/{id} shape, with realistic gaps and nulls."""
        r, pick = self.r, self.pick
        c = {"id": self.new_id(), "locationId": self.location_id}
        (first, first_ascii), (last, last_ascii) = pick(FIRST_NAMES), pick(LAST_NAMES)
        if r() > 0.03:
            c["firstName"] = first
        c["lastName"] = last
        if r() > 0.05:
            email = f"{first_ascii}.{last_ascii}{index}@{pick(DOMAINS)}"
            c["email"] = email.title() if r() < 0.1 else email
        if r() > 0.1:
            c["phone"] = pick(["+1", "+44", "+49"]) + str(self.between(2000000000, 9999999999))
        company = pick(COMPANIES) if r() > 0.3 else None
        if company is not None or r() < 0.5:
            c["companyName"] = company
        c["source"] = pick(SOURCES)
        c["type"] = "customer" if r() < 0.3 else "lead"
        if r() > 0.2:
            c["assignedTo"] = pick(self.users)
        city, state, country, postal, tz = pick(PLACES)
        if r() > 0.2:
            c["address1"] = f"{self.between(1, 9999)} {pick(STREETS)}"
        c.update(city=city, state=state, country=country, postalCode=postal)
        if r() > 0.5:
            c["website"] = f"https://www.{last_ascii}.example.com"
        if r() > 0.2:
            c["timezone"] = tz
        c["dnd"] = r() < 0.1
        c["tags"] = self.rng.sample(TAGS, pick((0, 0, 1, 1, 2, 3, 4)))
        fields = self.rng.sample(self.custom_fields[:4], self.between(0, 4))
        c["customFields"] = [{"id": f["id"], "value": self.custom_value(f)} for f in fields]
        if r() < 0.3:
            c["businessId"] = pick(self.businesses)
        if r() < 0.3:
            c["dateOfBirth"] = space_time(self.between(-631152000000, 946684800000))[:10]
        c["dateAdded"], c["dateUpdated"] = iso_ms(added), iso_ms(updated)
        return derive_contact(c)

    def task(self, contact_id):
        task = {"id": self.new_id(), "title": self.pick(TASK_TITLES)}
        if self.r() > 0.2:
            task["body"] = self.pick(NOTE_BODIES)
        if self.r() > 0.3:
            task["assignedTo"] = self.pick(self.users)
        task["dueDate"] = iso_ms(self.between(DATA_START, DATA_END + 365 * DAY_MS) // 60000 * 60000)
        task["completed"] = self.r() < 0.4
        task["contactId"] = contact_id
        return task

    def note(self, contact_id, after_ms):
        note = {"id": self.new_id(), "body": self.pick(NOTE_BODIES), "userId": self.pick(self.users),
                "dateAdded": iso_ms(self.between(after_ms, DATA_END)), "contactId": contact_id}
        if self.r() < 0.5:
            note.update(title="Follow-up summary", color="#FFAA00", pinned=self.r() < 0.2)
        return note

    def appointment(self, contact_id, title):
        """Appointments are kept with epoch-ms times; each API renders its own format."""
        cal = self.pick(self.calendars)
        start = self.between(DATA_START, DATA_END + 365 * DAY_MS) // 1800000 * 1800000
        added = start - self.between(DAY_MS, 30 * DAY_MS)
        user = self.pick(cal["teamMembers"])["userId"]
        return {"id": self.new_id(), "calendarId": cal["id"], "locationId": self.location_id,
                "contactId": contact_id, "groupId": cal.get("groupId"), "title": title,
                "appointmentStatus": self.pick(APPT_STATUSES), "assignedUserId": user, "users": [user],
                "notes": self.pick(["", "Bring the contract", "日本語メモ"]),
                "address": self.pick(["Zoom", "https://meet.google.com/abc-defg-hij", "Main office"]),
                "startTime": start, "endTime": start + cal["slotDuration"] * 60000,
                "dateAdded": added, "dateUpdated": added + self.pick((0, 0, DAY_MS))}


def derive_contact(c):
    """Recompute the fields the API derives from names and email."""
    for src, dst in (("firstName", "firstNameLowerCase"), ("lastName", "lastNameLowerCase"),
                     ("email", "emailLowerCase")):
        if c.get(src):
            c[dst] = c[src].lower()
        else:
            c.pop(dst, None)
    full = " ".join(p for p in (c.get("firstName"), c.get("lastName")) if p)
    if full:
        c["name"], c["fullNameLowerCase"] = full, full.lower()
    else:
        c.pop("name", None)
        c.pop("fullNameLowerCase", None)
    return c


def contact_event_view(a):
    """GetEventSchema of the contacts spec: space-separated times and a 'status' field."""
    status = "booked" if a["appointmentStatus"] in ("new", "confirmed") else a["appointmentStatus"]
    return {"id": a["id"], "calendarId": a["calendarId"], "status": status, "title": a["title"],
            "assignedUserId": a["assignedUserId"], "notes": a["notes"],
            "startTime": space_time(a["startTime"]), "endTime": space_time(a["endTime"]),
            "address": a["address"], "locationId": a["locationId"], "contactId": a["contactId"],
            "groupId": a["groupId"], "appointmentStatus": a["appointmentStatus"], "users": a["users"],
            "dateAdded": space_time(a["dateAdded"]), "dateUpdated": space_time(a["dateUpdated"]),
            "assignedResources": []}


def calendar_event_view(a):
    """CalendarEventDTO of the calendars spec: ISO 8601 times with an offset."""
    return {"id": a["id"], "address": a["address"], "title": a["title"], "calendarId": a["calendarId"],
            "locationId": a["locationId"], "contactId": a["contactId"], "groupId": a["groupId"],
            "appointmentStatus": a["appointmentStatus"], "assignedUserId": a["assignedUserId"],
            "users": a["users"], "notes": a["notes"], "isRecurring": False,
            "startTime": offset_time(a["startTime"]), "endTime": offset_time(a["endTime"]),
            "dateAdded": offset_time(a["dateAdded"]), "dateUpdated": offset_time(a["dateUpdated"]),
            "assignedResources": [], "createdBy": {"source": "third_party", "userId": None}}


def appointment_response(a):
    """AppointmentSchemaResponse: what POST/PUT /calendars/events/appointments answer."""
    return {"id": a["id"], "calendarId": a["calendarId"], "locationId": a["locationId"],
            "contactId": a["contactId"], "startTime": offset_time(a["startTime"]),
            "endTime": offset_time(a["endTime"]), "title": a["title"], "meetingLocationType": "custom",
            "appointmentStatus": a["appointmentStatus"], "assignedUserId": a["assignedUserId"],
            "address": a["address"], "isRecurring": False}


# ---------------------------------------------------------------- the record store

class Store:
    """All records of one mock location, with per-contact child indexes.

    Records are replaced, never edited in place, so a response can be
    serialised outside the lock while another thread writes.  Every change
    made after populate() is reported to the listener as (location_id, kind,
    old, new), old None for a create and new None for a delete: the webhook
    feed hears about API writes and seeded mutations alike.
    """

    CHILD_KINDS = ("tasks", "notes", "appointments")

    def __init__(self, location_id, listener=None):
        self.location_id, self.listener = location_id, listener
        self.versions = {"contacts": 0, "tasks": 0, "notes": 0, "appointments": 0}

    def populate(self, count, seed):
        gc.disable()    # collector passes over 100k fresh dicts would double the build time
        try:
            self._populate(count, seed)
        finally:
            gc.enable()
            gc.freeze()

    def _populate(self, count, seed):
        gen = DataGenerator(seed, self.location_id)
        self.users, self.businesses = gen.users, gen.businesses
        self.custom_fields, self.calendars = gen.custom_fields, gen.calendars
        self.contacts = {}
        self.tables = {kind: {} for kind in self.CHILD_KINDS}
        self.children = {kind: {} for kind in self.CHILD_KINDS}
        added = updated = DATA_START
        for i in range(count):
            # Mostly distinct timestamps, with a few deliberate ties for cursor tests.
            if i == 0 or gen.r() > 0.02:
                added = gen.between(DATA_START, DATA_END)
            if gen.r() > 0.02 or updated < added:
                updated = added if gen.r() < 0.4 else gen.between(added, added + DAY_MS * 400)
            c = gen.contact(added, updated, i)
            self.contacts[c["id"]] = c
            for kind, share, most, make in (
                    ("tasks", 0.35, 3, lambda: gen.task(c["id"])),
                    ("notes", 0.4, 2, lambda: gen.note(c["id"], added)),
                    ("appointments", 0.2, 2,
                     lambda: gen.appointment(c["id"], f"Call with {c.get('name', '')}"))):
                if gen.r() < share:
                    for _ in range(gen.between(1, most + 1)):
                        self._put_child(kind, make())
        self.id_rng = random.Random(f"{seed}:runtime")
        self.seen = gen.seen
        for kind in self.versions:
            self.versions[kind] += 1

    def new_id(self):
        while True:
            rid = random_id(self.id_rng)
            if rid not in self.seen:
                self.seen.add(rid)
                return rid

    def contact(self, contact_id):
        c = self.contacts.get(contact_id)
        if c is None:
            raise not_found("Contact")
        return c

    def _changed(self, kind, old, new):
        if self.listener is not None:
            self.listener(self.location_id, kind, old, new)

    def _save_contact(self, c, stamp=True):
        if stamp:
            c["dateUpdated"] = iso_ms(now_ms())
        old = self.contacts.get(c["id"])
        self.contacts[c["id"]] = derive_contact(c)
        self.versions["contacts"] += 1
        self._changed("contacts", old, c)
        return c

    def create_contact(self, changes):
        stamp = iso_ms(now_ms())
        c = {"id": self.new_id(), "locationId": self.location_id, "type": "lead", "dnd": False,
             "tags": [], "customFields": [], "dateAdded": stamp, "dateUpdated": stamp}
        self._apply(c, changes)
        return self._save_contact(c, stamp=False)

    def update_contact(self, contact_id, changes):
        """Every contact write bumps dateUpdated, as on the real service."""
        c = dict(self.contact(contact_id))
        self._apply(c, changes)
        return self._save_contact(c)

    @staticmethod
    def _apply(c, changes):
        """Apply validated DTO fields; customFields merge by id and an empty value removes one."""
        for key, value in changes.items():
            if key == "customFields":
                merged = {f["id"]: f["value"] for f in c.get("customFields") or []}
                for fid, val in value:
                    merged[fid] = val
                c[key] = [{"id": k, "value": v} for k, v in merged.items() if v not in (None, "", [])]
            else:
                c[key] = value
        if "name" in changes and not ({"firstName", "lastName"} & changes.keys()):
            first, _, last = (changes["name"] or "").partition(" ")
            c["firstName"], c["lastName"] = first or None, last or None

    def delete_contact(self, contact_id):
        """The contact's tasks, notes and appointments go with it, announced by its own deletion only."""
        self.contact(contact_id)
        for kind in self.CHILD_KINDS:
            for rid in list(self.children[kind].get(contact_id, ())):
                self._drop_child(kind, rid)
        old = self.contacts.pop(contact_id)
        self.versions["contacts"] += 1
        self._changed("contacts", old, None)

    def custom_field_id(self, ref):
        """customFields input names a field by id, by fieldKey or by the key without 'contact.'."""
        for f in self.custom_fields:
            if ref in (f["id"], f["fieldKey"], f["fieldKey"].split(".", 1)[1]):
                return f["id"]
        return None

    def put_child(self, kind, record):
        self._changed(kind, self._put_child(kind, record), record)
        return record

    def _put_child(self, kind, record):
        """Store a task, note or appointment; returns the record it replaced, if any."""
        old = self.tables[kind].get(record["id"])
        if old is not None and old["contactId"] != record["contactId"]:
            self.children[kind][old["contactId"]].pop(old["id"], None)
        self.tables[kind][record["id"]] = record
        self.children[kind].setdefault(record["contactId"], {})[record["id"]] = None
        self.versions[kind] += 1
        return old

    def drop_child(self, kind, record_id):
        self._changed(kind, self._drop_child(kind, record_id), None)

    def _drop_child(self, kind, record_id):
        record = self.tables[kind].pop(record_id)
        siblings = self.children[kind].get(record["contactId"], {})
        siblings.pop(record_id, None)
        if not siblings:
            self.children[kind].pop(record["contactId"], None)
        self.versions[kind] += 1
        return record

    def children_of(self, kind, contact_id):
        self.contact(contact_id)
        return [self.tables[kind][rid] for rid in self.children[kind].get(contact_id, ())]

    def child(self, kind, record_id, contact_id=None, label="Record"):
        record = self.tables[kind].get(record_id)
        if record is None or (contact_id is not None and record["contactId"] != contact_id):
            raise not_found(label)
        return record


# ---------------------------------------------------------------- contact search

SEARCH_FIELDS = {name: (lambda f: lambda c: c.get(f))(name) for name in (
    "id", "phone", "firstNameLowerCase", "lastNameLowerCase", "fullNameLowerCase", "firstName",
    "lastName", "companyName", "tags", "assignedTo", "businessId", "type", "source", "dnd", "city",
    "state", "country", "postalCode", "timezone", "website")}
SEARCH_FIELDS.update(address=lambda c: c.get("address1"),
                     email=lambda c: c["email"].lower() if isinstance(c.get("email"), str) else None,
                     **{f: (lambda f: lambda c: to_ms(c.get(f)))(f)
                        for f in ("dateAdded", "dateUpdated", "dateOfBirth")})
DATE_FIELDS = {"dateAdded", "dateUpdated", "dateOfBirth"}
CASELESS_FIELDS = {"email", "tags"}
SORT_FIELDS = {"dateAdded", "dateUpdated", "firstNameLowerCase", "lastNameLowerCase", "email"}
QUERY_FIELDS = ("name", "email", "phone", "companyName")
RANGE_CHECKS = {"gte": lambda a, b: a >= b, "lte": lambda a, b: a <= b,
                "gt": lambda a, b: a > b, "lt": lambda a, b: a < b}


def field_getter(field):
    if isinstance(field, str) and field.startswith("customFields."):
        fid = field.split(".", 1)[1]
        return lambda c: next((f["value"] for f in c.get("customFields") or [] if f["id"] == fid), None)
    return SEARCH_FIELDS.get(field)


def compile_filters(filters, where="filters", combine=all):
    """Turn the search body's filters into one predicate; bad filters answer 422."""
    if filters is None:
        return lambda c: True
    if not isinstance(filters, list):
        raise unprocessable(f"{where} must be an array")
    preds = [compile_filter(f, f"{where}.{i}") for i, f in enumerate(filters)]
    return lambda c: combine(p(c) for p in preds)


def compile_filter(spec, where):
    if not isinstance(spec, dict):
        raise unprocessable(f"{where} must be an object")
    if "group" in spec:
        group = str(spec["group"]).upper()
        if group not in ("AND", "OR"):
            raise unprocessable(f"{where}.group must be one of the following values: AND, OR")
        return compile_filters(spec.get("filters") or [], f"{where}.filters", all if group == "AND" else any)
    field, op, value = spec.get("field"), spec.get("operator"), spec.get("value")
    getter = field_getter(field)
    if getter is None:
        raise unprocessable(f"{where}.field {field!r} is not a supported search field")
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) and len(v) > FILTER_VALUE_MAX for v in values):
        raise unprocessable(f"{where}.value must be shorter than or equal to {FILTER_VALUE_MAX} characters")
    fold = (lambda v: v.lower() if isinstance(v, str) else v) if field in CASELESS_FIELDS else (lambda v: v)

    def norm(v):
        if field in DATE_FIELDS:
            if to_ms(v) is None:
                raise unprocessable(f"{where}.value must be epoch milliseconds or an ISO 8601 date")
            return to_ms(v)
        return v.lower() == "true" if field == "dnd" and isinstance(v, str) else fold(v)

    def values_of(c):
        actual = getter(c)
        if actual is None:
            return []
        return [fold(a) for a in actual] if isinstance(actual, list) else [fold(actual)]

    if op in ("eq", "not_eq"):
        if value is None:
            raise unprocessable(f"{where}.value should not be empty")
        wanted = {norm(v) for v in values}
        hit = lambda c: any(v in wanted for v in values_of(c))
    elif op in ("contains", "not_contains"):
        if not isinstance(value, str):
            raise unprocessable(f"{where}.value must be a string")
        hit = lambda c: any(value.lower() in str(v).lower() for v in values_of(c))
    elif op in ("exists", "not_exists"):
        hit = lambda c: getter(c) not in (None, "", [])
    elif op == "range":
        if not isinstance(value, dict) or not value or set(value) - set(RANGE_CHECKS):
            raise unprocessable(f"{where}.value must be an object with gte, lte, gt or lt")
        bounds = {k: norm(v) for k, v in value.items()}

        def hit(c):
            actual = getter(c)
            try:
                return actual is not None and all(RANGE_CHECKS[k](actual, b) for k, b in bounds.items())
            except TypeError:
                return False
        return hit
    else:
        raise unprocessable(f"{where}.operator must be one of the following values: eq, not_eq, "
                            "contains, not_contains, exists, not_exists, range")
    return hit if op in ("eq", "contains", "exists") else (lambda c: not hit(c))


def query_matcher(query):
    if not query:
        return lambda c: True
    needle = query.lower()
    return lambda c: any(isinstance(c.get(f), str) and needle in c[f].lower() for f in QUERY_FIELDS)


class ViewCache:
    """A small LRU of computed orderings, keyed by data version and query shape."""

    def __init__(self, size=8):
        self.size, self.entries = size, OrderedDict()

    def get(self, key, build):
        if key not in self.entries:
            self.entries[key] = build()
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return self.entries[key]


class ContactSearch:
    """Sorted, filtered views of the contacts for search and list paging.

    A view is an ascending list of (missing, value, id) keys.  It is cached
    per (filters, query, sort) until the contacts change, so a searchAfter
    scan costs one sort plus one bisect per page.
    """

    def __init__(self, store):
        # a full sync pages up to 16 dateAdded slices side by side (two per
        # concurrent request): each must keep its view, or every page of a
        # slice sorts the location again
        self.store, self.cache = store, ViewCache(size=32)
        self.rows = {}      # contact id -> (that contact record, its sort key, its search row's JSON)

    def view(self, predicate, shape, sort_field, descending=False):
        key = (self.store.versions["contacts"], shape, sort_field, descending)
        return self.cache.get(key, lambda: self._build(predicate, sort_field, descending))

    @staticmethod
    def missing_key(sort_field, descending, contact_id):
        """Rows without the sort value come last in either direction, as in Elasticsearch."""
        return (-1 if descending else 1, 0 if sort_field in DATE_FIELDS else "", contact_id)

    def _build(self, predicate, sort_field, descending):
        getter, keys = SEARCH_FIELDS[sort_field], []
        for c in self.store.contacts.values():
            if predicate(c):
                v = getter(c)
                keys.append((0, v, c["id"]) if v is not None
                            else self.missing_key(sort_field, descending, c["id"]))
        keys.sort()
        return keys

    @classmethod
    def cursor_key(cls, cursor, sort_field, descending):
        """searchAfter is [sortValue, id] exactly as a result row carried it."""
        if not isinstance(cursor, list) or len(cursor) != 2 or not isinstance(cursor[1], str):
            raise ApiError(400, "searchAfter must be the [sortValue, id] array of the last result")
        value, cid = cursor
        if value is None:
            return cls.missing_key(sort_field, descending, cid)
        value = to_ms(value) if sort_field in DATE_FIELDS else str(value)
        if value is None:
            raise ApiError(400, "searchAfter sort value does not match the sort field")
        return (0, value, cid)

    @staticmethod
    def page(keys, descending, limit, after=None, offset=0):
        if not descending:
            start = bisect.bisect_right(keys, after) if after is not None else offset
            return keys[start:start + limit]
        end = bisect.bisect_left(keys, after) if after is not None else len(keys) - offset
        return keys[max(0, end - limit):max(0, end)][::-1]

    def row_json(self, contact, key):
        """A result row's bytes, encoded again only when the record or its sort key changed."""
        cached = self.rows.get(contact["id"])
        if cached is None or cached[0] is not contact or cached[1] != key:
            cached = self.rows[contact["id"]] = (contact, key, to_json(search_view(contact, key)))
        return cached[2]


class SearchPage:
    """A POST /contacts/search answer built from (contact, key) pairs taken under the lock.

    to_json() yields the bytes to_json(value()) would, from cached rows: the
    encoding of a 500-row page is what bounds the mock's search throughput.
    Faults that rewrite the payload use value().
    """

    def __init__(self, search, hits, total):
        self.search, self.hits, self.total = search, hits, total

    def value(self):
        return {"contacts": [search_view(c, key) for c, key in self.hits], "total": self.total}

    def to_json(self):
        rows = b",".join(self.search.row_json(c, key) for c, key in self.hits)
        return b'{"contacts":[%s],"total":%d}' % (rows, self.total)


def search_view(contact, key):
    """Search rows differ from GET: 'address' for address1, epoch-ms dateOfBirth, a cursor."""
    row = dict(contact)
    if "address1" in row:
        row["address"] = row.pop("address1")
    if row.get("dateOfBirth"):
        row["dateOfBirth"] = to_ms(row["dateOfBirth"])
    row["searchAfter"] = [key[1] if key[0] == 0 else None, key[2]]
    return row
