"""Webhooks and sync together: a burst of the mock's changes, delivered as
signed webhooks through ghl_fdw_webhookd out of order and partly twice,
keeps the Rankr tables following the mock; after the next incremental
sync they equal a fresh full sync field by field.

Uses test.sync_diff() from the pg_regress setup, and the signer and daemon
of test_webhooks.py.
"""
import json
import random
import unittest
from concurrent.futures import ThreadPoolExecutor

import test_webhooks as hooks
from pgtest import mock, psql, psql_value
from test_sync import create_server, diff, drop_server, psql_rows, request_counts, sync

SERVER, SCHEMA = "ghl_hooks", "rankr_hooks"
FRESH_SERVER, FRESH_SCHEMA = "ghl_hooks_fresh", "rankr_hooks_fresh"
# what two rounds of the mock's writes change
ROUNDS = [{"seed": seed, "update": 25, "create": 8, "delete": 4, "note_edits": 15, "note_creates": 8,
           "note_deletes": 4, "task_edits": 12, "task_creates": 8, "task_deletes": 4,
           "appointment_edits": 8, "appointment_creates": 4, "appointment_deletes": 3}
          for seed in (31, 32)]


def events_since(seq):
    """The mock's deliveries after seq, as (seq, event)."""
    return [(e["seq"], e["event"]) for e in mock("GET", f"/_mock/events?since={seq}")]


def last_seq():
    return max((e["seq"] for e in mock("GET", "/_mock/events")), default=0)


def live_rows_differ(resource, columns):
    """Live rows of the webhook schema and the fresh full sync that differ in
    columns (both ways), and the ids live in only one of them."""
    cols = ", ".join(columns)
    return int(psql_value(f"""
        SELECT count(*) FROM (
            (SELECT {cols} FROM {SCHEMA}.{resource} WHERE deleted_at IS NULL
             EXCEPT ALL SELECT {cols} FROM {FRESH_SCHEMA}.{resource} WHERE deleted_at IS NULL)
            UNION ALL
            (SELECT {cols} FROM {FRESH_SCHEMA}.{resource} WHERE deleted_at IS NULL
             EXCEPT ALL SELECT {cols} FROM {SCHEMA}.{resource} WHERE deleted_at IS NULL)) d"""))


def sync_columns(resource):
    """Every column a sync fills but its own bookkeeping, and an
    appointment's "status", which a full sync does not read (only the
    per-contact endpoint has it)."""
    return [r[0] for r in psql_rows(f"""
        SELECT quote_ident(attname) FROM pg_attribute
        WHERE attrelid = '{SCHEMA}.{resource}'::regclass AND attnum > 0 AND NOT attisdropped
          AND attname NOT IN ('synced_at', 'as_of', 'deleted_at')
          AND NOT ('{resource}' = 'appointments' AND attname = 'status') ORDER BY attnum""")]


def setUpModule():
    hooks.setUpModule()


def tearDownModule():
    hooks.tearDownModule()


class WebhookSyncTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        mock("POST", "/_mock/reset", {"contacts": 300, "seed": 29})
        create_server(SERVER, SCHEMA)
        cls.signer = hooks.Signer()
        cls.signer.trust("py-sync")
        cls.daemon = hooks.Daemon("--dsn", hooks.daemon_dsn(), "--pool", "4")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        drop_server(SERVER, SCHEMA)
        psql(f"DELETE FROM ghl_fdw.sync_pending WHERE server_name = '{SERVER}'")

    def deliver(self, events):
        """Post each event, signed, from 8 senders at once: the answers."""
        def post(event):
            body = json.dumps(event).encode()
            status, _, answer = self.daemon.post(body, self.signer.headers(body))
            return status, answer["outcome"] if answer else None, event["webhookId"]
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(post, events))

    def test_shuffled_duplicated_burst_then_incremental_equals_full_sync(self):
        self.assertEqual({r: v[1] for r, v in sync(", full => true", server=SERVER).items()},
                         {r: "succeeded" for r in ("contacts", "tasks", "notes", "appointments")})
        seq = last_seq()
        for spec in ROUNDS:
            mock("POST", "/_mock/mutate", spec)
        events = [e for _, e in events_since(seq)]
        self.assertGreater(len(events), 150)
        rng = random.Random(7)
        copies = rng.sample(events, len(events) // 5)
        burst = events + copies
        rng.shuffle(burst)

        answers = self.deliver(burst)
        self.assertEqual({a[0] for a in answers}, {200}, answers[:5])
        outcomes = {}
        for _, outcome, _ in answers:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # every delivery once; each copy a duplicate (of whichever came first)
        self.assertEqual(outcomes.get("duplicate", 0), len(copies), outcomes)
        self.assertEqual(outcomes.get("ignored", 0), 0, outcomes)
        ids = [e["webhookId"] for e in events]
        self.assertEqual(int(psql_value(
            "SELECT count(*) FROM ghl_fdw.webhook_events WHERE webhook_id IN (%s)"
            % ",".join(f"'{i}'" for i in ids))), len(events))
        # out of order, some arrived after newer ones: stale, and ignored
        self.assertGreater(outcomes.get("stale", 0), 0, outcomes)

        # what the payloads carry is current already, whatever the order:
        # no row is older than the mock for the fields its events carry
        carried = {"contacts": "id, first_name, city, tags, dnd, company_name, email",
                   "notes": "id, body", "appointments": "id, appointment_status"}
        state = {"contacts": "c->>'id', c->>'firstName', c->>'city', "
                             "ARRAY(SELECT jsonb_array_elements_text(c->'tags')), "
                             "(c->>'dnd')::boolean, c->>'companyName', c->>'email'",
                 "notes": "c->>'id', c->>'body'",
                 "appointments": "c->>'id', c->>'appointmentStatus'"}
        for resource, cols in carried.items():
            stale = psql_value(f"""
                SELECT count(*) FROM (
                    SELECT {state[resource]}
                    FROM test.mock('GET', '/_mock/state') AS s, jsonb_array_elements(s->'{resource}') AS c
                    EXCEPT ALL
                    SELECT {cols} FROM {SCHEMA}.{resource} WHERE deleted_at IS NULL) d""")
            self.assertEqual(stale, "0", resource)
        # deleted contacts are tombstones, live nowhere
        self.assertEqual(psql_value(f"""
            SELECT count(*) FROM {SCHEMA}.contacts c
            WHERE deleted_at IS NULL AND NOT EXISTS (
                SELECT 1 FROM test.mock('GET', '/_mock/state') AS s,
                              jsonb_array_elements(s->'contacts') AS m WHERE m->>'id' = c.id)"""), "0")

        # the next incremental run reads what the payloads lack, and only that
        queued = int(psql_value(
            f"SELECT count(*) FROM ghl_fdw.sync_pending WHERE server_name = '{SERVER}'"))
        self.assertGreater(queued, 0)
        mock("DELETE", "/_mock/requests")
        runs = sync(server=SERVER)
        self.assertEqual({v[0] for v in runs.values()}, {"incremental"})
        self.assertEqual({v[1] for v in runs.values()}, {"succeeded"})
        counts = request_counts()
        self.assertLessEqual(counts.get("GET /contacts/{id}/notes", 0), queued + 2 * 25 + 16)
        self.assertEqual(psql_value(
            f"SELECT count(*) FROM ghl_fdw.sync_pending WHERE server_name = '{SERVER}'"), "0")
        self.assertEqual({r: v[2:4] for r, v in diff(SCHEMA).items()},
                         {r: (0, 0) for r in ("contacts", "tasks", "notes", "appointments")})

        # field by field equal to a fresh full sync of the same data
        create_server(FRESH_SERVER, FRESH_SCHEMA)
        try:
            self.assertEqual({v[1] for v in sync(", full => true", server=FRESH_SERVER).values()},
                             {"succeeded"})
            for resource in ("contacts", "tasks", "notes", "appointments"):
                self.assertEqual(live_rows_differ(resource, sync_columns(resource)), 0, resource)
        finally:
            drop_server(FRESH_SERVER, FRESH_SCHEMA)


if __name__ == "__main__":
    unittest.main()
