// SPDX-License-Identifier: Apache-2.0
/* Flow records as compact lines and VPC flow log lines, the stream's notice, and --since times. */
#include "flowfmt.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "sockmesh/common.h"

#define NS_PER_S 1000000000LL

/* snprintf-style accumulation: need grows past len when the text does not fit. */
struct fmt_out {
	char *buf;
	size_t len;
	size_t need;
};

static void fmt_init(struct fmt_out *o, char *buf, size_t len)
{
	o->buf = buf;
	o->len = len;
	o->need = 0;
	if (len)
		buf[0] = '\0';
}

static void put(struct fmt_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct fmt_out *o, const char *fmt, ...)
{
	bool room = o->need < o->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug, ap is va_start'ed
	n = vsnprintf(room ? o->buf + o->need : NULL, room ? o->len - o->need : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->need += (size_t) n;
}

/* Text from a record, with control characters (a terminal's escapes) shown as '?'. */
static void put_clean(struct fmt_out *o, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char) *s;

		if (o->need + 1 < o->len) {
			o->buf[o->need] = (char) (c < 0x20 || c == 0x7f ? '?' : c);
			o->buf[o->need + 1] = '\0';
		}
		o->need++;
	}
}

static int fmt_done(const struct fmt_out *o)
{
	return o->need > (size_t) INT32_MAX ? INT32_MAX : (int) o->need;
}

/* "2026-11-29T20:01:02.123Z": UTC, milliseconds. */
static void put_time_ms(struct fmt_out *o, int64_t ns)
{
	time_t sec = (time_t) (ns / NS_PER_S);
	struct tm tm;

	if (ns < 0 || !gmtime_r(&sec, &tm)) {
		put(o, "-");
		return;
	}
	put(o, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, (int) ((ns % NS_PER_S) / 1000000));
}

/* "10.11.0.1:40000 (client)", "[fc42::1]:41000 (world)". */
static void put_endpoint(struct fmt_out *o, const struct sm_flow_endpoint *ep)
{
	char ip[64];

	sm_addr_format(&ep->addr, ip, sizeof(ip));
	put(o, ep->addr.family == AF_INET6 ? "[%s]:%u (" : "%s:%u (", ip, (unsigned int) ep->port);
	if (!sm_str_empty(ep->workload))
		put_clean(o, ep->workload);
	else if (!sm_str_empty(ep->spiffe_id))
		put_clean(o, ep->spiffe_id);
	else if (ep->identity == SM_ID_WORLD)
		put(o, "world");
	else if (ep->identity == SM_ID_HOST)
		put(o, "host");
	else
		put(o, "identity %u", ep->identity);
	put(o, ")");
}

static bool is_connection(const struct sm_flow_record *r)
{
	return r->type == SM_REC_CONN_START || r->type == SM_REC_CONN_UPDATE ||
	       r->type == SM_REC_CONN_END || r->type == SM_REC_DENIED;
}

int sm_flowfmt_compact(const struct sm_flow_record *r, char *buf, size_t len)
{
	struct fmt_out o;
	bool egress = r->direction == SM_DIR_EGRESS;

	fmt_init(&o, buf, len);
	if (r->type != SM_REC_LOST && !is_connection(r))
		return -EINVAL;
	put_time_ms(&o, r->time_ns);
	put(&o, " ");
	put_clean(&o, r->node);
	put(&o, ": ");
	if (r->type == SM_REC_LOST) {
		static const char *const names[] = {"ringbuf", "orig_dst", "storage", "sockhash"};
		const uint64_t counts[] = {r->lost_ringbuf, r->lost_orig_dst, r->lost_storage,
					   r->lost_sockhash};
		const char *sep = "";

		put(&o, "LOST");
		for (size_t i = 0; i < SM_ARRAY_SIZE(names); i++) {
			if (!counts[i])
				continue;
			put(&o, "%s %s %llu", sep, names[i], (unsigned long long) counts[i]);
			sep = ",";
		}
		put(&o, " (events the kernel could not report)");
		return fmt_done(&o);
	}
	put_endpoint(&o, &r->source);
	put(&o, " -> ");
	put_endpoint(&o, &r->destination);
	put(&o, " %s ", sm_verdict_name(r->verdict));
	if (r->drop_reason[0])
		put_clean(&o, r->drop_reason);
	else
		put(&o, "%s", sm_flow_record_type_name(r->type));
	put(&o, " %s", egress ? "egress" : "ingress");
	/* the counters are the reporting socket's: turn them into source → destination */
	if (r->type != SM_REC_DENIED)
		put(&o, " %llu/%llu B",
		    (unsigned long long) (egress ? r->total.bytes_sent : r->total.bytes_received),
		    (unsigned long long) (egress ? r->total.bytes_received : r->total.bytes_sent));
	return fmt_done(&o);
}

