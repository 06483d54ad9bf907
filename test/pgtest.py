"""Helpers of the Python process tests: run SQL through psql against the
test cluster and talk to the mock GHL API's admin interface."""
import json
import os
import subprocess
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
    """The single value the last statement of sql returns."""
    return psql(sql, db=db)[1].splitlines()[-1]


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
