#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Workloads named by systemd unit (docs/catalog.md#workloads-named-by-systemd-unit):
# `unit: web.service` is the cgroup systemd gives that unit, system.slice/web.service,
# and `slice:` puts it elsewhere (system-shop-api.slice nests as
# system.slice/system-shop.slice/system-shop-api.slice). The machines here do
# not run systemd as PID 1, so node1 gets a systemd-style hierarchy of its own:
# its daemon takes the sandbox's node cgroup as the cgroup v2 mount
# (--cgroup-root), with the enrollment root at system.slice below it, as the
# packaged unit has on a systemd host. A "restart" is what systemd does: kill
# the unit's processes, remove its cgroup, create it anew, start a new process.
#
# Sandbox: two nodes; node1 hosts the unit workloads web (web.service) and api
# (api.service in system-shop-api.slice), neither cgroup existing when the
# daemon starts; node2 hosts server (a cgroup path) with echo on 8080 and 8081;
# node1's policy denies api -> server on 8081.

load helpers

SMCHURN=${SMCHURN:-$SB_OUTPUT/tools/smchurn}

setup() {
	sm_sandbox 2
	sb_add_workload node1 web "$SM_CLIENT_ID"
	sb_add_workload node1 api "$SM_LOCAL_ID"
	sb_add_workload node2 server "$SM_SERVER_ID"
	sb_add_service 10.11.0.2 8080 server echo
	sb_add_service 10.11.0.2 8081 server greet
	sb_write_catalog
	# web and api by unit instead of by path (their PKI entries stay: same names)
	sed -i -e "s|^    cgroup: sockmesh-test-$SB_ID/node1/web\$|    unit: web.service|" \
		-e "s|^    cgroup: sockmesh-test-$SB_ID/node1/api\$|    unit: api.service\\n    slice: system-shop-api.slice|" \
		"$(sb_catalog)"
	rmdir "$SB_CG/node1/web" "$SB_CG/node1/api"
	cat "$(sb_catalog)"
	grep -q '^    unit: web.service$' "$(sb_catalog)"
	grep -q '^    slice: system-shop-api.slice$' "$(sb_catalog)"

	HOST=$SB_CG/node1 # the fake host's cgroup v2 root, systemd's -.slice
	WEB=$HOST/system.slice/web.service
	API=$HOST/system.slice/system-shop.slice/system-shop-api.slice/api.service
	mkdir -p "$HOST/system.slice"
	sb_start_daemon node1 --cgroup-root "$HOST" --daemon-cgroup "$HOST/daemon" \
		--enrollment-root "$HOST/system.slice"
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 server 10.11.0.2:8081 echo
	cat >"$SB_DIR/deny.yaml" <<EOF2
policies:
  - name: no-greet-for-api
    selector:
      spiffe: $SM_SERVER_ID
    rules:
      - action: DENY
        from: ["$SM_LOCAL_ID"]
        ports: [8081]
EOF2
	sb_cli node1 policy apply -f "$SB_DIR/deny.yaml"
}

teardown() {
	sm_teardown
}

# loop N: connect to server's echo N times, 10 ms apart, one smtraffic process each.
LOOP='i=0; while [ $i -lt "$1" ]; do "$2" send --connect 10.11.0.2:8080 --bytes 64 --timeout 10 || echo FAIL; i=$((i + 1)); sleep 0.01; done'

# Local ports of the connections in smtraffic output file $1, sorted.
ports_of() {
	jq -r '.local' "$1" | sed 's/.*://' | sort -n
}

# Ports of node1's captured conn_end records of workload $1 from cgroup id $2, sorted,
# one per connection: a port the loopback reuses is listed once per connection.
recorded_ports() {
	[ -f "$(sb_flowlog node1)" ] || return 0
	jq -r --arg w "$1" --argjson id "$2" 'select(.type == "conn_end" and
		.traffic_direction == "EGRESS" and .source.workload == $w and .captured == true and
		.cgroup_id == $id and .tls.encrypted == true) | .source.port' "$(sb_flowlog node1)" |
		sort -n
}

