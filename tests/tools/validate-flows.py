#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Validate flow-log lines against docs/flow-schema.json with the jsonschema
library (Debian's python3-jsonschema): one JSON record per line, from files or
standard input ("-"). Prints each invalid line with the validator's reasons and
a summary; exit status 0 when every line is valid, 1 otherwise, 2 on bad usage.

  validate-flows.py SCHEMA FILE... [--types T1,T2,...]

--types: also require at least one record of each listed type.
"""
import json
import sys

import jsonschema


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--types=")]
    want = set()
    for a in argv[1:]:
        if a.startswith("--types="):
            want = set(filter(None, a.split("=", 1)[1].split(",")))
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    lines = bad = 0
    seen = {}
    for path in args[1:]:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            for num, line in enumerate(f, 1):
                if not line.strip():
                    continue
                lines += 1
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    bad += 1
                    print(f"{path}:{num}: not JSON: {e}")
                    continue
                errors = sorted(validator.iter_errors(rec), key=lambda e: list(e.path))
                if errors:
                    bad += 1
                    print(f"{path}:{num}: {line.strip()[:300]}")
                    for e in errors[:5]:
                        where = "/".join(str(p) for p in e.absolute_path) or "(record)"
                        print(f"  {where}: {e.message[:300]}")
                    continue
                seen[rec["type"]] = seen.get(rec["type"], 0) + 1
    missing = sorted(want - set(seen))
    counts = ", ".join(f"{t} {n}" for t, n in sorted(seen.items()))
    print(f"{lines} records, {bad} invalid ({counts or 'none valid'})")
    if missing:
        print(f"no record of type: {', '.join(missing)}")
    return 1 if bad or missing or not lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
