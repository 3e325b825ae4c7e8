// SPDX-License-Identifier: Apache-2.0
/*
 * The live flow stream (docs/interfaces.md, command "flows"): an in-memory
 * ring of the last flowlog.ring_size records, and the control-socket clients
 * that read it once (`sockmesh flows`) or follow it (`sockmesh flows -f`).
 *
 * Publishing (sm_flowstream_publish) runs on whichever thread emits a record:
 * it copies the decoded record and its line into a new entry, appends that
 * to a pending list under fs->mu and, when the list was empty, wakes the
 * main loop through an eventfd. Everything else runs on the main thread:
 * moving pending entries into the ring, and writing to the clients, whose
 * sockets are non-blocking.
 *
 * Every client reads the one shared ring at its own pace: a one-shot client
 * through the list of ring positions it asked for (its history), a follower
 * then through a cursor that moves with new records. Records are matched
 * against a client's filters when it reads them (the decoded record is kept
 * next to the line, so no line is parsed again), and copied into its output
 * buffer a chunk (FS_CHUNK) at a time, as its socket takes them. So a burst
 * of up to a whole ring is absorbed for every client alike, and a client's
 * own memory stays one chunk.
 *
 * Nothing blocks the daemon and nothing is lost silently:
 * - when the ring overwrites a record a client has not reached yet and that
 *   record matches its filters, the client is told: a "skipped" notice
 *   (reason slow_reader) in its stream at the place of the gap;
 * - when the main loop falls a whole ring behind the publishers, the oldest
 *   pending entries are dropped, and followers get a "skipped" notice with
 *   reason daemon_busy at that place (never matched: they may not all have
 *   matched its filters).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl.h"
#include "daemon.h"
#include "flowobs.h"
#include "evloop.h"
#include "flow_record.h"
#include "flowfilter.h"
#include "flowfmt.h"
#include "flowstream.h"
#include "log.h"
#include "util.h"

#define FS_MAX_FOLLOWERS 16	     /* `flows --follow` clients at once */
#define FS_MAX_READERS	 16	     /* one-shot `flows` clients still being served */
#define FS_MAX_FILTERS	 64	     /* filters of one request (any of them matches) */
#define FS_CHUNK	 (64u << 10) /* a client's output is filled this much at a time */
#define FS_READER_STALL	 10	     /* s a one-shot reader may take no data before it is closed */
#define FS_FLUSH_ROUNDS	 64	     /* sends per wakeup, so one client cannot hog the loop */

/*
 * One record in the stream: its decoded form for matching (its strings are
 * interned, so it is small and outlives the catalog), then its line for
 * sending.
 */
struct fs_entry {
	struct fs_entry *next;	  /* the pending list */
	uint64_t seq;		  /* position in the stream, given when it enters the ring */
	uint64_t dropped_before;  /* records dropped just before this one (daemon_busy) */
	int64_t time_ns;	  /* the record's */
	struct sm_flow_match rec; /* what filters read (a whole record is 5 times bigger) */
	size_t len;		  /* of line, newline included; a NUL follows */
	char line[];
};

/* Bytes to send: data[off..len). */
struct fs_buf {
	char *data;
	size_t off, len, cap;
};

struct fs_client {
	struct fs_client *next;
	struct sm_flowstream *fs;
	int fd;
	struct sm_ev *ev;
	bool follow;
	bool dead;	  /* closed; freed by fs_reap() once no callback can see it */
	bool read_closed; /* the client shut its sending side: stop watching EPOLLIN */
	bool want_out;	  /* EPOLLOUT is watched: output is waiting for room */
	struct sm_flowfilter **filters;
	size_t nfilters;
	int64_t since_ns;  /* 0: no lower bound */
	uint64_t *history; /* seqs of the matching ring records still to send, oldest first */
	size_t nhistory, ihistory;
	uint64_t cursor;   /* follower, after its history: the next ring seq to read */
	struct fs_buf out; /* being sent */
	uint64_t skipped_slow, skipped_busy; /* not reported to the client yet */
	uint64_t skipped_total;
	time_t progress; /* the last time the client took data */
};

