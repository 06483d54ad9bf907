"""Webhook deliveries end to end: apply_webhook with real signatures (Ed25519
and RSA keys generated here and trusted for the test), the ledger's dedupe
under concurrent delivery, and the receiver ghl_fdw_webhookd: its answers,
its log, its shutdown, and what it does while the database is busy or down
(on a second, throwaway cluster, so the shared one keeps running)."""
import base64
import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from pgtest import DB, PGBIN, Cluster, psql, psql_value, start_psql

DAEMON = os.path.join(PGBIN, "ghl_fdw_webhookd")
# a location no server syncs: its change events are "ignored", whatever the
# tables hold (test_webhook_sync.py applies events to synced tables)
LOCATION = "pyNoServerLocation01"
ROLE = "ghl_webhookd_test"
PASSWORD = "wh-test-pw-5be2c0d1"


def iso(seconds_from_now=0.0):
    """A timestamp as HighLevel writes them, seconds_from_now away."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery(event_type="ContactCreate", webhook_id=None, sent=0.0, **fields):
    """The body of a delivery (bytes), its webhookId prefixed py- for cleanup."""
    body = {"type": event_type, "locationId": LOCATION, "id": "nmFmQEsNgz6AVpgLVUJ0",
            "webhookId": webhook_id or f"py-{uuid.uuid4()}", "timestamp": iso(sent)}
    body.update(fields)
    return json.dumps(body).encode()


def webhook_id(body):
    return json.loads(body)["webhookId"]


def b64(raw):
    return base64.b64encode(raw).decode()


def pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Signer:
    """An Ed25519 and an RSA key pair, signing as HighLevel does."""

    def __init__(self):
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def headers(self, body):
        """X-GHL-Signature, the Ed25519 signature of the body."""
        return {"X-GHL-Signature": b64(self.ed.sign(body))}

    def legacy_headers(self, body):
        """x-wh-signature, the RSA PKCS#1 v1.5 SHA-256 signature of the body."""
        return {"x-wh-signature": b64(self.rsa.sign(body, padding.PKCS1v15(), hashes.SHA256()))}

    def trust(self, prefix, psql_fn=psql):
        """Make both public keys trusted keys named prefix-ed25519 and prefix-rsa."""
        psql_fn(f"""
            INSERT INTO ghl_fdw.webhook_keys (key_id, algorithm, public_key) VALUES
            ('{prefix}-ed25519', 'ed25519', $k${pem(self.ed)}$k$),
            ('{prefix}-rsa', 'rsa-sha256', $k${pem(self.rsa)}$k$)""")


def apply_sql(body, headers):
    """psql input calling apply_webhook on body and headers, exactly quoted."""
    return ("\\set body " + psql_literal(body.decode()) + "\n"
            "\\set headers " + psql_literal(json.dumps(headers)) + "\n"
            "SELECT ghl_fdw.apply_webhook(:'body', :'headers');\n")


