/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HBONE tunnel's own types and the functions its files share (hbone.c's
 * head comment says which file does what). Nothing outside the tunnel
 * includes it, except the fuzz harness of the inbound side
 * (tests/fuzz/fuzz_hbone.c), which drives a connection's HTTP/2 session
 * without TLS through the same functions.
 *
 * Threads and ownership are hbone.c's (see its head comment): everything
 * here belongs to one worker's thread, except struct sm_hbone (the main
 * thread's; workers read it).
 */
#ifndef SOCKMESHD_HBONE_INT_H
#define SOCKMESHD_HBONE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "daemon.h"
#include "hbone.h"
#include "util.h"
#include "worker.h"

struct hb_conn;
struct hb_src;
struct hb_watch;
struct sm_flow_policy;
struct sm_policy_decision;
struct sm_creds;

/* Shared, main thread: credential sets (workers read them; swapped while they are paused). */
struct sm_hbone {
	struct sm_creds *node_creds;
	struct sm_creds **wl_creds;	 /* per catalog workload, NULL when not local */
	char (*wl_sni)[SM_SNI_NAME_LEN]; /* per catalog workload with credentials: its SNI name */
	unsigned int nwl; /* entries of wl_creds and wl_sni (the catalog they were made for) */
	int addr_owner[SM_NODE_ADDRS_MAX]; /* per node address: the one local workload whose
					      services use it (with credentials), else -1 */
	int inotify_fd;
	struct sm_ev *inotify_ev;
	struct hb_watch *watches; /* hbone_creds.c */
	unsigned int nwatches;
	uint64_t creds_reloads, creds_reload_failures, creds_expiring;
	BIO_METHOD *wbio_method; /* see tls_wbio_write() (hbone_conn.c) */
};

/* Bytes waiting to go one way. */
struct hb_buf {
	uint8_t *data;
	size_t off, len, cap;
};

/* One CONNECT stream and the plain TCP socket it carries. */
struct hb_stream {
	struct hb_conn *conn;
	int32_t id;
	int fd; /* the client (outbound) or the local service (inbound) */
	struct sm_ev *ev;
	bool dead;	    /* free at the next reap */
	bool reset;	    /* ... resetting the plain socket */
	bool fd_connecting; /* inbound: connect to the service in progress */
	bool established;   /* 200 received (outbound) or sent (inbound) */
	bool fd_eof;	    /* the plain socket said EOF: END_STREAM follows */
	bool h2_eof;	    /* END_STREAM received: shutdown(SHUT_WR) follows */
	bool fd_shut;
	bool deferred;	  /* the data provider waits for bytes */
	bool h2_closed;	  /* nghttp2 closed the stream */
	bool bad_request; /* a header broke the limits */
	bool admitted;	  /* inbound: the policy let the CONNECT through to svc_addr:dport */
	bool published;	  /* its facts are in tunnel_facts (sm_tunnel_fact_publish()) */
	unsigned int nheaders;
	size_t read_size;   /* next read from the plain socket: 4 KiB growing to HB_BUF */
	int status;	    /* outbound: the :status received */
	struct hb_buf up;   /* plain socket → HTTP/2 */
	struct hb_buf down; /* HTTP/2 → plain socket */
	char method[16];
	char authority[64];
	char trace[64];
	/* inbound: the request's Forwarded header (the caller's address and port) */
	char forwarded[64];
	bool forwarded_bad; /* more than one, or one too long: none is used */
	/* the join key: the plain socket's far end, as the kernel's records see it */
	struct sm_addr key_addr;
	uint16_t key_port;
	/*
	 * Inbound, once admitted: the service, for re-checking the stream when
	 * a new policy revision goes live. Its address rather than its
	 * workload's identity: identities are catalog positions and move when a
	 * reload adds a workload; the address finds the current one.
	 */
	struct sm_addr svc_addr;
	uint16_t dport;
	struct hb_stream *next;
};

