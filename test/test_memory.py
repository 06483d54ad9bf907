"""A full scan streams: backend memory does not grow with the row count."""
import unittest

from pgtest import MOCK_URL, mock, psql_value

PEAK_RSS_SQL = """
SELECT count(*) FROM ghl.contacts;
SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\\s+(\\d+)');
"""


def peak_rss_kb_after_scan(contacts):
    """Peak RSS (kB) of a fresh backend that counted `contacts` contacts."""
    mock("POST", "/_mock/reset", {"contacts": contacts, "seed": 11})
    return int(psql_value(PEAK_RSS_SQL))


@unittest.skipUnless(MOCK_URL, "needs the test cluster and mock")
class StreamingMemoryTest(unittest.TestCase):
    def test_peak_rss_flat_from_10k_to_100k(self):
        small = peak_rss_kb_after_scan(10_000)
        large = peak_rss_kb_after_scan(100_000)
        mock("POST", "/_mock/reset", {"contacts": 100, "seed": 42})
        print(f"\npeak RSS: 10k contacts {small} kB, 100k contacts {large} kB")
        # ten times the rows may not cost more than a few MB more
        self.assertLess(large - small, 8 * 1024)


if __name__ == "__main__":
    unittest.main()
