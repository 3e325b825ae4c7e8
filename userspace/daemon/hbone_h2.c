// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE's HTTP/2 side: the nghttp2 session of a tunnel connection, its
 * callbacks (both roles), and the inbound side's checks of a CONNECT request
 * (header limits, :method, :authority, a service hosted on this node, the
 * destination's policy) before it connects to the service.
 *
 * Bytes reach a session through hb_h2_recv() and leave it through
 * hb_h2_gather(); hbone.c's conn_pump() puts TLS around them, the fuzz
 * harness (tests/fuzz/fuzz_hbone.c) memory. Connections, streams and their
 * plain sockets are hbone.c's (hbone_int.h); the rules of ownership there
 * hold here: callbacks mark streams dead, never free them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>

#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flowjoin.h"
#include "hbone_int.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"
#include "util.h"

#define HB_WINDOW	    (1024 * 1024) /* stream receive window we advertise */
#define HB_CONN_WINDOW	    (8 << 20)	  /* connection receive window */
#define HB_TLS_BATCH	    (64 * 1024)	  /* HTTP/2 output gathered per SSL_write */
#define HB_MAX_HEADER_VALUE 256		  /* longest request header value accepted */
#define HB_MAX_HEADERS	    32		  /* header fields per request */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct hb_conn *c = user;
	struct hb_stream *s;

	if (!c->server || frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (c->goaway || c->w->draining) {
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	s = stream_new(c, -1);
	if (!s)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	s->id = frame->hd.stream_id;
	nghttp2_session_set_stream_user_data(h2, s->id, s);
	return 0;
}

/* Keep a header's value as a string in field (size bytes). 0, or -ENAMETOOLONG: not kept. */
static int header_keep(char *field, size_t size, const uint8_t *value, size_t len)
{
	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(field, value, len);
	field[len] = '\0';
	return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	struct hb_conn *c = user;

	(void) flags;
	if (!s || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (!c->server) {
		if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
			s->status =
				(value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
		return 0;
	}
	if (++s->nheaders > HB_MAX_HEADERS || valuelen > HB_MAX_HEADER_VALUE) {
		s->bad_request = true;
		return 0;
	}
	/*
	 * A value longer than its field is never cut to fit: the first 63
	 * bytes of an invalid :authority can name a service (a port with
	 * leading zeros), so such a request is malformed. A traceparent that
	 * long is no W3C one of a version we know; it is left out.
	 */
	if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
		if (header_keep(s->method, sizeof(s->method), value, valuelen))
			s->bad_request = true;
	} else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
		if (header_keep(s->authority, sizeof(s->authority), value, valuelen))
			s->bad_request = true;
	} else if (namelen == 11 && memcmp(name, "traceparent", 11) == 0) {
		(void) header_keep(s->trace, sizeof(s->trace), value, valuelen);
	} else if (namelen == 9 && memcmp(name, "forwarded", 9) == 0) {
		/* more than one (or one too long) is none: the caller's port is a nicety */
		if (s->forwarded_bad || s->forwarded[0] ||
		    header_keep(s->forwarded, sizeof(s->forwarded), value, valuelen)) {
			s->forwarded_bad = true;
			s->forwarded[0] = '\0';
		}
	}
	return 0;
}

/* A request answered without a body: the stream ends with the response. */
void hb_respond_policy(struct hb_stream *s, const char *status, const char *why,
		       const struct sm_policy_decision *pd)
{
	struct hb_conn *c = s->conn;
	nghttp2_nv nv[] = {{(uint8_t *) ":status", (uint8_t *) status, 7, strlen(status),
			    NGHTTP2_NV_FLAG_NONE}};

	nghttp2_submit_response(c->h2, s->id, nv, 1, NULL);
	SM_STAT_INC(c->w->hb->st.requests_refused);
	record_failure_policy(c, why, s->authority, pd);
	s->dead = true;
	s->reset = true;
}

/* The drop_reason of a stream the policy refuses. */
const char *hb_policy_reason(const struct sm_policy_decision *pd)
{
	return pd->reason == SM_POLICY_R_DEFAULT_DENY
		       ? sm_drop_reason_name(SM_DROP_POLICY_DEFAULT_DENY)
		       : sm_drop_reason_name(SM_DROP_POLICY_DENIED);
}

void hb_respond(struct hb_stream *s, const char *status, const char *why)
{
	hb_respond_policy(s, status, why, NULL);
}

void hb_upstream_ready(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
	nghttp2_nv nv[] = {{(uint8_t *) ":status", (uint8_t *) "200", 7, 3, NGHTTP2_NV_FLAG_NONE}};

	s->fd_connecting = false;
	s->established = true;
	/* established: what outlives this daemon is published (the entry was written at connect) */
	join_update(s, NULL);
	if (nghttp2_submit_response(c->h2, s->id, nv, 1, &prd) != 0)
		stream_fail(s, NGHTTP2_INTERNAL_ERROR, sm_drop_reason_name(SM_DROP_HTTP2_ERROR));
	stream_flush_down(s); /* DATA that arrived before the service answered */
}

/*
 * Connect to the service for an admitted CONNECT and at once tell the flow
 * export who called (join_update(), keyed by this socket's own address and
 * port, which the service's socket sees as its far end). Over loopback the
 * whole handshake, and so the kernel's conn_start of the service's socket,
 * can happen before connect() returns: the promise around it
 * (sm_flowjoins_expect()) makes the flow export wait for the entry rather
 * than write that record, and its metrics, without the verified caller.
 */
static int upstream_connect_joined(struct hb_stream *s, const struct sm_addr *dst, uint16_t port,
				   const struct sm_addr *src, uint16_t sport)
{
	struct hb_conn *c = s->conn;
	struct sm_flowjoins *t = c->w->joins;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd;

	if (t)
		sm_flowjoins_expect(t, true);
	fd = c->w->hb->upstream_connect(c->d, dst, port, src, sport);
	if (fd >= 0 && getsockname(fd, (struct sockaddr *) &ss, &sl) == 0) {
		sm_addr_from_sockaddr((struct sockaddr *) &ss, &s->key_addr, &s->key_port);
		/* an earlier stream's socket had this address and port: nothing of it is ours */
		if (t)
			sm_flowjoins_forget(t, &s->key_addr, s->key_port);
		join_update(s, NULL);
	}
	if (t)
		sm_flowjoins_expect(t, false);
	return fd;
}

/* The address and port of `for="ADDR:PORT"` (RFC 7239, one element), as hbone_out.c sends it. */
static int forwarded_for(const char *value, struct sm_addr *a, uint16_t *port)
{
	char inner[64];
	size_t n = strlen(value);

	if (n < 7 || strncmp(value, "for=\"", 5) != 0 || value[n - 1] != '"' ||
	    n - 6 >= sizeof(inner))
		return -EINVAL;
	memcpy(inner, value + 5, n - 6);
	inner[n - 6] = '\0';
	return sm_addrport_parse(inner, a, port);
}

/*
 * The address the service sees as the caller: the calling node's, as it
 * would without the mesh. It rests on the TCP source of the HBONE connection
 * (c->peer), which a peer cannot choose and complete a handshake: the
 * catalog node holding that address is the caller's node. The request's
 * Forwarded header may name another of that node's addresses (one of dst's
 * family) and the caller's port; an address outside that node is ignored, so
 * a peer can never appear as another node. Without a catalog node, the TCP
 * source itself, if of dst's family. false: call from loopback as before.
 */
static bool caller_source(const struct hb_stream *s, const struct sm_addr *dst, struct sm_addr *src,
			  uint16_t *sport)
{
	const struct hb_conn *c = s->conn;
	const struct sm_daemon *d = c->d;
	const struct sm_node_def *n = NULL;
	struct sm_addr fa;
	uint16_t fport = 0;
	/*
	 * The port is the peer's word: below 1024 it could pass for a privileged
	 * process of the caller's node (services that trust source ports), so
	 * only an unprivileged one is used.
	 */
	bool fwd =
		s->forwarded[0] && forwarded_for(s->forwarded, &fa, &fport) == 0 && fport >= 1024;

	for (unsigned int i = 0; i < d->cat.nnodes && !n; i++)
		for (unsigned int j = 0; j < d->cat.nodes[i].naddrs && j < SM_NODE_ADDRS_MAX; j++)
			if (sm_addr_equal(&d->cat.nodes[i].addrs[j], &c->peer)) {
				n = &d->cat.nodes[i];
				break;
			}
	*sport = 0;
	if (!n) {
		if (c->peer.family != dst->family)
			return false;
		/* not a node: its address, never a port it names */
		*src = c->peer;
		return true;
	}
	if (n == &d->cat.nodes[d->node_idx])
		return false;
	for (unsigned int j = 0; j < n->naddrs && j < SM_NODE_ADDRS_MAX; j++)
		if (fwd && fa.family == dst->family && sm_addr_equal(&n->addrs[j], &fa)) {
			*src = fa;
			*sport = fport;
			return true;
		}
	for (unsigned int j = 0; j < n->naddrs && j < SM_NODE_ADDRS_MAX; j++)
		if (n->addrs[j].family == dst->family) {
			*src = n->addrs[j];
			return true;
		}
	return false;
}

static void handle_request(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	struct sm_daemon *d = c->d;
	struct sm_policy_decision pd;
	struct sm_addr dst, src;
	uint16_t dport, sport = 0;
	int fd, svc, one = 1;
	bool has_src;

	if (s->bad_request || strcmp(s->method, "CONNECT") != 0 ||
	    sm_addrport_parse(s->authority, &dst, &dport) != 0) {
		hb_respond(s, "400", sm_drop_reason_name(SM_DROP_MALFORMED_HBONE));
		return;
	}
	svc = local_service(d, &dst, dport);
	if (svc < 0) {
		pr_info("refusing CONNECT %s from %s: not a service hosted on node %s",
			s->authority, c->peer_spiffe, d->cfg.node);
		hb_respond(s, "400", sm_drop_reason_name(SM_DROP_AUTHORITY_NOT_HOSTED));
		return;
	}
	/* the destination's own check, by the caller's certificate identity */
	sm_policy_check(d, sm_policy_identity_of(d, c->peer_spiffe),
			d->cat.workloads[d->cat.services[svc].workload].identity, dport, &pd);
	if (pd.action == SM_POLICY_DENY) {
		pr_debug("refusing CONNECT %s from %s: policy (%s)", s->authority, c->peer_spiffe,
			 pd.reason == SM_POLICY_R_DEFAULT_DENY ? "default deny" : "denied");
		hb_respond_policy(s, "403", hb_policy_reason(&pd), &pd);
		return;
	}
	if (pd.audit) /* the caller would have been refused: say so, and go on */
		record_failure_policy(c, NULL, s->authority, &pd);
	s->admitted = true;
	s->svc_addr = dst;
	s->dport = dport;
	has_src = caller_source(s, &dst, &src, &sport);
	fd = upstream_connect_joined(s, &dst, dport, has_src ? &src : NULL, sport);
	if (fd < 0) {
		hb_respond(s, fd == -ECONNREFUSED ? "502" : "503",
			   fd == -ECONNREFUSED ? sm_drop_reason_name(SM_DROP_UPSTREAM_REFUSED)
					       : sm_drop_reason_name(SM_DROP_UPSTREAM_UNREACHABLE));
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->fd = fd;
	s->fd_connecting = true;
	s->ev = sm_evloop_add(c->w->loop, fd, EPOLLOUT, on_stream_fd, s);
	if (!s->ev)
		hb_respond(s, "503", sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
}

/* Why a CONNECT was answered status: 403 is the destination's policy. */
static const char *status_reason(int status, char *buf, size_t len)
{
	if (status == 403)
		return sm_drop_reason_name(SM_DROP_POLICY_DENIED_REMOTE);
	return sm_drop_reason_http(status, buf, len);
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	struct hb_conn *c = user;

	if (frame->hd.type == NGHTTP2_GOAWAY) {
		c->goaway = true;
		return 0;
	}
	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		c->ping_ns = 0;
		return 0;
	}
	if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		c->got_settings = true;
		return 0;
	}
	if (!s || s->dead)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS) {
		if (c->server && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
			handle_request(s);
			return 0;
		}
		if (!c->server && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			if (s->status != 200) {
				char why[32];

				stream_fail(s, NGHTTP2_CANCEL,
					    status_reason(s->status, why, sizeof(why)));
				return 0;
			}
			s->established = true;
			join_update(s, NULL);
			if (s->deferred) {
				s->deferred = false;
				nghttp2_session_resume_data(h2, s->id);
			}
		}
	}
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		s->h2_eof = true;
		stream_flush_down(s);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *user)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(h2, id);

	(void) flags;
	(void) user;
	if (!s || s->dead) {
		nghttp2_session_consume(h2, id, len); /* nobody reads it: free the window */
		return 0;
	}
	if (buf_append(&s->down, data, len))
		stream_fail(s, NGHTTP2_INTERNAL_ERROR, sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
	/* written out once per read round (conn_pump), not once per frame */
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error, void *user)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(h2, id);

	(void) user;
	if (!s)
		return 0;
	s->h2_closed = true;
	if (s->dead)
		return 0;
	if (error != NGHTTP2_NO_ERROR || !s->established) {
		char why[32];

		stream_fail(s, NGHTTP2_NO_ERROR,
			    s->status && s->status != 200
				    ? status_reason(s->status, why, sizeof(why))
				    : sm_drop_reason_name(SM_DROP_STREAM_RESET));
		return 0;
	}
	/* a clean close: anything still buffered goes out before the socket closes */
	s->h2_eof = true;
	if (!s->fd_eof) {
		/* the peer finished both ways; we stop reading as well */
		s->fd_eof = true;
	}
	stream_flush_down(s);
	return 0;
}

