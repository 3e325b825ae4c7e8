// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's connections: one TLS connection carrying an HTTP/2 session,
 * either role. Making one, the handshake and its outcome, the pump that
 * moves bytes between the socket, OpenSSL and nghttp2 (conn_pump()), TLS
 * output gathered into one send() per round, and freeing what handlers
 * marked dead (conn_reap()). Also the byte buffers streams and connections
 * share.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "hbone_int.h"
#include "log.h"
#include "spiffe.h"
#include "tlsctx.h"
#include "tunnelfacts.h"
#include "util.h"
#include "worker.h"

#define HB_TLS_READ    16384
#define HB_TLS_RBUF    (64 * 1024)  /* OpenSSL's read-ahead buffer: several records per read() */
#define HB_TLS_WBUF    (128 * 1024) /* TLS records gathered per send() */
#define HB_PUMP_ROUNDS 64	    /* reads per event, for fairness */
#define HB_KEEP_BUF    (16 * 1024)  /* emptied buffers up to this size are freed */

/* Room for more bytes at data + len; 0 or -ENOMEM. */
int buf_reserve(struct hb_buf *b, size_t more)
{
	uint8_t *p;
	size_t cap;

	if (b->off == b->len) {
		b->off = 0;
		b->len = 0;
	}
	if (b->len + more <= b->cap)
		return 0;
	if (b->off) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->len + more <= b->cap)
			return 0;
	}
	cap = b->cap ? b->cap : 4096; /* idle streams stay small */
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/*
 * An emptied small buffer is freed: an idle stream then holds no buffer at
 * all (2,000 idle streams held 8 KiB each per node). Bulk streams, whose
 * buffers have grown past HB_KEEP_BUF, keep theirs.
 */
void buf_release_small(struct hb_buf *b)
{
	if (b->cap && b->cap <= HB_KEEP_BUF && b->off == b->len) {
		free(b->data);
		memset(b, 0, sizeof(*b));
	}
}

