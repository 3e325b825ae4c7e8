#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check docs/cli.md and the sockmesh(1) man page against the CLI's command table.

    check-cli-docs.py SOCKMESH CLI_MD MAN_PAGE [SOCKMESHD MAN_PAGE_8]

SOCKMESH is the built CLI: `SOCKMESH __commands` prints its command table
(every command and subcommand with its options and exit codes, and the exit
codes' meanings) as JSON. The check fails, naming each problem, when a doc
lacks a command, an option or an exit code the table has, or names one the
table does not. What the docs must look like:

  docs/cli.md   a heading "## sockmesh PATH" (or ###) for every command and
                subcommand; in its section (to the next heading as high), an
                option table whose rows start "| `--name ...`" listing each of
                the command's own options; the global options in the rows of
                "## Options"; the exit codes as "| N | `CLI_EXIT_NAME` |" rows
                of "## Exit status", named as in userspace/cli/cli.h.
  sockmesh.1    a subsection '.SS "sockmesh PATH ..."' for every command, its
                own options as the .TP tags that follow; the global options as
                the .TP tags of .SH OPTIONS; the exit codes as the .TP tags of
                .SH "EXIT STATUS".
  sockmeshd.8   the .TP tags of .SH OPTIONS name exactly the long options
                `SOCKMESHD --help` lists.
"""
import json
import re
import subprocess
import sys

OPT = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def load_table(binary):
    out = subprocess.run([binary, "__commands"], check=True, capture_output=True, text=True)
    table = json.loads(out.stdout)
    cmds = {}
    for c in table["commands"]:
        own = {o["long"] for o in c["options"] if not o["global"]}
        glob = {o["long"] for o in c["options"] if o["global"]}
        cmds[c["command"]] = {"own": own, "global": glob}
    codes = {e["code"]: e["name"] for e in table["exit_codes"]}
    return cmds, codes


def compare(doc, what, want, got, problems, source="the command table"):
    for name in sorted(want - got, key=str):
        problems.append(f"{doc}: {what}: missing {name} (it is in {source})")
    for name in sorted(got - want, key=str):
        problems.append(f"{doc}: {what}: {name} is not in {source}")


# ---- docs/cli.md ----

def md_sections(text):
    """[(level, title, [lines])] for every heading."""
    sections = []
    for line in text.splitlines():
        m = re.match(r"^(#{1,6}) (.*?)\s*$", line)
        if m:
            sections.append((len(m.group(1)), m.group(2), []))
        elif sections:
            sections[-1][2].append(line)
    return sections


def md_body(sections, i):
    """The lines of section i and of the headings below it."""
    level = sections[i][0]
    lines = list(sections[i][2])
    for lvl, _, body in sections[i + 1:]:
        if lvl <= level:
            break
        lines += body
    return lines


def md_row_options(lines):
    """--names in the first cell of the table rows."""
    found = set()
    for line in lines:
        if line.startswith("|") and not line.startswith("| ---"):
            cells = line.split("|")
            if len(cells) > 2:
                found |= set(OPT.findall(cells[1]))
    return found


def check_md(path, cmds, codes, problems):
    with open(path, encoding="utf-8") as f:
        sections = md_sections(f.read())
    headings = {}
    for i, (lvl, title, _) in enumerate(sections):
        m = re.fullmatch(r"sockmesh((?: [a-z_][a-z0-9_-]*)*)", title)
        if m and lvl >= 2:
            headings[m.group(1).strip()] = i
    documented = set(headings) - {""}
    compare(path, "commands (headings '## sockmesh COMMAND')",
            {c for c in cmds if c}, documented, problems)
    for name, i in headings.items():
        if name not in cmds:
            continue
        # a group's section holds its subcommands' sections: only its own lines count
        lines = md_body(sections, i) if not any(
            c.startswith(name + " ") for c in cmds) else sections[i][2]
        got = md_row_options(lines)
        c = cmds[name]
        for opt in sorted(c["own"] - got):
            problems.append(f"{path}: 'sockmesh {name}': option --{opt} missing from its "
                            "option table (it is in the command table)")
        for opt in sorted(got - c["own"] - c["global"]):
            problems.append(f"{path}: 'sockmesh {name}': option --{opt} is not an option "
                            "of this command in the command table")
    opts = [i for i, s in enumerate(sections) if s[1] == "Options" and s[0] == 2]
    if not opts:
        problems.append(f"{path}: no '## Options' section (the global options)")
    else:
        compare(path, "global options ('## Options')",
                {f"--{o}" for o in cmds[""]["global"]},
                {f"--{o}" for o in md_row_options(sections[opts[0]][2])}, problems)
    ex = [i for i, s in enumerate(sections) if s[1] == "Exit status" and s[0] == 2]
    if not ex:
        problems.append(f"{path}: no '## Exit status' section")
    else:
        rows = [m for line in sections[ex[0]][2]
                for m in [re.match(r"^\| (\d+) \|(?: `(\w+)` \|)?", line)] if m]
        compare(path, "exit codes ('## Exit status')", {f"exit {c}" for c in codes},
                {f"exit {int(m.group(1))}" for m in rows}, problems)
        for m in rows:
            want = codes.get(int(m.group(1)))
            if want and m.group(2) != f"CLI_EXIT_{want.upper()}":
                problems.append(f"{path}: exit code {m.group(1)} is named "
                                f"{m.group(2) or 'nothing'}, the CLI names it "
                                f"CLI_EXIT_{want.upper()}")


# ---- the man page ----

def roff_text(line):
    """A roff line as plain text: no macro, no font changes, no quotes, \\- as -."""
    line = re.sub(r"^\.[A-Z]{1,2}\s*", "", line)
    line = re.sub(r"\\f[BIRP]", "", line)
    line = line.replace("\\-", "-").replace("\\e", "\\").replace('"', "")
    return line


def check_man(path, cmds, codes, problems):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sh = None       # current .SH
    ss = None       # current command (.SS)
    tag_next = False
    cmd_opts = {}   # command -> --names in its .TP tags
    global_opts = set()
    exits = set()
    for line in lines:
        if line.startswith(".SH"):
            sh, ss, tag_next = roff_text(line).strip(), None, False
            continue
        if line.startswith(".SS"):
            words = roff_text(line).split()
            ss = None
            if words and words[0] == "sockmesh":
                path_words = []
                for w in words[1:]:
                    if not re.fullmatch(r"[a-z_][a-z0-9_-]*", w):
                        break
                    path_words.append(w)
                ss = " ".join(path_words)
                cmd_opts.setdefault(ss, set())
            tag_next = False
            continue
        if line.startswith(".TP"):
            tag_next = True
            continue
        if not tag_next:
            continue
        tag_next = False
        text = roff_text(line)
        if sh == "COMMANDS" and ss is not None:
            cmd_opts[ss] |= set(OPT.findall(text))
        elif sh == "OPTIONS":
            global_opts |= set(OPT.findall(text))
        elif sh == "EXIT STATUS" and text.strip().isdigit():
            exits.add(int(text.strip()))
    compare(path, "commands ('.SS sockmesh COMMAND' in COMMANDS)",
            {c for c in cmds if c}, set(cmd_opts), problems)
    for name, got in cmd_opts.items():
        if name not in cmds:
            continue
        c = cmds[name]
        for opt in sorted(c["own"] - got):
            problems.append(f"{path}: 'sockmesh {name}': option --{opt} missing from its "
                            ".TP list (it is in the command table)")
        for opt in sorted(got - c["own"] - c["global"]):
            problems.append(f"{path}: 'sockmesh {name}': option --{opt} is not an option "
                            "of this command in the command table")
    compare(path, "global options (.SH OPTIONS)", {f"--{o}" for o in cmds[""]["global"]},
            {f"--{o}" for o in global_opts}, problems)
    compare(path, "exit codes (.SH EXIT STATUS)", {f"exit {c}" for c in codes},
            {f"exit {c}" for c in exits}, problems)


def check_daemon_man(binary, path, problems):
    out = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True)
    want = {m.group(1) for line in out.stdout.splitlines()
            for m in [re.match(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", line)] if m}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    got, sh, tag_next = set(), None, False
    for line in lines:
        if line.startswith(".SH"):
            sh, tag_next = roff_text(line).strip(), False
        elif line.startswith(".TP"):
            tag_next = True
        elif tag_next:
            tag_next = False
            if sh == "OPTIONS":
                got |= set(OPT.findall(roff_text(line)))
    compare(path, ".SH OPTIONS", {f"--{o}" for o in want}, {f"--{o}" for o in got},
            problems, f"`{binary} --help`")


def main():
    if len(sys.argv) not in (4, 6):
        sys.stderr.write(__doc__)
        return 2
    binary, md, man = sys.argv[1:4]
    cmds, codes = load_table(binary)
    problems = []
    check_md(md, cmds, codes, problems)
    check_man(man, cmds, codes, problems)
    if len(sys.argv) == 6:
        check_daemon_man(sys.argv[4], sys.argv[5], problems)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s): make the docs match the programs' --help "
              "(the CLI's command table is in userspace/cli/)")
        return 1
    print(f"{len(cmds) - 1} commands, their options and {len(codes)} exit codes match "
          f"{md} and {man}" + (f"; {sys.argv[5]} matches {sys.argv[4]} --help"
                                if len(sys.argv) == 6 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
