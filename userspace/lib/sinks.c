// SPDX-License-Identifier: Apache-2.0
/*
 * The flow-log sinks: a file with size-based rotation and gzip-compressed
 * backups, and stdout, both behind the same allow/deny filters, field mask
 * and per-source rate limit for DROPPED/AUDIT records (flowlog: config keys,
 * reloadable on SIGHUP).
 *
 * Threads: any thread calls sm_sinks_write(); it filters, rate-limits and
 * encodes the record on the caller's thread and hands the line to a bounded
 * queue, so no caller ever waits for a disk. One writer thread empties the
 * queue into the sinks and rotates the file; one compressor thread gzips the
 * rotated files. A full queue drops the line and counts it; the count goes
 * out in the next "lost" record (sm_sinks_take_lost()), so nothing is lost
 * silently. Lost records themselves pass every filter and are never dropped.
 *
 * Failed writes (a full disk): a line goes out whole or not at all, as
 * readers see it. When a write stops part way through a line, the rest of
 * that line is kept and written first once writing works again (so no line
 * is ever glued to a half-written one, and the file never shrinks under a
 * tailer); the lines that could not be written are counted exactly
 * (write_failed) and said in a lost record the writer puts first in that
 * output once writing works again, trying once a second while it owes one.
 * A lost record that could not be written hands its counts on to that one.
 * Only when the file is closed with a line unfinished (shutdown, another
 * file) is that line cut off, and counted.
 *
 * Rotation: the live file PATH is renamed to PATH.N (N = 1, 2, ... counting
 * up, continuing after the highest N found at start) and a new PATH is
 * opened, so tailers that follow by name see a new file. A live file is
 * rotated no sooner than rotate_min_interval after it was opened (it grows
 * past max_size meanwhile): a shipper that follows PATH by name (rsyslog
 * imfile, Vector, Fluent Bit) opens each new file some time after it
 * appears, and one renamed away before that is never read. The newest
 * backup stays PATH.N, uncompressed, until the next rotation (logrotate's
 * delaycompress), since such a shipper may still be reading the renamed
 * file's end, and removing it could take that from under a shipper that
 * reopens by name. At each rotation the compressor gets the backup before
 * the new one: it writes
 * PATH.N.gz.tmp, renames it to PATH.N.gz only when complete, then removes
 * PATH.N. A restarted daemon likewise leaves the newest backup it finds
 * plain. Backups beyond max_backups are removed oldest (lowest N) first.
 * Every record is one write of whole lines to one file: none is split
 * across files or lost by a rotation.
 */
#include "sinks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zlib.h>

#include "flow_record.h"
#include "flowfilter.h"
#include "log.h"
#include "ratelimit.h"

/* Lines waiting for the writer; beyond this a record is dropped and counted. */
#define SINK_QUEUE_MAX 16384
/* Room kept for lost records, which are never dropped. */
#define SINK_QUEUE_RESERVE 64
/* Lines the writer takes per round. */
#define SINK_BATCH 1024
/*
 * Wakeups are batched: a writer that found the queue empty is woken by the
 * first line, then gathers lines for up to SINK_GATHER_MS or until
 * SINK_WAKE_LINES wait, so a busy node pays one wakeup per many records.
 */
#define SINK_WAKE_LINES 256
#define SINK_GATHER_MS	5
/* Sources the rate limiter remembers (least recently seen forgotten first). */
#define SINK_RL_SOURCES 4096
/* How often the writer tries again while an output owes a line or a lost record. */
#define SINK_RETRY_MS 1000
/* zlib level of the backups: fast, since records arrive while it runs. */
#define SINK_GZ_MODE "wb1"

enum {
	WAIT_NONE,   /* working, or already signalled */
	WAIT_EMPTY,  /* for the first line */
	WAIT_GATHER, /* for SINK_WAKE_LINES lines, or the gather timeout */
};

/* What the config's flowlog section says, parsed. Read-only once published. */
struct sink_conf {
	char node[64]; /* the node's name, for the lost records the writer makes */
	char file[PATH_MAX];
	bool to_stdout;
	uint64_t max_size;
	uint32_t max_backups;
	uint32_t rotate_min_ms; /* a live file is rotated no sooner than this after its open */
	bool compress;
	struct sm_flowfilter *allow[SM_CONFIG_LIST_MAX];
	struct sm_flowfilter *deny[SM_CONFIG_LIST_MAX];
	size_t nallow, ndeny;
	struct sm_config_list fields;
	const char *field_ptrs[SM_CONFIG_LIST_MAX];
	uint32_t rate, burst;
};

/*
 * What a lost record counts (its list of sources aside): a lost record that
 * could not be written hands these on to the next one.
 */
struct lost_counts {
	uint64_t ringbuf, orig_dst, storage, sockhash, queue, rate_limited, write_failed;
};

struct sink_line {
	char *text; /* the record and its '\n' */
	size_t len;
	struct lost_counts *lost; /* a lost record's counts, else NULL */
};

/*
 * One output of whole lines, the file or stdout (the writer's own, see the
 * top of the file): the unfinished end of a line, what its next lost record
 * is to say.
 */
struct sink_out {
	const char *name; /* for messages: the file's path, or "stdout" */
	int fd;
	bool counts;  /* its lines are what `written` counts (the file, else stdout) */
	bool failing; /* a write failed: logged once per episode */
	char *tail;   /* the unwritten end of a line whose start is out */
	size_t tail_len, tail_cap;
	uint64_t tail_start; /* file offset of that line's start (to cut it off at close) */
	bool tail_is_lost;   /* that line is a lost record, carrying tail_lost */
	struct lost_counts tail_lost;
	struct lost_counts unreported; /* for its next lost record */
};

/* A rotated file to gzip: PATH.SEQ. */
struct zjob {
	char path[PATH_MAX];
	uint64_t seq;
};

/*
 * Fields are grouped by size (8-byte, locks, then small) to avoid padding;
 * each comment says which thread or lock owns a field.
 */
struct sm_sinks {
	/* the settings: writers of records read them (conf_lock), a reload swaps them */
	struct sink_conf *conf;
	struct sm_ratelimit *rl; /* under rl_mu */

	/* the queue, under q_mu */
	struct sink_line *q;
	size_t q_head, q_len;
	uint64_t queue_unreported;	/* dropped since the last lost record */
	struct lost_counts queue_carry; /* of lost records the queue dropped */
	uint64_t write_failed_taken;	/* write_failed at the last sm_sinks_take_write_failed() */
	pthread_t writer;