def psql_literal(text):
    """A psql variable value: single-quoted, backslash and quote escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def apply(body, headers):
    """(returncode, outcome or '', stderr) of one apply_webhook call."""
    return psql(apply_sql(body, headers), check=False)


def ledger_count(ids=None):
    where = "" if ids is None else "WHERE webhook_id IN (%s)" % ",".join(f"'{i}'" for i in ids)
    return int(psql_value(f"SELECT count(*) FROM ghl_fdw.webhook_events {where}"))


def finish(proc, timeout=60):
    """(stdout, stderr) of a session start_psql began, once it ended."""
    proc.wait(timeout)
    return proc.stdout.read(), proc.stderr.read()


class Daemon:
    """ghl_fdw_webhookd on a free loopback port, its log collected."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DAEMON, "--listen", "127.0.0.1:0", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.log_ended = False
        self.changed = threading.Condition()
        threading.Thread(target=self._read_log, daemon=True).start()
        line = self.wait_for_log(lambda l: "listening on" in l)
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+),", line).group(1))

    def _read_log(self):
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.log_ended = True
            self.changed.notify_all()

    def wait_for_log(self, predicate, timeout=15.0):
        """The first log line that satisfies predicate, waiting for it."""
        end = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = end - time.monotonic()
                if left <= 0 or self.log_ended:
                    raise AssertionError("no such log line; log:\n" + "\n".join(self.lines))
                self.changed.wait(min(left, 0.2))

    def log(self):
        with self.changed:
            return list(self.lines)

    def request(self, method, path, body=None, headers=None, chunked=False):
        """(status, response headers, decoded JSON body) of one request on a
        new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if chunked:
                conn.request(method, path, body=iter([body]), headers=headers or {},
                             encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), json.loads(data) if data else None
        finally:
            conn.close()

    def post(self, body, headers=None, path="/webhooks/ghl", **kw):
        return self.request("POST", path, body, {"Content-Type": "application/json",
                                                 **(headers or {})}, **kw)

    def stop(self, timeout=20):
        """SIGTERM; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def at_once(n, fn):
    """Run fn(i) in n threads released together; their results in order."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        results[i] = fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def setUpModule():
    psql(f"""
        DROP ROLE IF EXISTS {ROLE};
        CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';
        GRANT EXECUTE ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) TO {ROLE};
    """)


def tearDownModule():
    psql(f"""
        DELETE FROM ghl_fdw.webhook_keys WHERE key_id LIKE 'py-%';
        DELETE FROM ghl_fdw.webhook_events WHERE webhook_id LIKE 'py-%';
        REVOKE ALL ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) FROM {ROLE};
        DROP ROLE {ROLE};
    """)


class ApplyWebhookTest(unittest.TestCase):
    """apply_webhook with signatures of trusted keys, called from SQL."""

    @classmethod
    def setUpClass(cls):
        cls.signer = Signer()
        cls.signer.trust("py-apply")

    def test_signed_deliveries_apply_once(self):
        body = delivery()
        self.assertEqual(apply(body, self.signer.headers(body))[:2], (0, "ignored"))
        self.assertEqual(apply(body, self.signer.headers(body))[:2], (0, "duplicate"))
        # header names are case-insensitive, as in HTTP
        self.assertEqual(apply(body, {"x-ghl-signature": self.signer.headers(body)["X-GHL-Signature"]})[:2],
                         (0, "duplicate"))
        install = delivery("INSTALL", companyId="otg8dTQqGLh3Q6iQI55w")
        self.assertEqual(apply(install, self.signer.legacy_headers(install))[:2], (0, "applied"))
        self.assertEqual(psql(f"""
            SELECT webhook_id, type, location_id, outcome, key_id FROM ghl_fdw.webhook_events
            WHERE webhook_id IN ('{webhook_id(body)}', '{webhook_id(install)}')
            ORDER BY received_at""")[1].splitlines(),
            [f"{webhook_id(body)}|ContactCreate|{LOCATION}|ignored|py-apply-ed25519",
             f"{webhook_id(install)}|INSTALL|{LOCATION}|applied|py-apply-rsa"])

    def test_refused_deliveries_change_nothing(self):
        stranger = Signer()
        before = ledger_count()
        cases = []
        body = delivery()
        cases.append(("tampered body", body.replace(b"ContactCreate", b"ContactDelete"),
                      self.signer.headers(body), "webhook signature does not verify"))
        cases.append(("a byte added", body + b" ", self.signer.headers(body),
                      "webhook signature does not verify"))
        body = delivery()
        cases.append(("wrong key", body, stranger.headers(body),
                      "webhook signature does not verify"))
        cases.append(("wrong legacy key", body, stranger.legacy_headers(body),
                      "webhook signature does not verify"))
        cases.append(("RSA signature as Ed25519", body,
                      {"X-GHL-Signature": self.signer.legacy_headers(body)["x-wh-signature"]},
                      "webhook signature is malformed"))
        cases.append(("missing header", body, {}, "webhook delivery is not signed"))
        expired = delivery(sent=-400)
        cases.append(("expired", expired, self.signer.headers(expired),
                      "webhook delivery is outside the accepted time window"))
        early = delivery(sent=400)
        cases.append(("from the future", early, self.signer.headers(early),
                      "webhook delivery is outside the accepted time window"))
        for name, body, headers, message in cases:
            with self.subTest(name):
                rc, out, err = apply(body, headers)
                self.assertNotEqual(rc, 0)
                self.assertIn(f"ERROR:  {message}", err)
                # the signature is never echoed
                for value in headers.values():
                    self.assertNotIn(value, err)
        self.assertEqual(ledger_count(), before)

    def test_key_rotation_and_disabling(self):
        old, new = self.signer, Signer()
        new.trust("py-next")
        try:
            for signer in (old, new):
                body = delivery()
                self.assertEqual(apply(body, signer.headers(body))[:2], (0, "ignored"))
            # the operator retires the old key (and the legacy RSA one)
            psql("UPDATE ghl_fdw.webhook_keys SET enabled = false "
                 "WHERE key_id IN ('py-apply-ed25519', 'py-apply-rsa')")
            body = delivery()
            self.assertIn("does not verify", apply(body, old.headers(body))[2])
            self.assertIn("does not verify", apply(body, old.legacy_headers(body))[2])
            self.assertEqual(apply(body, new.headers(body))[:2], (0, "ignored"))
        finally:
            psql("UPDATE ghl_fdw.webhook_keys SET enabled = true WHERE key_id LIKE 'py-apply-%';"
                 "DELETE FROM ghl_fdw.webhook_keys WHERE key_id LIKE 'py-next-%'")

    def test_concurrent_sessions_apply_once(self):
        """Eight sessions deliver the same install at one instant while the
        first one's transaction is still open: one applies (and announces
        it), seven wait for it and find a duplicate."""
        body = delivery("INSTALL")
        call = apply_sql(body, self.signer.headers(body))
        listener = start_psql("LISTEN ghl_fdw_webhook;\n" + "SELECT pg_sleep(0.25);\n" * 24)
        start = psql_value("SELECT clock_timestamp() + interval '1.5 seconds'")
        sessions = [start_psql(f"SELECT pg_sleep_until('{start}');\nBEGIN;\n{call}"
                               "SELECT pg_sleep(0.5);\nCOMMIT;\n") for _ in range(8)]
        outcomes = []
        for s in sessions:
            out, err = finish(s)
            self.assertEqual(s.returncode, 0, err)
            outcomes += [line for line in out.split() if line in ("applied", "duplicate")]
        self.assertEqual(sorted(outcomes), ["applied"] + ["duplicate"] * 7)
        notices, _ = finish(listener)
        self.assertEqual(notices.count(webhook_id(body)), 1, notices)
        self.assertEqual(ledger_count([webhook_id(body)]), 1)

    def test_rolled_back_delivery_leaves_the_id_to_the_next(self):
        """The first delivery's transaction fails after inserting: a
        concurrent delivery of the same id, waiting for it, applies."""
        body = delivery("INSTALL")
        call = apply_sql(body, self.signer.headers(body))
        first = start_psql(f"BEGIN;\n{call}SELECT pg_sleep(1);\nROLLBACK;\n")
        time.sleep(0.4)
        second = start_psql(call)
        out1, err1 = finish(first)
        out2, err2 = finish(second)
        self.assertIn("applied", out1, err1)
        self.assertEqual(out2.strip(), "applied", err2)
        self.assertEqual(ledger_count([webhook_id(body)]), 1)


def daemon_dsn():
    return (f"host={os.environ.get('PGHOST', 'localhost')} port={os.environ.get('PGPORT', '5432')} "
            f"dbname={DB} user={ROLE} password={PASSWORD}")


class DaemonTest(unittest.TestCase):
    """ghl_fdw_webhookd against the test cluster, as the receiver's role."""

    @classmethod
    def setUpClass(cls):
        cls.signer = Signer()
        cls.signer.trust("py-daemon")
        cls.daemon = Daemon("--dsn", daemon_dsn(), "--max-body", "65536", "--pool", "4")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def test_answers(self):
        d, s = self.daemon, self.signer
        body = delivery()
        self.assertEqual(d.post(body, s.headers(body))[::2], (200, {"outcome": "ignored"}))
        self.assertEqual(d.post(body, s.headers(body))[::2], (200, {"outcome": "duplicate"}))
        install = delivery("INSTALL")
        self.assertEqual(d.post(install, s.legacy_headers(install))[::2], (200, {"outcome": "applied"}))

        refused = []
        body = delivery()
        refused.append((body.replace(b"nmFm", b"XXXX"), s.headers(body)))
        refused.append((body, {}))
        refused.append((body, Signer().headers(body)))
        expired = delivery(sent=-400)
        refused.append((expired, s.headers(expired)))
        for b, h in refused:
            status, _, answer = d.post(b, h)
            self.assertEqual(status, 401, answer)
            self.assertIn("error", answer)
        malformed = [b"not json", json.dumps({"type": "ContactCreate", "timestamp": iso()}).encode()]
        for b in malformed:
            status, _, answer = d.post(b, s.headers(b))
            self.assertEqual(status, 400, answer)
        self.assertEqual(ledger_count([webhook_id(b) for b, _ in refused]), 0)

        big = delivery(padding="x" * 70000)
        self.assertEqual(d.post(big, s.headers(big))[0], 413)
        self.assertEqual(d.post(big, s.headers(big), chunked=True)[0], 413)
        self.assertEqual(ledger_count([webhook_id(big)]), 0)

        status, headers, _ = d.request("GET", "/webhooks/ghl")
        self.assertEqual((status, headers.get("Allow")), (405, "POST"))
        self.assertEqual(d.post(body, s.headers(body), path="/webhooks/other")[0], 404)
        self.assertEqual(d.request("GET", "/healthz")[::2], (200, {"status": "ok"}))

    def test_concurrent_duplicates_apply_once(self):
        """16 senders post the same install at one instant."""
        body = delivery("INSTALL")
        headers = self.signer.headers(body)
        answers = at_once(16, lambda i: self.daemon.post(body, headers))
        self.assertEqual([a[0] for a in answers], [200] * 16)
        self.assertEqual(sorted(a[2]["outcome"] for a in answers),
                         ["applied"] + ["duplicate"] * 15)
        self.assertEqual(ledger_count([webhook_id(body)]), 1)

    def test_one_log_line_per_delivery_without_secrets(self):
        body = delivery(firstName="Marker-7f3a91")
        headers = self.signer.headers(body)
        self.daemon.post(body, headers)
        self.daemon.post(body, headers)
        self.daemon.post(body, {})
        wid = webhook_id(body)
        # a line is written once its answer is sent: the next may overtake it
        for outcome in ("200 ignored", "200 duplicate", "401 refused"):
            self.daemon.wait_for_log(lambda l: f"{outcome} id={wid} " in l)
        lines = sorted((l for l in self.daemon.log() if f"id={wid} " in l),
                       key=lambda l: ("ignored" not in l, "duplicate" not in l))
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], r"^\S+Z 127\.0\.0\.1 POST /webhooks/ghl 200 ignored "
                                   rf"id={wid} \d+\.\dms$")
        self.assertIn(" 200 duplicate ", lines[1])
        self.assertIn(' 401 refused ', lines[2])
        self.assertIn('reason="webhook delivery is not signed"', lines[2])
        log = "\n".join(self.daemon.log())
        for secret in ("Marker-7f3a91", headers["X-GHL-Signature"], PASSWORD):
            self.assertNotIn(secret, log)

    def test_key_change_reaches_pooled_connections(self):
        """A key disabled in another session stops verifying in the
        daemon's long-lived connection at once (no restart)."""
        signer = Signer()
        signer.trust("py-rotate")
        daemon = Daemon("--dsn", daemon_dsn() + " application_name=py-rotate", "--pool", "1")
        backend = "SELECT pid FROM pg_stat_activity WHERE application_name = 'py-rotate'"
        try:
            body = delivery()
            self.assertEqual(daemon.post(body, signer.headers(body))[0], 200)
            pid = psql_value(backend)
            psql("UPDATE ghl_fdw.webhook_keys SET enabled = false WHERE key_id = 'py-rotate-ed25519'")
            body = delivery()
            self.assertEqual(daemon.post(body, signer.headers(body))[0], 401)
            psql("UPDATE ghl_fdw.webhook_keys SET enabled = true WHERE key_id = 'py-rotate-ed25519'")
            self.assertEqual(daemon.post(body, signer.headers(body))[0], 200)
            self.assertEqual(psql_value(backend), pid)
        finally:
            daemon.stop()

    def test_command_line(self):
        out = subprocess.run([DAEMON, "--help"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        self.assertIn("--listen HOST:PORT --dsn CONNINFO", out.stdout)
        self.assertIn("--path=PATH", out.stdout)
        for args in ([], ["--listen", "127.0.0.1:0"], ["--listen", "127.0.0.1:0", "--dsn", "x", "--pool", "0"],
                     ["--listen", "nowhere", "--dsn", "x"], ["--bogus"]):
            with self.subTest(args=args):
                out = subprocess.run([DAEMON, *args], capture_output=True, text=True)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn("--help", out.stderr)

    def test_config_file_keeps_the_password_out_of_the_process_list(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(f"# receiver settings\ndsn = {daemon_dsn()}\npath = /hooks/ghl\npool=2\n")
        try:
            daemon = Daemon("--config", f.name)
            try:
                body = delivery()
                self.assertEqual(daemon.post(body, self.signer.headers(body), path="/hooks/ghl")[0], 200)
                with open(f"/proc/{daemon.proc.pid}/cmdline", "rb") as cmdline:
                    self.assertNotIn(PASSWORD.encode(), cmdline.read())
            finally:
                daemon.stop()
        finally:
            os.unlink(f.name)

    def test_sigterm_answers_the_deliveries_under_way(self):
        daemon = Daemon("--dsn", daemon_dsn(), "--pool", "1")
        body = delivery()
        locker = start_psql("BEGIN;\nLOCK TABLE ghl_fdw.webhook_events;\nSELECT pg_sleep(1.5);\nCOMMIT;\n")
        answer = {}
        try:
            time.sleep(0.5)
            sender = threading.Thread(target=lambda: answer.update(
                r=daemon.post(body, self.signer.headers(body))))
            sender.start()
            time.sleep(0.3)
            self.assertEqual(daemon.stop(), 0)
            sender.join(30)
        finally:
            finish(locker)
        self.assertEqual(answer["r"][::2], (200, {"outcome": "ignored"}))
        daemon.wait_for_log(lambda line: line.endswith(" stopped"))


@unittest.skipUnless(os.path.exists(PGBIN + "/initdb"), "needs a PostgreSQL 15 server")
class OutageTest(unittest.TestCase):
    """The daemon against a cluster of its own that is stopped, started and
    made busy; it does not preload ghl_fdw."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("ghl_webhooks.")
        cls.signer = Signer()
        cls.cluster.psql(f"""
            CREATE EXTENSION ghl_fdw;
            CREATE ROLE {ROLE} LOGIN;
            GRANT EXECUTE ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) TO {ROLE};
        """)
        cls.signer.trust("py-outage", cls.cluster.psql)
        cls.daemon = Daemon("--dsn", cls.cluster.conninfo(ROLE), "--pool", "2", "--pool-wait", "500")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.cluster.destroy()

    def count(self, body):
        return int(self.cluster.psql("SELECT count(*) FROM ghl_fdw.webhook_events "
                             f"WHERE webhook_id = '{webhook_id(body)}'").stdout)

    def test_database_down_answers_429_and_the_redelivery_applies(self):
        d, s = self.daemon, self.signer
        first = delivery()
        self.assertEqual(d.post(first, s.headers(first))[0], 200)
        self.cluster.stop()
        try:
            body = delivery()
            for _ in range(2):
                started = time.monotonic()
                status, headers, _ = d.post(body, s.headers(body))
                self.assertEqual((status, headers.get("Retry-After")), (429, "60"))
                self.assertLess(time.monotonic() - started, 5.0)
            self.assertEqual(d.request("GET", "/healthz")[0], 503)
        finally:
            self.cluster.start()
        # HighLevel's redelivery, once the database is back (after a 429,
        # the daemon tries a new connection at most once a second)
        end = time.monotonic() + 30
        while d.request("GET", "/healthz")[0] != 200 and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(1.1)
        self.assertEqual(d.post(body, s.headers(body))[::2], (200, {"outcome": "ignored"}))
        self.assertEqual(self.count(body), 1)
        self.assertEqual(d.post(first, s.headers(first))[::2], (200, {"outcome": "duplicate"}))
        self.assertIn("429 unavailable id=" + webhook_id(body), "\n".join(d.log()))

    def test_busy_database_answers_429(self):
        """Both connections wait on a lock: a third delivery waits
        --pool-wait for one, is answered 429, and the two complete."""
        locker = start_psql("BEGIN;\nLOCK TABLE ghl_fdw.webhook_events;\nSELECT pg_sleep(3);\nCOMMIT;\n",
                            db=self.cluster.conninfo())
        bodies = [delivery() for _ in range(3)]
        answers = {}
        try:
            time.sleep(0.5)
            senders = [threading.Thread(target=lambda i=i: answers.update(
                {i: self.daemon.post(bodies[i], self.signer.headers(bodies[i]))})) for i in range(2)]
            for t in senders:
                t.start()
            time.sleep(0.5)
            started = time.monotonic()
            status, headers, _ = self.daemon.post(bodies[2], self.signer.headers(bodies[2]))
            self.assertEqual((status, headers.get("Retry-After")), (429, "60"))
            self.assertLess(time.monotonic() - started, 2.0)
            for t in senders:
                t.join(60)
        finally:
            finish(locker)
        self.assertEqual([answers[i][0] for i in range(2)], [200, 200])
        self.assertEqual([self.count(b) for b in bodies], [1, 1, 0])
        self.daemon.wait_for_log(lambda line: f"429 busy id={webhook_id(bodies[2])}" in line)

    def test_non_superuser_cannot_allow_unsigned_before_the_library_loads(self):
        """Set before ghl_fdw is loaded (it is not preloaded here), a
        superuser-only setting stays unset for a non-superuser."""
        body = delivery()
        proc = self.cluster.psql("SET ghl_fdw.webhook_allow_unsigned = on;\n"
                                 "SET ghl_fdw.webhook_max_age = 86400;\n" + apply_sql(body, {}),
                                 user=ROLE, check=False)
        self.assertIn('permission denied to set parameter "ghl_fdw.webhook_allow_unsigned"',
                      proc.stderr)
        self.assertIn("ERROR:  webhook delivery is not signed", proc.stderr)
        self.assertEqual(self.count(body), 0)


if __name__ == "__main__":
    unittest.main()