int sm_flowfmt_compact_skipped(const struct sm_flow_skipped *s, char *buf, size_t len)
{
	struct fmt_out o;

	fmt_init(&o, buf, len);
	put_time_ms(&o, s->time_ns);
	put(&o, " ");
	put_clean(&o, s->node);
	put(&o, ": SKIPPED %llu records (", (unsigned long long) s->count);
	put_clean(&o, s->reason);
	if (strcmp(s->reason, SM_SKIPPED_SLOW_READER) == 0)
		put(&o, ": this reader did not keep up; they are in the flow log)");
	else if (strcmp(s->reason, SM_SKIPPED_DAEMON_BUSY) == 0)
		put(&o, ": the daemon did not keep up; not all of them matched the filters)");
	else
		put(&o, ")");
	return fmt_done(&o);
}

/* One VPC v2 line for traffic from src to dst. */
static void vpc_line(struct fmt_out *o, const struct sm_flow_endpoint *src,
		     const struct sm_flow_endpoint *dst, uint64_t packets, uint64_t bytes,
		     int64_t start_ns, int64_t end_ns, const char *action)
{
	char s[64], d[64];

	put(o, "2 - - %s %s %u %u 6 %llu %llu %lld %lld %s OK\n",
	    sm_addr_format(&src->addr, s, sizeof(s)), sm_addr_format(&dst->addr, d, sizeof(d)),
	    (unsigned int) src->port, (unsigned int) dst->port, (unsigned long long) packets,
	    (unsigned long long) bytes, (long long) (start_ns / NS_PER_S),
	    (long long) (end_ns / NS_PER_S), action);
}

/* A window in which records are missing: AWS's SKIPDATA, every other field "-". */
static void vpc_skipdata(struct fmt_out *o, int64_t time_ns)
{
	put(o, "2 - - - - - - - - - %lld %lld - SKIPDATA\n", (long long) (time_ns / NS_PER_S),
	    (long long) (time_ns / NS_PER_S));
}

int sm_flowfmt_vpc(const struct sm_flow_record *r, char *buf, size_t len)
{
	const struct sm_flow_counters *c = &r->delta;
	bool egress = r->direction == SM_DIR_EGRESS;
	const char *action = r->verdict == SM_VERDICT_DROPPED ? "REJECT" : "ACCEPT";
	struct fmt_out o;

	fmt_init(&o, buf, len);
	if (r->type == SM_REC_LOST) {
		vpc_skipdata(&o, r->time_ns);
		return fmt_done(&o);
	}
	if (!is_connection(r))
		return -EINVAL;
	/*
	 * delta: what moved since this connection's previous record, so the
	 * lines of one connection add up to its totals, as AWS's windows do.
	 * The reporting socket is the source (egress) or the destination.
	 */
	vpc_line(&o, &r->source, &r->destination, egress ? c->segs_out : c->segs_in,
		 egress ? c->bytes_sent : c->bytes_received, r->start_ns, r->time_ns, action);
	if (r->type != SM_REC_DENIED)
		vpc_line(&o, &r->destination, &r->source, egress ? c->segs_in : c->segs_out,
			 egress ? c->bytes_received : c->bytes_sent, r->start_ns, r->time_ns,
			 action);
	return fmt_done(&o);
}

int sm_flowfmt_vpc_skipped(const struct sm_flow_skipped *s, char *buf, size_t len)
{
	struct fmt_out o;

	fmt_init(&o, buf, len);
	vpc_skipdata(&o, s->time_ns);
	return fmt_done(&o);
}

/* ---- the stream's notice ---- */

char *sm_flow_skipped_encode(const struct sm_flow_skipped *s)
{
	struct json_object *o = json_object_new_object();
	char when[40], *line = NULL;
	const char *text;
	size_t n;

	if (!o)
		goto oom;
	if (json_object_object_add(o, "skipped", json_object_new_uint64(s->count)) ||
	    json_object_object_add(o, "reason", json_object_new_string(s->reason)) ||
	    json_object_object_add(
		    o, "time",
		    json_object_new_string(sm_format_time_ns(s->time_ns, when, sizeof(when)))) ||
	    json_object_object_add(o, "node", json_object_new_string(s->node)))
		goto put_o;
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		goto put_o;
	n = strlen(text);
	line = malloc(n + 2);
	if (line) {
		memcpy(line, text, n);
		line[n] = '\n';
		line[n + 1] = '\0';
	}
put_o:
	json_object_put(o);
	if (line)
		return line;
oom:
	errno = ENOMEM;
	return NULL;
}