	/* the writer's own: the live file and its backups (bk under z_mu), stdout */
	struct sink_out file, out;
	uint64_t size;
	uint64_t *bk; /* backup numbers on disk, ascending */
	size_t nbk, bkcap;
	uint64_t last_seq;
	char *buf; /* one batch of lines */
	size_t bufcap;
	size_t *off; /* line i of the batch at buf + off[i], off[n] the end */
	size_t offcap;
	int64_t reopen_ms; /* the last try to open the file after an open failed */
	int64_t opened_ms; /* when the live file was opened (rotate_min_ms counts from it) */

	/* the compressor's jobs, under z_mu; failed ones are tried again at the next rotation */
	struct zjob *zq;
	size_t zq_len, zq_cap;
	struct zjob *zretry;
	size_t zretry_len, zretry_cap;
	pthread_t zthread;

	/* counters (SM_STAT_*) */
	uint64_t written, filtered, rate_limited, queue_dropped, write_errors, write_failed;
	uint64_t rotations, compressed, compress_errors;

	pthread_mutex_t rl_mu;
	pthread_mutex_t q_mu;
	pthread_mutex_t z_mu;
	pthread_cond_t q_cv;	/* the writer waits for lines */
	pthread_cond_t idle_cv; /* sm_sinks_flush() waits for an empty queue */
	pthread_cond_t z_cv;	/* the compressor waits for jobs, flush for the compressor */
	pthread_rwlock_t conf_lock;

	struct sink_conf w_conf; /* the writer's file settings (its filters unused) */

	unsigned int conf_gen;			/* under q_mu: the writer reopens when it changes */
	int writer_wait;			/* WAIT_*, under q_mu: how the writer sleeps */
	unsigned int w_gen;			/* the writer's: the conf_gen it applied */
	bool writer_busy, stop, writer_started; /* under q_mu (started: the owner's) */
	bool w_owes;			/* the writer's: an output owes a line or a lost record */
	bool rotate_failing;		/* the writer's: logged once per episode */
	bool z_stop, z_busy, z_started; /* under z_mu (started: the owner's) */
};

static void conf_free(struct sink_conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nallow; i++)
		sm_flowfilter_free(c->allow[i]);
	for (size_t i = 0; i < c->ndeny; i++)
		sm_flowfilter_free(c->deny[i]);
	free(c);
}

static int parse_filters(const struct sm_config_list *list, const char *key,
			 struct sm_flowfilter **out, size_t *n, struct sm_error *err)
{
	struct sm_error ferr = {{0}};
	int ret;

	for (uint32_t i = 0; i < list->n; i++) {
		ret = sm_flowfilter_parse(list->items[i], &out[i], &ferr);
		if (ret) {
			sm_error_set(err, "%s[%u]: %s", key, i,
				     ret == -EINVAL ? ferr.msg : "out of memory");
			return ret;
		}
		*n = i + 1;
	}
	return 0;
}

/* The flowlog section of cfg, checked and parsed; NULL with err set and errno. */
static struct sink_conf *conf_new(const struct sm_config *cfg, struct sm_error *err)
{
	struct sink_conf *c = calloc(1, sizeof(*c));
	int ret;

	if (!c) {
		sm_error_set(err, "out of memory");
		return NULL;
	}
	sm_strlcpy(c->node, cfg->node, sizeof(c->node));
	sm_strlcpy(c->file, cfg->flowlog_file, sizeof(c->file));
	c->to_stdout = cfg->flowlog_stdout;
	c->max_size = cfg->flowlog_max_size;
	c->max_backups = cfg->flowlog_max_backups;
	c->compress = cfg->flowlog_compress;
	c->rotate_min_ms = cfg->flowlog_rotate_min_interval * 1000U;
	c->rate = cfg->flowlog_denied_rate;
	c->burst = cfg->flowlog_denied_burst ? cfg->flowlog_denied_burst : 1;
	c->fields = cfg->flowlog_fields;
	for (uint32_t i = 0; i < c->fields.n; i++)
		c->field_ptrs[i] = c->fields.items[i];
	ret = parse_filters(&cfg->flowlog_allow, "flowlog.allow", c->allow, &c->nallow, err);
	ret = ret ?: parse_filters(&cfg->flowlog_deny, "flowlog.deny", c->deny, &c->ndeny, err);
	if (ret) {
		conf_free(c);
		errno = -ret;
		return NULL;
	}
	return c;
}

/* ---- backups (writer thread; the list and the files under z_mu) ---- */

static void backup_name(char *buf, size_t len, const char *path, uint64_t seq, const char *ext)
{
	snprintf(buf, len, "%s.%" PRIu64 "%s", path, seq, ext);
}

static int bk_push(struct sm_sinks *s, uint64_t seq)
{
	if (s->nbk == s->bkcap) {
		size_t cap = s->bkcap ? 2 * s->bkcap : 16;
		uint64_t *bk = realloc(s->bk, cap * sizeof(*bk));

		if (!bk)
			return -ENOMEM;
		s->bk = bk;
		s->bkcap = cap;
	}
	s->bk[s->nbk++] = seq;
	return 0;
}

/* Remove the oldest backups until at most keep are left. Under z_mu. */
static void bk_prune(struct sm_sinks *s, size_t keep)
{
	char name[PATH_MAX + 32];
	size_t drop;

	if (s->nbk <= keep)
		return;
	drop = s->nbk - keep;
	for (size_t i = 0; i < drop; i++) {
		/* a compression of it in progress sees its source gone and discards its result */
		backup_name(name, sizeof(name), s->w_conf.file, s->bk[i], "");
		unlink(name);
		backup_name(name, sizeof(name), s->w_conf.file, s->bk[i], ".gz");
		unlink(name);
	}
	memmove(s->bk, s->bk + drop, (s->nbk - drop) * sizeof(*s->bk));
	s->nbk -= drop;
}

/* Remember a backup whose compression failed, for the next rotation. Under z_mu. */
static void zretry_add(struct sm_sinks *s, const struct zjob *j)
{
	if (s->zretry_len == s->zretry_cap) {
		size_t cap = s->zretry_cap ? 2 * s->zretry_cap : 8;
		struct zjob *z = realloc(s->zretry, cap * sizeof(*z));

		if (!z)
			return; /* it stays an uncompressed backup: complete, counted and pruned */
		s->zretry = z;
		s->zretry_cap = cap;
	}
	s->zretry[s->zretry_len++] = *j;
}