/* One TLS connection carrying an HTTP/2 session, either role. */
struct hb_conn {
	struct sm_daemon *d;
	struct sm_worker *w; /* the one thread that touches this connection */
	bool server;
	int fd;
	struct sm_ev *ev;
	SSL *ssl;
	struct sm_creds *creds;
	nghttp2_session *h2;
	bool handshaking;
	bool dead;
	bool goaway;	     /* takes no new streams */
	bool sni_selected;   /* the client's SNI chose our SVID (counted once: HRR asks twice) */
	bool got_settings;   /* the peer's SETTINGS (after its preface) arrived */
	bool h2_error_noted; /* we sent GOAWAY with an error: counted and recorded once */
	struct hb_src *src;  /* inbound, while handshaking: the source it counts against */
	int64_t started_ns;
	int64_t established_ns; /* the TLS handshake finished */
	uint32_t handshake_us;
	int64_t idle_since; /* monotonic s since it has no streams, 0 = busy */
	int64_t last_rx_ns; /* last bytes from the peer (monotonic) */
	int64_t ping_ns;    /* keepalive PING outstanding since, 0 = none */
	/*
	 * The socket may hold bytes: set by a readable event, cleared when a read
	 * came back short (the socket was drained then; a later arrival is a new
	 * event). Saves the read() that would only say EAGAIN.
	 */
	bool rx_ready;
	bool rx_short;	       /* the last read() filled less than it asked for */
	struct hb_buf out;     /* HTTP/2 frames waiting for SSL_write */
	struct hb_buf tls_out; /* TLS records waiting for send(): see tls_flush() */
	unsigned int nstreams;
	struct hb_stream *streams;
	struct sm_addr peer;
	uint16_t peer_port;
	char peer_spiffe[256];
	char failure[64];
	/* outbound pool key and the identities the server may prove */
	uint32_t src_id, dst_id;
	int node;
	char expect[2][256];
	struct hb_conn *next;
};

struct hb_listener {
	struct sm_worker *w;
	int fd;
	unsigned int addr; /* index into this node's catalog addresses */
	struct sm_ev *ev;
	bool resting; /* out of descriptors: not watched for SM_ACCEPT_BACKOFF_MS */
};

/* Per worker: only its thread touches it, except st (SM_STAT_*). */
struct sm_hbone_worker {
	struct hb_listener l[SM_NODE_ADDRS_MAX];
	unsigned int nl;
	struct hb_conn *conns;
	unsigned int handshaking_in;
	struct hb_src *srcs; /* sources with inbound handshakes in flight */
	struct sm_hbone_stats st;
	/*
	 * How an admitted CONNECT reaches its service: sm_upstream_connect_from(),
	 * from the caller's address src:sport when src is not NULL; tests
	 * replace it (the fuzz harness answers from socketpairs).
	 */
	int (*upstream_connect)(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port,
				const struct sm_addr *src, uint16_t sport);
	/* the daemon stops: streams cut now keep their tunnel facts for the records */
	bool stopping;
};

/* ---- hbone_conn.c ---- */

static inline size_t buf_pending(const struct hb_buf *b)
{
	return b->len - b->off;
}

/* Room for more bytes at the end of b (compacting it first). 0 or -ENOMEM. */
int buf_reserve(struct hb_buf *b, size_t more);
/* Append n bytes to b. 0 or -ENOMEM. */
int buf_append(struct hb_buf *b, const uint8_t *p, size_t n);
/* b is empty: free its memory unless it is small enough to keep. */
void buf_release_small(struct hb_buf *b);
/* Mark fd as the daemon's own, so connect4/6 let it pass. */
void set_mark(struct sm_daemon *d, int fd);
/* Count a failed handshake by its reason (an sm_svid_reason name, else "other"). */
void fail_count(struct sm_hbone_worker *hw, const char *reason);
/*
 * A new connection of worker w on the connected or accepted socket fd,
 * with creds (a reference is taken): TLS set up, handshake not started.
 * NULL when out of memory; the caller still owns fd.
 */
struct hb_conn *conn_new(struct sm_worker *w, int fd, bool server, struct sm_creds *creds);
/* Drive TLS and HTTP/2 as far as the sockets allow; the caller then reaps. */
void conn_pump(struct hb_conn *c);
/* The connection failed: its streams fail with it, and it is freed at the next reap. */
void conn_fail(struct hb_conn *c, const char *reason);
/*
 * Free what handlers marked dead; stream fds get their final interest. Frees
 * c itself when c->dead: the caller must not touch c after that.
 */
void conn_reap(struct hb_conn *c);
/* The BIO method TLS output goes through (one per daemon, struct sm_hbone). */
BIO_METHOD *tls_wbio_method_new(void);

/* ---- hbone_stream.c ---- */

