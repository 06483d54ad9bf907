"""The release's metadata and archive: META.json passes test/check_meta.py
(the PGXN Meta Spec and the tree's versions), the checker rejects broken
copies, and "make dist" builds ghl_fdw-<version>.zip from git, refusing a
release whose versions disagree."""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

import check_meta

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_CONFIG = "/usr/lib/postgresql/15/bin/pg_config"

with open(os.path.join(TOP, "META.json"), encoding="utf-8") as f:
    META = json.load(f)


def broken(change):
    """A copy of the repository's META.json with change(meta) applied."""
    meta = copy.deepcopy(META)
    change(meta)
    return meta


class CheckerTest(unittest.TestCase):
    def test_repository_meta_is_valid(self):
        proc = subprocess.run([sys.executable, os.path.join(TOP, "test/check_meta.py"), TOP],
                              capture_output=True, text=True)
        self.assertEqual(proc.stderr, "")
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(proc.stdout.strip(),
                         f"META.json: ghl_fdw {META['version']} is valid (PGXN Meta Spec 1.0.0)")

    def assertProblems(self, meta, expected):
        """meta has exactly the problems expected, spec and tree alike."""
        found = check_meta.spec_problems(meta) + check_meta.tree_problems(meta, TOP)
        self.assertEqual(found, expected)

    def test_spec_rules(self):
        cases = [
            (lambda m: m.pop("license"), ['META.json: missing required key "license"']),
            (lambda m: m.update(version="1.1"),
             ['version: "1.1" is not a semantic version (like 1.2.0)',
              "provides.ghl_fdw.version: 1.1.0 differs from the distribution's version 1.1",
              "debian/changelog: upstream version 1.1.0 is not META.json's 1.1"]),
            (lambda m: m.update(name="ghl fdw"),
             ['name: "ghl fdw" is not a term (two or more characters, no slash, '
              'backslash, space or control character)',
              'name: "ghl fdw" is not an extension in provides']),
            (lambda m: m.update(abstract=""), ["abstract: must be a non-empty string"]),
            (lambda m: m.update(maintainer=[]), ["maintainer: must be a list of at least 1 item(s)"]),
            (lambda m: m.update(maintainer=["a", "a"]), ["maintainer: items must be unique"]),
            (lambda m: m.update(license=42), ["license: must be a string or a list or an object"]),
            (lambda m: m.update(license={"PostgreSQL": "not a uri"}),
             ['license.PostgreSQL: "not a uri" is not an absolute URI']),
            (lambda m: m.update(license=["mit", "GPL"]),
             ['license[1]: "GPL" is not one of ' + ", ".join(sorted(check_meta.LICENSES))]),
            (lambda m: m["meta-spec"].update(version="1.1.0"),
             ['meta-spec.version: "1.1.0" is not a 1.0.x spec version']),
            (lambda m: m["meta-spec"].update(url="https://example.com/spec"),
             ['meta-spec.url: "https://example.com/spec" is not one of '
              "http://pgxn.org/meta/spec.txt, https://pgxn.org/meta/spec.txt"]),
            (lambda m: m.update(homepage="https://example.com"),
             ['META.json: unknown key "homepage" (custom keys start with x_)']),
            (lambda m: m["provides"]["ghl_fdw"].pop("file"),
             ['provides.ghl_fdw: missing required key "file"',
              "provides.ghl_fdw.file: must be sql/ghl_fdw--1.1.sql, the install script "
              "of the default version"]),
            (lambda m: m["provides"]["ghl_fdw"].update(docfile="../README.md"),
             ['provides.ghl_fdw.docfile: "../README.md" is not a relative Unix path '
              "inside the distribution"]),
            (lambda m: m["provides"]["ghl_fdw"].update(docpath=""),
             ["provides.ghl_fdw.docpath: must be a non-empty string"]),
            (lambda m: m.update(provides={}),
             ["provides: must be an object with at least 1 key(s)",
              'name: "ghl_fdw" is not an extension in provides']),
            (lambda m: m["prereqs"]["runtime"]["requires"].update(PostgreSQL="15"),
             ['prereqs.runtime.requires.PostgreSQL: "15" is not a version range '
              '(like "1.2.0" or ">= 1.2.0, < 2.0.0")']),
            (lambda m: m["prereqs"].update(runtime={}),
             ["prereqs.runtime: needs at least one of requires, recommends, suggests, conflicts"]),
            (lambda m: m["prereqs"].update(install={"requires": {"PostgreSQL": "15.0.0"}}),
             ['prereqs: unknown key "install" (custom keys start with x_)']),
            (lambda m: m.update(release_status="beta"),
             ['release_status: "beta" is not one of stable, testing, unstable']),
            (lambda m: m.update(tags=["fdw", "fdw"]), ["tags: items must be unique"]),
            (lambda m: m.update(tags=["a/b"]),
             ['tags[0]: "a/b" is not a tag (2 to 255 characters, no slash, '
              "backslash or control character)"]),
            (lambda m: m.update(no_index={}), ["no_index: needs at least one of file, directory"]),
            (lambda m: m.update(resources={"repository": {"url": "https://example.com/x.git"}}),
             ['resources.repository: a url without web needs a type (like "git")']),
            (lambda m: m.update(resources={"bugtracker": {"mailto": "nobody"}}),
             ['resources.bugtracker.mailto: "nobody" is not an email address']),
        ]
        for change, expected in cases:
            with self.subTest(expected=expected[0]):
                self.assertProblems(broken(change), expected)

    def test_spec_allows(self):
        """What the spec allows passes: custom keys, other forms and ranges."""
        def change(m):
            m["x_internal"] = {"anything": True}
            m["provides"]["ghl_fdw"]["X_note"] = "custom keys may start with X_ too"
            m["license"] = {"PostgreSQL": "https://www.postgresql.org/about/licence/"}
            m["maintainer"] = "one maintainer <one@example.com>"
            m["prereqs"]["runtime"]["requires"]["PostgreSQL"] = ">= 15.0.0, < 16.0.0"
            m["prereqs"]["test"] = {"requires": {"plpgsql": 0}}
            m["no_index"] = {"directory": ["test", "bench"], "file": "test/mock_ghl.py"}
            m["resources"] = {"repository": {"url": "https://example.com/x.git", "type": "git"}}
        self.assertProblems(broken(change), [])

    def test_tree_rules(self):
        """Files provides names must exist, and one version runs through
        META.json, the control file, the C header and debian/changelog."""
        self.assertProblems(
            broken(lambda m: m["provides"]["ghl_fdw"].update(docfile="doc/missing.md")),
            ["provides.ghl_fdw.docfile: doc/missing.md is not in the distribution"])
        self.assertProblems(
            broken(lambda m: m.update(version="1.2.0") or m["provides"]["ghl_fdw"].update(
                version="1.2.0")),
            ["version: 1.2.0 is not version 1.1 of ghl_fdw.control's default_version",
             "debian/changelog: upstream version 1.1.0 is not META.json's 1.2.0"])

        with tempfile.TemporaryDirectory() as root:
            for name in ("META.json", "ghl_fdw.control", "src/ghl_fdw.h",
                         "sql/ghl_fdw--1.1.sql", "doc/ghl_fdw.md", "debian/changelog"):
                os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
                shutil.copy(os.path.join(TOP, name), os.path.join(root, name))
            self.assertEqual(check_meta.problems(root), [])
            replace(root, "src/ghl_fdw.h", '"1.1"', '"1.0"')
            replace(root, "debian/changelog", "(1.1.0-1)", "(1.1.1-1)")
            self.assertEqual(check_meta.problems(root), [
                "src/ghl_fdw.h: GHL_FDW_VERSION 1.0 is not the control file's "
                "default_version 1.1",
                "debian/changelog: upstream version 1.1.1 is not META.json's 1.1.0"])

            os.remove(os.path.join(root, "sql/ghl_fdw--1.1.sql"))
            replace(root, "ghl_fdw.control", "default_version = '1.1'", "")
            self.assertEqual(check_meta.problems(root)[:2], [
                "provides.ghl_fdw.file: sql/ghl_fdw--1.1.sql is not in the distribution",
                "ghl_fdw.control: missing, or without default_version"])

    def test_command_fails_on_a_broken_file(self):
        with tempfile.TemporaryDirectory() as root:
            with open(os.path.join(root, "META.json"), "w") as f:
                f.write('{"name": "ghl_fdw",')
            proc = subprocess.run([sys.executable, os.path.join(TOP, "test/check_meta.py"), root],
                                  capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, "")
        self.assertRegex(proc.stderr, r"^.*: META.json: cannot be read as JSON: ")


