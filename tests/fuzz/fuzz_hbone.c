// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness: the inbound side of the HBONE tunnel after TLS. The
 * bytes an authenticated peer sends (HTTP/2: the client preface, SETTINGS,
 * CONNECT requests, DATA, RST_STREAM, GOAWAY, PING, WINDOW_UPDATE, ...)
 * go into a server connection of the daemon's own code: its nghttp2 session
 * and callbacks, the request checks (header limits, :method CONNECT,
 * :authority, a service hosted on this node, the destination's policy),
 * the answer once the service is connected, the relay of DATA both ways and
 * the teardown (userspace/daemon/hbone_h2.c and hbone.c, through
 * hbone_int.h).
 *
 * Only the transport is the harness's: memory instead of TLS (the bytes go
 * to hb_h2_recv(), what the daemon sends is gathered with hb_h2_gather()
 * and dropped), and socketpairs instead of connections to the services
 * (the worker's upstream_connect). Between the peer's frames the harness
 * plays the event loop: it polls each stream's socket for the events the
 * daemon watches and hands them to stream_fd_event(), as on_stream_fd()
 * would, then reaps the connection as the daemon does after every event.
 *
 * Input: one byte of flags, then the peer's bytes.
 *   bits 0-1  the peer's SPIFFE ID: api, batch (both catalog workloads), a
 *             foreign trust domain's, the calling node's own (the last two
 *             are no workload: the policy sees "world")
 *   bit 2     the worker is draining (new streams get REFUSED_STREAM)
 *   bit 3     all bytes at once (else one frame at a time: the preface,
 *             then each frame by its header's length)
 *
 * Services on this node (n1), and what connecting to them does:
 *   10.0.1.1:80    web    connects; answers one line, reads what comes
 *   10.0.1.1:81    web    refused (502)
 *   10.0.1.1:82    web    unreachable (503)
 *   10.0.1.1:83    web    the connect never completes
 *   10.0.1.1:84    web    connects; answers one line and closes its side
 *   [fd00::1]:80   web    connects; never reads (small socket buffers)
 *   10.0.1.2:5432  db     connects (the policy admits api only)
 *   10.0.1.3:6379  cache  connects and closes at once (no policy selects it)
 * and 10.0.2.1:80 is a service of node n2, not hosted here. The policy
 * denies batch web:84 and audits batch's other web streams.
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks that:
 *  - the daemon connects only to a service hosted here that the policy
 *    admits for the peer's identity (stated here, not asked of the code);
 *  - a stream is answered 200 (established) only once admitted and
 *    connected, and the connection's stream count is its list's length;
 *  - once the connection is torn down (as when the daemon stops) no stream,
 *    connection or socket of it is left: the worker's counts are back to 0.
 *
 * SM_FUZZ_LOG=debug (or info, warn) shows the daemon's log while
 * reproducing an input.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flowjoin.h"
#include "hbone_int.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char catalog_yaml[] = "nodes:\n"
				   "  - name: n1\n"
				   "    addresses: [10.0.1.1, 10.0.1.2, 10.0.1.3, \"fd00::1\"]\n"
				   "  - name: n2\n"
				   "    addresses: [10.0.2.1]\n"
				   "workloads:\n"
				   "  - {name: web, node: n1, cgroup: sm/web, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/web\"}\n"
				   "  - {name: db, node: n1, cgroup: sm/db, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/db\"}\n"
				   "  - {name: cache, node: n1, cgroup: sm/cache, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/cache\"}\n"
				   "  - {name: api, node: n2, cgroup: sm/api, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/api\"}\n"
				   "  - {name: batch, node: n2, cgroup: sm/batch, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/batch\"}\n"
				   "  - {name: remote, node: n2, cgroup: sm/remote, spiffe_id: "
				   "\"spiffe://sockmesh.test/ns/default/sa/remote\"}\n"
				   "services:\n"
				   "  - {address: 10.0.1.1, port: 80, workload: web}\n"
				   "  - {address: 10.0.1.1, port: 81, workload: web}\n"
				   "  - {address: 10.0.1.1, port: 82, workload: web}\n"
				   "  - {address: 10.0.1.1, port: 83, workload: web}\n"
				   "  - {address: 10.0.1.1, port: 84, workload: web}\n"
				   "  - {address: \"fd00::1\", port: 80, workload: web}\n"
				   "  - {address: 10.0.1.2, port: 5432, workload: db}\n"
				   "  - {address: 10.0.1.3, port: 6379, workload: cache}\n"
				   "  - {address: 10.0.2.1, port: 80, workload: remote}\n";

static const char policy_yaml[] =
	"policies:\n"
	"  - name: db-from-api\n"
	"    selector: {spiffe: \"spiffe://sockmesh.test/ns/default/sa/db\"}\n"
	"    rules:\n"
	"      - {action: ALLOW, from: [\"spiffe://sockmesh.test/ns/default/sa/api\"]}\n"
	"  - name: web\n"
	"    selector: {spiffe: \"spiffe://sockmesh.test/ns/default/sa/web\"}\n"
	"    rules:\n"
	"      - {action: DENY, from: [\"spiffe://sockmesh.test/ns/default/sa/batch\"], "
	"ports: [\"84\"]}\n"
	"      - {action: AUDIT, from: [\"spiffe://sockmesh.test/ns/default/sa/batch\"]}\n"
	"      - {action: ALLOW, from: [any]}\n";

enum caller { CALLER_API, CALLER_BATCH, CALLER_FOREIGN, CALLER_NODE };

static const char *const caller_ids[] = {
	"spiffe://sockmesh.test/ns/default/sa/api",
	"spiffe://sockmesh.test/ns/default/sa/batch",
	"spiffe://other.test/ns/default/sa/api",
	"spiffe://sockmesh.test/sockmesh/node/n2",
};

/* What connecting to a service does (see the head comment). */
enum upstream {
	UP_OPEN,
	UP_REFUSED,
	UP_UNREACHABLE,
	UP_PENDING,
	UP_ANSWER_CLOSE,
	UP_SLOW,
	UP_RESET,
};

static const struct service {
	const char *addr;
	uint16_t port;
	enum upstream up;
	bool db; /* admits api only */
} services[] = {
	{"10.0.1.1", 80, UP_OPEN, false},	  {"10.0.1.1", 81, UP_REFUSED, false},
	{"10.0.1.1", 82, UP_UNREACHABLE, false},  {"10.0.1.1", 83, UP_PENDING, false},
	{"10.0.1.1", 84, UP_ANSWER_CLOSE, false}, {"fd00::1", 80, UP_SLOW, false},
	{"10.0.1.2", 5432, UP_OPEN, true},	  {"10.0.1.3", 6379, UP_RESET, false},
};

#define NSERVICES (sizeof(services) / sizeof(services[0]))
/* more than tunnel.max_streams (100): every stream of a connection can have one */
#define MAX_UPSTREAMS 128
/* rounds of stream events after each piece of input; more would find nothing new */
#define EVENT_ROUNDS 4
#define PREFACE	     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/* One connection the daemon made to a service: its end and the service's. */
struct upstream_conn {
	int fd, peer;
	enum upstream up;
	bool greeted;
};

static struct sm_daemon d;
static struct sm_worker w;
static struct sm_addr service_addr[NSERVICES];
static enum caller caller; /* the peer of the current input */
static struct upstream_conn ups[MAX_UPSTREAMS];
static unsigned int nups;

static bool admitted(const struct service *sv)
{
	if (sv->db)
		return caller == CALLER_API;
	return !(sv->port == 84 && caller == CALLER_BATCH);
}

/* The worker's upstream_connect: the services above, on socketpairs. */
static int upstream_connect(const struct sm_daemon *dm, const struct sm_addr *dst, uint16_t port,
			    const struct sm_addr *src, uint16_t sport)
{
	const struct service *sv = NULL;
	struct upstream_conn *u;
	int sp[2];

	(void) dm;
	(void) src;
	(void) sport;
	for (size_t i = 0; i < NSERVICES; i++)
		if (services[i].port == port && sm_addr_equal(&service_addr[i], dst))
			sv = &services[i];
	if (!sv || !admitted(sv)) {
		char buf[64];

		fprintf(stderr,
			"fuzz_hbone: the daemon connects to %s port %u for %s, which "
			"is no service hosted here that the policy admits for it\n",
			sm_addr_format(dst, buf, sizeof(buf)), port, caller_ids[caller]);
		abort();
	}
	if (sv->up == UP_REFUSED)
		return -ECONNREFUSED;
	if (sv->up == UP_UNREACHABLE)
		return -EHOSTUNREACH;
	if (nups == MAX_UPSTREAMS)
		return -EMFILE;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp))
		return -errno;
	if (sv->up == UP_SLOW) {
		int small = 4096;

		setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	}
	u = &ups[nups++];
	u->fd = sp[0];
	u->peer = sp[1];
	u->up = sv->up;
	u->greeted = false;
	return sp[0];
}

