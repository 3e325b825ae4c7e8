#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The flow export's CPU profile by function group: reads a perf.data of the
# daemon recorded with call graphs (perf record --call-graph dwarf -p PID, as
# bench/flows.sh --storm --profile makes) and prints each group's share of
# the samples, every thread together. A sample belongs to the group of the
# first function on its stack, from the leaf up, that names one; so the C
# library's malloc, printf or memcpy count for whoever called them, and the
# kernel's time for the code that made the system call or took the fault
# (its part is shown apart, the "in kernel" column):
#   ring-buffer consume  libbpf's ring reader and the event callback itself
#   flow join/record     an event made a record (catalog, joins, deltas)
#   JSON encoding        json-c building and printing the record
#   live stream          the `sockmesh flows` ring (flowstream.c)
#   sinks/write          filters, the queue, the writer thread, gzip
#   metrics              the flow metrics (flowobs, metrics_agg)
#   main loop, timers    the event loop, the once-a-second tick and iterator
#   other                the rest (its biggest function named)
# Usage: bench/flows-profile.sh PERF_DATA [CPU_S EVENTS]
#   with the daemon's CPU seconds and the events it handled meanwhile, also
#   each group's microseconds per event
set -euo pipefail

[ $# -eq 1 ] || [ $# -eq 3 ] || { sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

perf script -i "$1" -F comm,tid,ip,sym,dso 2>/dev/null | awk -v cpu="${2:-0}" -v events="${3:-0}" '
function group(sym, dso) {
	if (sym ~ /^(sm_flow_record_to_json|sm_flow_record_encode|encode_|add_|add$|sm_flow_json_mask|mask_object)/ || dso ~ /json-c/) return "JSON encoding"
	if (sym ~ /^(record_from|endpoint_fill|service_workload|tunnel_join|join_apply|sm_tunnel_fact|sm_flowjoins|sm_workload|sm_catalog|sm_intern|counters_sub|plaintext_tls|tunnel_tls|sm_policy)/) return "flow join/record"
	if (sym ~ /^(sm_flowstream|fs_)/) return "live stream"
	if (sym ~ /^(sm_sinks|queue_push|encode_line|writer_|out_|file_|batch_room|line_done|tail_|compress|sm_flowfilter)/ || dso ~ /libz/) return "sinks/write"
	if (sym ~ /^(sm_flow_observe|sm_metrics|metrics_|mx_)/) return "metrics"
	if (sym ~ /^(on_flow_event|ring_buffer__|ringbuf_process|flow_drain|on_ringbuf|on_more)/ || (dso ~ /libbpf/ && sym == "[unknown]")) return "ring-buffer consume"
	if (sym ~ /^(sm_evloop|on_tick|sm_datapath|sm_flowexp_check_lost|sm_hbone_tick|sm_workloads_refresh|sm_tunnel_facts_sweep)/) return "main loop, timers"
	return ""
}
function flush(   i, g, leaf, kern) {
	if (!n) return
	total++
	kern = dsos[1] ~ /kernel/
	for (i = 1; i <= n && g == ""; i++) g = group(syms[i], dsos[i])
	if (g == "") { g = "other"; leaf = syms[1] " (" dsos[1] ")"; other[leaf]++ }
	share[g]++
	if (kern) inkern[g]++
	n = 0
}
/^[^ \t]/ { flush(); next }
/^$/ { flush(); next }
{
	sym = $2; dso = $NF; gsub(/[()]/, "", dso); sub(/\+0x[0-9a-f]+$/, "", sym)
	n++; syms[n] = sym; dsos[n] = dso
}
END {
	flush()
	if (!total) { print "  no samples"; exit }
	for (k in other) if (other[k] > best) { best = other[k]; bestk = k }
	per = events > 0 ? cpu * 1e6 / events : 0
	printf "  %-20s %7s %10s%s\n", "group", "share", "in kernel", per ? "  us/event" : ""
	m = split("ring-buffer consume,flow join/record,JSON encoding,live stream,sinks/write,metrics,main loop,timers,other", order, ",")
	for (i = 1; i <= m; i++) {
		g = order[i]
		if (g == "main loop") { g = "main loop, timers"; i++ }
		printf "  %-20s %6.1f%% %9.1f%%%s%s\n", g, 100 * share[g] / total, 100 * inkern[g] / total,
			per ? sprintf("  %9.2f", per * share[g] / total) : "",
			g == "other" && bestk != "" ? sprintf("  (biggest: %s, %.1f%%)", bestk, 100 * best / total) : ""
	}
	printf "  (%d samples%s)\n", total, per ? sprintf("; %.2f us per event in all", per) : ""
}'