def replace(root, name, old, new):
    """Edit file name under root, which must contain old."""
    with open(os.path.join(root, name), encoding="utf-8") as f:
        text = f.read()
    assert old in text, f"{old!r} not in {name}"
    with open(os.path.join(root, name), "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, "-c", "user.name=ghl_fdw tests",
                           "-c", "user.email=tests@ghl-fdw.invalid", *args],
                          check=True, capture_output=True, text=True).stdout


@unittest.skipUnless(os.path.exists(PG_CONFIG) and shutil.which("git"),
                     "needs git and the PostgreSQL 15 server headers")
class DistTest(unittest.TestCase):
    """make dist in a scratch repository holding the files of this working
    tree that git does not ignore, so what is tested is what would be
    committed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ghl_dist.")
        self.repo = os.path.join(self.tmp, "repo")
        files = subprocess.run(["git", "-C", TOP, "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], check=True,
                               capture_output=True, text=True).stdout.split("\0")
        self.tracked = sorted(f for f in files if f and os.path.exists(os.path.join(TOP, f)))
        for name in self.tracked:
            os.makedirs(os.path.dirname(os.path.join(self.repo, name)), exist_ok=True)
            shutil.copy2(os.path.join(TOP, name), os.path.join(self.repo, name))
        git(self.repo, "init", "-q")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "release")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def make_dist(self):
        return subprocess.run(["make", "-C", self.repo, "dist", f"PG_CONFIG={PG_CONFIG}"],
                              capture_output=True, text=True)

    def test_archive_of_head(self):
        replace(self.repo, "README.md", "# ghl_fdw", "# uncommitted")
        proc = self.make_dist()
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("dist: warning: uncommitted changes are not in ghl_fdw-1.1.0.zip",
                      proc.stderr)
        self.assertIn("META.json: ghl_fdw 1.1.0 is valid", proc.stdout)
        self.assertEqual(sorted(os.listdir(self.repo)),
                         sorted(set(f.split("/")[0] for f in self.tracked)
                                | {".git", "ghl_fdw-1.1.0.zip"}))

        prefix = f"ghl_fdw-{META['version']}/"
        with zipfile.ZipFile(os.path.join(self.repo, f"ghl_fdw-{META['version']}.zip")) as z:
            infos = {i.filename: i for i in z.infolist() if not i.is_dir()}
            readme = z.read(prefix + "README.md").decode()
        self.assertTrue(all(name.startswith(prefix) for name in infos))
        shipped = sorted(name[len(prefix):] for name in infos)
        # everything tracked ships, except what only the repository needs
        left_out = {".gitattributes", ".gitignore"} | {f for f in self.tracked
                                                       if f.startswith(".ci/")}
        self.assertEqual(shipped, [f for f in self.tracked if f not in left_out])
        for needed in ("META.json", "ghl_fdw.control", "Makefile", "LICENSE",
                       "sql/ghl_fdw--1.1.sql", "sql/ghl_fdw--1.0--1.1.sql",
                       "test/mock_ghl.py", "test/installcheck.sh", "debian/rules"):
            self.assertIn(needed, shipped)
        # scripts stay executable, and the archive is of HEAD, not the work tree
        for script in ("debian/rules", "debian/tests/installcheck", "test/installcheck.sh"):
            self.assertTrue((infos[prefix + script].external_attr >> 16) & 0o100, script)
        self.assertTrue(readme.startswith("# ghl_fdw\n"))

    def test_version_mismatch_fails(self):
        for name, old, new, message in (
                ("ghl_fdw.control", "default_version = '1.1'", "default_version = '1.2'",
                 "version: 1.1.0 is not version 1.2 of ghl_fdw.control's default_version"),
                ("src/ghl_fdw.h", 'GHL_FDW_VERSION\t\t\t"1.1"', 'GHL_FDW_VERSION\t\t\t"1.0"',
                 "src/ghl_fdw.h: GHL_FDW_VERSION 1.0 is not the control file's "
                 "default_version 1.1")):
            with self.subTest(name=name):
                replace(self.repo, name, old, new)
                git(self.repo, "commit", "-q", "-a", "-m", "mismatch")
                proc = self.make_dist()
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(f"dist-check/ghl_fdw-1.1.0: {message}", proc.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.repo, "ghl_fdw-1.1.0.zip")))
                self.assertFalse(os.path.exists(os.path.join(self.repo, "dist-check")))
                git(self.repo, "reset", "-q", "--hard", "HEAD~1")


if __name__ == "__main__":
    unittest.main()