/* A stream nghttp2 itself refused (RST_STREAM): it leaves its record and reason. */
static void stream_refused_by_h2(struct hb_stream *s, const char *reason)
{
	struct hb_conn *c = s->conn;

	if (s->dead)
		return;
	SM_STAT_INC(c->w->hb->st.streams_failed);
	join_update(s, reason);
	s->dead = true;
	s->reset = true;
}

/*
 * nghttp2 refused a frame the peer sent: a stream error (e.g. a request that
 * breaks HTTP/2's rules, such as CONNECT without :authority) is answered by
 * nghttp2 with RST_STREAM; connection errors also get GOAWAY (see
 * on_frame_send()). Either way the frame is counted and the stream named.
 */
static int on_invalid_frame(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
			    void *user)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	struct hb_conn *c = user;
	const char *reason = sm_drop_reason_name(SM_DROP_MALFORMED_HBONE);

	SM_STAT_INC(c->w->hb->st.bad_frames);
	pr_debug("%s connection %s: invalid %s frame on stream %d: %s",
		 c->server ? "inbound" : "outbound", c->peer_spiffe,
		 frame->hd.type == NGHTTP2_HEADERS ? "HEADERS" : "HTTP/2", frame->hd.stream_id,
		 nghttp2_strerror(lib_error));
	if (c->server)
		record_failure(c, reason, s && s->authority[0] ? s->authority : NULL);
	if (s)
		stream_refused_by_h2(s, reason);
	return 0;
}

