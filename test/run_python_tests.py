#!/usr/bin/env python3
"""Run the Python test modules (test/test_*.py, or those named as arguments)
and print one tally line.

The process tests need what test/run_suites.sh sets up: a cluster reachable
through PGHOST/PGPORT/PGUSER with database ghl_test, and MOCK_URL.
"""
import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
if len(sys.argv) > 1:
    # modules named on the command line, e.g. test_upgrade
    suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:])
else:
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py",
                                                top_level_dir=here)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
# an error in setUpClass or a module's import counts as a failure although
# no test of it ran: never let it make the passed count negative
passed = max(result.testsRun - failed - len(result.skipped), 0)
if not result.wasSuccessful():
    failed = max(failed, 1)
print(f"python: {passed} passed, {failed} failed", flush=True)
sys.exit(1 if failed else 0)
