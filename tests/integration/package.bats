#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Installing sockmesh: `make install` / `make uninstall` into a DESTDIR, and
# the Debian package `make deb` builds (once per run, in setup_file), unpacked
# into a scratch root with `dpkg -x`, and installed with `dpkg -i` on a scratch
# copy of this machine (an overlay of / in a private mount namespace): nothing
# is ever installed on this machine itself. The installed binaries, example config, man pages and bash
# completion are run from that root. No daemon attaches, no sandbox.

load helpers

setup_file() {
	export PKG_OUT=${SM_OUTPUT:-$SM_REPO/.output}
	export PKG_ROOT=$BATS_FILE_TMPDIR/root
	export PKG_LOG=$BATS_FILE_TMPDIR/deb.log
	# The build's outcome is checked by the first test; the others need the
	# package and fail on their own when it is missing.
	make -C "$SM_REPO" --no-print-directory OUTPUT="$PKG_OUT" deb >"$PKG_LOG" 2>&1 || true
	local deb
	deb=$(ls "$PKG_OUT"/deb/sockmesh_*.deb 2>/dev/null | head -n1) || true
	export PKG_DEB=$deb
	if [ -n "$deb" ]; then
		mkdir -p "$PKG_ROOT"
		dpkg -x "$deb" "$PKG_ROOT"
	fi
}

setup() {
	cd "$SM_REPO" || return 1
	DEST=$BATS_TEST_TMPDIR/dest
}

need_deb() {
	[ -n "$PKG_DEB" ] || {
		cat "$PKG_LOG"
		echo "make deb built no package (log above)"
		return 1
	}
}

# What `make install` put under DEST: every file and link, relative.
installed_files() {
	(cd "$1" && find . ! -type d | sed 's|^\./||' | sort)
}

@test "make install DESTDIR PREFIX=/usr: every file in its FHS place; make uninstall removes exactly them" {
	local unitdir
	unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
	run make --no-print-directory OUTPUT="$PKG_OUT" DESTDIR="$DEST" PREFIX=/usr install
	echo "$output"
	[ "$status" -eq 0 ]
	run installed_files "$DEST"
	echo "$output"
	for f in usr/sbin/sockmeshd usr/bin/sockmesh "${unitdir#/}/sockmeshd.service" \
		etc/sockmesh/sockmesh.yaml etc/sockmesh/catalog.yaml \
		usr/share/man/man1/sockmesh.1 usr/share/man/man8/sockmeshd.8 \
		usr/share/man/man5/sockmesh.yaml.5 usr/share/man/man5/sockmesh-catalog.5 \
		usr/share/bash-completion/completions/sockmesh \
		usr/share/doc/sockmesh/operations.md; do
		grep -qx "$f" <<<"$output" || { echo "not installed: $f"; return 1; }
	done
	# nothing in the old places
	[ ! -e "$DEST/usr/bin/sockmeshd" ]
	[ -x "$DEST/usr/sbin/sockmeshd" ] && [ -x "$DEST/usr/bin/sockmesh" ]
	grep -qx 'ExecStart=/usr/sbin/sockmeshd -c /etc/sockmesh/sockmesh.yaml' \
		"$DEST/${unitdir#/}/sockmeshd.service"

	run make --no-print-directory OUTPUT="$PKG_OUT" DESTDIR="$DEST" PREFIX=/usr uninstall
	echo "$output"
	[ "$status" -eq 0 ]
	run installed_files "$DEST"
	echo "left: $output"
	[ -z "$output" ]
	# and no directory of sockmesh's own
	run find "$DEST" -name '*sockmesh*'
	[ -z "$output" ]
}