/* Queue PATH.seq for the compressor. Under z_mu. */
static void zq_push(struct sm_sinks *s, uint64_t seq)
{
	if (s->zq_len == s->zq_cap) {
		size_t cap = s->zq_cap ? 2 * s->zq_cap : 8;
		struct zjob *zq = realloc(s->zq, cap * sizeof(*zq));

		if (!zq) {
			/* it stays an uncompressed backup: still complete, counted and pruned */
			SM_STAT_INC(s->compress_errors);
			return;
		}
		s->zq = zq;
		s->zq_cap = cap;
	}
	sm_strlcpy(s->zq[s->zq_len].path, s->w_conf.file, sizeof(s->zq[0].path));
	s->zq[s->zq_len++].seq = seq;
}

/*
 * Hand PATH.seq (seq 0: none) to the compressor, and again the backups whose
 * compression failed (a full disk, most likely; a source pruned or already
 * compressed meanwhile is skipped). Under z_mu.
 */
static void zjob_add(struct sm_sinks *s, uint64_t seq)
{
	for (size_t i = 0; i < s->zretry_len; i++) {
		if (s->zretry[i].seq != seq && strcmp(s->zretry[i].path, s->w_conf.file) == 0)
			zq_push(s, s->zretry[i].seq);
	}
	s->zretry_len = 0;
	if (seq)
		zq_push(s, seq);
	pthread_cond_signal(&s->z_cv);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

/*
 * The backups already next to the live file (a restarted daemon continues
 * their numbering): PATH.N and PATH.N.gz. Leftover .gz.tmp files are removed;
 * PATH.N next to a complete PATH.N.gz is removed; PATH.N alone is queued for
 * compression when compress is on, but for the newest backup, which a
 * shipper may still be reading (the next rotation compresses it).
 */
static void bk_scan(struct sm_sinks *s)
{
	char dir[PATH_MAX], name[PATH_MAX + 32];
	const char *base, *slash = strrchr(s->w_conf.file, '/');
	struct dirent *de;
	size_t blen;
	DIR *dh;

	if (slash) {
		size_t n = (size_t) (slash - s->w_conf.file);

		memcpy(dir, s->w_conf.file, n ? n : 1);
		dir[n ? n : 1] = '\0';
		base = slash + 1;
	} else {
		strcpy(dir, ".");
		base = s->w_conf.file;
	}
	blen = strlen(base);
	dh = opendir(dir);
	if (!dh)
		return;
	while ((de = readdir(dh))) {
		const char *p = de->d_name;
		bool seen = false;
		char *end;
		uint64_t seq;

		if (strncmp(p, base, blen) != 0 || p[blen] != '.' || p[blen + 1] < '0' ||
		    p[blen + 1] > '9')
			continue;
		errno = 0;
		seq = strtoull(p + blen + 1, &end, 10);
		if (errno || seq == 0)
			continue;
		if (strcmp(end, ".gz.tmp") == 0) {
			snprintf(name, sizeof(name), "%s/%s", dir, p);
			unlink(name);
			continue;
		}
		if (*end && strcmp(end, ".gz") != 0)
			continue;
		/* PATH.N and PATH.N.gz are one backup */
		for (size_t i = 0; i < s->nbk; i++)
			seen |= s->bk[i] == seq;
		if (!seen && bk_push(s, seq))
			break;
	}
	closedir(dh);
	if (s->nbk) {
		qsort(s->bk, s->nbk, sizeof(*s->bk), cmp_u64);
		s->last_seq = s->bk[s->nbk - 1];
	}
	pthread_mutex_lock(&s->z_mu);
	for (size_t i = 0; i < s->nbk; i++) {
		char gz[PATH_MAX + 32];

		backup_name(name, sizeof(name), s->w_conf.file, s->bk[i], "");
		backup_name(gz, sizeof(gz), s->w_conf.file, s->bk[i], ".gz");
		if (access(name, F_OK) != 0)
			continue;
		if (access(gz, F_OK) == 0)
			unlink(name); /* the .gz was renamed into place only when complete */
		else if (s->w_conf.compress && i + 1 < s->nbk)
			zjob_add(s, s->bk[i]);
	}
	bk_prune(s, s->w_conf.max_backups);
	pthread_mutex_unlock(&s->z_mu);
}

/* ---- lost counts ---- */

static bool lost_any(const struct lost_counts *c)
{
	return c->ringbuf || c->orig_dst || c->storage || c->sockhash || c->queue ||
	       c->rate_limited || c->write_failed;
}

static void lost_add(struct lost_counts *to, const struct lost_counts *c)
{
	to->ringbuf += c->ringbuf;
	to->orig_dst += c->orig_dst;
	to->storage += c->storage;
	to->sockhash += c->sockhash;
	to->queue += c->queue;
	to->rate_limited += c->rate_limited;
	to->write_failed += c->write_failed;
}

static void lost_from_record(struct lost_counts *c, const struct sm_flow_record *r)
{
	c->ringbuf = r->lost_ringbuf;
	c->orig_dst = r->lost_orig_dst;
	c->storage = r->lost_storage;
	c->sockhash = r->lost_sockhash;
	c->queue = r->lost_queue;
	c->rate_limited = r->lost_rate_limited;
	c->write_failed = r->lost_write_failed;
}

/* ---- outputs of whole lines (writer thread) ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write len bytes at p to o; how many went out (all, unless a write failed). */
static size_t out_put(struct sm_sinks *s, struct sink_out *o, const char *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(o->fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!o->failing)
				pr_warn("cannot write flow log %s: %s (check the disk and the "
					"file's permissions); records not written are counted and "
					"reported in a lost record once writing works again",
					o->name, n < 0 ? strerror(errno) : "nothing written");
			o->failing = true;
			SM_STAT_INC(s->write_errors);
			break;
		}
		done += (size_t) n;
	}
	if (o == &s->file)
		s->size += done;
	if (done == len && len && o->failing) {
		pr_info("writing flow log %s again", o->name);
		o->failing = false;
	}
	return done;
}

/* A line that went out whole, or that did not go out at all. */
static void line_done(struct sm_sinks *s, struct sink_out *o, const struct lost_counts *lost,
		      bool written)
{
	if (written) {
		if (o->counts)
			SM_STAT_INC(s->written);
	} else if (lost) {
		lost_add(&o->unreported, lost); /* its counts go out in the next one */
	} else {
		o->unreported.write_failed++;
		SM_STAT_INC(s->write_failed);
	}
}

/* Keep the unwritten end (len bytes at p) of a line whose start went out. */
static void tail_keep(struct sm_sinks *s, struct sink_out *o, const char *p, size_t len,
		      uint64_t start, const struct lost_counts *lost)
{
	if (len > o->tail_cap) {
		char *t = realloc(o->tail, len);

		if (!t) {
			/* cannot keep it: the line stays cut, counted like one not written */
			pr_warn("flow log %s: out of memory for an unfinished line; it stays cut",
				o->name);
			line_done(s, o, lost, false);
			return;
		}
		o->tail = t;
		o->tail_cap = len;
	}
	memcpy(o->tail, p, len);
	o->tail_len = len;
	o->tail_start = start;
	o->tail_is_lost = lost != NULL;
	if (lost)
		o->tail_lost = *lost;
}