int buf_append(struct hb_buf *b, const uint8_t *p, size_t n)
{
	if (buf_reserve(b, n))
		return -ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void set_mark(struct sm_daemon *d, int fd)
{
	int one = 1;

	/* the mark keeps the daemon's own connections out of connect4/6 */
	setsockopt(fd, SOL_SOCKET, SO_MARK, &d->cfg.daemon_mark, sizeof(d->cfg.daemon_mark));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void fail_count(struct sm_hbone_worker *hw, const char *reason)
{
	for (int i = 0; i < SM_SVID_REASON_MAX; i++) {
		if (strcmp(reason, sm_svid_reason_name((enum sm_svid_reason) i)) == 0) {
			SM_STAT_INC(hw->st.tls_failed[i]);
			return;
		}
	}
	SM_STAT_INC(hw->st.tls_failed_other);
}

void conn_fail(struct hb_conn *c, const char *reason)
{
	if (c->dead)
		return;
	if (!c->failure[0])
		sm_strlcpy(c->failure, reason, sizeof(c->failure));
	for (struct hb_stream *s = c->streams; s; s = s->next)
		stream_fail(s, NGHTTP2_CONNECT_ERROR, reason);
	c->dead = true;
	pr_debug("%s connection %s: %s", c->server ? "inbound" : "outbound", c->peer_spiffe,
		 reason);
}

static void conn_free(struct hb_conn *c)
{
	struct sm_hbone_worker *hw = c->w->hb;
	struct hb_conn **pp;

	for (pp = &hw->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->server && c->handshaking)
		hw->handshaking_in--;
	src_release(hw, c);
	if (c->server)
		SM_STAT_DEC(hw->st.conns_in);
	else
		SM_STAT_DEC(hw->st.conns_out);
	sm_evloop_del(c->w->loop, c->ev);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0) {
		if (c->failure[0])
			sm_sock_close_reset(c->fd);
		else
			close(c->fd);
	}
	nghttp2_session_del(c->h2);
	sm_creds_put(c->creds);
	free(c->out.data);
	free(c->tls_out.data);
	free(c);
}

/* Free what handlers marked dead; stream fds get their final interest. */
void conn_reap(struct hb_conn *c)
{
	struct hb_stream **pp = &c->streams;

	while (*pp) {
		struct hb_stream *s = *pp;
		bool finished = !s->fd_connecting && s->h2_closed && s->fd_eof && s->fd_shut &&
				buf_pending(&s->down) == 0;

		if (!s->dead && (finished || c->dead)) {
			/* both ways done cleanly; or the tunnel is gone under the stream */
			s->dead = true;
			s->reset = !finished;
		}
		if (!s->dead) {
			stream_interest(s);
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		/* bytes we will never write still hold the connection's window */
		if (buf_pending(&s->down) && c->h2 && !c->dead)
			nghttp2_session_consume_connection(c->h2, buf_pending(&s->down));
		if (s->fd >= 0) {
			sm_evloop_del(c->w->loop, s->ev);
			if (s->reset)
				sm_sock_close_reset(s->fd);
			else
				sm_sock_close_orderly(s->fd);
		}
		if (s->published && !c->w->hb->stopping)
			sm_tunnel_fact_forget(c->d, &s->key_addr, s->key_port);
		join_linger(s);
		if (s->id > 0 && c->h2)
			nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
		free(s->up.data);
		free(s->down.data);
		c->nstreams--;
		SM_STAT_DEC(c->w->hb->st.streams_open);
		free(s);
	}
	if (c->nstreams == 0 && !c->idle_since)
		c->idle_since = sm_mono_s();
	if (c->dead)
		conn_free(c);
}

static void handshake_done(struct hb_conn *c)
{
	struct sm_hbone_worker *hw = c->w->hb;
	enum sm_svid_reason why;

	c->handshaking = false;
	c->established_ns = sm_mono_ns();
	c->handshake_us = (uint32_t) ((c->established_ns - c->started_ns) / 1000);
	if (c->server)
		hw->handshaking_in--;
	src_release(hw, c);
	why = sm_tls_peer_result(c->ssl, c->peer_spiffe, sizeof(c->peer_spiffe));
	if (why != SM_SVID_OK) {
		/* cannot happen with SSL_VERIFY_PEER, but never trust an unverified peer */
		fail_count(hw, sm_svid_reason_name(why));
		if (c->server)
			record_failure(c, sm_svid_reason_name(why), NULL);
		conn_fail(c, sm_svid_reason_name(why));
		return;
	}
	if (!c->server && strcmp(c->peer_spiffe, c->expect[0]) != 0 &&
	    strcmp(c->peer_spiffe, c->expect[1]) != 0) {
		pr_warn("server %s presented %s, but the catalog names %s (or its node %s)",
			c->expect[0], c->peer_spiffe, c->expect[0], c->expect[1]);
		fail_count(hw, sm_drop_reason_name(SM_DROP_IDENTITY_MISMATCH));
		conn_fail(c, sm_drop_reason_name(SM_DROP_IDENTITY_MISMATCH));
		return;
	}
	SM_STAT_INC(hw->st.tls_ok);
	for (struct hb_stream *s = c->streams; s; s = s->next)
		join_update(s, NULL);
}

/* Why a handshake failed, in the words of sm_svid_reason_name() where possible. */
static const char *handshake_failure(struct hb_conn *c)
{
	char ignored[8];
	enum sm_svid_reason why = sm_tls_peer_result(c->ssl, ignored, sizeof(ignored));
	unsigned long e = ERR_peek_last_error();

	if (why != SM_SVID_OK && why != SM_SVID_PROTOCOL)
		return sm_svid_reason_name(why);
	/* the peer refused us: its alert says why */
	switch (ERR_GET_REASON(e)) {
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_EXPIRED);
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_UNKNOWN_CA);
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_CERTIFICATE);
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return sm_drop_reason_name(SM_DROP_PEER_REQUIRES_CERTIFICATE);
	default:
		return sm_svid_reason_name(SM_SVID_PROTOCOL);
	}
}

/*
 * TLS output. OpenSSL writes each record (16 KiB at most) with its own
 * write() to a socket BIO; every write() is a TCP push, and on a veth the
 * peer's receive processing runs inline in the sender's thread, once per
 * push. Records go to tls_out instead, through the BIO below, and reach the
 * socket in one send() per pump round (or per HB_TLS_WBUF). One iperf3
 * stream through a two-node sandbox went from 5.6-5.9 to 6.4-7.2 Gbit/s;
 * bench/README.md has the run against HAProxy. Kernel TLS, once the kernel
 * has it, would make the socket the record writer again.
 *
 * Returns 0 when all is sent, -EAGAIN when the socket is full (the rest
 * waits for EPOLLOUT), or -errno.
 */
static int tls_flush(struct hb_conn *c)
{
	while (buf_pending(&c->tls_out) > 0) {
		ssize_t n = send(c->fd, c->tls_out.data + c->tls_out.off, buf_pending(&c->tls_out),
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			SM_STAT_INC(c->w->hb->st.tls_send_blocked);
			return -EAGAIN;
		}
		c->tls_out.off += (size_t) n;
	}
	buf_release_small(&c->tls_out);
	return 0;
}

/*
 * The peer closed without a close_notify (OpenSSL 3 calls that an unexpected
 * EOF) or reset the connection: what a daemon that stops or dies leaves.
 * e: SSL_get_error() of a read that returned r; errno as that read left it.
 */