@test "make install PREFIX=/usr/local: the unit's ExecStart names the binary installed" {
	run make --no-print-directory OUTPUT="$PKG_OUT" DESTDIR="$DEST" PREFIX=/usr/local install
	[ "$status" -eq 0 ]
	local unit=$DEST/usr/local/lib/systemd/system/sockmeshd.service
	[ -f "$unit" ]
	[ -x "$DEST/usr/local/sbin/sockmeshd" ]
	grep -qx 'ExecStart=/usr/local/sbin/sockmeshd -c /etc/sockmesh/sockmesh.yaml' "$unit"
	# the rest of the unit is the one in packaging/
	diff <(grep -v '^ExecStart=\|^Documentation=' packaging/sockmeshd.service) \
		<(grep -v '^ExecStart=\|^Documentation=' "$unit")
	[ -f "$DEST/usr/local/share/man/man8/sockmeshd.8" ]
	grep -qx 'Documentation=man:sockmeshd(8) file:///usr/local/share/doc/sockmesh/operations.md' "$unit"
	[ -f "$DEST/usr/local/share/doc/sockmesh/operations.md" ]
	# and systemd accepts it as installed (verify wants ExecStart's binary to exist)
	if command -v systemd-analyze >/dev/null; then
		sed "s|^ExecStart=/usr/local/sbin/|ExecStart=$DEST/usr/local/sbin/|" "$unit" \
			>"$BATS_TEST_TMPDIR/sockmeshd.service"
		run systemd-analyze verify --man=no "$BATS_TEST_TMPDIR/sockmeshd.service"
		echo "$output"
		[ "$status" -eq 0 ]
		# verify reports some problems without failing
		[[ "$output" != *sockmeshd.service* ]]
	fi
}

@test "make install never overwrites a config; make uninstall keeps an edited one" {
	mkdir -p "$DEST/etc/sockmesh"
	printf 'node: mine\ncatalog: /etc/sockmesh/mine.yaml\n' >"$DEST/etc/sockmesh/sockmesh.yaml"
	run make --no-print-directory OUTPUT="$PKG_OUT" DESTDIR="$DEST" PREFIX=/usr install
	[ "$status" -eq 0 ]
	grep -qx 'node: mine' "$DEST/etc/sockmesh/sockmesh.yaml"
	# the untouched example catalog goes, the operator's config stays (and is named)
	run make --no-print-directory OUTPUT="$PKG_OUT" DESTDIR="$DEST" PREFIX=/usr uninstall
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"/etc/sockmesh/sockmesh.yaml"*"kept"* ]]
	grep -qx 'node: mine' "$DEST/etc/sockmesh/sockmesh.yaml"
	[ ! -e "$DEST/etc/sockmesh/catalog.yaml" ]
	[ ! -e "$DEST/usr/sbin/sockmeshd" ]
}

@test "the example config passes sockmeshd --check; a broken copy of it does not" {
	run "$SOCKMESHD" --check -c packaging/sockmesh.yaml --catalog packaging/catalog.yaml
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"config and catalog are valid"* ]]
	# the check reads the files: a typo in the example is caught
	sed 's/^node:/nodee:/' packaging/sockmesh.yaml >"$BATS_TEST_TMPDIR/bad.yaml"
	run "$SOCKMESHD" --check -c "$BATS_TEST_TMPDIR/bad.yaml" --catalog packaging/catalog.yaml
	[ "$status" -eq 2 ]
}

@test "make deb builds a package that lintian accepts" {
	cat "$PKG_LOG"
	need_deb
	[[ "$PKG_DEB" == */sockmesh_"$(cat VERSION)"_*.deb ]]
	run lintian --fail-on error,warning "$PKG_DEB"
	echo "$output"
	[ "$status" -eq 0 ]
	# no E: or W: line at all (overrides carry their reasons in packaging/debian/)
	run grep -E '^[EW]: ' <<<"$output"
	[ "$status" -eq 1 ]
}