static struct upstream_conn *upstream_of(int fd)
{
	/* the newest first: a descriptor the daemon closed is reused for a later one */
	for (unsigned int i = nups; i-- > 0;)
		if (ups[i].fd == fd)
			return &ups[i];
	return NULL;
}

/* The service's side: answer once connected, read (or not), close. */
static void service_act(struct upstream_conn *u)
{
	static const char line[] = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
	char sink[4096];

	if (u->peer < 0)
		return;
	if (u->up == UP_RESET) {
		close(u->peer);
		u->peer = -1;
		return;
	}
	if (!u->greeted) {
		u->greeted = true;
		if (send(u->peer, line, sizeof(line) - 1, MSG_NOSIGNAL) < 0)
			return;
		if (u->up == UP_ANSWER_CLOSE)
			shutdown(u->peer, SHUT_WR);
	}
	if (u->up != UP_SLOW)
		while (recv(u->peer, sink, sizeof(sink), 0) > 0)
			;
}

static void setup_once(void)
{
	static bool done;
	struct sm_policy_set set = {0};
	struct sm_error err = {{0}};
	const char *lv = getenv("SM_FUZZ_LOG");
	struct sm_hbone_worker *hw;

	if (done)
		return;
	sm_log_set_level(lv ? sm_log_level_parse(lv) : SM_LOG_ERROR);
	sm_config_defaults(&d.cfg);
	sm_strlcpy(d.cfg.node, "n1", sizeof(d.cfg.node));
	if (sm_catalog_parse(&d.cat, catalog_yaml, strlen(catalog_yaml), "catalog", &err) ||
	    sm_policy_set_parse(&set, policy_yaml, strlen(policy_yaml), "policy", &err)) {
		fprintf(stderr, "fuzz_hbone: %s\n", err.msg);
		abort();
	}
	d.node_idx = sm_catalog_node_index(&d.cat, "n1");
	if (d.node_idx < 0 || sm_policy_start_unattached(&d, &set, 1, &err)) {
		fprintf(stderr, "fuzz_hbone: the policy: %s\n", err.msg);
		abort();
	}
	sm_policy_set_free(&set);
	for (size_t i = 0; i < NSERVICES; i++)
		if (sm_addr_parse(services[i].addr, &service_addr[i]))
			abort();
	hw = calloc(1, sizeof(*hw));
	w.joins = sm_flowjoins_new();
	if (!hw || !w.joins)
		abort();
	hw->upstream_connect = upstream_connect;
	w.d = &d;
	w.loop = sm_evloop_new();
	w.hb = hw;
	w.spare_fd = -1;
	if (!w.loop)
		abort();
	done = true;
}