static bool peer_gone(int e, int r)
{
	if (e == SSL_ERROR_SYSCALL)
		return r == 0 || errno == ECONNRESET || errno == EPIPE;
	return e == SSL_ERROR_SSL &&
	       ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* Takes a record unless HB_TLS_WBUF bytes still wait: then OpenSSL retries it later. */
static int tls_wbio_write(BIO *b, const char *data, int len)
{
	struct hb_conn *c = BIO_get_data(b);
	int r;

	BIO_clear_retry_flags(b);
	if (buf_pending(&c->tls_out) >= HB_TLS_WBUF) {
		r = tls_flush(c);
		if (r == -EAGAIN) {
			BIO_set_retry_write(b);
			return -1;
		}
		if (r < 0) {
			errno = -r;
			return -1;
		}
	}
	if (len <= 0)
		return 0;
	if (buf_append(&c->tls_out, (const uint8_t *) data, (size_t) len)) {
		errno = ENOMEM;
		return -1;
	}
	return len;
}

static long tls_wbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct hb_conn *c = BIO_get_data(b);
	int r;

	(void) num;
	(void) ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH: /* the end of a handshake flight, or an alert */
		BIO_clear_retry_flags(b);
		r = tls_flush(c);
		if (r == -EAGAIN)
			BIO_set_retry_write(b);
		else if (r < 0)
			errno = -r;
		return r == 0 ? 1 : -1;
	case BIO_CTRL_WPENDING:
		return (long) buf_pending(&c->tls_out);
	default:
		return 0;
	}
}

BIO_METHOD *tls_wbio_method_new(void)
{
	BIO_METHOD *m =
		BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sockmesh tls out");

	if (m && (!BIO_meth_set_write(m, tls_wbio_write) || !BIO_meth_set_ctrl(m, tls_wbio_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

/*
 * The pump's first phase, while handshaking: drive the handshake. 0 once it
 * is done (the connection may carry frames now); -EAGAIN while it waits for
 * the socket (interest set); -EPROTO when it failed (c->dead).
 */
static int pump_handshake(struct hb_conn *c)
{
	uint32_t want;
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			/*
			 * OpenSSL flushes its flights itself; this sends
			 * anything it left. A send error shows up at the
			 * next step of the handshake, with its reason.
			 */
			(void) tls_flush(c);
			want = e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
			if (buf_pending(&c->tls_out))
				want |= EPOLLOUT;
			sm_evloop_mod(c->w->loop, c->ev, want);
			return -EAGAIN;
		}
		const char *why = e == SSL_ERROR_SYSCALL && errno && !c->server
					  ? sm_drop_reason_name(SM_DROP_TUNNEL_CONNECT_FAILED)
					  : handshake_failure(c);

		fail_count(c->w->hb, why);
		if (c->server)
			record_failure(c, why, NULL);
		conn_fail(c, why);
		return -EPROTO;
	}
	handshake_done(c);
	if (c->dead)
		return -EPROTO;
	c->rx_ready = true; /* the peer's first frames may have come with its Finished */
	return 0;
}

/*
 * Second phase: what the peer sent, through TLS into the HTTP/2 session
 * (whose callbacks fill the streams' down buffers). 0, or -EPIPE when the
 * connection ended or failed (c->dead).
 *
 * Records read ahead wait in OpenSSL's buffer, where no epoll event
 * announces them: they are always read out, past the round limit too.
 */
static int pump_read(struct hb_conn *c)
{
	uint8_t buf[HB_TLS_READ];
	int r, e;

	for (int round = 0; (c->rx_ready && round < HB_PUMP_ROUNDS) || SSL_has_pending(c->ssl);
	     round++) {
		ERR_clear_error();
		r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0) {
			c->last_rx_ns = sm_mono_ns();
			if (hb_h2_recv(c, buf, (size_t) r))
				return -EPIPE;
			if (c->rx_short)
				c->rx_ready = false;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			c->rx_ready = false;
			break;
		}
		if (e == SSL_ERROR_ZERO_RETURN || peer_gone(e, r)) {
			/*
			 * The peer closed or went away (a daemon that dies leaves a
			 * reset): streams that are still open were cut off.
			 */
			for (struct hb_stream *s = c->streams; s; s = s->next)
				if (!s->h2_closed)
					stream_fail(s, NGHTTP2_CONNECT_ERROR,
						    sm_drop_reason_name(SM_DROP_TUNNEL_CLOSED));
			c->dead = true;
			return -EPIPE;
		}
		conn_fail(c, sm_drop_reason_name(SM_DROP_TLS_ERROR));
		return -EPIPE;
	}
	return 0;
}

/* Third phase: what this round delivered goes to the plain sockets in one write each. */
static void pump_deliver(struct hb_conn *c)
{
	for (struct hb_stream *s = c->streams; s; s = s->next)
		if (buf_pending(&s->down) > 0)
			stream_flush_down(s);
}

/*
 * Fourth phase: the frames the session has to send, through TLS to the
 * socket. 0 (what did not fit waits for EPOLLOUT), or -EPIPE when the
 * connection failed (c->dead).
 */
static int pump_write(struct hb_conn *c)
{
	int r, e;

	for (int round = 0; round < HB_PUMP_ROUNDS; round++) {
		if (hb_h2_gather(c))
			return -EPIPE;
		if (buf_pending(&c->out) == 0)
			break;
		ERR_clear_error();
		r = SSL_write(c->ssl, c->out.data + c->out.off, (int) buf_pending(&c->out));
		if (r > 0) {
			c->out.off += (size_t) r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			break;
		conn_fail(c, sm_drop_reason_name(SM_DROP_TLS_ERROR));
		return -EPIPE;
	}
	r = tls_flush(c);
	if (r < 0 && r != -EAGAIN) {
		conn_fail(c, sm_drop_reason_name(r == -ECONNRESET || r == -EPIPE
							 ? SM_DROP_TUNNEL_CLOSED
							 : SM_DROP_TLS_ERROR));
		return -EPIPE;
	}
	return 0;
}

/* Last: watch the socket for what is left; a connection both sides closed is done. */
static void pump_rearm(struct hb_conn *c)
{
	uint32_t want = EPOLLIN;

	if (buf_pending(&c->out) > 0 || nghttp2_session_want_write(c->h2) ||
	    buf_pending(&c->tls_out) > 0)
		want |= EPOLLOUT;
	sm_evloop_mod(c->w->loop, c->ev, want);
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    buf_pending(&c->out) == 0 && buf_pending(&c->tls_out) == 0)
		c->dead = true; /* both sides said GOAWAY and all is sent */
}

void conn_pump(struct hb_conn *c)
{
	if (c->dead)
		return;
	if (c->handshaking && pump_handshake(c))
		return;
	if (pump_read(c))
		return;
	pump_deliver(c);
	if (pump_write(c))
		return;
	pump_rearm(c);
}

static void on_conn(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct hb_conn *c = arg;

	(void) loop;
	(void) ev;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		c->rx_ready = true;
	conn_pump(c);
	conn_reap(c);
}

/* Notes whether the socket's last read() came back short: then it was drained. */
static long rbio_watch(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
		       size_t *processed)
{
	struct hb_conn *c = (struct hb_conn *) BIO_get_callback_arg(b);

	(void) argp;
	(void) argi;
	(void) argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && c)
		c->rx_short = ret <= 0 || !processed || *processed < len;
	return ret;
}

