"""Helpers of the Python process tests: run SQL through psql against the
test cluster and talk to the mock GHL API's admin interface."""
import json
import os
import shutil
import socket
import subprocess
import time
import tempfile
import urllib.request

DB = os.environ.get("GHL_TEST_DB", "ghl_test")
MOCK_URL = os.environ.get("MOCK_URL", "")


def login_env(user):
    """The environment of a psql that logs in as user (None: the test's
    superuser); test roles are given the superuser's password."""
    return dict(os.environ, PGUSER=user) if user else None


def psql(sql, db=DB, check=True, timeout=600, user=None):
    """Run sql in a new session; return (returncode, stdout, stderr)."""
    proc = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
        input=sql, capture_output=True, text=True, timeout=timeout, env=login_env(user))
    if check and proc.returncode != 0:
        raise AssertionError(f"psql failed: {proc.stderr.strip()}")
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def psql_value(sql, db=DB):
    """The single value the last statement of sql returns ("" for no row)."""
    lines = psql(sql, db=db)[1].splitlines()
    return lines[-1] if lines else ""


def start_psql(sql, db=DB, user=None):
    """Start a session running sql in the background; returns the Popen."""
    proc = subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=login_env(user))
    proc.stdin.write(sql)
    proc.stdin.close()
    return proc


def mock(method, path, body=None):
    """Call the mock's admin API; returns the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(MOCK_URL + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def wait_until(predicate, timeout=20.0, interval=0.05):
    """Poll predicate until it holds; fail the test after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


PGBIN = os.environ.get("GHL_PGBIN", "/usr/lib/postgresql/15/bin")


def as_server(args, **kw):
    """Run a server program as postgres when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


class Cluster:
    """A throwaway cluster of a test's own: trust authentication, a Unix
    socket in a temporary directory, no TCP, no preloaded libraries."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = str(s.getsockname()[1])
        as_server([PGBIN + "/initdb", "-D", self.dir + "/data", "-A", "trust", "-U", "postgres"])
        self.start()

    def start(self):
        as_server([PGBIN + "/pg_ctl", "-D", self.dir + "/data", "-w", "-l", self.dir + "/log",
                   "start", "-o", f"-k {self.dir} -p {self.port} -c listen_addresses= -c fsync=off"])

    def stop(self, mode="fast"):
        as_server([PGBIN + "/pg_ctl", "-D", self.dir + "/data", "-m", mode, "-w", "stop"])

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, user="postgres"):
        return f"host={self.dir} port={self.port} user={user} dbname=postgres"

    def psql(self, sql, user="postgres", check=True):
        """Run sql as user; the finished process (AssertionError on failure
        when check)."""
        proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", self.conninfo(user)],
                              input=sql, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"psql failed: {proc.stderr.strip()}")
        return proc