/* An inbound connection whose TLS handshake is done, as conn_new() and handshake_done() leave it.
 */
static struct hb_conn *conn_open(void)
{
	struct hb_conn *c = calloc(1, sizeof(*c));
	struct timespec ts;

	if (!c)
		abort();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	c->d = &d;
	c->w = &w;
	c->server = true;
	c->fd = -1;
	c->started_ns = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
	c->established_ns = c->started_ns;
	c->last_rx_ns = c->started_ns;
	if (sm_addr_parse("10.0.2.1", &c->peer))
		abort();
	c->peer_port = 40000;
	sm_strlcpy(c->peer_spiffe, caller_ids[caller], sizeof(c->peer_spiffe));
	if (hb_h2_init(c))
		abort();
	c->next = w.hb->conns;
	w.hb->conns = c;
	SM_STAT_INC(w.hb->st.conns_in);
	return c;
}

static void check_streams(const struct hb_conn *c)
{
	unsigned int n = 0;

	for (const struct hb_stream *s = c->streams; s; s = s->next) {
		n++;
		if (s->established && (!s->admitted || s->fd < 0 || s->fd_connecting)) {
			fprintf(stderr,
				"fuzz_hbone: stream %d (%s) answered 200 without an "
				"admitted, connected service\n",
				s->id, s->authority);
			abort();
		}
	}
	if (n != c->nstreams) {
		fprintf(stderr, "fuzz_hbone: %u streams listed, %u counted\n", n, c->nstreams);
		abort();
	}
}