int sm_flow_skipped_decode(const char *line, struct sm_flow_skipped *s)
{
	struct json_object *o, *v;
	int ret = -EINVAL;

	memset(s, 0, sizeof(*s));
	o = json_tokener_parse(line);
	if (!o || !json_object_is_type(o, json_type_object))
		goto put_o;
	if (!json_object_object_get_ex(o, "skipped", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		goto put_o;
	s->count = json_object_get_uint64(v);
	if (!json_object_object_get_ex(o, "reason", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    sm_strlcpy(s->reason, json_object_get_string(v), sizeof(s->reason)))
		goto put_o;
	if (!json_object_object_get_ex(o, "time", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    sm_flowfmt_parse_time(json_object_get_string(v), &s->time_ns))
		goto put_o;
	if (!json_object_object_get_ex(o, "node", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    sm_strlcpy(s->node, json_object_get_string(v), sizeof(s->node)))
		goto put_o;
	ret = 0;
put_o:
	json_object_put(o);
	if (ret)
		memset(s, 0, sizeof(*s));
	return ret;
}

/* ---- times ---- */

/* n decimal digits at s, their value in *v. */
static bool digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

int sm_flowfmt_parse_time(const char *text, int64_t *ns)
{
	int year, mon, mday, hour, min, sec, oh, om;
	int64_t frac = 0, offset = 0;
	const char *p = text;
	struct tm tm = {0}, back;
	int nfrac = 0;
	time_t t;

	if (!digits(p, 4, &year) || p[4] != '-' || !digits(p + 5, 2, &mon) || p[7] != '-' ||
	    !digits(p + 8, 2, &mday))
		return -EINVAL;
	if (p[10] != 'T' && p[10] != 't' && p[10] != ' ')
		return -EINVAL;
	p += 11;
	if (!digits(p, 2, &hour) || p[2] != ':' || !digits(p + 3, 2, &min) || p[5] != ':' ||
	    !digits(p + 6, 2, &sec))
		return -EINVAL;
	p += 8;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, nfrac++)
			if (nfrac < 9)
				frac = frac * 10 + (*p - '0');
		if (!nfrac)
			return -EINVAL;
		for (int i = nfrac; i < 9; i++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return -EINVAL;
		offset = (int64_t) (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p || mon < 1 || mon > 12 || mday < 1 || mday > 31 || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second: the next second's start */
	t = timegm(&tm);
	/* timegm() turns "02-30" into March: only a date that comes back the same exists */
	if (!gmtime_r(&t, &back) || back.tm_mday != mday || back.tm_mon != mon - 1)
		return -EINVAL;
	t += (sec == 60) - offset;
	if (t < 0 || (int64_t) t > INT64_MAX / NS_PER_S - 1)
		return -EINVAL;
	*ns = (int64_t) t * NS_PER_S + frac;
	return 0;
}

/* "1h30m" → ns. 0, -EINVAL or -ERANGE. */
static int parse_duration(const char *s, int64_t *out)
{
	int64_t total = 0;

	if (!*s)
		return -EINVAL;
	while (*s) {
		int64_t n = 0, unit;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (n > (INT64_MAX - 9) / 10)
				return -ERANGE;
			n = n * 10 + (*s - '0');
		}
		if (strncmp(s, "ms", 2) == 0) {
			unit = 1000000LL;
			s++;
		} else if (*s == 's') {
			unit = NS_PER_S;
		} else if (*s == 'm') {
			unit = 60 * NS_PER_S;
		} else if (*s == 'h') {
			unit = 3600 * NS_PER_S;
		} else if (*s == 'd') {
			unit = 86400 * NS_PER_S;
		} else {
			return -EINVAL;
		}
		s++;
		if (n > INT64_MAX / unit || n * unit > INT64_MAX - total)
			return -ERANGE;
		total += n * unit;
	}
	*out = total;
	return 0;
}

int sm_flowfmt_parse_since(const char *text, int64_t now_ns, int64_t *ns)
{
	int64_t d;
	int ret;

	if (sm_flowfmt_parse_time(text, ns) == 0)
		return 0;
	ret = parse_duration(text, &d);
	if (ret)
		return ret;
	if (d > now_ns)
		return -ERANGE;
	*ns = now_ns - d;
	return 0;
}