/*
 * A GOAWAY with an error code that nghttp2 sent on its own (ours carry
 * NO_ERROR): the peer broke HTTP/2 on the connection, e.g. a frame larger
 * than we allow. The connection ends once the GOAWAY is out; it and its
 * streams are named here, once.
 */
static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct hb_conn *c = user;
	const char *reason;

	(void) h2;
	if (frame->hd.type != NGHTTP2_GOAWAY || frame->goaway.error_code == NGHTTP2_NO_ERROR ||
	    c->h2_error_noted)
		return 0;
	c->h2_error_noted = true;
	reason = sm_drop_reason_name(frame->goaway.error_code == NGHTTP2_FRAME_SIZE_ERROR
					     ? SM_DROP_HTTP2_FRAME_SIZE_ERROR
					     : SM_DROP_HTTP2_PROTOCOL_ERROR);
	SM_STAT_INC(c->w->hb->st.bad_frames);
	pr_info_limited("%s connection from %s (%s): HTTP/2 %s, GOAWAY sent (%s)",
			c->server ? "inbound" : "outbound", c->peer_spiffe,
			c->server ? "the peer" : "the far node",
			nghttp2_http2_strerror(frame->goaway.error_code), reason);
	if (c->server)
		record_failure(c, reason, NULL);
	if (!c->failure[0])
		sm_strlcpy(c->failure, reason, sizeof(c->failure));
	for (struct hb_stream *s = c->streams; s; s = s->next)
		stream_refused_by_h2(s, reason);
	return 0;
}

