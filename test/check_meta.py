#!/usr/bin/env python3
"""Check a distribution's META.json against the PGXN Meta Spec 1.0.0
(https://pgxn.org/spec/) and against the tree it describes.

Usage: check_meta.py [DIR]    (default: the repository this file is in)

The spec's rules: the required and optional keys and their types, SemVer
versions, version ranges in prereqs, PGXN's license names, terms, tags,
relative paths, URIs and custom x_ keys.  The tree's: the files provides
names exist, the distribution is named after its extension, and one version
runs through the release: META.json's (and each provided extension's),
the control file's default_version, GHL_FDW_VERSION in src/ghl_fdw.h and
the upstream version of debian/changelog.

Prints one line per problem on stderr and exits 1, or names the valid
distribution on stdout and exits 0.
"""
import json
import os
import re
import sys

SEMVER = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
          r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?")
SEMVER_RE = re.compile(rf"^{SEMVER}$")
RANGE_CLAUSE_RE = re.compile(rf"^(?:(?:==|!=|<=|>=|<|>)\s*)?{SEMVER}$")
TERM_RE = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
TAG_RE = re.compile(r"^[^/\\\x00-\x1f\x7f]{2,255}$")
CUSTOM_KEY_RE = re.compile(r"^[xX]_.")
URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
SPEC_URLS = {"https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"}
HEADER = "src/ghl_fdw.h"
HEADER_VERSION_RE = re.compile(r'^#define\s+GHL_FDW_VERSION\s+"([^"]*)"', re.M)
CONTROL_VERSION_RE = re.compile(r"^\s*default_version\s*=\s*'([^']*)'", re.M)
CHANGELOG_VERSION_RE = re.compile(r"^\S+ \((?:\d+:)?([^)]*?)(?:-[^-)]*)?\)")


# Each check below takes a value and where it is in META.json ("provides.
# ghl_fdw.file") and returns the problems found as "where: what" lines,
# so a caller sees every mistake of a file at once, not just the first.

def string(value, where):
    """A non-empty string: the spec allows no empty text anywhere."""
    if not isinstance(value, str) or not value:
        return [f"{where}: must be a non-empty string"]
    return []


def matching(regex, what):
    """A check that a string has the form the spec gives, e.g. SemVer."""
    def check(value, where):
        if not isinstance(value, str) or not regex.match(value):
            return [f"{where}: {json.dumps(value)} is not {what}"]
        return []
    return check


version = matching(SEMVER_RE, "a semantic version (like 1.2.0)")
term = matching(TERM_RE, "a term (two or more characters, no slash, "
                         "backslash, space or control character)")
uri = matching(URI_RE, "an absolute URI")
email = matching(EMAIL_RE, "an email address")


def path(value, where):
    """A relative path in Unix form inside the distribution: PGXN resolves
    it against the unpacked archive, so nothing may point outside."""
    if not isinstance(value, str) or len(value) < 2:
        return [f"{where}: must be a relative path of two or more characters"]
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or "." in parts or ".." in parts or "" in parts:
        return [f"{where}: {json.dumps(value)} is not a relative Unix path "
                "inside the distribution"]
    return []


def one_of(choices):
    """A check that a value is one of a closed set (release_status)."""
    def check(value, where):
        if value not in choices:
            return [f"{where}: {json.dumps(value)} is not one of {', '.join(sorted(choices))}"]
        return []
    return check


def list_of(item, min_items=1):
    """A check for a list of unique items, each passing item."""
    def check(value, where):
        if not isinstance(value, list) or len(value) < min_items:
            return [f"{where}: must be a list of at least {min_items} item(s)"]
        out = []
        for i, element in enumerate(value):
            out += item(element, f"{where}[{i}]")
        if len({json.dumps(e, sort_keys=True) for e in value}) != len(value):
            out.append(f"{where}: items must be unique")
        return out
    return check


def forms(**checks):
    """A check for a value the spec allows in several JSON forms, e.g. a
    license name, a list of them or an object: the check of the value's
    form (str, list or dict) applies."""
    types = {"str": str, "list": list, "dict": dict}

    def check(value, where):
        for form, form_check in checks.items():
            if isinstance(value, types[form]):
                return form_check(value, where)
        names = {"str": "a string", "list": "a list", "dict": "an object"}
        return [f"{where}: must be {' or '.join(names[f] for f in checks)}"]
    return check


def mapping(key, value_check, min_items=1):
    """A check for an object whose keys pass key and values value_check."""
    def check(value, where):
        if not isinstance(value, dict) or len(value) < min_items:
            return [f"{where}: must be an object with at least {min_items} key(s)"]
        out = []
        for k, v in value.items():
            out += key(k, f"{where}: key {json.dumps(k)}")
            out += value_check(v, f"{where}.{k}")
        return out
    return check


def record(fields, required=(), any_of=()):
    """A check for an object of known keys (fields: key -> check), of which
    required must be there and at least one of any_of; custom keys
    starting with x_ are allowed, any other key is a mistake."""
    def check(value, where):
        if not isinstance(value, dict):
            return [f"{where}: must be an object"]
        prefix = f"{where}." if where else ""
        out = [f"{where or 'META.json'}: missing required key {json.dumps(k)}"
               for k in required if k not in value]
        if any_of and not any(k in value for k in any_of):
            out.append(f"{where}: needs at least one of {', '.join(any_of)}")
        for k, v in value.items():
            if k in fields:
                out += fields[k](v, prefix + k)
            elif not CUSTOM_KEY_RE.match(k):
                out.append(f"{where or 'META.json'}: unknown key {json.dumps(k)} "
                           "(custom keys start with x_)")
        return out
    return check


