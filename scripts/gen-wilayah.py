#!/usr/bin/env python3
"""Regenerate simpul's compact Kemendagri region table (kode wilayah) from idn-area-data.

The bus validates `kode-wilayah`, and the district prefix of every NIK / No. KK, against the
current Kemendagri table. We ship a derived, compact copy of it (bus/data/wilayah/wilayah.txt)
rather than the 4 MB of CSV, and embed it in the binary with `include_str!`.

Usage (from the repository root; only the npm registry is needed):

    npm pack idn-area-data@4
    python3 scripts/gen-wilayah.py idn-area-data-4.0.1.tgz

That rewrites bus/data/wilayah/wilayah.txt and checks bus/data/wilayah/historical.txt against it.
To rebuild historical.txt as well, also pass the last idn-area-data release that still has
Papua Barat Daya's regencies under province 92 (Kepmendagri 100.1.1-6117/2022):

    npm pack idn-area-data@2.2.0
    python3 scripts/gen-wilayah.py idn-area-data-4.0.1.tgz --pre-pbd idn-area-data-2.2.0.tgz

The pre-2022 Papua (91) district codes come from bus/data/wilayah/sources/papua-2021-districts.txt
(see NOTICE.md for where that list is from). Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import tarfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bus" / "data" / "wilayah"
LEVELS = ("provinces", "regencies", "districts", "villages")
CODE_LEN = {"provinces": 2, "regencies": 4, "districts": 6, "villages": 10}
PARENT = {"regencies": "province_code", "districts": "regency_code", "villages": "district_code"}

# District names that the 2021 Kepmendagri table spells differently from today's; without these
# the name match below cannot find the district's current code.
PAPUA_SPELLING = {
    "holuon": "holuwon",
    "seredela": "seradala",
    "kwelemdua": "kwelamdua",
    "ayip": "ayib",
    "kobagma": "kobakma",
}


def norm(name: str) -> str:
    """Compare names, not spelling: case, spaces, punctuation and 'Kabupaten/Kab.' are noise."""
    name = name.lower().replace("kabupaten", "").replace("kab.", "")
    return re.sub(r"[^a-z]", "", name)


def read_tarball(path: Path) -> dict[str, list[dict[str, str]]]:
    """The four level CSVs of an idn-area-data npm tarball, with dots stripped from codes."""
    out: dict[str, list[dict[str, str]]] = {}
    with tarfile.open(path, "r:gz") as tar:
        names = {Path(m.name).name: m for m in tar.getmembers() if m.name.endswith(".csv")}
        for level in LEVELS:
            member = names.get(f"{level}.csv")
            if member is None:
                sys.exit(f"{path}: no {level}.csv in the tarball (found: {sorted(names)})")
            raw = tar.extractfile(member)
            assert raw is not None
            rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
            for row in rows:
                for key in ("code", PARENT.get(level, "")):
                    if key in row:
                        row[key] = row[key].replace(".", "").strip()
            out[level] = rows
    return out


def validate(data: dict[str, list[dict[str, str]]]) -> None:
    """Refuse a table with malformed, duplicate or orphaned codes rather than ship it."""
    seen: dict[str, set[str]] = {}
    for level in LEVELS:
        codes = [r["code"] for r in data[level]]
        bad = [c for c in codes if len(c) != CODE_LEN[level] or not c.isascii() or not c.isdigit()]
        if bad:
            sys.exit(f"{level}: {len(bad)} malformed codes, e.g. {bad[:3]}")
        dup = [c for c, n in Counter(codes).items() if n > 1]
        if dup:
            sys.exit(f"{level}: duplicate codes {dup[:5]}")
        if level in PARENT:
            parents = seen[LEVELS[LEVELS.index(level) - 1]]
            for row in data[level]:
                parent = row[PARENT[level]]
                if parent not in parents or not row["code"].startswith(parent):
                    sys.exit(f"{level}: {row['code']} has unknown parent {parent}")
        seen[level] = set(codes)


def runs(suffixes: list[int]) -> list[str]:
    """Consecutive village numbers collapse to FIRST-LAST: most of a district's villages are runs."""
    out: list[str] = []
    start = prev = suffixes[0]
    for s in suffixes[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(f"{start:04d}" if start == prev else f"{start:04d}-{prev:04d}")
        if s is not None:
            start = prev = s
    return out


def write_table(data: dict[str, list[dict[str, str]]], source: str) -> str:
    counts = {level: len(data[level]) for level in LEVELS}
    villages: dict[str, list[int]] = {}
    for row in data["villages"]:
        villages.setdefault(row["code"][:6], []).append(int(row["code"][6:]))
    lines = [
        "# Kemendagri region codes (kode wilayah): provinces, regencies, districts, villages.",
        f"# Derived from {source} (npm package idn-area-data by fityannugroho; data from Kepmendagri).",
        "# A Derivative Database under the Open Database License 1.0,",
        "# https://opendatacommons.org/licenses/odbl/1-0/ -- see NOTICE.md beside this file.",
        "# Generated by scripts/gen-wilayah.py; do not edit by hand.",
        "# Format: one code per line, 2 digits for a province, 4 for a regency, 6 for a district;",
        "# a district line goes on with its villages' last 4 digits, consecutive ones as FIRST-LAST.",
        "# counts: " + " ".join(f"{level}={n}" for level, n in counts.items()),
    ]
    codes = sorted(
        [r["code"] for r in data["provinces"]]
        + [r["code"] for r in data["regencies"]]
        + [r["code"] for r in data["districts"]]
    )
    for code in codes:
        if len(code) == 6 and code in villages:
            lines.append(code + " " + " ".join(runs(sorted(villages[code]))))
        else:
            lines.append(code)
    text = "\n".join(lines) + "\n"
    (OUT_DIR / "wilayah.txt").write_text(text, encoding="utf-8")
    return text


def current_districts(data: dict[str, list[dict[str, str]]]) -> dict[str, dict[str, str]]:
    """regency code -> {normalised district name -> district code}."""
    out: dict[str, dict[str, str]] = {}
    for row in data["districts"]:
        out.setdefault(row["regency_code"], {})[norm(row["name"])] = row["code"]
    return out


def regency_successor(old_name: str, old_code: str, new_provinces: set[str], data) -> str:
    """The current regency with the same name in one of the successor provinces."""
    city = old_code[2:] >= "71"  # Kemendagri numbers cities (kota) from 71.
    hits = [
        r["code"]
        for r in data["regencies"]
        if r["province_code"] in new_provinces
        and norm(r["name"]) == norm(old_name)
        and (r["code"][2:] >= "71") == city
    ]
    if len(hits) != 1:
        sys.exit(f"cannot map old regency {old_code} {old_name!r} to one current regency: {hits}")
    return hits[0]


def papua_2021(data) -> list[tuple[str, str, str]]:
    """(old, current, name) for every pre-2022 Papua district code that is no longer current."""
    current = {r["code"] for r in data["districts"]}
    by_regency = current_districts(data)
    regency_new: dict[str, str] = {}
    out = []
    path = OUT_DIR / "sources" / "papua-2021-districts.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, name = line.split(" ", 1)
        if len(code) == 4:
            regency_new[code] = regency_successor(name, code, {"91", "93", "94", "95"}, data)
            continue
        if code in current:
            continue
        key = norm(name)
        key = PAPUA_SPELLING.get(key, key)
        new = by_regency.get(regency_new[code[:4]], {}).get(key)
        if new is None:
            sys.exit(f"papua-2021: no current district named {name!r} in {regency_new[code[:4]]}")
        out.append((code, new, name))
    return out


def papua_barat_2022(pre: dict[str, list[dict[str, str]]], data) -> list[tuple[str, str, str]]:
    """(old, current, name) for every 92 district of Kepmendagri 100.1.1-6117/2022 no longer current."""
    current = {r["code"] for r in data["districts"]}
    by_regency = current_districts(data)
    old_regencies = {r["code"]: r["name"] for r in pre["regencies"]}
    out = []
    for row in pre["districts"]:
        code = row["code"]
        if code in current:
            continue
        if not code.startswith("92"):
            sys.exit(f"pre-PBD table: {code} is gone from the current table and is not a 92 code")
        regency = regency_successor(old_regencies[code[:4]], code[:4], {"92", "96"}, data)
        new = by_regency.get(regency, {}).get(norm(row["name"]))
        if new is None:
            sys.exit(f"pre-PBD table: no current district named {row['name']!r} in {regency}")
        out.append((code, new, row["name"].title()))
    return out


HISTORICAL_HEADER = """\
# Historical district prefixes for NIK and No. KK (never for kode-wilayah).
# A NIK keeps the district code it was issued under for life, so these are codes that no longer
# exist in the current table (wilayah.txt) but that valid NIKs still start with.
# Format: OLD CURRENT NAME -- OLD is the historical 6-digit district code, CURRENT the code of the
# same district today, NAME its name in the source. Only OLD is used by the bus; CURRENT is kept
# so the mapping can be checked (the tests assert every CURRENT exists and no OLD does).
# Generated by scripts/gen-wilayah.py; see NOTICE.md for the sources and what is left out.
# Partly derived from idn-area-data 2.2.0 (ODbL 1.0, https://opendatacommons.org/licenses/odbl/1-0/).
"""


def write_historical(sections: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
    lines = [HISTORICAL_HEADER.rstrip("\n")]
    for title, rows in sections:
        lines.append("")
        lines.extend("# " + t for t in title.splitlines())
        lines.extend(f"{old} {new} {name}" for old, new, name in sorted(rows))
    (OUT_DIR / "historical.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def check_historical(data) -> int:
    """An old code that is current again, or whose successor vanished, means the table moved on."""
    current = {r["code"] for r in data["districts"]}
    path = OUT_DIR / "historical.txt"
    problems = n = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        n += 1
        old, new = line.split()[:2]
        if old in current:
            print(f"historical.txt: {old} is a current district again", file=sys.stderr)
            problems += 1
        if new not in current:
            print(f"historical.txt: successor {new} of {old} is not current", file=sys.stderr)
            problems += 1
    if problems:
        sys.exit(f"historical.txt: {problems} problems")
    return n


def main() -> None:
    global OUT_DIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarball", type=Path, help="idn-area-data 4.x tarball from `npm pack idn-area-data@4`")
    ap.add_argument("--pre-pbd", type=Path, help="idn-area-data 2.2.0 tarball, to rebuild historical.txt")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"default: {OUT_DIR.relative_to(REPO)}")
    args = ap.parse_args()
    OUT_DIR = args.out_dir

    data = read_tarball(args.tarball)
    validate(data)
    text = write_table(data, args.tarball.name.removesuffix(".tgz"))
    counts = {level: len(data[level]) for level in LEVELS}
    print(f"wilayah.txt: {len(text.encode())} bytes; " + ", ".join(f"{n} {k}" for k, n in counts.items()))

    if args.pre_pbd:
        pre = read_tarball(args.pre_pbd)
        validate(pre)
        papua = papua_2021(data)
        barat = papua_barat_2022(pre, data)
        write_historical(
            [
                (
                    "Papua (91) before the 2022 split into Papua (91), Papua Selatan (93), Papua Tengah (94)\n"
                    "and Papua Pegunungan (95) (UU 14, 15, 16/2022). Source: Kepmendagri 050-145/2022\n"
                    "(2021 data), via sources/papua-2021-districts.txt; current codes matched by name.",
                    papua,
                ),
                (
                    "Papua Barat (92) before Papua Barat Daya (96) was formed (UU 29/2022). Source:\n"
                    f"Kepmendagri 100.1.1-6117/2022 as published in {args.pre_pbd.name.removesuffix('.tgz')};\n"
                    "current codes matched by name.",
                    barat,
                ),
            ]
        )
        print(f"historical.txt: {len(papua)} Papua (91) codes, {len(barat)} Papua Barat (92) codes")
    n = check_historical(data)
    print(f"historical.txt: {n} codes, consistent with the current table")


if __name__ == "__main__":
    main()
