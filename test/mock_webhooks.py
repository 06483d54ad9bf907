"""The webhook deliveries of the mock GHL API: what HighLevel would send when
a location's data changes, in the shapes of its webhook event docs
(ContactCreate ... AppUninstall), kept in one feed that tests read through
GET /_mock/events.  The mock neither delivers nor signs them.

Which change sends what:
- a contact's creation and deletion: ContactCreate, ContactDelete (its
  tasks, notes and appointments go with it, without events of their own);
- a contact update: ContactTagUpdate when its tags changed, ContactDndUpdate
  when dnd or dndSettings changed, ContactUpdate when anything else did (a
  write that changes several sends several; one that changes nothing, none);
- tasks: TaskCreate, TaskComplete (completed turned true), TaskDelete.  An
  edit sends nothing: there is no TaskUpdate;
- notes and appointments: Create, Update (when the record changed), Delete;
- the app's install and uninstall at a location: INSTALL, UNINSTALL.
Every delivery carries type, locationId, a unique webhookId and the ISO 8601
timestamp of the change.
"""

import uuid
from collections import deque

from mock_records import calendar_event_view, iso_ms, now_ms

# the keys of the contact deliveries, in the order of the docs' examples
CONTACT_KEYS = ("id", "address1", "city", "state", "companyName", "country", "source", "dateAdded",
                "dateOfBirth", "dnd", "dndSettings", "email", "name", "firstName", "lastName", "phone",
                "postalCode", "tags", "website", "attachments", "assignedTo", "customFields")
DND_CHANNELS = ("SMS", "Call", "Email", "GMB", "FB", "WhatsApp")
TASK_KEYS = ("id", "assignedTo", "body", "contactId", "title", "dateAdded", "dueDate")
NOTE_KEYS = ("id", "body", "contactId", "dateAdded")
APPOINTMENT_KEYS = ("id", "address", "title", "calendarId", "contactId", "groupId", "appointmentStatus",
                    "assignedUserId", "users", "notes", "source", "startTime", "endTime", "dateAdded",
                    "dateUpdated")
# what a contact update can change besides the fields of ContactUpdate
TAG_FIELDS, DND_FIELDS = {"tags"}, {"dnd", "dndSettings"}


def pick(record, keys):
    """The keys of a delivery that the record has; the docs' types have no null."""
    return {k: record[k] for k in keys if record.get(k) is not None}


def contact_body(contact, with_dnd_settings=False):
    c = dict(contact, attachments=[])
    if c.get("dateOfBirth"):
        c["dateOfBirth"] += "T00:00:00.000Z"
    if not with_dnd_settings:
        c.pop("dndSettings", None)
    elif not isinstance(c.get("dndSettings"), dict):
        status = "active" if c.get("dnd") else "inactive"
        c["dndSettings"] = {ch: {"status": status, "message": "", "code": ""} for ch in DND_CHANNELS}
    return pick(c, CONTACT_KEYS)


def appointment_body(appointment):
    return {"appointment": pick(dict(calendar_event_view(appointment), source="third_party"),
                                APPOINTMENT_KEYS)}


class EventFeed:
    """The deliveries in the order the changes happened, numbered by a sequence
    that never restarts, so a reader's `since` stays valid across clears."""

    def __init__(self):
        self.seq = 0
        self.clear()

    def clear(self):
        # bounded like the request log, so a long run of mutations cannot exhaust memory
        self.entries, self.task_added = deque(maxlen=500_000), {}

    def emit(self, event_type, location_id, body):
        self.seq += 1
        event = {"type": event_type, "locationId": location_id, **body,
                 "webhookId": str(uuid.uuid4()), "timestamp": iso_ms(now_ms())}
        self.entries.append({"seq": self.seq, "event": event})

    def since(self, seq, location_id=None):
        return [e for e in self.entries if e["seq"] > seq
                and location_id in (None, e["event"]["locationId"])]

    def changed(self, location_id, kind, old, new):
        """A Store listener: turn one record change into the deliveries it causes."""
        for event_type, body in getattr(self, f"_{kind}")(location_id, old, new):
            self.emit(event_type, location_id, body)

    def _contacts(self, location_id, old, new):
        if old is None:
            return [("ContactCreate", contact_body(new))]
        if new is None:
            return [("ContactDelete", contact_body(old))]
        fields = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} - {"dateUpdated"}
        events = []
        if fields - TAG_FIELDS - DND_FIELDS:
            events.append(("ContactUpdate", contact_body(new)))
        if fields & TAG_FIELDS:
            events.append(("ContactTagUpdate", contact_body(new)))
        if fields & DND_FIELDS:
            events.append(("ContactDndUpdate", contact_body(new, with_dnd_settings=True)))
        return events

    def _tasks(self, location_id, old, new):
        """Seeded tasks have no creation time; those created since remember theirs."""
        key = (location_id, (new or old)["id"])
        if old is None:
            self.task_added[key] = iso_ms(now_ms())
            return [("TaskCreate", pick(dict(new, dateAdded=self.task_added[key]), TASK_KEYS))]
        if new is None:
            return [("TaskDelete", pick(dict(old, dateAdded=self.task_added.pop(key, None)), TASK_KEYS))]
        if new["completed"] and not old["completed"]:
            return [("TaskComplete", pick(dict(new, dateAdded=self.task_added.get(key)), TASK_KEYS))]
        return []

    def _notes(self, location_id, old, new):
        return self._created_updated_deleted("Note", old, new, lambda r: pick(r, NOTE_KEYS))

    def _appointments(self, location_id, old, new):
        return self._created_updated_deleted("Appointment", old, new, appointment_body)

    @staticmethod
    def _created_updated_deleted(name, old, new, body):
        if old is None:
            return [(f"{name}Create", body(new))]
        if new is None:
            return [(f"{name}Delete", body(old))]
        return [(f"{name}Update", body(new))] if new != old else []


def install_body(app, installed):
    """INSTALL and UNINSTALL at one location, as a location-level install sends them."""
    if not installed:
        return {"appId": app["appId"]}
    return {"appId": app["appId"], "companyId": app["companyId"], "userId": app["userId"],
            "planId": app["planId"], "isWhitelabelCompany": False, "whitelabelDetails": {},
            "companyName": app["companyName"]}