/*
 * What conn_pump() does around TLS, minus TLS: the frames gathered are
 * dropped (the peer is memory); a session that wants neither to read nor
 * to write is over. Then the reap every handler ends with. Returns c, or
 * NULL when the reap freed it.
 */
static struct hb_conn *pump_and_reap(struct hb_conn *c)
{
	bool dead;

	while (!c->dead) {
		size_t before = c->out.len;

		if (hb_h2_gather(c))
			break;
		if (c->out.len == before)
			break;
		c->out.off = c->out.len = 0;
	}
	if (!c->dead && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		c->dead = true;
	if (!c->dead)
		check_streams(c);
	dead = c->dead;
	conn_reap(c);
	return dead ? NULL : c;
}

/* The events the loop would report now for each stream's socket, handled. */
static struct hb_conn *stream_events(struct hb_conn *c)
{
	for (int round = 0; c && round < EVENT_ROUNDS; round++) {
		bool any = false;

		for (struct hb_stream *s = c->streams; s; s = s->next) {
			struct upstream_conn *u;
			struct pollfd p;

			if (s->dead || !s->ev || s->fd < 0)
				continue;
			u = upstream_of(s->fd);
			if (!u)
				abort();
			if (u->up == UP_PENDING)
				continue;
			if (!s->fd_connecting)
				service_act(u);
			p.fd = s->fd;
			p.events = (short) sm_ev_events(s->ev);
			p.revents = 0;
			if (poll(&p, 1, 0) <= 0 || !p.revents)
				continue;
			if (s->fd_connecting)
				service_act(u);
			any = true;
			stream_fd_event(s, (uint32_t) p.revents);
		}
		c = pump_and_reap(c);
		if (!any)
			break;
	}
	return c;
}

/* How many bytes the peer's next piece is: the preface, or one frame. */
static size_t next_piece(const uint8_t *p, size_t left, bool first)
{
	size_t len;

	if (first && left >= sizeof(PREFACE) - 1 && memcmp(p, PREFACE, sizeof(PREFACE) - 1) == 0)
		return sizeof(PREFACE) - 1;
	if (left < 9)
		return left;
	len = 9 + ((size_t) p[0] << 16 | (size_t) p[1] << 8 | p[2]);
	return len < left ? len : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hb_conn *c;
	size_t off = 1;
	bool whole;

	setup_once();
	if (size < 1)
		return 0;
	caller = (enum caller)(data[0] & 3);
	w.draining = data[0] & 4;
	whole = data[0] & 8;
	nups = 0;

	c = conn_open();
	c = pump_and_reap(c); /* our SETTINGS go out first, as after the handshake */
	while (c && off < size) {
		size_t n = whole ? size - off : next_piece(data + off, size - off, off == 1);

		if (hb_h2_recv(c, data + off, n) == 0)
			/* what conn_pump() does after a read round */
			for (struct hb_stream *s = c->streams; s; s = s->next)
				if (s->down.len > s->down.off)
					stream_flush_down(s);
		off += n;
		c = pump_and_reap(c);
		c = stream_events(c);
	}
	if (c) {
		/* the worker stops: sm_hbone_worker_free()'s teardown */
		conn_fail(c, sm_drop_reason_name(SM_DROP_DAEMON_STOPPED));
		conn_reap(c);
	}

	if (w.hb->conns || SM_STAT_GET(w.hb->st.streams_open) || SM_STAT_GET(w.hb->st.conns_in)) {
		fprintf(stderr, "fuzz_hbone: after teardown: %s, %llu streams, %llu connections\n",
			w.hb->conns ? "a connection still listed" : "no connection listed",
			(unsigned long long) SM_STAT_GET(w.hb->st.streams_open),
			(unsigned long long) SM_STAT_GET(w.hb->st.conns_in));
		abort();
	}
	for (unsigned int i = 0; i < nups; i++) {
		/* the daemon closed its end: the service sees EOF or a reset, never silence */
		char b;
		ssize_t r;

		if (ups[i].peer < 0)
			continue;
		r = recv(ups[i].peer, &b, 1, MSG_PEEK);
		while (r > 0) {
			char sink[4096];

			r = recv(ups[i].peer, sink, sizeof(sink), 0);
		}
		if (r < 0 && errno == EAGAIN) {
			fprintf(stderr, "fuzz_hbone: a service connection was left open\n");
			abort();
		}
		close(ups[i].peer);
	}
	return 0;
}