struct sm_flowstream {
	struct sm_daemon *d;
	/* publishers (any thread) hand entries to the main thread here */
	pthread_mutex_t mu;
	struct fs_entry *pending, *pending_tail;
	size_t npending;
	uint64_t dropped; /* pending entries given up: the main loop was a whole ring behind */
	int wake_fd;	  /* eventfd: the pending list became non-empty */
	pthread_t main_thread;
	struct sm_ev *wake_ev;
	struct sm_ev *tick;
	/* the rest: main thread only */
	struct fs_entry **ring;
	uint32_t size;
	uint64_t next_seq; /* the ring holds the seqs [next_seq - min(next_seq, size), next_seq) */
	uint64_t dropped_seen; /* fs->dropped already put into the ring as dropped_before */
	uint64_t busy_carry;   /* drops with no entry after them yet */
	struct fs_client *clients;
	unsigned int nfollowers, nreaders;
	uint64_t skipped_total; /* records slow clients missed (slow_reader) */
};

static void fs_drain(struct sm_flowstream *fs);

/*
 * The interned copy of a record's node: this node's name in all but a
 * cluster's rare record of another, so each publishing thread keeps the last
 * one and takes the pool's lock only when it changes.
 */
static const char *node_interned(const char *node)
{
	static __thread const char *last;

	if (!last || strcmp(last, node) != 0)
		last = sm_intern(node);
	return last;
}