struct hb_conn *conn_new(struct sm_worker *w, int fd, bool server, struct sm_creds *creds)
{
	struct hb_conn *c = calloc(1, sizeof(*c));
	SSL_CTX *ctx =
		server ? sm_creds_server_ctx(creds, w->id) : sm_creds_client_ctx(creds, w->id);
	BIO *wbio;

	if (!c)
		return NULL;
	c->d = w->d;
	c->w = w;
	c->fd = fd;
	c->server = server;
	c->handshaking = true;
	c->started_ns = sm_mono_ns();
	c->last_rx_ns = c->started_ns;
	c->creds = sm_creds_get(creds);
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1 || hb_h2_init(c))
		goto fail;
	/*
	 * RELEASE_BUFFERS: OpenSSL frees its record buffers (the 64 KiB read-ahead
	 * one and a 17 KiB write one) whenever they are empty, so an idle pooled
	 * connection holds neither. A busy one allocates them again when records
	 * come: a malloc per drained read-ahead buffer (up to 64 KiB decrypted).
	 */
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				     SSL_MODE_RELEASE_BUFFERS);
	/* one read() takes what the socket holds, up to several records, not a header then a body
	 */
	SSL_set_read_ahead(c->ssl, 1);
	SSL_set_default_read_buffer_len(c->ssl, HB_TLS_RBUF);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), rbio_watch);
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *) c);
	wbio = BIO_new(w->d->hbone->wbio_method);
	if (!wbio)
		goto fail;
	BIO_set_data(wbio, c);
	BIO_set_init(wbio, 1);
	SSL_set0_wbio(c->ssl, wbio); /* reads stay on the socket BIO */
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	c->ev = sm_evloop_add(w->loop, fd, server ? EPOLLIN : EPOLLOUT, on_conn, c);
	if (!c->ev)
		goto fail;
	c->next = w->hb->conns;
	w->hb->conns = c;
	if (server)
		SM_STAT_INC(w->hb->st.conns_in);
	else
		SM_STAT_INC(w->hb->st.conns_out);
	return c;
fail:
	if (c->ssl)
		SSL_free(c->ssl);
	nghttp2_session_del(c->h2);
	sm_creds_put(c->creds);
	free(c);
	return NULL;
}