# lines_at_least FILE N: FILE holds N connections' lines or more.
lines_at_least() {
	[ "$(grep -c local "$1")" -ge "$2" ]
}

# every_port_recorded FILE WORKLOAD CGROUP_ID: no connection of FILE without its record
# (comm matches the two sorted lists line by line, repeated ports included).
every_port_recorded() {
	[ -z "$(comm -23 <(ports_of "$1") <(recorded_ports "$2" "$3"))" ]
}

@test "a unit whose cgroup does not exist yet is listed, and enrolled once systemd creates it" {
	sb_cli node1 workloads -o json | jq -e '
		(.[] | select(.name == "web") | .unit == "web.service" and .slice == null and
			.cgroup == "system.slice/web.service" and .enrolled == true and .cgroup_id == 0),
		(.[] | select(.name == "api") | .unit == "api.service" and
			.slice == "system-shop-api.slice" and
			.cgroup == "system.slice/system-shop.slice/system-shop-api.slice/api.service"),
		(.[] | select(.name == "server") | .unit == null and .slice == null)'
	run sb_cli node1 workloads
	echo "$output"
	[[ "$output" == *UNIT* && "$output" == *" web.service "*system.slice/web.service* ]]

	# systemd starts the unit: its cgroup, then its process
	mkdir "$WEB"
	run sm_send node1 system.slice/web.service 10.11.0.2:8080 3000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	id=$(stat -c %i "$WEB")
	rec=$(sm_wait_record node1 "$(sm_egress_port "$port") and .type == \"conn_end\"")
	echo "$rec"
	jq -e --arg c "$SM_CLIENT_ID" --argjson id "$id" '.source.workload == "web" and
		.source.spiffe_id == $c and .source.cgroup == "system.slice/web.service" and
		.cgroup_id == $id and .captured == true and .tls.encrypted == true' <<<"$rec"
	sb_cli node1 workloads -o json | jq -e --argjson id "$id" \
		'.[] | select(.name == "web") | .cgroup_id == $id'
}

@test "a unit restarted while it connects every 10 ms: every connection of the new process is captured" {
	mkdir "$WEB"
	old=$(stat -c %i "$WEB")
	sb_run node1 system.slice/web.service sh -c "$LOOP" sh 3000 "$SMTRAFFIC"
	old_pid=$SB_RUN_PID
	old_out=$SB_RUN_OUT
	sm_wait_until 60 lines_at_least "$old_out" 20

	# systemctl restart web: kill the unit's processes, remove and recreate its cgroup
	echo 1 >"$WEB/cgroup.kill"
	sb_wait_pid "$old_pid" 20 || [ "$SB_LAST_RC" -ne 124 ]
	sm_wait_until 10 rmdir "$WEB"
	mkdir "$WEB"
	new=$(stat -c %i "$WEB")
	[ "$new" -ne "$old" ]
	sb_run node1 system.slice/web.service sh -c "$LOOP" sh 200 "$SMTRAFFIC"
	sb_wait_pid "$SB_RUN_PID" 300
	[ "$SB_LAST_RC" -eq 0 ]
	new_out=$SB_RUN_OUT

	# all 200 went through, and each has its captured, encrypted record under the new cgroup
	! grep FAIL "$new_out"
	[ "$(ports_of "$new_out" | wc -l)" -eq 200 ]
	if ! sm_wait_until 30 every_port_recorded "$new_out" web "$new"; then
		missing=$(comm -23 <(ports_of "$new_out") <(recorded_ports web "$new"))
		echo "connections without their record: $(wc -w <<<"$missing") of 200: $missing"
		for p in $(head -n 3 <<<"$missing"); do
			grep "\"port\":$p," "$(sb_flowlog node1)" || echo "port $p: no record"
		done
		false
	fi
	# the old process's connections were the unit's too, under the old cgroup id
	[ -n "$(recorded_ports web "$old")" ]
}