/* Write the end of the line begun earlier. true when o takes new lines. */
static bool out_finish_tail(struct sm_sinks *s, struct sink_out *o)
{
	size_t n;

	if (!o->tail_len)
		return true;
	n = out_put(s, o, o->tail, o->tail_len);
	if (n < o->tail_len) {
		memmove(o->tail, o->tail + n, o->tail_len - n);
		o->tail_len -= n;
		return false;
	}
	o->tail_len = 0;
	line_done(s, o, o->tail_is_lost ? &o->tail_lost : NULL, true);
	return true;
}

/*
 * The line begun earlier cannot be finished (the output closes): cut it off
 * where it began when the output is the file, and count it as not written.
 */
static void out_drop_tail(struct sm_sinks *s, struct sink_out *o)
{
	if (!o->tail_len)
		return;
	if (o == &s->file) {
		if (ftruncate(o->fd, (off_t) o->tail_start) == 0)
			pr_warn("flow log %s: closed with a record half written: cut off", o->name);
		else
			pr_warn("flow log %s: closed with a record half written, and cannot cut "
				"it off: %s; the file ends with an unfinished line",
				o->name, strerror(errno));
	}
	o->tail_len = 0;
	line_done(s, o, o->tail_is_lost ? &o->tail_lost : NULL, false);
}

/*
 * The output's own lost record, first of all when it has something to say:
 * the records it could not write and what the lost records it could not
 * write carried. true when o takes new lines.
 */
static bool out_own_lost(struct sm_sinks *s, struct sink_out *o)
{
	struct sm_flow_record r;
	struct lost_counts c;
	struct timespec ts;
	uint64_t start = s->size;
	char *json = NULL;
	size_t len, n;

	if (!lost_any(&o->unreported))
		return true;
	memset(&r, 0, sizeof(r));
	r.type = SM_REC_LOST;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.time_ns = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
	sm_strlcpy(r.node, s->w_conf.node, sizeof(r.node));
	c = o->unreported;
	r.lost_ringbuf = c.ringbuf;
	r.lost_orig_dst = c.orig_dst;
	r.lost_storage = c.storage;
	r.lost_sockhash = c.sockhash;
	r.lost_queue = c.queue;
	r.lost_rate_limited = c.rate_limited;
	r.lost_write_failed = c.write_failed;
	if (sm_flow_record_encode(&r, &json))
		return true; /* out of memory: the records go first, the report next time */
	len = strlen(json);
	json[len++] = '\n'; /* in place of the NUL: the line is counted by len */
	memset(&o->unreported, 0, sizeof(o->unreported));
	n = out_put(s, o, json, len);
	if (n == len)
		line_done(s, o, &c, true);
	else if (n)
		tail_keep(s, o, json + n, len - n, start, &c);
	else
		lost_add(&o->unreported, &c);
	free(json);
	return n == len;
}

/*
 * Lines [from, to) of the batch (line i at s->buf + s->off[i]) to o, after
 * what o owes: each goes out whole, or begun (its end kept), or not at all.
 */
static void out_lines(struct sm_sinks *s, struct sink_out *o, const struct sink_line *lines,
		      size_t from, size_t to)
{
	const size_t *off = s->off;
	uint64_t start = s->size;
	size_t n = 0;

	if (o->fd >= 0 && out_finish_tail(s, o) && out_own_lost(s, o)) {
		start = s->size;
		n = out_put(s, o, s->buf + off[from], off[to] - off[from]);
	}
	for (size_t i = from; i < to; i++) {
		size_t begin = off[i] - off[from], end = off[i + 1] - off[from];

		if (end <= n)
			line_done(s, o, lines[i].lost, true);
		else if (begin < n)
			tail_keep(s, o, s->buf + off[i] + (n - begin), end - n, start + begin,
				  lines[i].lost);
		else
			line_done(s, o, lines[i].lost, false);
	}
}

/* Whether o owes a line's end or a lost record: the writer tries again. */
static bool out_owes(const struct sink_out *o)
{
	return o->fd >= 0 && (o->tail_len || lost_any(&o->unreported));
}

/* ---- the live file (writer thread) ---- */

/*
 * A file that does not end with a line's end (a writer stopped mid-line) is
 * cut back to its last whole line, so that nothing is glued to that half.
 */
static void file_cut_unfinished(struct sm_sinks *s)
{
	char buf[4096];
	uint64_t end = s->size, pos = s->size;
	ssize_t n;

	while (pos > 0) {
		size_t want = pos < sizeof(buf) ? (size_t) pos : sizeof(buf);

		n = pread(s->file.fd, buf, want, (off_t) (pos - want));
		if (n != (ssize_t) want)
			return; /* unreadable (opened write-only elsewhere): left as it is */
		while (n > 0 && buf[n - 1] != '\n')
			n--;
		if (n > 0) {
			pos = pos - want + (uint64_t) n;
			break;
		}
		pos -= want;
	}
	if (pos == end)
		return;
	if (ftruncate(s->file.fd, (off_t) pos) == 0) {
		pr_warn("flow log %s ended with an unfinished line (%" PRIu64
			" bytes: a previous writer stopped mid-line): cut off",
			s->w_conf.file, end - pos);
		s->size = pos;
	} else {
		pr_warn("flow log %s ends with an unfinished line and cannot be cut back: %s",
			s->w_conf.file, strerror(errno));
	}
}

static int file_open(struct sm_sinks *s)
{
	struct stat st;

	s->file.fd = open(s->w_conf.file, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->file.fd < 0)
		s->file.fd = open(s->w_conf.file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->file.fd < 0)
		return -errno;
	s->opened_ms = mono_ms();
	s->size = fstat(s->file.fd, &st) == 0 ? (uint64_t) st.st_size : 0;
	if (s->size)
		file_cut_unfinished(s);
	return 0;
}

static void file_close(struct sm_sinks *s)
{
	if (s->file.fd >= 0) {
		if (!out_finish_tail(s, &s->file))
			out_drop_tail(s, &s->file);
		close(s->file.fd);
	}
	s->file.fd = -1;
	s->nbk = 0;
	s->last_seq = 0;
}

/*
 * Rename the live file to the next backup and open a new one; room for the
 * backup is made first, so there are never more than max_backups (with
 * max_backups 0 the live file is just unlinked). When the rename fails the
 * file grows (and the failure is logged once); when the new open fails, the
 * writes go on into the renamed file until a later rotation manages.
 */