@test "the package: binaries, unit, config as conffiles, man pages, completion, copyright, changelog" {
	need_deb
	run dpkg-deb -f "$PKG_DEB" Package Version
	[ "${lines[0]}" = "Package: sockmesh" ]
	[ "${lines[1]}" = "Version: $(cat VERSION)" ]
	local conffiles
	conffiles=$(dpkg-deb -I "$PKG_DEB" conffiles)
	grep -qx /etc/sockmesh/sockmesh.yaml <<<"$conffiles"
	grep -qx /etc/sockmesh/catalog.yaml <<<"$conffiles"
	for f in usr/sbin/sockmeshd usr/bin/sockmesh lib/systemd/system/sockmeshd.service \
		usr/share/man/man1/sockmesh.1.gz usr/share/man/man8/sockmeshd.8.gz \
		usr/share/man/man5/sockmesh.yaml.5.gz usr/share/man/man5/sockmesh-catalog.5.gz \
		usr/share/bash-completion/completions/sockmesh \
		usr/share/doc/sockmesh/copyright usr/share/doc/sockmesh/changelog.gz \
		usr/share/doc/sockmesh/operations.md; do
		[ -e "$PKG_ROOT/$f" ] || { echo "not in the package: $f"; return 1; }
	done
	zcat "$PKG_ROOT/usr/share/doc/sockmesh/changelog.gz" | head -n1 |
		grep -q "^sockmesh ($(cat VERSION))"
	grep -qx 'ExecStart=/usr/sbin/sockmeshd -c /etc/sockmesh/sockmesh.yaml' \
		"$PKG_ROOT/lib/systemd/system/sockmeshd.service"
}

@test "the installed binaries run: --version, --check on the installed example, sockmesh --help" {
	need_deb
	local version
	version=$(cat VERSION)
	run "$PKG_ROOT/usr/sbin/sockmeshd" --version
	[ "$output" = "sockmeshd $version" ]
	run "$PKG_ROOT/usr/bin/sockmesh" --version
	[ "$output" = "sockmesh $version" ]
	# the example names /etc/sockmesh/catalog.yaml: point it at the unpacked one
	run "$PKG_ROOT/usr/sbin/sockmeshd" --check -c "$PKG_ROOT/etc/sockmesh/sockmesh.yaml" \
		--catalog "$PKG_ROOT/etc/sockmesh/catalog.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"config and catalog are valid"* ]]
	run "$PKG_ROOT/usr/bin/sockmesh" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"Commands:"* ]]
}

