#!/usr/bin/env python3
"""Replay signed webhook deliveries through ghl_fdw_webhookd and measure.

Run by bench/webhook_replay.sh inside a throwaway cluster (PGHOST, PGPORT,
PGUSER set): trusts a freshly generated Ed25519 key, starts the receiver as
a role that may only call apply_webhook, signs every delivery up front, and
has SENDERS threads post them over keep-alive connections.  A tenth of the
deliveries repeat an earlier webhookId (HighLevel's redeliveries), shuffled
in, so that some duplicates arrive concurrently with their original.

Passes when every delivery is answered 200, each distinct webhookId is in
the ledger exactly once (nothing lost), exactly one answer per id is not
"duplicate" (nothing applied twice), and the rate reaches the goal.
"""
import base64
import datetime
import http.client
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

DB = os.environ.get("GHL_BENCH_DB", "ghl_bench")
DAEMON = os.environ.get("GHL_WEBHOOKD", "/usr/lib/postgresql/15/bin/ghl_fdw_webhookd")
DELIVERIES = int(os.environ.get("GHL_BENCH_DELIVERIES", "10000"))
SENDERS = int(os.environ.get("GHL_BENCH_SENDERS", "16"))
POOL = os.environ.get("GHL_BENCH_POOL", "8")
GOAL_PER_S = 1000
ROLE = "ghl_bench_webhookd"
TYPES = ["ContactCreate", "ContactUpdate", "ContactTagUpdate", "TaskCreate",
         "NoteCreate", "AppointmentCreate", "ContactDelete", "INSTALL"]


def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB],
                          input=sql, capture_output=True, text=True, check=True).stdout.strip()


def make_deliveries(key):
    """(body, signature) pairs: DELIVERIES of them, a tenth redeliveries."""
    unique = DELIVERIES - DELIVERIES // 10
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    originals = []
    for i in range(unique):
        body = json.dumps({
            "type": TYPES[i % len(TYPES)], "locationId": "ve9EPM428h8vShlRW1KT",
            "id": f"c{i:019d}", "webhookId": f"bench-{uuid.uuid4()}",
            "timestamp": now.replace("+00:00", "Z"),
            "firstName": "Ada", "lastName": "Lovelace", "email": f"ada{i}@example.com",
            "tags": ["vip", "bench"]}).encode()
        originals.append((body, base64.b64encode(key.sign(body)).decode()))
    deliveries = originals + random.choices(originals, k=DELIVERIES - unique)
    random.shuffle(deliveries)
    return deliveries, unique


def start_daemon():
    dsn = (f"host={os.environ.get('PGHOST', 'localhost')} port={os.environ.get('PGPORT', '5432')} "
           f"dbname={DB} user={ROLE} password=bench-pw")
    proc = subprocess.Popen([DAEMON, "--listen", "127.0.0.1:0", "--dsn", dsn, "--pool", POOL],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    port = int(re.search(r"listening on 127\.0\.0\.1:(\d+),", line).group(1))
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    return proc, port, log


def cpu_seconds(pid):
    """User and system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(port, work, results, lock):
    """Post deliveries off the shared work list until it is empty."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
        with lock:
            if not work:
                break
            body, signature = work.pop()
        started = time.perf_counter()
        conn.request("POST", "/webhooks/ghl", body=body,
                     headers={"Content-Type": "application/json", "X-GHL-Signature": signature})
        resp = conn.getresponse()
        answer = resp.read()
        elapsed = time.perf_counter() - started
        outcome = json.loads(answer).get("outcome") if resp.status == 200 else None
        results.append((json.loads(body)["webhookId"], resp.status, outcome, elapsed))
    conn.close()


def main():
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    psql(f"""
        CREATE EXTENSION IF NOT EXISTS ghl_fdw;
        INSERT INTO ghl_fdw.webhook_keys (key_id, algorithm, public_key)
        VALUES ('bench', 'ed25519', $k${pem}$k$);
        CREATE ROLE {ROLE} LOGIN PASSWORD 'bench-pw';
        GRANT EXECUTE ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) TO {ROLE};
    """)
    deliveries, unique = make_deliveries(key)
    proc, port, log = start_daemon()

    results, lock = [], threading.Lock()
    work = list(deliveries)
    threads = [threading.Thread(target=send, args=(port, work, results, lock))
               for _ in range(SENDERS)]
    senders_cpu = resource.getrusage(resource.RUSAGE_SELF)
    daemon_cpu = cpu_seconds(proc.pid)
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    daemon_cpu = cpu_seconds(proc.pid) - daemon_cpu
    now = resource.getrusage(resource.RUSAGE_SELF)
    senders_cpu = now.ru_utime + now.ru_stime - senders_cpu.ru_utime - senders_cpu.ru_stime
    proc.terminate()
    proc.wait(30)

    latencies = sorted(r[3] for r in results)
    statuses = {}
    for r in results:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    applied_per_id = {}
    for wid, status, outcome, _ in results:
        if status == 200 and outcome != "duplicate":
            applied_per_id[wid] = applied_per_id.get(wid, 0) + 1
    ledger = int(psql("SELECT count(*) FROM ghl_fdw.webhook_events WHERE webhook_id LIKE 'bench-%'"))
    lost = unique - len(applied_per_id)
    applied_twice = sum(1 for n in applied_per_id.values() if n > 1)
    rate = len(results) / elapsed
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000

    print(f"{len(results)} deliveries ({unique} distinct webhookIds) from {SENDERS} senders, "
          f"{POOL} database connections, in {elapsed:.2f} s")
    print(f"throughput {rate:.0f} deliveries/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")
    print(f"CPU: senders {senders_cpu:.1f} s, daemon {daemon_cpu:.1f} s "
          f"(the database backends the rest of {2 * elapsed:.1f} core-seconds at most)")
    print(f"answers {dict(sorted(statuses.items()))}; ledger rows {ledger}; "
          f"lost {lost}; applied twice {applied_twice}; daemon log lines {len(log)}")
    good = (statuses == {200: DELIVERIES} and ledger == unique and lost == 0
            and applied_twice == 0 and rate >= GOAL_PER_S)
    print("PASS" if good else "FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