static void file_rotate(struct sm_sinks *s)
{
	char name[PATH_MAX + 32];
	uint64_t seq = s->last_seq + 1;
	int old = s->file.fd, ret;

	backup_name(name, sizeof(name), s->w_conf.file, seq, "");
	pthread_mutex_lock(&s->z_mu);
	if (s->w_conf.max_backups)
		bk_prune(s, s->w_conf.max_backups - 1);
	ret = s->w_conf.max_backups ? rename(s->w_conf.file, name) : unlink(s->w_conf.file);
	if (ret) {
		pthread_mutex_unlock(&s->z_mu);
		if (!s->rotate_failing)
			pr_warn("cannot rotate flow log %s: %s (check the directory is writable); "
				"it grows past flowlog.max_size until this works",
				s->w_conf.file, strerror(errno));
		s->rotate_failing = true;
		SM_STAT_INC(s->write_errors);
		return;
	}
	s->rotate_failing = false;
	if (s->w_conf.max_backups) {
		s->last_seq = seq;
		/* the backup before this one: this one is the shippers' for a rotation yet */
		if (bk_push(s, seq) == 0 && s->w_conf.compress)
			zjob_add(s, s->nbk >= 2 ? s->bk[s->nbk - 2] : 0);
	}
	pthread_mutex_unlock(&s->z_mu);
	if (file_open(s)) {
		pr_warn("cannot open flow log %s after rotating it: %s (check the directory)",
			s->w_conf.file, strerror(errno));
		s->file.fd = old;
		s->size = 0;
		SM_STAT_INC(s->write_errors);
	} else {
		close(old);
	}
	SM_STAT_INC(s->rotations);
}

/* The writer's settings changed (start, or a reload): reopen when the file differs. */
static void writer_apply_conf(struct sm_sinks *s)
{
	const struct sink_conf *c;
	char file[PATH_MAX];
	bool reopen;

	pthread_rwlock_rdlock(&s->conf_lock);
	c = s->conf;
	sm_strlcpy(file, c->file, sizeof(file));
	sm_strlcpy(s->w_conf.node, c->node, sizeof(s->w_conf.node));
	s->w_conf.to_stdout = c->to_stdout;
	s->w_conf.max_size = c->max_size;
	s->w_conf.max_backups = c->max_backups;
	s->w_conf.compress = c->compress;
	s->w_conf.rotate_min_ms = c->rotate_min_ms;
	pthread_rwlock_unlock(&s->conf_lock);
	reopen = strcmp(file, s->w_conf.file) != 0 || s->file.fd < 0;
	s->file.counts = file[0] != '\0';
	s->out.counts = !s->file.counts;
	if (!s->w_conf.to_stdout && s->out.tail_len)
		out_drop_tail(s, &s->out);
	if (!reopen) {
		pthread_mutex_lock(&s->z_mu);
		bk_prune(s, s->w_conf.max_backups); /* it may have shrunk */
		pthread_mutex_unlock(&s->z_mu);
		return;
	}
	/* what the old file could not be told goes to the new one: it is the same log */
	file_close(s);
	sm_strlcpy(s->w_conf.file, file, sizeof(s->w_conf.file));
	if (!s->w_conf.file[0])
		return;
	if (file_open(s)) {
		pr_warn("cannot open flow log %s: %s (check the directory exists and is writable)",
			s->w_conf.file, strerror(errno));
		SM_STAT_INC(s->write_errors);
		s->reopen_ms = mono_ms();
		return;
	}
	bk_scan(s);
}

/*
 * Past max_size, whether the live file has been open rotate_min_ms yet. A
 * shipper that follows the file by name (rsyslog imfile) opens each new file
 * some time after it appears; in a burst that rotates many times a second a
 * file could be renamed away before it was ever opened, and it would never
 * be read. Until then the file grows past max_size.
 */
static bool rotate_due(const struct sm_sinks *s)
{
	return mono_ms() - s->opened_ms >= (int64_t) s->w_conf.rotate_min_ms;
}

/* Room for n lines of total bytes in buf and off. 0 or -ENOMEM. */
static int batch_room(struct sm_sinks *s, size_t n, size_t total)
{
	if (total > s->bufcap) {
		char *b = realloc(s->buf, total);

		if (!b)
			return -ENOMEM;
		s->buf = b;
		s->bufcap = total;
	}
	if (n + 1 > s->offcap) {
		size_t *o = realloc(s->off, (n + 1) * sizeof(*o));

		if (!o)
			return -ENOMEM;
		s->off = o;
		s->offcap = n + 1;
	}
	return 0;
}

/*
 * Write n lines (n may be 0: only what the outputs owe) to the file,
 * rotating between lines, then to stdout.
 */
static void writer_batch(struct sm_sinks *s, struct sink_line *lines, size_t n)
{
	size_t total = 0, start = 0;

	for (size_t i = 0; i < n; i++)
		total += lines[i].len;
	if (batch_room(s, n, total ? total : 1)) {
		for (size_t i = 0; i < n; i++)
			line_done(s, s->file.counts ? &s->file : &s->out, lines[i].lost, false);
		SM_STAT_INC(s->write_errors);
		return;
	}
	s->off[0] = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(s->buf + s->off[i], lines[i].text, lines[i].len);
		s->off[i + 1] = s->off[i] + lines[i].len;
	}
	/* a file that could not be opened: tried again once a second */
	if (s->w_conf.file[0] && s->file.fd < 0 && mono_ms() - s->reopen_ms >= SINK_RETRY_MS) {
		s->reopen_ms = mono_ms();
		if (file_open(s) == 0) {
			pr_info("flow log %s open again", s->w_conf.file);
			bk_scan(s);
		}
	}
	if (s->w_conf.file[0]) {
		for (size_t i = 0; i < n; i++) {
			uint64_t pending = s->off[i] - s->off[start], len = lines[i].len;

			/* a record goes whole into the file that has room for it */
			if (s->file.fd >= 0 && s->w_conf.max_size && s->size + pending > 0 &&
			    s->size + pending + len > s->w_conf.max_size && rotate_due(s)) {
				out_lines(s, &s->file, lines, start, i);
				start = i;
				/*
				 * by what the file holds now: lines that could not be written
				 * (a full disk) make no rotation, and none happens with a line
				 * half written
				 */
				if (!s->file.tail_len && s->size > 0 &&
				    s->size + len > s->w_conf.max_size)
					file_rotate(s);
			}
		}
		out_lines(s, &s->file, lines, start, n);
	}
	if (s->w_conf.to_stdout)
		out_lines(s, &s->out, lines, 0, n);
	s->w_owes = out_owes(&s->file) || (s->w_conf.to_stdout && out_owes(&s->out));
}