def version_range(value, where):
    """A prerequisite's versions: 0 (any), a minimum version, or clauses
    like ">= 1.2.0, != 1.5.0, < 2.0.0"."""
    if value == 0 or value == "0":
        return []
    if isinstance(value, str) and all(RANGE_CLAUSE_RE.match(c.strip())
                                      for c in value.split(",")):
        return []
    return [f"{where}: {json.dumps(value)} is not a version range "
            "(like \"1.2.0\" or \">= 1.2.0, < 2.0.0\")"]


def repository(value, where):
    """Where the sources are: a web front-end, or a url with its VCS type
    (a url alone does not say how to fetch it)."""
    out = record({"url": uri, "web": uri,
                  "type": matching(re.compile(r"^[a-z]+$"), "a lowercase VCS name")},
                 any_of=("url", "web"))(value, where)
    if isinstance(value, dict) and "web" not in value and "url" in value \
            and "type" not in value:
        out.append(f"{where}: a url without web needs a type (like \"git\")")
    return out


RELATIONSHIPS = ("requires", "recommends", "suggests", "conflicts")
PHASES = ("configure", "build", "test", "runtime", "develop")
phase = record({r: mapping(term, version_range) for r in RELATIONSHIPS},
               any_of=RELATIONSHIPS)
file_list = forms(str=path, list=list_of(path))

META = record(
    {
        "name": term,
        "version": version,
        "abstract": string,
        "maintainer": forms(str=string, list=list_of(string)),
        "license": forms(str=one_of(LICENSES), list=list_of(one_of(LICENSES)),
                         dict=mapping(string, uri)),
        "provides": mapping(term, record(
            {"file": path, "version": version, "abstract": string,
             "docfile": path, "docpath": string},
            required=("file", "version"))),
        "meta-spec": record(
            {"version": matching(re.compile(r"^1\.0\.\d+$"), "a 1.0.x spec version"),
             "url": one_of(SPEC_URLS)},
            required=("version",)),
        "description": string,
        "generated_by": string,
        "tags": list_of(matching(TAG_RE, "a tag (2 to 255 characters, no slash, "
                                         "backslash or control character)")),
        "no_index": record({"file": file_list, "directory": file_list},
                           any_of=("file", "directory")),
        "prereqs": record({p: phase for p in PHASES}, any_of=PHASES),
        "release_status": one_of({"stable", "testing", "unstable"}),
        "resources": record(
            {"homepage": uri,
             "bugtracker": record({"web": uri, "mailto": email},
                                  any_of=("web", "mailto")),
             "repository": repository},
            any_of=("homepage", "bugtracker", "repository")),
    },
    required=("name", "version", "abstract", "maintainer", "license",
              "provides", "meta-spec"))


def spec_problems(meta):
    """What in the META.json structure meta breaks the PGXN Meta Spec."""
    return META(meta, "")


def read_version(root, name, regex):
    """The version regex finds in file name under root, or None."""
    try:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            found = regex.search(f.read())
    except OSError:
        return None
    return found.group(1) if found else None


def tree_problems(meta, root):
    """What in meta does not match the tree at root: files provides names
    that are missing, and versions that disagree."""
    out = []
    provides = meta.get("provides") if isinstance(meta.get("provides"), dict) else {}
    for ext, entry in provides.items():
        if not isinstance(entry, dict):
            continue
        for key in ("file", "docfile"):
            name = entry.get(key)
            if isinstance(name, str) and not path(name, "") \
                    and not os.path.isfile(os.path.join(root, name)):
                out.append(f"provides.{ext}.{key}: {name} is not in the distribution")
        if entry.get("version") != meta.get("version"):
            out.append(f"provides.{ext}.version: {entry.get('version')} differs "
                       f"from the distribution's version {meta.get('version')}")
    name = meta.get("name")
    if name not in provides:
        return out + [f"name: {json.dumps(name)} is not an extension in provides"]

    default = read_version(root, f"{name}.control", CONTROL_VERSION_RE)
    if default is None:
        return out + [f"{name}.control: missing, or without default_version"]
    core = SEMVER_RE.match(str(meta.get("version")))
    if core and f"{core.group(1)}.{core.group(2)}" != default:
        out.append(f"version: {meta['version']} is not version {default} "
                   f"of {name}.control's default_version")
    script = f"sql/{name}--{default}.sql"
    if provides[name].get("file") != script:
        out.append(f"provides.{name}.file: must be {script}, the install script "
                   "of the default version")
    header = read_version(root, HEADER, HEADER_VERSION_RE)
    if header != default:
        out.append(f"{HEADER}: GHL_FDW_VERSION {header} is not the control file's "
                   f"default_version {default}")
    upstream = read_version(root, "debian/changelog", CHANGELOG_VERSION_RE)
    if os.path.exists(os.path.join(root, "debian/changelog")) and upstream != meta.get("version"):
        out.append(f"debian/changelog: upstream version {upstream} is not "
                   f"META.json's {meta.get('version')}")
    return out


def problems(root):
    """Every problem of root/META.json, as lines for a person to read."""
    try:
        with open(os.path.join(root, "META.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        return [f"META.json: cannot be read as JSON: {e}"]
    if not isinstance(meta, dict):
        return ["META.json: must hold a JSON object"]
    return spec_problems(meta) + tree_problems(meta, root)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    found = problems(root)
    for line in found:
        print(f"{root}: {line}", file=sys.stderr)
    if found:
        return 1
    with open(os.path.join(root, "META.json"), encoding="utf-8") as f:
        meta = json.load(f)
    print(f"META.json: {meta['name']} {meta['version']} is valid "
          f"(PGXN Meta Spec {meta['meta-spec']['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
