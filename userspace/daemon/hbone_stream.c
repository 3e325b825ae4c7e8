// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's streams: one CONNECT stream and the plain TCP socket it
 * carries (the client's outbound, the local service's inbound). Bytes move
 * between the socket and the stream's buffers here; nghttp2 pulls our DATA
 * frames through data_read(). What a stream does to its connection's TLS is
 * hbone_conn.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "hbone_int.h"
#include "log.h"
#include "util.h"

#define HB_BUF (256 * 1024) /* read size from a plain socket */

struct hb_stream *stream_new(struct hb_conn *c, int fd)
{
	struct hb_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->conn = c;
	s->fd = fd;
	s->id = -1;
	s->next = c->streams;
	c->streams = s;
	c->nstreams++;
	c->idle_since = 0;
	SM_STAT_INC(c->w->hb->st.streams_open);
	SM_STAT_INC(c->w->hb->st.streams_total);
	return s;
}

/* The stream failed: RST_STREAM to the peer, reset of the plain socket at reap. */
void stream_fail(struct hb_stream *s, uint32_t h2_error, const char *reason)
{
	struct hb_conn *c = s->conn;

	if (s->dead)
		return;
	SM_STAT_INC(c->w->hb->st.streams_failed);
	join_update(s, reason);
	if (s->id > 0 && c->h2 && !s->h2_closed)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, h2_error);
	s->dead = true;
	s->reset = true;
	pr_debug("stream %d (%s) failed: %s", s->id, s->authority, reason);
}

void stream_interest(struct hb_stream *s)
{
	uint32_t want = 0;

	if (!s->ev || s->dead)
		return;
	if (s->fd_connecting) {
		want = EPOLLOUT;
	} else {
		if (s->established && !s->fd_eof && buf_pending(&s->up) == 0)
			want |= EPOLLIN;
		if (buf_pending(&s->down) > 0)
			want |= EPOLLOUT;
	}
	sm_evloop_mod(s->conn->w->loop, s->ev, want);
}

/* Write what HTTP/2 delivered to the plain socket; acknowledge it to the peer. */
void stream_flush_down(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	size_t written = 0;

	if (s->dead || s->fd_connecting || s->fd < 0)
		return;
	while (buf_pending(&s->down) > 0) {
		ssize_t n = send(s->fd, s->down.data + s->down.off, buf_pending(&s->down),
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			stream_fail(s, NGHTTP2_CONNECT_ERROR,
				    sm_drop_reason_name(SM_DROP_PLAIN_SOCKET_RESET));
			return;
		}
		s->down.off += (size_t) n;
		written += (size_t) n;
	}
	/* acknowledging only what reached the socket reopens the peer's window */
	if (written && c->h2) {
		if (s->h2_closed)
			nghttp2_session_consume_connection(c->h2, written);
		else
			nghttp2_session_consume(c->h2, s->id, written);
	}
	if (buf_pending(&s->down) == 0 && s->h2_eof && !s->fd_shut) {
		shutdown(s->fd, SHUT_WR);
		s->fd_shut = true;
	}
	buf_release_small(&s->down);
}

/* Read the plain socket into the up buffer and wake the data provider. */
static void stream_read_up(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	ssize_t n;

	if (s->dead || s->fd_eof || !s->established || buf_pending(&s->up) > 0)
		return;
	/* start small (idle streams cost little) and grow while reads fill the buffer */
	if (!s->read_size)
		s->read_size = 4096;
	if (buf_reserve(&s->up, s->read_size)) {
		stream_fail(s, NGHTTP2_INTERNAL_ERROR, sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
		return;
	}
	n = recv(s->fd, s->up.data + s->up.len, s->read_size, 0);
	if (n > 0) {
		if ((size_t) n == s->read_size && s->read_size < HB_BUF)
			s->read_size *= 2;
		s->up.len += (size_t) n;
	} else if (n == 0) {
		s->fd_eof = true;
	} else {
		if (errno != EAGAIN && errno != EINTR)
			stream_fail(s, NGHTTP2_CONNECT_ERROR,
				    sm_drop_reason_name(SM_DROP_PLAIN_SOCKET_RESET));
		return;
	}
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(c->h2, s->id);
	}
}

/* nghttp2 pulls the bytes of our DATA frames from here. */
ssize_t data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		  nghttp2_data_source *src, void *user)
{
	struct hb_stream *s = src->ptr;
	size_t n;

	(void) h2;
	(void) id;
	(void) user;
	if (!s || s->dead)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = buf_pending(&s->up);
	if (n && s->established) {
		if (n > len)
			n = len;
		memcpy(buf, s->up.data + s->up.off, n);
		s->up.off += n;
		if (buf_pending(&s->up) == 0 && s->fd_eof)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		buf_release_small(&s->up);
		return (ssize_t) n;
	}
	if (s->fd_eof && s->established) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	s->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

void stream_fd_event(struct hb_stream *s, uint32_t events)
{
	struct hb_conn *c = s->conn;

	if (s->dead)
		return;
	if (s->fd_connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			SM_STAT_INC(c->w->hb->st.upstream_errors);
			hb_respond(s, err == ECONNREFUSED ? "502" : "503",
				   err == ECONNREFUSED
					   ? sm_drop_reason_name(SM_DROP_UPSTREAM_REFUSED)
					   : sm_drop_reason_name(SM_DROP_UPSTREAM_UNREACHABLE));
		} else {
			hb_upstream_ready(s);
		}
	} else {
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			stream_read_up(s);
		if (events & EPOLLOUT)
			stream_flush_down(s);
	}
}

void on_stream_fd(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct hb_stream *s = arg;
	struct hb_conn *c = s->conn;

	(void) loop;
	(void) ev;
	if (s->dead)
		return;
	stream_fd_event(s, events);
	conn_pump(c);
	conn_reap(c);
}