@test "every installed man page renders without a warning" {
	need_deb
	local page n=0 err
	for page in "$PKG_ROOT"/usr/share/man/man*/*; do
		err=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >/dev/null)
		[ -z "$err" ] || { echo "$page: $err"; return 1; }
		MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q . || { echo "$page: empty"; return 1; }
		n=$((n + 1))
	done
	[ "$n" -eq 4 ]
}

# The completions bash offers for the words "sockmesh WORD..."; the last word
# is the one being completed ("" for a fresh one).
complete_words() {
	bash --norc -c '
		source "$1" || exit 1
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		fn=$(complete -p sockmesh | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
		[ -n "$fn" ] || exit 1
		"$fn" sockmesh "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"
	' _ "$COMPLETION" sockmesh "$@" | sort -u
}

@test "the bash completion loads and offers exactly the command table's commands and options" {
	need_deb
	COMPLETION=$PKG_ROOT/usr/share/bash-completion/completions/sockmesh
	local table cmd words want got
	table=$("$PKG_ROOT/usr/bin/sockmesh" __commands)
	run bash --norc -c 'source "$1" && complete -p sockmesh' _ "$COMPLETION"
	[ "$status" -eq 0 ]

	want=$(jq -r '.commands[].command | select(. != "" and (contains(" ") | not))' <<<"$table" | sort -u)
	got=$(complete_words "")
	[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got"); return 1; }
	[ "$(complete_words st)" = status ]

	while read -r cmd; do
		read -ra words <<<"$cmd"
		# subcommands of a group
		want=$(jq -r --arg c "$cmd " '.commands[].command | select(startswith($c)) | ltrimstr($c)' \
			<<<"$table" | sort -u)
		if [ -n "$want" ]; then
			got=$(complete_words "${words[@]}" "")
			[ "$got" = "$want" ] || { echo "sockmesh $cmd:"; diff <(echo "$want") <(echo "$got"); return 1; }
		fi
		# every long option, the command's own and the global ones it takes
		want=$(jq -r --arg c "$cmd" '.commands[] | select(.command == $c) | .options[] | "--" + .long' \
			<<<"$table" | sort -u)
		got=$(complete_words "${words[@]}" --)
		[ "$got" = "$want" ] || { echo "sockmesh $cmd --:"; diff <(echo "$want") <(echo "$got"); return 1; }
		# -o offers the command's output formats
		want=$(jq -r --arg c "$cmd" '.commands[] | select(.command == $c) | .formats[]' <<<"$table" | sort -u)
		if [ -n "$want" ]; then
			got=$(complete_words "${words[@]}" -o "")
			[ "$got" = "$want" ] || { echo "sockmesh $cmd -o:"; diff <(echo "$want") <(echo "$got"); return 1; }
		fi
	done < <(jq -r '.commands[].command | select(. != "" and . != "help")' <<<"$table")

	# options before the command are skipped with their values
	[ "$(complete_words -S /run/x.sock pol)" = policy ]
	[ "$(complete_words --timeout 100 policy ap)" = apply ]
	# a FILE argument completes file names
	touch "$BATS_TEST_TMPDIR/pol-one.yaml"
	[ "$(complete_words policy apply -f "$BATS_TEST_TMPDIR/pol-")" = "$BATS_TEST_TMPDIR/pol-one.yaml" ]
	# help names the commands
	[ "$(complete_words help wor)" = workloads ]
}

@test "the package's postinst succeeds without systemd as PID 1 and changes nothing outside" {
	need_deb
	[ ! -d /run/systemd/system ] || skip "systemd runs here: postinst would talk to it"
	local ctl=$BATS_TEST_TMPDIR/control
	dpkg-deb -e "$PKG_DEB" "$ctl"
	[ -x "$ctl/postinst" ]
	# A private mount namespace: empty tmpfs over what deb-systemd-helper
	# writes, and over the unit directory, which gets the package's unit only
	# (as after dpkg unpacked it).
	run unshare -m sh -ec '
		for d in /etc/systemd/system /var/lib/systemd /lib/systemd/system; do
			mkdir -p "$d"
			mount -t tmpfs sockmesh-test "$d"
		done
		cp "$2/lib/systemd/system/sockmeshd.service" /lib/systemd/system/
		export DPKG_MAINTSCRIPT_PACKAGE=sockmesh
		DPKG_MAINTSCRIPT_NAME=postinst "$1/postinst" configure ""
		# not enabled at installation
		[ -z "$(find /etc/systemd/system -name sockmeshd.service)" ]
		[ ! -e "$1/prerm" ] || DPKG_MAINTSCRIPT_NAME=prerm "$1/prerm" remove
		DPKG_MAINTSCRIPT_NAME=postrm "$1/postrm" remove
		DPKG_MAINTSCRIPT_NAME=postrm "$1/postrm" purge
	' _ "$ctl" "$PKG_ROOT"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "dpkg -i on a scratch copy of this machine: installed, runs, dpkg -r keeps the config, dpkg -P removes it" {
	need_deb
	[ ! -d /run/systemd/system ] || skip "systemd runs here: postinst would talk to it"
	! dpkg-query -W sockmesh >/dev/null 2>&1 || skip "sockmesh is installed on this machine"
	# The scratch copy: this machine's / under an overlay whose upper layer is
	# a tmpfs, in a private mount namespace, so dpkg's database, /usr and /etc
	# change only there and vanish with the namespace.
	cat >"$BATS_TEST_TMPDIR/inside.sh" <<-'EOF'
		set -e
		dpkg -i /tmp/sockmesh.deb
		test "$(dpkg-query -W -f='${Status}' sockmesh)" = "install ok installed"
		sockmeshd --version
		sockmeshd --check -c /etc/sockmesh/sockmesh.yaml
		sockmesh --help >/dev/null
		dpkg -r sockmesh
		test ! -e /usr/sbin/sockmeshd && test ! -e /usr/bin/sockmesh
		test -f /etc/sockmesh/sockmesh.yaml # a conffile stays until purge
		dpkg -P sockmesh
		test ! -e /etc/sockmesh/sockmesh.yaml
		echo scratch-install-ok
	EOF
	mkdir "$BATS_TEST_TMPDIR/scratch"
	run unshare -m --propagation private sh -ec '
		t=$1
		mount -t tmpfs sockmesh-test "$t"
		mkdir "$t/u" "$t/w" "$t/m"
		mount -t overlay sockmesh-test -o "lowerdir=/,upperdir=$t/u,workdir=$t/w" "$t/m"
		mount --rbind /dev "$t/m/dev"
		mount --rbind /sys "$t/m/sys" # --check looks for the cgroup v2 mount
		mount -t proc proc "$t/m/proc"
		cp "$2" "$t/m/tmp/sockmesh.deb"
		cp "$3" "$t/m/tmp/inside.sh"
		exec chroot "$t/m" env PATH=/usr/sbin:/usr/bin:/sbin:/bin sh /tmp/inside.sh
	' _ "$BATS_TEST_TMPDIR/scratch" "$PKG_DEB" "$BATS_TEST_TMPDIR/inside.sh"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"sockmeshd $(cat VERSION)"* ]]
	[[ "$output" == *"config and catalog are valid"* ]]
	[[ "$output" == *scratch-install-ok ]]
	# this machine is untouched
	run dpkg-query -W sockmesh
	[ "$status" -ne 0 ]
}

# The keys a YAML example block of a docs page names, as dotted paths.
doc_keys() {
	python3 - "$1" <<-'EOF'
		import re, sys
		text = open(sys.argv[1]).read()
		block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
		keys, stack = set(), []
		for line in block.splitlines():
		    m = re.match(r"^(\s*)(- )?([a-z_0-9]+):", line)
		    if not m:
		        continue
		    indent = len(m.group(1)) + (2 if m.group(2) else 0)
		    while stack and stack[-1][0] >= indent:
		        stack.pop()
		    path = ".".join([s[1] for s in stack] + [m.group(3)])
		    keys.add(path)
		    stack.append((indent, m.group(3)))
		# the leaves: a key with keys below it is a section, not a setting
		leaves = [k for k in keys if not any(o.startswith(k + ".") for o in keys)]
		print("\n".join(sorted(leaves)))
	EOF
}

# The keys a section 5 page documents: its .TP tags that are .B KEY lines
# (a list's members written LIST[].KEY).
man_keys() {
	awk '/^\.TP/ { getline; if ($1 == ".B") { gsub(/\[\]/, "", $2); print $2 } }' "$1" | sort -u
}

@test "sockmesh.yaml(5) and sockmesh-catalog(5) document exactly the keys of the docs pages" {
	diff <(doc_keys docs/configuration.md) <(man_keys docs/man/sockmesh.yaml.5)
	diff <(doc_keys docs/catalog.md) <(man_keys docs/man/sockmesh-catalog.5)
}

# The EXAMPLES section of a man page as plain text, its indent removed.
man_example() {
	MANWIDTH=200 man -l "$1" 2>/dev/null | sed -n '/^EXAMPLES/,/^SEE ALSO/p' | sed '1d;$d' |
		sed 's/^       //'
}

@test "the examples of sockmesh.yaml(5) and sockmesh-catalog(5) pass sockmeshd --check" {
	local d=$BATS_TEST_TMPDIR
	man_example docs/man/sockmesh.yaml.5 >"$d/config.yaml"
	man_example docs/man/sockmesh-catalog.5 >"$d/catalog.yaml"
	grep -q '^node: ' "$d/config.yaml"
	grep -q '^nodes:' "$d/catalog.yaml"
	run "$SOCKMESHD" --check -c "$d/config.yaml" --catalog "$d/catalog.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"config and catalog are valid: node node1, 2 nodes, 1 workloads, 1 services"* ]]
}
