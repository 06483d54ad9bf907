"""The locations (sub-accounts) of the mock GHL API: one company, any number of
locations, each with its own seeded records and search views, a profile for
GET /oauth/installedLocations and the state of the app's install there.

The location given by --location-id is the default: its data comes from the
seed alone, as it did when the mock served one location.  Every other
location's data comes from the seed and its id, so it is stable too and
differs from location to location.
"""

import random
import re

from mock_records import (COMPANIES, PLACES, STREETS, ApiError, ContactSearch, Store, ViewCache,
                          int_param, iso_ms, now_ms, random_id, unprocessable)

LOCATION_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class Location:
    """One location: its store and the views over it, its profile and its install."""

    def __init__(self, location_id, listener):
        self.id = location_id
        self.store = Store(location_id, listener)
        rng = random.Random(location_id)
        company, (city, state, country, postal, _) = rng.choice(COMPANIES), rng.choice(PLACES)
        self.name = f"{company} {city}"
        self.address = f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}, {city}, {state} {postal}, {country}"
        self.installed_at = iso_ms(now_ms())

    def populate(self, contacts, seed, data_seed):
        """(Re)generate the records; contacts and seed are kept for a reset of the whole mock."""
        self.contacts, self.seed = contacts, seed
        self.store.populate(contacts, data_seed)
        self.search, self.task_views = ContactSearch(self.store), ViewCache()

    def summary(self):
        return {"id": self.id, "name": self.name, "address": self.address,
                "contacts": len(self.store.contacts), "seed": self.seed,
                "installed": self.installed_at is not None, "installedAt": self.installed_at}

    def installed_view(self, version_id):
        """InstalledLocationSchema of the OAuth spec."""
        view = {"_id": self.id, "name": self.name, "address": self.address,
                "isInstalled": self.installed_at is not None}
        if self.installed_at is not None:
            view.update(versionId=version_id, installedAt=self.installed_at)
        return view


class Locations:
    """The registry, in the order locations were added (the default first)."""

    def __init__(self, default_id, seed, listener):
        self.default_id, self.seed, self.listener = default_id, seed, listener
        self.by_id = {}

    def get(self, location_id):
        return self.by_id.get(location_id)

    def __getitem__(self, location_id):
        """For the admin API: an unknown location is the caller's mistake."""
        location = self.by_id.get(location_id or self.default_id)
        if location is None:
            raise ValueError(f"no location {location_id}")
        return location

    def __iter__(self):
        return iter(list(self.by_id.values()))

    def new_id(self):
        """20 alphanumerics like the API's ids, the same for the same seed and order of additions."""
        rng = random.Random(f"location:{self.seed}:{len(self.by_id)}")
        while True:
            location_id = random_id(rng)
            if location_id not in self.by_id:
                return location_id

    def put(self, location_id, contacts, seed):
        """Add a location, the app installed there, or regenerate the records of one."""
        location_id = location_id or self.new_id()
        if not isinstance(location_id, str) or not LOCATION_ID.fullmatch(location_id):
            raise ValueError(f"a location id is 1 to 64 letters and digits: {location_id!r}")
        location = self.by_id.get(location_id)
        if location is None:
            location = self.by_id[location_id] = Location(location_id, self.listener)
        data_seed = seed if location_id == self.default_id else f"{seed}:{location_id}"
        location.populate(int(contacts), seed, data_seed)
        return location

    def reset(self, specs):
        """Back to just these (id, contacts, seed) locations, the app installed at each."""
        self.by_id = {}
        for location_id, contacts, seed in specs:
            self.put(location_id, contacts, seed)

    def installed(self):
        return [loc.id for loc in self.by_id.values() if loc.installed_at is not None]


def flag_param(raw, name):
    """Boolean query parameters arrive as the strings true and false; absent means no filter."""
    if raw in (None, ""):
        return None
    if raw not in ("true", "false"):
        raise unprocessable(f"{name} must be a boolean value")
    return raw == "true"


def installed_locations(locations, q, app):
    """GET /oauth/installedLocations: the company's locations, filtered, then paged by skip/limit.

    Without isInstalled every location is listed with its isInstalled flag;
    planId, versionId and onTrial select installs (the mock's are never on
    trial); count is the number of matches before paging.
    """
    missing = [f"{k} should not be empty" for k in ("companyId", "appId") if not q(k)]
    if missing:
        raise unprocessable(*missing)
    if q("companyId") != app["companyId"]:
        raise ApiError(403, "The token does not have access to this company.")
    if q("appId") != app["appId"]:
        raise ApiError(403, "The token does not have access to this app.")
    skip, limit = int_param(q("skip"), "skip", 0, 0), int_param(q("limit"), "limit", 20, 1)
    installed, on_trial = flag_param(q("isInstalled"), "isInstalled"), flag_param(q("onTrial"), "onTrial")
    query, only = (q("query") or "").lower(), q("locationId")
    plan, version = q("planId"), q("versionId")
    by_install = (plan, version, on_trial) != (None, None, None)
    install_fits = plan in (None, app["planId"]) and version in (None, app["versionId"]) and not on_trial

    def listed(loc):
        is_installed = loc.installed_at is not None
        return (installed in (None, is_installed) and (not by_install or is_installed and install_fits)
                and query in loc.name.lower() and only in (None, loc.id))

    hits = [loc for loc in locations if listed(loc)]
    return {"locations": [loc.installed_view(app["versionId"]) for loc in hits[skip:skip + limit]],
            "count": len(hits), "installToFutureLocations": True}
