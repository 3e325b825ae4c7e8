#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check that every command docs/operations.md shows is run by a test.

    check-ops-commands.py [OPERATIONS_MD [REPO]]

Reads every line of the ```sh blocks of OPERATIONS_MD (continuations joined,
trailing "# comments" dropped) and looks each up in COVERAGE below, which
names the test file that runs it and a pattern that file must contain, or
says why it cannot run here. The check fails, naming each problem, when a
command has no entry (a new command needs a test, or a reason), when an entry
names no command of the page any more, or when its test file lacks its
pattern. Prints one line per command: how it is covered.
"""
import os
import re
import sys

# No systemd as PID 1 on the machines that run the tests: systemctl cannot run.
NO_SYSTEMD = ("not run: the test machines do not run systemd as PID 1; the unit is checked "
              "by systemd-analyze verify and the notify protocol through a test socket "
              "(tests/integration/systemd.bats)")

# command as the page shows it -> (test file, regex the file must contain) or a reason
COVERAGE = {
    "make install PREFIX=/usr":
        ("tests/integration/package.bats", r"make .*PREFIX=/usr install"),
    "make deb":
        ("tests/integration/package.bats", r"make -C .* deb\b"),
    "dpkg -i .output/deb/sockmesh_*.deb":
        ("tests/integration/package.bats", r"dpkg -i "),
    "sockmeshd --check -c /etc/sockmesh/sockmesh.yaml":
        ("tests/integration/package.bats", r"sockmeshd --check -c /etc/sockmesh/sockmesh.yaml"),
    "sockmeshd -c /etc/sockmesh/sockmesh.yaml":
        ("scripts/sandbox.sh", r'"\$SOCKMESHD" -c '),
    'kill -USR2 "$(sockmesh status -o json | jq .pid)"':
        ("tests/integration/upgrade.bats", r'kill -USR2 "\$\(sm_status [a-z0-9]+ \| jq -er \.pid\)"'),
    "sockmeshd --cleanup --bpffs /sys/fs/bpf/sockmesh":
        ("tests/integration/lifecycle.bats", r"--cleanup --bpffs "),
    "curl -s http://127.0.0.1:9090/api/v1/query --data-urlencode "
    "'query=sum by (destination_workload) (sockmesh_tcp_received_bytes_total{reporter=\"destination\"})'":
        ("tests/integration/prometheus.bats", r"sm_doc_block 'curl -s http://127\.0\.0\.1:9090/api/v1/query"),
    "systemctl daemon-reload": NO_SYSTEMD,
    "systemctl enable --now sockmeshd": NO_SYSTEMD,
    "systemctl status sockmeshd": NO_SYSTEMD,
    "systemctl disable --now sockmeshd": NO_SYSTEMD,
    "systemctl kill -s USR2 --kill-whom=main sockmeshd": NO_SYSTEMD,
}

COMMENT = re.compile(r"\s+#\s.*$")


def commands(path):
    out, block, pending = [], False, ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("```"):
                block = line.strip() == "```sh" if not block else False
                continue
            if not block:
                continue
            line = pending + line.lstrip() if pending else line
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            line = COMMENT.sub("", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else "docs/operations.md"
    repo = sys.argv[2] if len(sys.argv) > 2 else "."
    problems = []
    shown = commands(doc)
    for cmd in dict.fromkeys(shown):
        how = COVERAGE.get(cmd)
        if how is None:
            problems.append(f"{doc}: `{cmd}` is run by no test: run it in one and add it to "
                            f"COVERAGE in {sys.argv[0]}, or say there why it cannot run")
            continue
        if isinstance(how, str):
            print(f"{cmd}  <- {how}")
            continue
        test, pattern = how
        try:
            with open(os.path.join(repo, test), encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            problems.append(f"`{cmd}`: {test}: {e.strerror}")
            continue
        if not re.search(pattern, text):
            problems.append(f"`{cmd}`: {test} no longer runs it (no match for /{pattern}/)")
            continue
        print(f"{cmd}  <- {test}")
    for cmd in COVERAGE:
        if cmd not in shown:
            problems.append(f"`{cmd}` is in COVERAGE but {doc} no longer shows it: remove it")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