/* Wait on cv under mu until it is signalled or ms pass (CLOCK_MONOTONIC). */
static int cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_nsec += ms * 1000000L;
	t.tv_sec += t.tv_nsec / 1000000000L;
	t.tv_nsec %= 1000000000L;
	return pthread_cond_timedwait(cv, mu, &t);
}

static void *writer_main(void *arg)
{
	struct sm_sinks *s = arg;
	struct sink_line *batch = malloc(SINK_BATCH * sizeof(*batch));

	if (!batch)
		pr_err("flow log writer: out of memory; records are queued and dropped");
	pthread_mutex_lock(&s->q_mu);
	for (;;) {
		size_t n = 0;
		bool reconf, retry = false;

		while (!s->q_len && !s->stop && s->w_gen == s->conf_gen) {
			s->writer_wait = WAIT_EMPTY;
			if (!s->w_owes) {
				pthread_cond_wait(&s->q_cv, &s->q_mu);
			} else if (cond_wait_ms(&s->q_cv, &s->q_mu, SINK_RETRY_MS) == ETIMEDOUT) {
				/* nothing new, and an output owes a line's end or a lost record */
				retry = true;
				break;
			}
		}
		/* a few lines: let more come (bounded), unless stopping or reconfiguring */
		while (s->q_len && s->q_len < SINK_WAKE_LINES && !s->stop &&
		       s->w_gen == s->conf_gen) {
			s->writer_wait = WAIT_GATHER;
			if (cond_wait_ms(&s->q_cv, &s->q_mu, SINK_GATHER_MS) == ETIMEDOUT)
				break;
		}
		s->writer_wait = WAIT_NONE;
		if (!s->q_len && s->stop && s->w_gen == s->conf_gen) {
			/* a last try at what the outputs owe */
			pthread_mutex_unlock(&s->q_mu);
			if (s->w_owes)
				writer_batch(s, NULL, 0);
			pthread_mutex_lock(&s->q_mu);
			break;
		}
		reconf = s->w_gen != s->conf_gen;
		s->w_gen = s->conf_gen;
		while (batch && n < SINK_BATCH && s->q_len) {
			batch[n++] = s->q[s->q_head];
			s->q_head = (s->q_head + 1) % (SINK_QUEUE_MAX + SINK_QUEUE_RESERVE);
			s->q_len--;
		}
		s->writer_busy = true;
		pthread_mutex_unlock(&s->q_mu);

		if (reconf)
			writer_apply_conf(s);
		if (n || retry)
			writer_batch(s, batch, n);
		for (size_t i = 0; i < n; i++) {
			free(batch[i].text);
			free(batch[i].lost);
		}

		pthread_mutex_lock(&s->q_mu);
		s->writer_busy = false;
		if (!s->q_len)
			pthread_cond_broadcast(&s->idle_cv);
		if (!batch && s->stop)
			break;
		if (!batch)
			cond_wait_ms(&s->q_cv, &s->q_mu, 1000);
	}
	pthread_cond_broadcast(&s->idle_cv);
	pthread_mutex_unlock(&s->q_mu);
	free(batch);
	return NULL;
}

/* ---- the compressor ---- */

/* gzip PATH.seq into PATH.seq.gz (through .gz.tmp). 0 or -errno. */
static int compress_one(struct sm_sinks *s, const struct zjob *j)
{
	char src[PATH_MAX + 32], tmp[PATH_MAX + 32], dst[PATH_MAX + 32];
	char buf[65536];
	gzFile gz = NULL;
	int in, out, ret = 0;
	ssize_t n;

	backup_name(src, sizeof(src), j->path, j->seq, "");
	backup_name(tmp, sizeof(tmp), j->path, j->seq, ".gz.tmp");
	backup_name(dst, sizeof(dst), j->path, j->seq, ".gz");
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return errno == ENOENT ? 0 : -errno; /* pruned meanwhile */
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (out < 0) {
		ret = -errno;
		goto close_in;
	}
	gz = gzdopen(out, SINK_GZ_MODE);
	if (!gz) {
		ret = -ENOMEM;
		close(out);
		goto unlink_tmp;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (gzwrite(gz, buf, (unsigned int) n) != (int) n) {
			ret = -EIO;
			break;
		}
	}
	if (n < 0)
		ret = -errno;
	if (gzclose(gz) != Z_OK && !ret)
		ret = -EIO;
	if (ret)
		goto unlink_tmp;
	pthread_mutex_lock(&s->z_mu);
	/* the source still there: not pruned while we worked, so the backup is wanted */
	if (access(src, F_OK) == 0) {
		if (rename(tmp, dst) == 0)
			unlink(src);
		else
			ret = -errno;
	} else {
		unlink(tmp);
	}
	pthread_mutex_unlock(&s->z_mu);
	if (!ret)
		SM_STAT_INC(s->compressed);
	else
		unlink(tmp);
	close(in);
	return ret;
unlink_tmp:
	unlink(tmp);
close_in:
	close(in);
	return ret;
}

static void *compressor_main(void *arg)
{
	struct sm_sinks *s = arg;
	struct zjob j;
	int ret;

	pthread_mutex_lock(&s->z_mu);
	for (;;) {
		while (!s->zq_len && !s->z_stop)
			pthread_cond_wait(&s->z_cv, &s->z_mu);
		if (!s->zq_len)
			break;
		j = s->zq[0];
		memmove(s->zq, s->zq + 1, (s->zq_len - 1) * sizeof(*s->zq));
		s->zq_len--;
		s->z_busy = true;
		pthread_mutex_unlock(&s->z_mu);
		ret = compress_one(s, &j);
		if (ret) {
			if (SM_STAT_GET(s->compress_errors) == 0)
				pr_warn("cannot compress flow log backup %s.%" PRIu64
					": %s (it stays uncompressed until the next rotation tries "
					"again; check the disk)",
					j.path, j.seq, strerror(-ret));
			SM_STAT_INC(s->compress_errors);
		}
		pthread_mutex_lock(&s->z_mu);
		if (ret)
			zretry_add(s, &j);
		s->z_busy = false;
		pthread_cond_broadcast(&s->z_cv);
	}
	pthread_mutex_unlock(&s->z_mu);
	return NULL;
}

/* ---- the API ---- */