static nghttp2_session_callbacks *h2_callbacks(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb))
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	return cb;
}

int hb_h2_init(struct hb_conn *c)
{
	nghttp2_session_callbacks *cb = h2_callbacks();
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->d->cfg.tunnel_max_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HB_WINDOW},
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 8192},
		/* bigger DATA frames from the peer: fewer frames per TLS record batch */
		{NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 65536},
	};
	int rv;

	if (!cb || nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cb);
		return -ENOMEM;
	}
	/* windows open when bytes reach the plain socket, not when they arrive */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	rv = c->server ? nghttp2_session_server_new2(&c->h2, cb, c, opt)
		       : nghttp2_session_client_new2(&c->h2, cb, c, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (rv)
		return -ENOMEM;
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, SM_ARRAY_SIZE(iv));
	nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, HB_CONN_WINDOW);
	return 0;
}

int hb_h2_recv(struct hb_conn *c, const uint8_t *p, size_t n)
{
	ssize_t used = nghttp2_session_mem_recv(c->h2, p, n);

	if (used >= 0)
		return 0;
	SM_STAT_INC(c->w->hb->st.bad_frames);
	if (c->server)
		record_failure(c, sm_drop_reason_name(SM_DROP_MALFORMED_HBONE), NULL);
	conn_fail(c, sm_drop_reason_name(SM_DROP_MALFORMED_HBONE));
	return -EPROTO;
}

int hb_h2_gather(struct hb_conn *c)
{
	/*
	 * Gather frames before writing: one SSL_write per 9-byte frame header
	 * and per 16 KiB payload made two TLS records and two write()s per
	 * DATA frame; a batch fills whole records.
	 */
	while (c->out.len - c->out.off < HB_TLS_BATCH) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(c->h2, &p);

		if (n < 0) {
			conn_fail(c, sm_drop_reason_name(SM_DROP_HTTP2_ERROR));
			return -EPROTO;
		}
		if (n == 0)
			break;
		if (buf_append(&c->out, p, (size_t) n)) {
			conn_fail(c, sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
			return -ENOMEM;
		}
	}
	return 0;
}
