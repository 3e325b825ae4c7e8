// SPDX-License-Identifier: Apache-2.0
/*
 * Flow-log sink throughput (bench/flows.sh runs it; not a test): one thread
 * emits typical conn_end records through the daemon's sinks (userspace/lib/
 * sinks.c) into a file with rotation and gzip backups, and the JSON line it
 * prints says how many records per second were written and how many the
 * queue dropped.
 *
 *   flowsink-bench --dir DIR [--seconds S] [--rate R] [--max-size BYTES]
 *                  [--backups N] [--no-compress]
 *
 * Without --rate the emitter runs flat out but never overfills the queue
 * (it yields while the queue is more than half full), so records/s is what
 * the writer sustains; with --rate it emits R records/s on a fixed schedule,
 * as the daemon's threads would, and queue_dropped says whether the sinks
 * kept up.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "config.h"
#include "flow_record.h"
#include "log.h"
#include "sinks.h"

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A conn_end as a same-node connection between two workloads produces it. */
static void make_record(struct sm_flow_record *r, uint64_t i)
{
	memset(r, 0, sizeof(*r));
	r->type = SM_REC_CONN_END;
	r->time_ns = 1764460800000000000LL + (int64_t) i * 1000;
	r->start_ns = r->time_ns - 2500000;
	r->duration_us = 2500;
	strcpy(r->node, "node1");
	r->verdict = SM_VERDICT_FORWARDED;
	r->direction = SM_DIR_EGRESS;
	sm_addr_parse("10.11.0.1", &r->source.addr);
	sm_addr_parse("10.11.0.2", &r->destination.addr);
	r->source.port = (uint16_t) (32768 + i % 28000);
	r->destination.port = 8080;
	r->source.identity = 256;
	r->destination.identity = 257;
	r->source.spiffe_id = sm_intern("spiffe://bench.test/ns/prod/sa/client");
	r->destination.spiffe_id = sm_intern("spiffe://bench.test/ns/prod/sa/server");
	r->source.workload = sm_intern("client");
	r->destination.workload = sm_intern("server");
	r->source.node = sm_intern("node1");
	r->destination.node = sm_intern("node2");
	r->captured = true;
	r->cookie = 4096 + i;
	r->cgroup_id = 12345;
	r->total = (struct sm_flow_counters){1234567, 890, 40, 900};
	r->delta = r->total;
	r->srtt_us = 57;
	snprintf(r->trace_id, sizeof(r->trace_id), "%032" PRIx64, (uint64_t) (i * 2654435761ULL));
	r->tls.present = true;
	strcpy(r->tls.mode, "STRICT");
	r->tls.encrypted = true;
	strcpy(r->tls.version, "TLSv1.3");
	strcpy(r->tls.cipher, "TLS_AES_128_GCM_SHA256");
	r->tls.peer_spiffe_id = r->destination.spiffe_id;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: flowsink-bench --dir DIR [--seconds S] [--rate R] [--max-size BYTES]\n"
		   "                      [--backups N] [--no-compress]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"seconds", required_argument, NULL, 's'},
		{"rate", required_argument, NULL, 'r'},
		{"max-size", required_argument, NULL, 'm'},
		{"backups", required_argument, NULL, 'b'},
		{"no-compress", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t seconds = 5, rate = 0, i = 0;
	const char *dir = NULL;
	struct sm_config *cfg = calloc(1, sizeof(*cfg));
	struct sm_error err = {{0}};
	struct sm_sinks_stats st;
	struct sm_flow_record r;
	struct sm_sinks *s;
	int64_t t0, t1, end;
	double cpu0, cpu1;
	int c;

	if (!cfg)
		return 1;
	sm_config_defaults(cfg);
	sm_log_set_ident("flowsink-bench");
	while ((c = getopt_long(argc, argv, "d:s:r:m:b:nh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 's':
			if (sm_parse_u64(optarg, 1, 3600, &seconds))
				return 2;
			break;
		case 'r':
			if (sm_parse_u64(optarg, 1, 100000000, &rate))
				return 2;
			break;
		case 'm':
			if (sm_config_set(cfg, "flowlog.max_size", optarg, &err)) {
				fprintf(stderr, "%s\n", err.msg);
				return 2;
			}
			break;
		case 'b':
			if (sm_config_set(cfg, "flowlog.max_backups", optarg, &err)) {
				fprintf(stderr, "%s\n", err.msg);
				return 2;
			}
			break;
		case 'n':
			cfg->flowlog_compress = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!dir) {
		usage(stderr);
		return 2;
	}
	snprintf(cfg->flowlog_file, sizeof(cfg->flowlog_file), "%s/flows.jsonl", dir);
	s = sm_sinks_new(cfg, &err);
	if (!s) {
		fprintf(stderr, "flowsink-bench: %s\n", err.msg);
		return 1;
	}
	cpu0 = cpu_s();
	t0 = now_ns();
	end = t0 + (int64_t) seconds * 1000000000LL;
	for (;;) {
		int64_t t = now_ns();

		if (t >= end)
			break;
		if (rate) {
			/* the schedule: record i is due at t0 + i/rate */
			int64_t due = t0 + (int64_t) (i * 1000000000ULL / rate);

			if (t < due) {
				if (due - t > 200000)
					sched_yield();
				continue;
			}
		} else if ((i & 255) == 0) {
			sm_sinks_stats(s, &st);
			while (st.queued > 8192 && now_ns() < end) {
				sched_yield();
				sm_sinks_stats(s, &st);
			}
		}
		make_record(&r, i++);
		sm_sinks_write(s, &r, NULL);
	}
	sm_sinks_flush(s, 60000);
	t1 = now_ns();
	cpu1 = cpu_s();
	sm_sinks_stats(s, &st);
	printf("{\"emitted\":%" PRIu64 ",\"written\":%" PRIu64 ",\"queue_dropped\":%" PRIu64
	       ",\"rotations\":%" PRIu64 ",\"compressed\":%" PRIu64 ",\"write_errors\":%" PRIu64
	       ",\"seconds\":%.3f,\"records_per_s\":%.0f,\"cpu_s\":%.3f}\n",
	       i, st.written, st.queue_dropped, st.rotations, st.compressed, st.write_errors,
	       (double) (t1 - t0) / 1e9, (double) st.written * 1e9 / (double) (t1 - t0),
	       cpu1 - cpu0);
	sm_sinks_free(s);
	free(cfg);
	return 0;
}