/* A new stream of c on plain socket fd (-1: none yet); NULL when out of memory. */
struct hb_stream *stream_new(struct hb_conn *c, int fd);
/* The stream failed: RST_STREAM to the peer, reset of the plain socket at reap. */
void stream_fail(struct hb_stream *s, uint32_t h2_error, const char *reason);
/* Watch the plain socket for what the stream can take or give now. */
void stream_interest(struct hb_stream *s);
/* Write what HTTP/2 delivered to the plain socket; acknowledge it to the peer. */
void stream_flush_down(struct hb_stream *s);
/* nghttp2 pulls the bytes of our DATA frames from here (source.ptr: the stream). */
ssize_t data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		  nghttp2_data_source *src, void *user);
/*
 * What events on a stream's plain socket do to the stream: the connect to
 * the service finished (the answer to the CONNECT), bytes to read, room to
 * write. Touches no TLS: the caller then pumps the connection and reaps it,
 * as on_stream_fd() does.
 */
void stream_fd_event(struct hb_stream *s, uint32_t events);
/* The event loop's callback for a stream's plain socket (arg: the stream). */
void on_stream_fd(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg);

/* ---- hbone_flow.c ---- */

/* Record what the stream knows (and a failure, first one wins) for its socket's records. */
void join_update(struct hb_stream *s, const char *failure);
/* Keep the revoking decision for the conn_end record of the stream's service socket. */
void join_set_policy(struct hb_stream *s, const struct sm_flow_policy *pol);
/* The stream is gone: its join stays HB_JOIN_LINGER_S for the socket's last records. */
void join_linger(const struct hb_stream *s);
/*
 * A record of the daemon's own, for a failure no workload socket reports;
 * pd: the policy decision behind it, if the policy refused the stream. With
 * reason NULL and pd: the AUDIT record of a stream the policy let through.
 */
void record_failure_policy(struct hb_conn *c, const char *reason, const char *authority,
			   const struct sm_policy_decision *pd);
void record_failure(struct hb_conn *c, const char *reason, const char *authority);

/* ---- hbone_in.c ---- */

/* The service hosted on this node at addr:port (its index in the catalog), or -1. */
int local_service(const struct sm_daemon *d, const struct sm_addr *a, uint16_t port);
/* Worker w's inbound listener on this node's address a (index addr). 0 or -errno. */
int listen_inbound(struct sm_worker *w, const struct sm_addr *a, unsigned int addr);
/* Its HBONE listeners' descriptors (the worker part's listen_fds, for an upgrade). */
unsigned int sm_hbone_listen_fds(struct sm_worker *w, int *fds, unsigned int max);
/* c's handshake ended (or c goes): its source has one handshake fewer in flight. */
void src_release(struct sm_hbone_worker *hw, struct hb_conn *c);

/* ---- hbone_recheck.c ---- */

/*
 * The policy's revision observer (sm_policy_observe(), registered by
 * sm_hbone_start()): every worker checks its live inbound streams again, as
 * the CONNECT was checked (caller's certificate identity → the service's
 * workload, port), and resets those now denied. Main thread, workers not
 * paused (sm_workers_call()). Returns how many were reset.
 */
uint64_t hb_policy_recheck(struct sm_daemon *d);

/* ---- hbone_creds.c ---- */

/* Main thread, every second: reload changed credentials, warn of expiring ones. */
void creds_tick(struct sm_daemon *d);

/* ---- hbone_h2.c ---- */

/*
 * Make c's nghttp2 session (client or server, by c->server) with the
 * tunnel's callbacks and settings, and queue our SETTINGS. 0 or -ENOMEM.
 */
int hb_h2_init(struct hb_conn *c);
/*
 * Bytes the peer sent (after TLS) into c's session; every callback runs
 * here. 0, or -EPROTO when they broke HTTP/2 beyond what nghttp2 answers
 * itself: then c failed (counted, recorded, c->dead).
 */
int hb_h2_recv(struct hb_conn *c, const uint8_t *p, size_t n);
/*
 * Gather the frames c's session has to send into c->out, up to a TLS batch.
 * 0, or -errno: then c failed (c->dead).
 */
int hb_h2_gather(struct hb_conn *c);
/* Inbound: the connect to the service succeeded; answer 200 and start relaying. */
void hb_upstream_ready(struct hb_stream *s);
/* Answer a request without a body (status), recorded as DROPPED why: the stream ends. */
void hb_respond(struct hb_stream *s, const char *status, const char *why);
/* The same for a refusal by the policy (pd), whose record names the decision. */
void hb_respond_policy(struct hb_stream *s, const char *status, const char *why,
		       const struct sm_policy_decision *pd);
/* The drop_reason of a stream the policy refuses. */
const char *hb_policy_reason(const struct sm_policy_decision *pd);

#endif /* SOCKMESHD_HBONE_INT_H */