@test "a unit in a nested slice: captured and policed from the first connect of each restart" {
	denied=$(sm_counter node1 policy_denied)
	captured=$(sm_counter node1 connect_captured)
	mkdir -p "$(dirname "$API")" # the slices; smchurn makes and remakes the unit
	run sb_exec node1 driver "$SMCHURN" --timeout 300 --cgroup "$API" --count 1000 \
		--deny 10.11.0.2:8081 --capture 10.11.0.2:8080
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.attempts == 1000 and .escapes == 0 and .errors == 0' <<<"$output"
	[ "$(sm_counter node1 policy_denied)" -ge $((denied + 1000)) ]
	[ "$(sm_counter node1 connect_captured)" -ge $((captured + 1000)) ]

	mkdir -p "$API"
	run sm_send node1 system.slice/system-shop.slice/system-shop-api.slice/api.service \
		10.11.0.2:8080 3000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node1 "$(sm_egress_port "$port") and .type == \"conn_end\"")
	echo "$rec"
	jq -e --arg id "$SM_LOCAL_ID" '.source.workload == "api" and .source.spiffe_id == $id and
		.captured == true and .tls.encrypted == true' <<<"$rec"
	# a sibling slice's unit of the same name is not api
	mkdir -p "$HOST/system.slice/system-shop.slice/api.service"
	before=$(sm_counter node1 connect_unenrolled)
	run sm_send node1 system.slice/system-shop.slice/api.service 10.11.0.2:8081 100 --timeout 3
	[ "$(sm_counter node1 connect_unenrolled)" -gt "$before" ]
}

# web_workload_cgroup: the cgroup node1 lists for web now.
web_workload_cgroup() {
	sb_cli node1 workloads -o json | jq -r '.[] | select(.name == "web") | .cgroup'
}

@test "a unit's slice: corrected on SIGHUP: its cgroup there is the workload, the old place no more" {
	# the unit file says Slice=system-web.slice; the catalog forgot it
	mkdir -p "$WEB" "$HOST/system.slice/system-web.slice/web.service"
	before=$(sm_counter node1 connect_unenrolled)
	run sm_send node1 system.slice/system-web.slice/web.service 10.11.0.2:8080 100 --timeout 3
	[ "$(sm_counter node1 connect_unenrolled)" -gt "$before" ]

	sed -i 's|^    unit: web.service$|    unit: web.service\n    slice: system-web.slice|' \
		"$(sb_catalog)"
	kill -HUP "$(sb_daemon_pid node1)"
	sm_wait_until 10 grep -q 'SIGHUP: catalog reloaded' "$(sb_daemon_log node1)"
	[ "$(web_workload_cgroup)" = system.slice/system-web.slice/web.service ]

	run sm_send node1 system.slice/system-web.slice/web.service 10.11.0.2:8080 3000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node1 "$(sm_egress_port "$port") and .type == \"conn_end\"")
	echo "$rec"
	jq -e '.source.workload == "web" and .captured == true and
		.source.cgroup == "system.slice/system-web.slice/web.service"' <<<"$rec"
	before=$(sm_counter node1 connect_unenrolled)
	run sm_send node1 system.slice/web.service 10.11.0.2:8080 100 --timeout 3
	[ "$(sm_counter node1 connect_unenrolled)" -gt "$before" ]
}

@test "a bad unit, or a unit outside the enrollment root, is refused naming the workload and the fix" {
	bad=$SB_DIR/bad.yaml
	sed 's|^    unit: web.service$|    unit: web|' "$(sb_catalog)" >"$bad"
	run sb_exec node1 daemon "$SOCKMESHD" --check -c "$(sb_config node1)" --catalog "$bad" \
		--node node1
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"bad.yaml:"*"workload 'web': unit 'web': it has no type (write the full name, e.g. web.service)"* ]]

	sed 's|^    unit: web.service$|    unit: web.service\n    slice: web.slice|' \
		"$(sb_catalog)" >"$bad"
	run sb_exec node1 daemon "$SOCKMESHD" --check -c "$(sb_config node1)" --catalog "$bad" \
		--node node1 --cgroup-root "$HOST" --enrollment-root "$HOST/system.slice"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"workload web: cgroup $HOST/web.slice/web.service is not below the enrollment root $HOST/system.slice"*paths.enrollment_root* ]]
}