/* Queue one line (ownership passes); lost records (lost != NULL) may use the reserve. */
static void queue_push(struct sm_sinks *s, char *text, size_t len, struct lost_counts *lost)
{
	size_t cap = SINK_QUEUE_MAX + SINK_QUEUE_RESERVE;
	bool reserve = lost != NULL;

	pthread_mutex_lock(&s->q_mu);
	if (s->q_len >= (reserve ? cap : SINK_QUEUE_MAX)) {
		s->queue_unreported++;
		if (lost)
			lost_add(&s->queue_carry, lost); /* said again in the next one */
		SM_STAT_INC(s->queue_dropped);
		pthread_mutex_unlock(&s->q_mu);
		free(text);
		free(lost);
		return;
	}
	s->q[(s->q_head + s->q_len) % cap] = (struct sink_line){text, len, lost};
	s->q_len++;
	if (s->writer_wait == WAIT_EMPTY ||
	    (s->writer_wait == WAIT_GATHER && (s->q_len >= SINK_WAKE_LINES || reserve))) {
		s->writer_wait = WAIT_NONE;
		pthread_cond_signal(&s->q_cv);
	}
	pthread_mutex_unlock(&s->q_mu);
}

/* The record as one line with its '\n', masked; NULL when it cannot be encoded. */
static char *encode_line(const struct sm_flow_record *r, const struct sink_conf *c,
			 const char *whole, size_t *len)
{
	struct json_object *o;
	const char *text;
	char *line = NULL;
	size_t n;

	if (!c || !c->fields.n) {
		/* no mask: the caller's encoding is this line already, or this thread's */
		if (whole)
			n = strlen(whole);
		else
			whole = sm_flow_record_line(r, &n);
		if (!whole)
			return NULL;
		line = malloc(n + 1);
		if (line) {
			memcpy(line, whole, n);
			line[n] = '\n';
			*len = n + 1;
		}
		return line;
	}
	o = sm_flow_record_to_json(r);
	if (!o)
		return NULL;
	if (c && sm_flow_json_mask(o, c->field_ptrs, c->fields.n))
		goto put;
	text = json_object_to_json_string_length(o, SM_FLOW_JSON_FLAGS, &n);
	if (!text)
		goto put;
	line = malloc(n + 1);
	if (line) {
		memcpy(line, text, n);
		line[n] = '\n';
		*len = n + 1;
	}
put:
	json_object_put(o);
	return line;
}

void sm_sinks_write(struct sm_sinks *s, const struct sm_flow_record *r, const char *whole)
{
	const struct sink_conf *c;
	struct lost_counts *counts = NULL;
	char *line = NULL;
	size_t len = 0;
	bool lost = r->type == SM_REC_LOST;

	pthread_rwlock_rdlock(&s->conf_lock);
	c = s->conf;
	if (!c->file[0] && !c->to_stdout)
		goto unlock;
	/* lost records: whole and unfiltered, loss must show */
	if (!lost && ((c->nallow && !sm_flowfilter_match_any(c->allow, c->nallow, r)) ||
		      (c->ndeny && sm_flowfilter_match_any(c->deny, c->ndeny, r)))) {
		SM_STAT_INC(s->filtered);
		goto unlock;
	}
	if (!lost && c->rate &&
	    (r->verdict == SM_VERDICT_DROPPED || r->verdict == SM_VERDICT_AUDIT)) {
		struct sm_ratelimit_key key;
		bool pass;

		sm_ratelimit_key_of(r->source.identity, &r->source.addr, &key);
		pthread_mutex_lock(&s->rl_mu);
		pass = sm_ratelimit_allow(s->rl, &key, r->time_ns);
		if (!pass)
			SM_STAT_INC(s->rate_limited);
		pthread_mutex_unlock(&s->rl_mu);
		if (!pass)
			goto unlock;
	}
	line = encode_line(r, lost ? NULL : c, whole, &len);
	if (!line)
		pr_warn("cannot encode a %s flow record: %s", sm_flow_record_type_name(r->type),
			strerror(errno));
	if (line && lost) {
		/* a lost line the sinks cannot write hands these on to their next one */
		counts = malloc(sizeof(*counts));
		if (counts)
			lost_from_record(counts, r);
	}
unlock:
	pthread_rwlock_unlock(&s->conf_lock);
	if (line && (counts || !lost))
		queue_push(s, line, len, counts);
	else
		free(line);
}

bool sm_sinks_take_lost(struct sm_sinks *s, struct sm_flow_record *r)
{
	struct sm_ratelimit_top top[SM_FLOW_LOST_SOURCES_MAX];
	size_t n = 0;

	pthread_mutex_lock(&s->q_mu);
	r->lost_queue = s->queue_unreported;
	s->queue_unreported = 0;
	pthread_mutex_unlock(&s->q_mu);
	pthread_mutex_lock(&s->rl_mu);
	r->lost_rate_limited = sm_ratelimit_take(s->rl, top, SM_ARRAY_SIZE(top), &n);
	pthread_mutex_unlock(&s->rl_mu);
	r->nlost_sources = (unsigned int) n;
	for (size_t i = 0; i < n; i++) {
		r->lost_sources[i].identity = top[i].key.identity;
		r->lost_sources[i].addr = top[i].key.addr;
		r->lost_sources[i].suppressed = top[i].suppressed;
	}
	return r->lost_queue || r->lost_rate_limited;
}

bool sm_sinks_take_carried(struct sm_sinks *s, struct sm_flow_record *r)
{
	struct lost_counts c;

	pthread_mutex_lock(&s->q_mu);
	c = s->queue_carry;
	memset(&s->queue_carry, 0, sizeof(s->queue_carry));
	pthread_mutex_unlock(&s->q_mu);
	r->lost_ringbuf += c.ringbuf;
	r->lost_orig_dst += c.orig_dst;
	r->lost_storage += c.storage;
	r->lost_sockhash += c.sockhash;
	r->lost_queue += c.queue;
	r->lost_rate_limited += c.rate_limited;
	r->lost_write_failed += c.write_failed;
	return lost_any(&c);
}

uint64_t sm_sinks_take_write_failed(struct sm_sinks *s)
{
	uint64_t now = SM_STAT_GET(s->write_failed), n;

	pthread_mutex_lock(&s->q_mu);
	n = now - s->write_failed_taken;
	s->write_failed_taken = now;
	pthread_mutex_unlock(&s->q_mu);
	return n;
}

int sm_sinks_flush(struct sm_sinks *s, int timeout_ms)
{
	struct timespec deadline;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->q_mu);
	while ((s->q_len || s->writer_busy) && !ret)
		ret = pthread_cond_timedwait(&s->idle_cv, &s->q_mu, &deadline);
	pthread_mutex_unlock(&s->q_mu);
	if (ret)
		return -ETIMEDOUT;
	pthread_mutex_lock(&s->z_mu);
	while ((s->zq_len || s->z_busy) && !ret)
		ret = pthread_cond_timedwait(&s->z_cv, &s->z_mu, &deadline);
	pthread_mutex_unlock(&s->z_mu);
	return ret ? -ETIMEDOUT : 0;
}