void sm_flowstream_publish(struct sm_daemon *d, const struct sm_flow_record *r, const char *json)
{
	struct sm_flowstream *fs = d->stream;
	struct fs_entry *e, *drop = NULL;
	bool wake, drain_now = false, main_thread;
	uint64_t one = 1;
	size_t n;

	if (!fs)
		return;
	main_thread = pthread_equal(pthread_self(), fs->main_thread);
	n = strlen(json);
	e = malloc(sizeof(*e) + n + 2);
	if (e) {
		e->next = NULL;
		e->time_ns = r->time_ns;
		sm_flow_match_of(&e->rec, r);
		/* the view outlives r: its strings must too */
		e->rec.node = node_interned(r->node);
		e->rec.drop_reason = sm_intern(r->drop_reason); /* "" (most) takes no lock */
		memcpy(e->line, json, n);
		e->line[n] = '\n';
		e->line[n + 1] = '\0';
		e->len = n + 1;
	}
	pthread_mutex_lock(&fs->mu);
	wake = !fs->pending;
	if (!e) {
		fs->dropped++; /* out of memory: the followers hear of it like of a busy loop */
	} else {
		if (!fs->pending)
			fs->pending = e;
		else
			fs->pending_tail->next = e;
		fs->pending_tail = e;
		if (++fs->npending >= fs->size && main_thread) {
			/* the main loop itself is busy making records (a ring buffer batch) */
			drain_now = true;
		} else if (fs->npending > fs->size) {
			/* a worker, and the main loop is a whole ring behind: give up the oldest */
			drop = fs->pending;
			fs->pending = drop->next;
			fs->npending--;
			fs->dropped++;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	free(drop);
	if (drain_now) {
		fs_drain(fs);
	} else if (wake) {
		ssize_t w = write(fs->wake_fd, &one, sizeof(one));

		(void) w; /* only fails when the counter is full, and then it is readable */
	}
}

/* ---- per-client output ---- */

/* Append n bytes; 0 or -ENOMEM. fill_output() keeps a client's buffer near FS_CHUNK. */
static int buf_append(struct fs_buf *b, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (b->len + n > b->cap && b->off) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *grown;

		while (cap < b->len + n)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown)
			return -ENOMEM;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	return 0;
}

static size_t buf_pending(const struct fs_buf *b)
{
	return b->len - b->off;
}

static void buf_free(struct fs_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* The notices for what the client missed so far, before whatever comes next in b. */
static int put_notices(struct sm_flowstream *fs, struct fs_client *c, struct fs_buf *b)
{
	struct {
		uint64_t *count;
		const char *reason;
	} kinds[] = {
		{&c->skipped_busy, SM_SKIPPED_DAEMON_BUSY},
		{&c->skipped_slow, SM_SKIPPED_SLOW_READER},
	};

	for (size_t i = 0; i < SM_ARRAY_SIZE(kinds); i++) {
		struct sm_flow_skipped s = {.count = *kinds[i].count, .time_ns = sm_real_ns()};
		char *line;
		int ret;

		if (!s.count)
			continue;
		sm_strlcpy(s.reason, kinds[i].reason, sizeof(s.reason));
		sm_strlcpy(s.node, fs->d->cfg.node, sizeof(s.node));
		line = sm_flow_skipped_encode(&s);
		if (!line)
			return -ENOMEM;
		ret = buf_append(b, line, strlen(line));
		free(line);
		if (ret)
			return ret;
		*kinds[i].count = 0;
	}
	return 0;
}

/* A record c wanted and will not get: counted for its next notice and for status. */
static void client_skip(struct sm_flowstream *fs, struct fs_client *c)
{
	c->skipped_slow++;
	c->skipped_total++;
	fs->skipped_total++;
}

/* One record into c's output, after the notices it must follow. */
static void put_record(struct sm_flowstream *fs, struct fs_client *c, const struct fs_entry *e)
{
	if (put_notices(fs, c, &c->out) || buf_append(&c->out, e->line, e->len))
		client_skip(fs, c); /* out of memory: still not silent */
}

static bool client_matches(const struct fs_client *c, const struct fs_entry *e)
{
	if (c->since_ns && e->time_ns < c->since_ns)
		return false;
	if (!c->nfilters)
		return true;
	return sm_flowfilter_match_any_view(c->filters, c->nfilters, &e->rec);
}

static struct fs_entry *ring_get(const struct sm_flowstream *fs, uint64_t seq)
{
	struct fs_entry *e = fs->ring[seq % fs->size];

	return e && e->seq == seq ? e : NULL;
}

static uint64_t ring_oldest(const struct sm_flowstream *fs)
{
	return fs->next_seq > fs->size ? fs->next_seq - fs->size : 0;
}

static void client_watch(struct sm_flowstream *fs, struct fs_client *c, bool want_out)
{
	uint32_t events = (c->read_closed ? 0 : EPOLLIN) | (want_out ? EPOLLOUT : 0);

	c->want_out = want_out;
	if (sm_evloop_mod(fs->d->loop, c->ev, events))
		pr_warn("flow stream: cannot watch a client socket: %s", strerror(errno));
}

static void client_close(struct sm_flowstream *fs, struct fs_client *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	sm_evloop_del(fs->d->loop, c->ev);
	close(c->fd);
	if (c->follow)
		fs->nfollowers--;
	else
		fs->nreaders--;
	if (c->skipped_total)
		pr_info("flow stream: a %s client %s; it was %llu records behind in all",
			c->follow ? "following" : "one-shot", why,
			(unsigned long long) c->skipped_total);
	else
		pr_debug("flow stream: a %s client %s", c->follow ? "following" : "one-shot", why);
}

/* What a client owns besides its socket. */
static void client_free(struct fs_client *c)
{
	for (size_t i = 0; i < c->nfilters; i++)
		sm_flowfilter_free(c->filters[i]);
	free(c->filters);
	free(c->history);
	buf_free(&c->out);
	free(c);
}

/* Free the closed clients; only where no callback of theirs can still run. */
static void fs_reap(struct sm_flowstream *fs)
{
	struct fs_client **pp = &fs->clients;

	while (*pp) {
		struct fs_client *c = *pp;

		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		client_free(c);
	}
}

/* c has records left to read: history, or (a follower) the ring past its cursor. */
static bool client_has_more(const struct sm_flowstream *fs, const struct fs_client *c)
{
	return c->ihistory < c->nhistory || (c->follow && c->cursor < fs->next_seq);
}

/*
 * What a follower's cursor passes over besides matching records: the drops
 * in front of an entry (daemon_busy).
 */
static void cursor_pass(struct fs_client *c, const struct fs_entry *e)
{
	c->skipped_busy += e->dropped_before;
	c->cursor = e->seq + 1;
}

/* Read ahead into c->out, up to FS_CHUNK unsent bytes: history first, then the ring. */
static void fill_output(struct sm_flowstream *fs, struct fs_client *c)
{
	while (buf_pending(&c->out) < FS_CHUNK && client_has_more(fs, c)) {
		struct fs_entry *e;

		if (c->ihistory < c->nhistory) {
			e = ring_get(fs, c->history[c->ihistory++]);
			if (!e) /* overwritten while this reader was slow; it matched */
				client_skip(fs, c);
			else
				put_record(fs, c, e);
			continue;
		}
		/* the ring keeps every seq from a cursor on: overwriting moves cursors */
		e = ring_get(fs, c->cursor);
		if (!e) { /* cannot happen (see ring_overwrite()); never spin, never be silent */
			client_skip(fs, c);
			c->cursor++;
			continue;
		}
		cursor_pass(c, e);
		if (client_matches(c, e))
			put_record(fs, c, e);
	}
}

/*
 * Send what c has, in order: the header and history, then (followers) the
 * records after its cursor, with the notices where records are missing. A
 * one-shot client is closed when all of it went out.
 */
static void client_flush(struct sm_flowstream *fs, struct fs_client *c)
{
	for (int round = 0; round < FS_FLUSH_ROUNDS && !c->dead; round++) {
		if (buf_pending(&c->out)) {
			ssize_t n = send(c->fd, c->out.data + c->out.off, buf_pending(&c->out),
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				if (!c->want_out)
					client_watch(fs, c, true);
				return;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				client_close(fs, c, "went away");
				return;
			}
			c->out.off += (size_t) n;
			c->progress = (time_t) sm_mono_s();
			if (buf_pending(&c->out))
				continue;
			c->out.off = c->out.len = 0;
		}
		if (client_has_more(fs, c)) {
			fill_output(fs, c);
		} else if (c->skipped_slow || c->skipped_busy) {
			if (put_notices(fs, c, &c->out)) {
				client_close(fs, c,
					     "could not be told what it missed (out of memory)");
				return;
			}
		} else if (!c->follow) {
			client_close(fs, c, "got everything");
			return;
		} else {
			if (c->want_out)
				client_watch(fs, c, false);
			return;
		}
	}
	/* more to send: the socket is writable, so the loop comes back here soon */
	if (!c->dead && !c->want_out)
		client_watch(fs, c, true);
}

/* ---- the main thread's side ---- */

/*
 * The ring is about to overwrite old: a follower that has not read it yet
 * gets a chance to (its reader may have made room since the last try: a
 * send that finds no room costs one syscall), else misses it: counted if it
 * matched, and the cursor moves past it.
 */
static void ring_overwrite(struct sm_flowstream *fs, const struct fs_entry *old)
{
	for (struct fs_client *c = fs->clients; c; c = c->next) {
		if (!c->follow || c->dead || c->cursor > old->seq)
			continue;
		client_flush(fs, c);
		if (c->dead || c->cursor > old->seq)
			continue;
		if (client_matches(c, old))
			client_skip(fs, c);
		cursor_pass(c, old);
	}
}

/* Move the pending entries into the ring; let the followers read on. */
static void fs_drain(struct sm_flowstream *fs)
{
	struct fs_entry *list, *e;
	uint64_t dropped;

	pthread_mutex_lock(&fs->mu);
	list = fs->pending;
	fs->pending = fs->pending_tail = NULL;
	fs->npending = 0;
	dropped = fs->dropped;
	pthread_mutex_unlock(&fs->mu);

	if (dropped != fs->dropped_seen) {
		pr_warn("flow stream: %llu records dropped before the followers saw them (the main "
			"loop fell a whole flowlog.ring_size behind; the flow log has them)",
			(unsigned long long) (dropped - fs->dropped_seen));
		fs->busy_carry += dropped - fs->dropped_seen;
		sm_flow_observe_lost(fs->d, "stream", dropped - fs->dropped_seen);
		fs->dropped_seen = dropped;
	}
	for (e = list; e;) {
		struct fs_entry *next = e->next;
		uint32_t slot = (uint32_t) (fs->next_seq % fs->size);

		/* before e has a seq: a follower flushed here reads only what the ring holds */
		if (fs->ring[slot]) {
			ring_overwrite(fs, fs->ring[slot]);
			free(fs->ring[slot]);
		}
		e->next = NULL;
		e->seq = fs->next_seq++;
		e->dropped_before = fs->busy_carry; /* they were older than e */
		fs->busy_carry = 0;
		fs->ring[slot] = e;
		e = next;
	}
	for (struct fs_client *c = fs->clients; c; c = c->next)
		if (c->follow && !c->dead && !c->want_out &&
		    (client_has_more(fs, c) || c->skipped_busy || c->skipped_slow))
			client_flush(fs, c);
}

static void on_wake(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_flowstream *fs = arg;
	uint64_t v;
	ssize_t n;

	(void) loop;
	(void) ev;
	(void) events;
	/* read before taking the list: a record published after this read wakes us again */
	n = read(fs->wake_fd, &v, sizeof(v));
	(void) n;
	fs_drain(fs);
	fs_reap(fs);
}

static void on_client(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fs_client *c = arg;
	struct sm_flowstream *fs = c->fs;
	char junk[512];

	(void) loop;
	(void) ev;
	if (events & (EPOLLHUP | EPOLLERR)) {
		client_close(fs, c, "closed the connection");
		fs_reap(fs);
		return;
	}
	if (events & EPOLLIN) {
		/* nothing more is expected from the client: discard, notice a shutdown */
		for (int i = 0; i < 16; i++) {
			ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);

			if (n > 0)
				continue;
			if (n == 0) {
				c->read_closed = true;
				client_watch(fs, c, c->want_out);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				client_close(fs, c, "failed");
			}
			break;
		}
	}
	if ((events & EPOLLOUT) && !c->dead)
		client_flush(fs, c);
	fs_reap(fs);
}

/* Every second: a one-shot reader that took nothing for FS_READER_STALL s is let go. */
static void on_tick(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_flowstream *fs = arg;
	time_t now = (time_t) sm_mono_s();

	(void) loop;
	(void) ev;
	(void) events;
	for (struct fs_client *c = fs->clients; c; c = c->next)
		if (!c->follow && !c->dead && now - c->progress > FS_READER_STALL)
			client_close(fs, c, "was closed: it read nothing for too long");
	fs_reap(fs);
}

/* The request's "args" (docs/interfaces.md) into c and *last (-1: not given). */
static int parse_args(struct fs_client *c, struct json_object *args, int64_t *last,
		      struct sm_error *err)
{
	*last = -1;
	if (!args)
		return 0;
	json_object_object_foreach(args, key, val)
	{
		if (strcmp(key, "follow") == 0) {
			if (!json_object_is_type(val, json_type_boolean)) {
				sm_error_set(err, "flows: \"follow\" must be true or false");
				return -EINVAL;
			}
			c->follow = json_object_get_boolean(val);
		} else if (strcmp(key, "last") == 0) {
			if (!json_object_is_type(val, json_type_int) ||
			    json_object_get_int64(val) < 0) {
				sm_error_set(err, "flows: \"last\" must be a number of records, 0 "
						  "or more");
				return -EINVAL;
			}
			*last = json_object_get_int64(val);
		} else if (strcmp(key, "since") == 0) {
			if (!json_object_is_type(val, json_type_string) ||
			    sm_flowfmt_parse_time(json_object_get_string(val), &c->since_ns)) {
				sm_error_set(err,
					     "flows: \"since\" must be an RFC 3339 time, e.g. "
					     "\"2026-11-29T20:01:02Z\" (got %.60s)",
					     json_object_to_json_string(val));
				return -EINVAL;
			}
		} else if (strcmp(key, "filters") == 0) {
			size_t n;

			if (!json_object_is_type(val, json_type_array)) {
				sm_error_set(err,
					     "flows: \"filters\" must be an array of filter "
					     "strings, e.g. [\"verdict=DROPPED to-port=8080\"]");
				return -EINVAL;
			}
			n = json_object_array_length(val);
			if (n > FS_MAX_FILTERS) {
				sm_error_set(err, "flows: at most %d filters (got %zu)",
					     FS_MAX_FILTERS, n);
				return -EINVAL;
			}
			c->filters = calloc(n ? n : 1, sizeof(struct sm_flowfilter *));
			if (!c->filters) {
				sm_error_set(err, "flows: out of memory");
				return -ENOMEM;
			}
			for (size_t i = 0; i < n; i++) {
				struct json_object *f = json_object_array_get_idx(val, i);
				struct sm_error ferr = {{0}};
				int ret;

				if (!json_object_is_type(f, json_type_string)) {
					sm_error_set(err, "flows: filter %zu is not a string",
						     i + 1);
					return -EINVAL;
				}
				ret = sm_flowfilter_parse(json_object_get_string(f),
							  &c->filters[c->nfilters], &ferr);
				if (ret) {
					sm_error_set(err, "flows: filter %zu: %s", i + 1, ferr.msg);
					return ret;
				}
				c->nfilters++;
			}
		} else {
			sm_error_set(err,
				     "flows: unknown argument \"%.40s\" (flows takes follow, last, "
				     "since, filters)",
				     key);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * The seqs of the ring records c wants, oldest first: those matching its
 * filters and since, the last `last` of them (-1: all; a follower without
 * "last" wants none, only what comes next).
 */
static int pick_history(struct sm_flowstream *fs, struct fs_client *c, int64_t last)
{
	uint64_t oldest = ring_oldest(fs), avail = fs->next_seq - oldest, want;
	size_t n = 0;

	c->cursor = fs->next_seq; /* a follower goes on from here after its history */
	want = last >= 0 ? (uint64_t) last : c->follow ? 0 : avail;
	if (want > avail)
		want = avail;
	if (!want)
		return 0;
	c->history = malloc(want * sizeof(*c->history));
	if (!c->history)
		return -ENOMEM;
	/* newest first until enough, filling from the end so the list ends oldest first */
	for (uint64_t seq = fs->next_seq; seq-- > oldest && n < want;) {
		struct fs_entry *e = ring_get(fs, seq);

		if (e && client_matches(c, e))
			c->history[want - 1 - n++] = seq;
	}
	memmove(c->history, c->history + (want - n), n * sizeof(*c->history));
	c->nhistory = n;
	return 0;
}

static struct json_object *header_data(struct sm_flowstream *fs, const struct fs_client *c)
{
	struct json_object *o = json_object_new_object();
	uint64_t oldest = ring_oldest(fs);
	char when[40];

	if (!o)
		return NULL;
	json_object_object_add(o, "node", json_object_new_string(fs->d->cfg.node));
	json_object_object_add(o, "follow", json_object_new_boolean(c->follow));
	json_object_object_add(o, "ring_size", json_object_new_uint64(fs->size));
	json_object_object_add(o, "buffered", json_object_new_uint64(fs->next_seq - oldest));
	if (fs->next_seq > oldest)
		json_object_object_add(o, "oldest",
				       json_object_new_string(sm_format_time_ns(
					       ring_get(fs, oldest)->time_ns, when, sizeof(when))));
	json_object_object_add(o, "history", json_object_new_uint64(c->nhistory));
	return o;
}

int sm_flowstream_command(struct sm_daemon *d, int fd, struct json_object *args,
			  struct sm_error *err)
{
	struct sm_flowstream *fs = d->stream;
	struct json_object *hdr;
	struct fs_client *c;
	char *line;
	int64_t last;
	int ret;

	if (!fs) {
		sm_error_set(err, "flows: the flow stream is off (flowlog.ring_size is 0): set "
				  "flowlog.ring_size, e.g. to 4096, and restart sockmeshd");
		return -EOPNOTSUPP;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		sm_error_set(err, "flows: out of memory");
		return -ENOMEM;
	}
	c->fs = fs;
	c->fd = fd;
	ret = parse_args(c, args, &last, err);
	if (ret)
		goto free_client;
	if (c->follow ? fs->nfollowers >= FS_MAX_FOLLOWERS : fs->nreaders >= FS_MAX_READERS) {
		sm_error_set(err,
			     "flows: %d %s clients are connected already, the most this daemon "
			     "serves at once (end one of them, or read the flow log file)",
			     c->follow ? FS_MAX_FOLLOWERS : FS_MAX_READERS,
			     c->follow ? "following (--follow)" : "one-shot");
		ret = -EBUSY;
		goto free_client;
	}
	/* what publishers handed over so far belongs to the history, as in the flow log */
	fs_drain(fs);
	ret = pick_history(fs, c, last);
	hdr = ret ? NULL : header_data(fs, c);
	line = hdr ? sm_ctl_format_response(hdr, NULL) : NULL;
	json_object_put(hdr);
	if (!line || buf_append(&c->out, line, strlen(line))) {
		free(line);
		sm_error_set(err, "flows: out of memory");
		ret = -ENOMEM;
		goto free_client;
	}
	free(line);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		ret = -errno;
		sm_error_set(err, "flows: cannot make the socket non-blocking: %s", strerror(-ret));
		goto free_client;
	}
	c->ev = sm_evloop_add(d->loop, fd, EPOLLIN, on_client, c);
	if (!c->ev) {
		ret = -errno;
		sm_error_set(err, "flows: cannot watch the socket: %s", strerror(-ret));
		goto free_client;
	}
	if (c->follow)
		fs->nfollowers++;
	else
		fs->nreaders++;
	c->progress = (time_t) sm_mono_s();
	c->next = fs->clients;
	fs->clients = c;
	pr_debug("flow stream: a %s client, %zu filters, %zu history records",
		 c->follow ? "following" : "one-shot", c->nfilters, c->nhistory);
	client_flush(fs, c);
	fs_reap(fs);
	return 0;
free_client:
	/* not registered yet: the caller answers with err and closes fd */
	client_free(c);
	return ret;
}

struct json_object *sm_flowstream_status(struct sm_daemon *d)
{
	struct sm_flowstream *fs = d->stream;
	struct json_object *o = json_object_new_object();
	uint64_t dropped;

	if (!o || !fs) {
		if (o)
			json_object_object_add(o, "ring_size", json_object_new_uint64(0));
		return o;
	}
	pthread_mutex_lock(&fs->mu);
	dropped = fs->dropped;
	pthread_mutex_unlock(&fs->mu);
	json_object_object_add(o, "ring_size", json_object_new_uint64(fs->size));
	json_object_object_add(o, "buffered",
			       json_object_new_uint64(fs->next_seq - ring_oldest(fs)));
	json_object_object_add(o, "followers", json_object_new_uint64(fs->nfollowers));
	json_object_object_add(o, "readers", json_object_new_uint64(fs->nreaders));
	json_object_object_add(o, "skipped", json_object_new_uint64(fs->skipped_total));
	json_object_object_add(o, "dropped", json_object_new_uint64(dropped));
	return o;
}

int sm_flowstream_start(struct sm_daemon *d)
{
	struct sm_flowstream *fs;
	int err;

	if (!d->cfg.flowlog_ring_size) {
		pr_info("flow stream off (flowlog.ring_size is 0): `sockmesh flows` is refused");
		return 0;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->d = d;
	fs->main_thread = pthread_self();
	fs->size = d->cfg.flowlog_ring_size;
	pthread_mutex_init(&fs->mu, NULL);
	fs->ring = calloc(fs->size, sizeof(struct fs_entry *));
	fs->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!fs->ring || fs->wake_fd < 0) {
		err = fs->ring ? -errno : -ENOMEM;
		pr_err("cannot set up the flow stream: %s", strerror(-err));
		goto free_fs;
	}
	fs->wake_ev = sm_evloop_add(d->loop, fs->wake_fd, EPOLLIN, on_wake, fs);
	fs->tick = fs->wake_ev ? sm_evloop_timer(d->loop, 1000, on_tick, fs) : NULL;
	if (!fs->tick) {
		err = -errno;
		pr_err("cannot set up the flow stream: %s", strerror(-err));
		sm_evloop_del(d->loop, fs->wake_ev);
		goto free_fs;
	}
	d->stream = fs;
	return 0;
free_fs:
	if (fs->wake_fd >= 0)
		close(fs->wake_fd);
	free(fs->ring);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
	return err;
}

void sm_flowstream_stop(struct sm_daemon *d)
{
	struct sm_flowstream *fs = d->stream;
	struct fs_entry *e;

	if (!fs)
		return;
	d->stream = NULL; /* every publisher has stopped: workers and the exporter are gone */
	for (struct fs_client *c = fs->clients; c; c = c->next)
		client_close(fs, c, "was closed: the daemon stops");
	fs_reap(fs);
	while ((e = fs->pending)) {
		fs->pending = e->next;
		free(e);
	}
	for (uint32_t i = 0; i < fs->size; i++)
		free(fs->ring[i]);
	free(fs->ring);
	sm_evloop_del(d->loop, fs->tick);
	sm_evloop_del(d->loop, fs->wake_ev);
	close(fs->wake_fd);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}
