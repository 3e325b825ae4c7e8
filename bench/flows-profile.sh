#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The flow export's CPU profile by function group: reads a perf.data of the
# daemon (perf record -g -p PID, as bench/flows.sh --storm --profile makes)
# and prints each group's share of the samples (self time, every thread):
#   ring-buffer consume  libbpf's ring reader and the event callback
#   flow join/record     turning an event into a record (catalog, joins, deltas)
#   JSON encoding        json-c building and printing the record
#   live stream          the `sockmesh flows` ring (flowstream.c)
#   sinks/write          filters, the queue, the writer thread, zlib
#   metrics              the flow metrics (flowobs, metrics_agg)
#   malloc/free          the C library's allocator
#   kernel               every sample in the kernel (syscalls, wakeups, TCP)
#   other                the rest (named with the biggest of them)
# Usage: bench/flows-profile.sh PERF_DATA [--top N]  (N: also the N biggest functions)
set -euo pipefail

[ $# -ge 1 ] || { sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
data=$1
top=0
[ "${2:-}" = --top ] && top=${3:-15}

# "percent dso symbol" per line, self time
perf report -i "$data" --no-children --sort dso,sym -g none --stdio --percent-limit 0 2>/dev/null |
	awk '/^ +[0-9.]+%/ {
		pct = $1; sub("%", "", pct); dso = $2; sym = ""
		for (i = 4; i <= NF; i++) sym = sym (i > 4 ? " " : "") $i
		print pct "\t" dso "\t" sym
	}' | awk -F'\t' -v top="$top" '
	function group(dso, sym) {
		if (dso ~ /kernel/ || sym ~ /^0x/ && dso ~ /unknown/) return "kernel"
		if (sym ~ /^(ring_buffer__|ringbuf_process|ring__|on_flow_event|flow_drain|on_ringbuf|on_more)/) return "ring-buffer consume"
		if (dso ~ /json-c/ || sym ~ /^(json_|printbuf_|lh_|sm_flow_record_to_json|sm_flow_record_encode|encode_|add_|add$|sm_flow_json)/) return "JSON encoding"
		if (sym ~ /^(record_from|endpoint_fill|service_workload|tunnel_join|join_apply|sm_tunnel_fact|sm_flowjoins|sm_workload|sm_catalog|sm_intern|counters_sub|plaintext_tls|tunnel_tls|sm_policy)/) return "flow join/record"
		if (sym ~ /^(sm_flowstream|fs_)/) return "live stream"
		if (dso ~ /libz/ || sym ~ /^(sm_sinks|queue_push|encode_line|writer_|out_|file_|batch_room|line_done|tail_|compress|gz|deflate|crc32|sm_flowfilter)/) return "sinks/write"
		if (sym ~ /^(sm_flow_observe|sm_metrics|metrics_|sm_mx|mx_|agg_)/) return "metrics"
		if (sym ~ /^(malloc|free|calloc|realloc|_int_malloc|_int_free|cfree|__libc_malloc|__libc_free|malloc_consolidate|unlink_chunk|tcache|__GI___libc_malloc|__GI___libc_free)/) return "malloc/free"
		return "other"
	}
	{
		g = group($2, $3); share[g] += $1; total += $1
		if (g == "other" && $1 > biggest_pct) { biggest_pct = $1; biggest = $3 " (" $2 ")" }
		if (top > 0 && NR <= top) lines[NR] = sprintf("    %6.2f%%  %-20s %s", $1, g, $3)
	}
	END {
		n = split("ring-buffer consume,flow join/record,JSON encoding,live stream,sinks/write,metrics,malloc/free,kernel,other", order, ",")
		for (i = 1; i <= n; i++)
			printf "  %-20s %5.1f%%%s\n", order[i], share[order[i]], order[i] == "other" && biggest != "" ? "  (biggest: " biggest ")" : ""
		if (top > 0) {
			print "  the biggest functions:"
			for (i = 1; i <= top && i in lines; i++) print lines[i]
		}
	}'