void sm_sinks_stats(struct sm_sinks *s, struct sm_sinks_stats *st)
{
	st->written = SM_STAT_GET(s->written);
	st->filtered = SM_STAT_GET(s->filtered);
	st->rate_limited = SM_STAT_GET(s->rate_limited);
	st->queue_dropped = SM_STAT_GET(s->queue_dropped);
	st->write_errors = SM_STAT_GET(s->write_errors);
	st->write_failed = SM_STAT_GET(s->write_failed);
	st->rotations = SM_STAT_GET(s->rotations);
	st->compressed = SM_STAT_GET(s->compressed);
	st->compress_errors = SM_STAT_GET(s->compress_errors);
	pthread_mutex_lock(&s->q_mu);
	st->queued = s->q_len;
	pthread_mutex_unlock(&s->q_mu);
}

/* Whether the file of c can be opened for appending (a reload checks before it commits). */
static int probe_file(const struct sink_conf *c, struct sm_error *err)
{
	int fd;

	if (!c->file[0])
		return 0;
	fd = open(c->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		int ret = -errno;

		sm_error_set(err,
			     "cannot open flow log %s: %s (check the directory exists and is "
			     "writable)",
			     c->file, strerror(-ret));
		return ret;
	}
	close(fd);
	return 0;
}

struct sm_sinks *sm_sinks_new(const struct sm_config *cfg, struct sm_error *err)
{
	struct sm_sinks *s = calloc(1, sizeof(*s));
	int ret;

	if (!s) {
		sm_error_set(err, "out of memory");
		return NULL;
	}
	s->file.fd = -1;
	s->out.fd = STDOUT_FILENO;
	s->out.name = "stdout";
	s->file.name = s->w_conf.file;
	pthread_rwlock_init(&s->conf_lock, NULL);
	pthread_mutex_init(&s->rl_mu, NULL);
	pthread_mutex_init(&s->q_mu, NULL);
	{
		/* the writer's gather timeout is relative: a monotonic clock */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->q_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&s->idle_cv, NULL);
	pthread_mutex_init(&s->z_mu, NULL);
	pthread_cond_init(&s->z_cv, NULL);
	s->conf = conf_new(cfg, err);
	if (!s->conf)
		goto fail;
	ret = probe_file(s->conf, err);
	if (ret) {
		errno = -ret;
		goto fail;
	}
	s->q = calloc(SINK_QUEUE_MAX + SINK_QUEUE_RESERVE, sizeof(*s->q));
	s->rl = sm_ratelimit_new(SINK_RL_SOURCES, s->conf->rate, s->conf->burst);
	if (!s->q || !s->rl) {
		sm_error_set(err, "out of memory");
		errno = ENOMEM;
		goto fail;
	}
	s->conf_gen = 1; /* the writer applies it first */
	ret = pthread_create(&s->zthread, NULL, compressor_main, s);
	if (ret) {
		sm_error_set(err, "cannot start the flow log compressor thread: %s", strerror(ret));
		errno = ret;
		goto fail;
	}
	s->z_started = true;
	ret = pthread_create(&s->writer, NULL, writer_main, s);
	if (ret) {
		sm_error_set(err, "cannot start the flow log writer thread: %s", strerror(ret));
		errno = ret;
		goto fail;
	}
	s->writer_started = true;
	return s;
fail:
	ret = errno;
	sm_sinks_free(s);
	errno = ret;
	return NULL;
}

int sm_sinks_reconfigure(struct sm_sinks *s, const struct sm_config *cfg, struct sm_error *err)
{
	struct sink_conf *next = conf_new(cfg, err), *old;
	int ret;

	if (!next)
		return -errno;
	ret = probe_file(next, err);
	if (ret) {
		conf_free(next);
		return ret;
	}
	pthread_rwlock_wrlock(&s->conf_lock);
	old = s->conf;
	s->conf = next;
	pthread_rwlock_unlock(&s->conf_lock);
	conf_free(old);
	pthread_mutex_lock(&s->rl_mu);
	sm_ratelimit_set(s->rl, next->rate, next->burst);
	pthread_mutex_unlock(&s->rl_mu);
	pthread_mutex_lock(&s->q_mu);
	s->conf_gen++;
	pthread_cond_signal(&s->q_cv);
	pthread_mutex_unlock(&s->q_mu);
	return 0;
}

void sm_sinks_free(struct sm_sinks *s)
{
	if (!s)
		return;
	if (s->writer_started) {
		/* the writer empties the queue before it leaves */
		pthread_mutex_lock(&s->q_mu);
		s->stop = true;
		pthread_cond_signal(&s->q_cv);
		pthread_mutex_unlock(&s->q_mu);
		pthread_join(s->writer, NULL);
	}
	if (s->z_started) {
		/* and the compressor finishes the files it was given */
		pthread_mutex_lock(&s->z_mu);
		s->z_stop = true;
		pthread_cond_signal(&s->z_cv);
		pthread_mutex_unlock(&s->z_mu);
		pthread_join(s->zthread, NULL);
	}
	if (s->q) {
		size_t cap = SINK_QUEUE_MAX + SINK_QUEUE_RESERVE;

		for (size_t i = 0; i < s->q_len; i++) {
			free(s->q[(s->q_head + i) % cap].text);
			free(s->q[(s->q_head + i) % cap].lost);
		}
	}
	file_close(s);
	if (s->out.tail_len)
		out_drop_tail(s, &s->out);
	if (s->file.unreported.write_failed || s->out.unreported.write_failed)
		pr_warn("%" PRIu64 " flow records could not be written and were never reported "
			"in a lost record (flows.write_failed counts them)",
			s->file.unreported.write_failed + s->out.unreported.write_failed);
	free(s->file.tail);
	free(s->out.tail);
	free(s->q);
	free(s->zq);
	free(s->zretry);
	free(s->bk);
	free(s->buf);
	free(s->off);
	sm_ratelimit_free(s->rl);
	conf_free(s->conf);
	pthread_cond_destroy(&s->z_cv);
	pthread_mutex_destroy(&s->z_mu);
	pthread_cond_destroy(&s->idle_cv);
	pthread_cond_destroy(&s->q_cv);
	pthread_mutex_destroy(&s->q_mu);
	pthread_mutex_destroy(&s->rl_mu);
	pthread_rwlock_destroy(&s->conf_lock);
	free(s);
}
