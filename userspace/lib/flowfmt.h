/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow records as text for people and for other tools: the compact line of
 * `sockmesh flows` (docs/cli.md), the AWS VPC flow log v2 projection
 * (docs/flow-schema.md, "VPC projection"), the live stream's "skipped" notice
 * (docs/interfaces.md) and the times `--since` takes.
 *
 * Formatters write into buf[len] like snprintf: always NUL-terminated, and
 * they return the length the whole text needs (a return >= len means it was
 * cut), or -EINVAL for a record they cannot show (an unknown type).
 * SM_FLOWFMT_MAX always suffices.
 */
#ifndef SOCKMESH_FLOWFMT_H
#define SOCKMESH_FLOWFMT_H

#include <stddef.h>
#include <stdint.h>

#include "flow_record.h"

#define SM_FLOWFMT_MAX 2048

/* The first line of the VPC projection: AWS's default format, version 2. */
#define SM_FLOWFMT_VPC_HEADER                                                                      \
	"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "  \
	"start end action log-status"

/* Why the stream could not deliver records (the notice's "reason"). */
#define SM_SKIPPED_SLOW_READER "slow_reader" /* matched, but the reader's buffer was full */
#define SM_SKIPPED_DAEMON_BUSY "daemon_busy" /* dropped before filtering: main loop behind */

/*
 * The stream's notice that records are missing at this point of the stream:
 * {"skipped":N,"reason":"slow_reader","time":"...","node":"node1"}.
 * It is not a flow record (no "version", no "type").
 */
struct sm_flow_skipped {
	uint64_t count;
	char reason[32];
	int64_t time_ns; /* CLOCK_REALTIME, ns: when the daemon wrote the notice */
	char node[64];
};

/*
 * "<time> <node>: <src> -> <dst> <VERDICT> <drop reason or type> <direction>
 * <bytes src→dst>/<bytes dst→src> B"; denied records have no bytes, lost
 * records list their non-zero counts. No newline. Control characters in
 * names are shown as '?'.
 */
int sm_flowfmt_compact(const struct sm_flow_record *r, char *buf, size_t len);
int sm_flowfmt_compact_skipped(const struct sm_flow_skipped *s, char *buf, size_t len);

/*
 * VPC flow log v2 lines, each ending in '\n': connection records give two
 * (source → destination, then destination → source, as AWS logs each
 * direction), denied records one, lost records one SKIPDATA line.
 */
int sm_flowfmt_vpc(const struct sm_flow_record *r, char *buf, size_t len);
int sm_flowfmt_vpc_skipped(const struct sm_flow_skipped *s, char *buf, size_t len);

/* The notice as one JSON line ending in '\n'; malloc'ed, NULL and errno on failure. */
char *sm_flow_skipped_encode(const struct sm_flow_skipped *s);
/* 0 when line is a notice (filling s), -EINVAL when it is anything else. */
int sm_flow_skipped_decode(const char *line, struct sm_flow_skipped *s);

/*
 * An RFC 3339 time ("2026-11-29T20:01:02Z", optional fraction up to ns,
 * "Z" or a "+HH:MM"/"-HH:MM" offset, 'T' or a space between date and time)
 * to ns since the epoch. 0 or -EINVAL (also for dates that do not exist and
 * times before 1970).
 */
int sm_flowfmt_parse_time(const char *text, int64_t *ns);
/*
 * What `--since` takes: an RFC 3339 time, or a duration before now_ns made of
 * NUMBER UNIT parts with units ms, s, m, h, d ("30s", "5m", "1h30m"). 0 or
 * -EINVAL (-ERANGE when the duration reaches before the epoch).
 */
int sm_flowfmt_parse_since(const char *text, int64_t now_ns, int64_t *ns);

#endif /* SOCKMESH_FLOWFMT_H */
