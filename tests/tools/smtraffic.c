// SPDX-License-Identifier: Apache-2.0
/*
 * smtraffic: the TCP traffic tool of the integration tests, the demo and the
 * benchmarks. `serve` runs an echo, sink or greet server; `send` streams N
 * pseudo-random bytes, half-closes and verifies the reply (one JSON line,
 * exit 0 only when it matches); `rr` measures request/response latency;
 * `storm` opens and closes connections as fast as it can (connect() only).
 * `hold` keeps many connections open at once (idle, or each probed once with
 * a byte an echo server returns) and counts how each one ended.
 *
 * Every wait is bounded: sockets are non-blocking and every poll() has a
 * deadline, so a broken data path shows up as an error, never as a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "util.h"

#define SMT_MAX_CONNS	  512			    /* concurrent connections of one server */
#define SMT_BUF_SIZE	  (64 * 1024)		    /* per-connection echo buffer */
#define SMT_LINE_MAX	  256			    /* greeting and sink reply lines */
#define SMT_MAX_CHUNK	  (1024 * 1024)		    /* largest --chunk */
#define SMT_MAX_BYTES	  (1ULL << 40)		    /* largest --bytes */
#define SMT_MAX_TIMEOUT_S (24 * 3600)		    /* largest --timeout */
#define SMT_MAX_RR_COUNT  10000000		    /* largest rr --count */
#define SMT_MAX_STORM	  100000000ULL		    /* largest storm --count */
#define SMT_ADDR_STR	  64			    /* "[v6addr]:port" */
#define SMT_MAX_HOLD	  100000		    /* largest hold --count */
#define SMT_HEX_LEN	  (2 * EVP_MAX_MD_SIZE + 1) /* sha256 as hex + NUL */

enum smt_mode {
	SMT_MODE_NONE = 0,
	SMT_MODE_ECHO,
	SMT_MODE_SINK,
	SMT_MODE_GREET,
};

/* Milliseconds on the monotonic clock. */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* poll() timeout for an absolute deadline in ms: 0 when it has passed. */
static int ms_until(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	if (left <= 0)
		return 0;
	return left > 60000 ? 60000 : (int) left;
}

static enum smt_mode mode_parse(const char *s)
{
	if (strcmp(s, "echo") == 0)
		return SMT_MODE_ECHO;
	if (strcmp(s, "sink") == 0)
		return SMT_MODE_SINK;
	if (strcmp(s, "greet") == 0)
		return SMT_MODE_GREET;
	return SMT_MODE_NONE;
}

/* "ip:port" (IPv4) or "[ip]:port" (IPv6) of a socket's local or peer end. */
static void sock_name(int fd, bool peer, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[SMT_ADDR_STR];
	struct sm_addr a;
	uint16_t port;
	int err;

	err = peer ? getpeername(fd, (struct sockaddr *) &ss, &sl)
		   : getsockname(fd, (struct sockaddr *) &ss, &sl);
	if (err || sm_addr_from_sockaddr((struct sockaddr *) &ss, &a, &port)) {
		snprintf(buf, len, "?");
		return;
	}
	sm_addr_format(&a, ip, sizeof(ip));
	snprintf(buf, len, a.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

/* Write s to f as a JSON string (quotes included), escaping what JSON requires. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void hex_encode(const unsigned char *in, unsigned int n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned int i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Finish a SHA-256 context into lowercase hex (out: SMT_HEX_LEN bytes). */
static int sha_final_hex(EVP_MD_CTX *md, char *out)
{
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(md, dig, &n) != 1)
		return -EIO;
	hex_encode(dig, n, out);
	return 0;
}

static EVP_MD_CTX *sha_new(void)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md) {
		errno = ENOMEM;
		return NULL;
	}
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		errno = EIO;
		return NULL;
	}
	return md;
}

static int parse_num(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	int err = sm_parse_u64(s, min, max, out);

	if (err)
		pr_err("bad value '%s' for --%s: want a number in %" PRIu64 "..%" PRIu64, s, opt,
		       min, max);
	return err;
}

/*
 * Open a TCP connection to addr:port and wait for it to complete, at most
 * timeout_ms. Returns a non-blocking connected socket, or -errno.
 */
static int connect_timeout(const struct sm_addr *addr, uint16_t port, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl = sm_addr_to_sockaddr(addr, port, &ss);
	struct pollfd pfd;
	int fd, err = 0, one = 1;
	socklen_t el = sizeof(err);

	fd = socket(addr->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *) &ss, sl) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = -errno;
		goto close_fd;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	err = poll(&pfd, 1, timeout_ms);
	if (err == 0) {
		err = -ETIMEDOUT;
		goto close_fd;
	}
	if (err < 0) {
		err = -errno;
		goto close_fd;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
		err = -errno;
		goto close_fd;
	}
	if (err) {
		err = -err;
		goto close_fd;
	}
	return fd;

close_fd:
	close(fd);
	return err;
}

/* ---- serve ---- */

struct serve_opts {
	struct sm_addr addr;
	uint16_t port;
	enum smt_mode mode;
	const char *name;
	uint64_t max_conns; /* 0 = unlimited */
	uint64_t timeout_s; /* exit after this long without any activity */
};

/* One accepted connection: a linear output buffer buf[off..len) still to write. */
struct serve_conn {
	int fd;
	bool rd_eof;
	size_t off, len;
	uint64_t received, sent;
	EVP_MD_CTX *md; /* sink mode: hash of what was received */
	char peer[SMT_ADDR_STR], local[SMT_ADDR_STR];
	unsigned char buf[SMT_BUF_SIZE];
};

static void serve_conn_report(const struct serve_conn *c, const char *error)
{
	printf("{\"event\":\"close\",\"peer\":\"%s\",\"local\":\"%s\",\"received\":%" PRIu64
	       ",\"sent\":%" PRIu64 ",\"error\":",
	       c->peer, c->local, c->received, c->sent);
	json_str(stdout, error);
	printf("}\n");
	fflush(stdout);
}

static void serve_conn_free(struct serve_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	EVP_MD_CTX_free(c->md);
	free(c);
}

static struct serve_conn *serve_conn_new(int fd, const struct serve_opts *o)
{
	struct serve_conn *c = calloc(1, sizeof(*c));
	int n;

	if (!c)
		return NULL;
	c->fd = fd;
	sock_name(fd, true, c->peer, sizeof(c->peer));
	sock_name(fd, false, c->local, sizeof(c->local));
	if (o->mode == SMT_MODE_SINK) {
		c->md = sha_new();
		if (!c->md)
			goto free_conn;
	}
	if (o->mode == SMT_MODE_GREET) {
		/* server speaks first: the greeting is the first thing in the buffer */
		n = snprintf((char *) c->buf, SMT_LINE_MAX, "%s\n", o->name);
		if (n < 0 || n >= SMT_LINE_MAX)
			goto free_conn;
		c->len = (size_t) n;
	}
	return c;

free_conn:
	c->fd = -1;
	serve_conn_free(c);
	errno = ENOMEM;
	return NULL;
}

/*
 * Make progress on one connection after poll(). Returns 1 while the
 * connection lives, 0 when it is finished (all echoed and half-closed), or
 * -errno on a socket error.
 */
static int serve_conn_step(struct serve_conn *c, enum smt_mode mode, short revents)
{
	char hex[SMT_HEX_LEN];
	ssize_t n;
	int len;

	if ((revents & (POLLIN | POLLHUP | POLLERR)) && !c->rd_eof &&
	    (mode == SMT_MODE_SINK || c->len < sizeof(c->buf))) {
		if (mode == SMT_MODE_SINK) {
			n = read(c->fd, c->buf, sizeof(c->buf));
			if (n > 0 && EVP_DigestUpdate(c->md, c->buf, (size_t) n) != 1)
				return -EIO;
		} else {
			/* a full buffer waits for the writes below; POLLIN is off then */
			n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
			if (n > 0)
				c->len += (size_t) n;
		}
		if (n == 0) {
			c->rd_eof = true;
			if (mode == SMT_MODE_SINK) {
				if (sha_final_hex(c->md, hex))
					return -EIO;
				len = snprintf((char *) c->buf, sizeof(c->buf), "%" PRIu64 " %s\n",
					       c->received, hex);
				c->off = 0;
				c->len = (size_t) len;
			}
		} else if (n > 0) {
			c->received += (uint64_t) n;
		} else if (n == -1 && errno != EAGAIN && errno != EINTR) {
			return -errno;
		}
	}
	while (c->off < c->len) {
		n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -errno;
		}
		c->off += (size_t) n;
		c->sent += (uint64_t) n;
	}
	/* all written: the whole buffer is free again (poll() asks for POLLIN by len) */
	if (c->off == c->len && !c->rd_eof)
		c->off = c->len = 0;
	if (c->rd_eof && c->off == c->len) {
		/* the client's EOF came and everything is written: pass the half-close on */
		if (shutdown(c->fd, SHUT_WR) < 0)
			return -errno;
		return 0;
	}
	return 1;
}

static int serve_listen(const struct serve_opts *o)
{
	struct sockaddr_storage ss;
	socklen_t sl = sm_addr_to_sockaddr(&o->addr, o->port, &ss);
	int fd, one = 1, err;

	fd = socket(o->addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/*
	 * The longest queue the kernel allows (net.core.somaxconn): a storm of
	 * connections overflows a short one while this loop waits for a CPU,
	 * and each dropped handshake stalls its client for a second.
	 */
	if (bind(fd, (struct sockaddr *) &ss, sl) < 0 || listen(fd, SOMAXCONN) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Accept what is pending, up to the connection limits. */
static void serve_accept(int lfd, const struct serve_opts *o, struct serve_conn **conns,
			 unsigned int *nconns, uint64_t *accepted)
{
	struct serve_conn *c;
	int fd, ret;

	while (*nconns < SMT_MAX_CONNS && (!o->max_conns || *accepted < o->max_conns)) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				pr_warn("accept: %s", strerror(errno));
			return;
		}
		(*accepted)++;
		c = serve_conn_new(fd, o);
		if (!c) {
			pr_err("out of memory for a new connection");
			close(fd);
			continue;
		}
		/* greet: the greeting goes out at once, before the client says anything */
		ret = serve_conn_step(c, o->mode, 0);
		if (ret <= 0) {
			serve_conn_report(c, ret < 0 ? strerror(-ret) : "");
			serve_conn_free(c);
			continue;
		}
		conns[(*nconns)++] = c;
	}
}

static int serve_run(const struct serve_opts *o)
{
	static struct pollfd pfds[SMT_MAX_CONNS + 1];
	static struct serve_conn *conns[SMT_MAX_CONNS];
	unsigned int nconns = 0, i;
	uint64_t accepted = 0;
	int64_t idle_deadline;
	char laddr[SMT_ADDR_STR];
	int lfd, ret, rc = 0;
	bool listening;
	short lrev;

	lfd = serve_listen(o);
	if (lfd < 0) {
		pr_err("cannot listen: %s (is the address configured in this namespace, or the "
		       "port in use?)",
		       strerror(-lfd));
		return 1;
	}
	sock_name(lfd, false, laddr, sizeof(laddr));
	/* the tests wait for this line before they connect */
	printf("{\"event\":\"listening\",\"local\":\"%s\"}\n", laddr);
	fflush(stdout);

	idle_deadline = now_ms() + (int64_t) o->timeout_s * 1000;
	for (;;) {
		listening = (!o->max_conns || accepted < o->max_conns) && nconns < SMT_MAX_CONNS;
		if (!listening && nconns == 0)
			break;
		if (now_ms() >= idle_deadline) {
			pr_info("no activity for %" PRIu64 " s: exiting", o->timeout_s);
			break;
		}
		for (i = 0; i < nconns; i++) {
			struct serve_conn *c = conns[i];

			pfds[i].fd = c->fd;
			pfds[i].events = 0;
			if (!c->rd_eof && (o->mode == SMT_MODE_SINK || c->len < sizeof(c->buf)))
				pfds[i].events |= POLLIN;
			if (c->off < c->len)
				pfds[i].events |= POLLOUT;
			pfds[i].revents = 0;
		}
		pfds[nconns].fd = listening ? lfd : -1;
		pfds[nconns].events = POLLIN;
		pfds[nconns].revents = 0;
		ret = poll(pfds, nconns + 1, ms_until(idle_deadline));
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			pr_err("poll: %s", strerror(errno));
			rc = 1;
			break;
		}
		if (ret == 0)
			continue;
		idle_deadline = now_ms() + (int64_t) o->timeout_s * 1000;
		lrev = pfds[nconns].revents;

		/* connections first, walking backwards so removal by swap is safe */
		for (i = nconns; i-- > 0;) {
			if (!pfds[i].revents)
				continue;
			ret = serve_conn_step(conns[i], o->mode, pfds[i].revents);
			if (ret > 0)
				continue;
			serve_conn_report(conns[i], ret < 0 ? strerror(-ret) : "");
			serve_conn_free(conns[i]);
			conns[i] = conns[--nconns];
			pfds[i] = pfds[nconns];
		}
		if (lrev & POLLIN)
			serve_accept(lfd, o, conns, &nconns, &accepted);
	}
	for (i = 0; i < nconns; i++) {
		serve_conn_report(conns[i], "server exiting");
		serve_conn_free(conns[i]);
	}
	close(lfd);
	return rc;
}

static void serve_usage(FILE *f)
{
	fprintf(f,
		"usage: smtraffic serve --listen ADDR:PORT --mode echo|sink|greet [--name NAME]\n"
		"                       [--max-conns N] [--timeout S]\n"
		"  echo   echo every byte; after the client's EOF and all data echoed, half-close\n"
		"  sink   read to EOF, then answer \"<bytes> <sha256hex>\\n\" and close\n"
		"  greet  send \"NAME\\n\" on accept (server speaks first), then echo\n"
		"  --max-conns N  exit after N connections are done (default: unlimited)\n"
		"  --timeout S    exit after S seconds without activity (default 30)\n"
		"Prints {\"event\":\"listening\",...} once listening and one "
		"{\"event\":\"close\",\n"
		"\"peer\":..,\"local\":..,\"received\":N,\"sent\":N,\"error\":..} line per "
		"connection.\n"
		"IPv6: --listen '[fc42::2]:8080'.\n");
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"mode", required_argument, NULL, 'm'},
		{"name", required_argument, NULL, 'N'},
		{"max-conns", required_argument, NULL, 'M'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct serve_opts o = {.name = "smtraffic", .timeout_s = 30};
	bool have_listen = false;
	int c;

	while ((c = getopt_long(argc, argv, "l:m:N:M:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (sm_addrport_parse(optarg, &o.addr, &o.port)) {
				pr_err("bad --listen '%s': want IP:PORT or [IPv6]:PORT", optarg);
				return 2;
			}
			have_listen = true;
			break;
		case 'm':
			o.mode = mode_parse(optarg);
			if (o.mode == SMT_MODE_NONE) {
				pr_err("bad --mode '%s': want echo, sink or greet", optarg);
				return 2;
			}
			break;
		case 'N':
			if (strlen(optarg) + 2 > SMT_LINE_MAX || strchr(optarg, '\n')) {
				pr_err("bad --name: at most %d characters, no newline",
				       SMT_LINE_MAX - 2);
				return 2;
			}
			o.name = optarg;
			break;
		case 'M':
			if (parse_num("max-conns", optarg, 0, UINT32_MAX, &o.max_conns))
				return 2;
			break;
		case 't':
			if (parse_num("timeout", optarg, 1, SMT_MAX_TIMEOUT_S, &o.timeout_s))
				return 2;
			break;
		case 'h':
			serve_usage(stdout);
			return 0;
		default:
			serve_usage(stderr);
			return 2;
		}
	}
	if (!have_listen || o.mode == SMT_MODE_NONE || optind != argc) {
		pr_err("serve needs --listen and --mode (and no other arguments)");
		serve_usage(stderr);
		return 2;
	}
	return serve_run(&o);
}

/* ---- send ---- */

struct send_opts {
	struct sm_addr addr;
	uint16_t port;
	uint64_t bytes;
	uint64_t chunk;
	uint64_t rate;	    /* bytes per second, 0 = as fast as possible */
	uint64_t timeout_s; /* give up after this long without progress */
	uint64_t seed;
	enum smt_mode expect;
	const char *expect_name;
};

struct send_state {
	int fd;
	uint64_t sent, received;
	uint64_t payload_received; /* bytes after the greeting line */
	bool wr_shut, rd_eof;
	EVP_MD_CTX *sent_md, *recv_md;
	unsigned char *chunk; /* generated bytes not yet written: chunk[coff..clen) */
	size_t coff, clen;
	uint64_t rng;		 /* xorshift64 state */
	char line[SMT_LINE_MAX]; /* greeting (greet) or reply line (sink) */
	size_t line_len;
	bool line_done;
	char local[SMT_ADDR_STR], peer[SMT_ADDR_STR];
	char sent_hex[SMT_HEX_LEN], recv_hex[SMT_HEX_LEN];
	char error[256];
};

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* Fill the next chunk of pseudo-random payload and add it to the sent hash. */
static int send_fill(struct send_state *st, const struct send_opts *o)
{
	uint64_t left = o->bytes - st->sent;
	size_t n = (size_t) (left < o->chunk ? left : o->chunk);

	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = xorshift64(&st->rng);

		memcpy(st->chunk + i, &r, n - i < 8 ? n - i : 8);
	}
	if (EVP_DigestUpdate(st->sent_md, st->chunk, n) != 1)
		return -EIO;
	st->coff = 0;
	st->clen = n;
	return 0;
}

/* Take received bytes: the first line (greet/sink) apart, the rest into the hash. */
static int send_take(struct send_state *st, const struct send_opts *o, const unsigned char *p,
		     size_t n)
{
	bool line_first = o->expect == SMT_MODE_GREET || o->expect == SMT_MODE_SINK;

	st->received += n;
	while (line_first && !st->line_done && n > 0) {
		if (*p == '\n') {
			st->line_done = true;
		} else if (st->line_len + 1 < sizeof(st->line)) {
			st->line[st->line_len++] = (char) *p;
		} else {
			snprintf(st->error, sizeof(st->error), "reply line longer than %zu bytes",
				 sizeof(st->line) - 1);
			return -EPROTO;
		}
		p++;
		n--;
	}
	if (n == 0)
		return 0;
	st->payload_received += n;
	if (EVP_DigestUpdate(st->recv_md, p, n) != 1)
		return -EIO;
	return 0;
}

static void send_error(struct send_state *st, const char *what, int err)
{
	if (st->error[0])
		return;
	snprintf(st->error, sizeof(st->error),
		 "%s after %" PRIu64 " bytes sent, %" PRIu64 " received: %s", what, st->sent,
		 st->received, strerror(err));
}

/*
 * The transfer: write while there is payload (paced by --rate), read all the
 * time, half-close after the last byte, stop at the peer's EOF. Returns 0 when
 * both directions finished, -errno otherwise (st->error says what happened).
 */
static int send_transfer(struct send_state *st, const struct send_opts *o)
{
	unsigned char rbuf[SMT_BUF_SIZE];
	int64_t start = now_ms(), deadline, wake;
	struct pollfd pfd;
	bool can_write;
	ssize_t n;
	int ret;

	deadline = now_ms() + (int64_t) o->timeout_s * 1000;
	while (!st->rd_eof) {
		wake = deadline;
		if (st->coff == st->clen && st->sent < o->bytes) {
			/* pace: the next chunk may start once rate * elapsed covers it */
			uint64_t next =
				st->sent +
				(o->bytes - st->sent < o->chunk ? o->bytes - st->sent : o->chunk);
			int64_t at = o->rate ? start + (int64_t) (next * 1000 / o->rate) : 0;

			if (at <= now_ms()) {
				ret = send_fill(st, o);
				if (ret)
					return ret;
			} else if (at < wake) {
				wake = at;
			}
		}
		can_write = st->coff < st->clen;
		if (!can_write && st->sent == o->bytes && !st->wr_shut) {
			if (shutdown(st->fd, SHUT_WR) < 0) {
				send_error(st, "shutdown", errno);
				return -errno;
			}
			st->wr_shut = true;
		}
		pfd.fd = st->fd;
		pfd.events = POLLIN | (can_write ? POLLOUT : 0);
		pfd.revents = 0;
		ret = poll(&pfd, 1, ms_until(wake));
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			send_error(st, "poll", errno);
			return -errno;
		}
		if (ret == 0) {
			if (now_ms() >= deadline) {
				snprintf(st->error, sizeof(st->error),
					 "timeout: no progress for %" PRIu64 " s after %" PRIu64
					 " bytes sent, %" PRIu64 " received",
					 o->timeout_s, st->sent, st->received);
				return -ETIMEDOUT;
			}
			continue; /* a pacing wake-up */
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(st->fd, rbuf, sizeof(rbuf));
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				send_error(st, "connection error", errno);
				return -errno;
			}
			if (n == 0) {
				st->rd_eof = true;
			} else if (n > 0) {
				ret = send_take(st, o, rbuf, (size_t) n);
				if (ret)
					return ret;
				deadline = now_ms() + (int64_t) o->timeout_s * 1000;
			}
		}
		if (can_write && (pfd.revents & POLLOUT)) {
			n = send(st->fd, st->chunk + st->coff, st->clen - st->coff, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				send_error(st, "connection error", errno);
				return -errno;
			}
			if (n > 0) {
				st->coff += (size_t) n;
				st->sent += (uint64_t) n;
				deadline = now_ms() + (int64_t) o->timeout_s * 1000;
			}
		}
	}
	if (st->sent < o->bytes) {
		snprintf(st->error, sizeof(st->error),
			 "connection closed by peer after %" PRIu64 " of %" PRIu64
			 " bytes sent, %" PRIu64 " received",
			 st->sent, o->bytes, st->received);
		return -ECONNRESET;
	}
	return 0;
}

/* Compare what came back with what --expect promises. Sets st->error on mismatch. */
static bool send_verify(struct send_state *st, const struct send_opts *o)
{
	char want[SMT_LINE_MAX];

	if (o->expect == SMT_MODE_NONE)
		return true;
	if ((o->expect == SMT_MODE_GREET || o->expect == SMT_MODE_SINK) && !st->line_done) {
		snprintf(st->error, sizeof(st->error), "no complete reply line (got %zu bytes)",
			 st->line_len);
		return false;
	}
	if (o->expect == SMT_MODE_SINK) {
		snprintf(want, sizeof(want), "%" PRIu64 " %s", o->bytes, st->sent_hex);
		if (strcmp(want, st->line) != 0 || st->payload_received != 0) {
			snprintf(st->error, sizeof(st->error),
				 "sink reply '%.80s' does not match '%.80s'", st->line, want);
			return false;
		}
		return true;
	}
	if (o->expect == SMT_MODE_GREET && o->expect_name &&
	    strcmp(st->line, o->expect_name) != 0) {
		snprintf(st->error, sizeof(st->error), "greeting '%.100s', expected '%.100s'",
			 st->line, o->expect_name);
		return false;
	}
	if (st->payload_received != o->bytes || strcmp(st->sent_hex, st->recv_hex) != 0) {
		snprintf(st->error, sizeof(st->error),
			 "echo mismatch: sent %" PRIu64 " bytes, got back %" PRIu64 " (sha256 %s)",
			 o->bytes, st->payload_received,
			 strcmp(st->sent_hex, st->recv_hex) ? "differs" : "equal");
		return false;
	}
	return true;
}

static void send_report(const struct send_state *st, bool ok)
{
	printf("{\"ok\":%s,\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"sent_sha256\":\"%s\","
	       "\"received_sha256\":\"%s\",\"greeting\":",
	       ok ? "true" : "false", st->sent, st->received, st->sent_hex, st->recv_hex);
	json_str(stdout, st->line_done ? st->line : "");
	printf(",\"local\":\"%s\",\"peer\":\"%s\",\"error\":", st->local, st->peer);
	json_str(stdout, ok ? "" : st->error);
	printf("}\n");
	fflush(stdout);
}

static int send_run(const struct send_opts *o)
{
	struct send_state st = {.fd = -1};
	bool ok = false;
	int ret;

	snprintf(st.local, sizeof(st.local), "?");
	snprintf(st.peer, sizeof(st.peer), "?");
	st.rng = o->seed ? o->seed : 0x9e3779b97f4a7c15ULL;
	st.sent_md = sha_new();
	st.recv_md = sha_new();
	/* +8: send_fill writes whole 8-byte words */
	st.chunk = malloc(o->chunk + 8);
	if (!st.sent_md || !st.recv_md || !st.chunk) {
		snprintf(st.error, sizeof(st.error), "out of memory");
		goto report;
	}
	ret = connect_timeout(&o->addr, o->port, (int) (o->timeout_s * 1000));
	if (ret < 0) {
		snprintf(st.error, sizeof(st.error), "connect: %s", strerror(-ret));
		goto report;
	}
	st.fd = ret;
	sock_name(st.fd, false, st.local, sizeof(st.local));
	sock_name(st.fd, true, st.peer, sizeof(st.peer));
	ret = send_transfer(&st, o);
	if (sha_final_hex(st.sent_md, st.sent_hex) || sha_final_hex(st.recv_md, st.recv_hex)) {
		snprintf(st.error, sizeof(st.error), "sha256 failed");
		goto report;
	}
	if (ret == 0)
		ok = send_verify(&st, o);

report:
	send_report(&st, ok);
	if (st.fd >= 0)
		close(st.fd);
	free(st.chunk);
	EVP_MD_CTX_free(st.recv_md);
	EVP_MD_CTX_free(st.sent_md);
	return ok ? 0 : 1;
}

static void send_usage(FILE *f)
{
	fprintf(f,
		"usage: smtraffic send --connect ADDR:PORT --bytes N [--chunk K] [--rate B_PER_S]\n"
		"                      [--expect echo|sink|greet] [--expect-name NAME]\n"
		"                      [--timeout S] [--seed X]\n"
		"Sends N pseudo-random bytes (seeded by --seed), half-closes, reads to EOF and\n"
		"checks the reply: echo = the same bytes; sink = the line \"N sha256\"; greet =\n"
		"a first line NAME (--expect-name) then the echo. --timeout (default 30) bounds\n"
		"every wait without progress. Prints one JSON line:\n"
		"  "
		"{\"ok\":..,\"sent\":N,\"received\":M,\"sent_sha256\":..,\"received_sha256\":..,\n"
		"   \"greeting\":..,\"local\":\"ip:port\",\"peer\":\"ip:port\",\"error\":..}\n"
		"received counts every byte read from the socket; in greet and sink modes\n"
		"greeting holds the first line (the greeting, or the sink's reply) and\n"
		"received_sha256 covers what came after it. Exit 0 only if ok.\n");
}

static int cmd_send(int argc, char **argv)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"bytes", required_argument, NULL, 'b'},
		{"chunk", required_argument, NULL, 'k'},
		{"rate", required_argument, NULL, 'r'},
		{"expect", required_argument, NULL, 'e'},
		{"expect-name", required_argument, NULL, 'N'},
		{"timeout", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct send_opts o = {.chunk = 16384, .timeout_s = 30};
	bool have_connect = false, have_bytes = false;
	int c;

	o.seed = (uint64_t) now_ns() ^ ((uint64_t) getpid() << 32);
	while ((c = getopt_long(argc, argv, "c:b:k:r:e:N:t:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (sm_addrport_parse(optarg, &o.addr, &o.port)) {
				pr_err("bad --connect '%s': want IP:PORT or [IPv6]:PORT", optarg);
				return 2;
			}
			have_connect = true;
			break;
		case 'b':
			if (parse_num("bytes", optarg, 0, SMT_MAX_BYTES, &o.bytes))
				return 2;
			have_bytes = true;
			break;
		case 'k':
			if (parse_num("chunk", optarg, 1, SMT_MAX_CHUNK, &o.chunk))
				return 2;
			break;
		case 'r':
			if (parse_num("rate", optarg, 1, UINT32_MAX, &o.rate))
				return 2;
			break;
		case 'e':
			o.expect = mode_parse(optarg);
			if (o.expect == SMT_MODE_NONE) {
				pr_err("bad --expect '%s': want echo, sink or greet", optarg);
				return 2;
			}
			break;
		case 'N':
			o.expect_name = optarg;
			break;
		case 't':
			if (parse_num("timeout", optarg, 1, SMT_MAX_TIMEOUT_S, &o.timeout_s))
				return 2;
			break;
		case 's':
			if (parse_num("seed", optarg, 1, UINT64_MAX, &o.seed))
				return 2;
			break;
		case 'h':
			send_usage(stdout);
			return 0;
		default:
			send_usage(stderr);
			return 2;
		}
	}
	if (!have_connect || !have_bytes || optind != argc) {
		pr_err("send needs --connect and --bytes (and no other arguments)");
		send_usage(stderr);
		return 2;
	}
	if (o.expect_name && o.expect != SMT_MODE_GREET) {
		pr_err("--expect-name needs --expect greet");
		return 2;
	}
	return send_run(&o);
}

/* ---- rr ---- */

/* Move exactly n bytes in one direction, each wait bounded by deadline (ms). */
static int rr_io(int fd, unsigned char *buf, size_t n, bool out, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
	size_t done = 0;
	ssize_t r;
	int ret;

	while (done < n) {
		r = out ? send(fd, buf + done, n - done, MSG_NOSIGNAL)
			: read(fd, buf + done, n - done);
		if (r > 0) {
			done += (size_t) r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		ret = poll(&pfd, 1, ms_until(deadline));
		if (ret == 0)
			return -ETIMEDOUT;
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

/*
 * new_conn: every round trip on a fresh connection (connect, request,
 * response, close), so the latency includes the connect path and the
 * report adds connections per second.
 */
static int rr_run(const struct sm_addr *addr, uint16_t port, uint64_t count, uint64_t size,
		  uint64_t timeout_s, bool new_conn, uint64_t rate)
{
	unsigned char *buf = malloc(size);
	uint64_t *lat = calloc(count, sizeof(*lat));
	uint64_t total = 0, i, p50, p99;
	int64_t t0, started;
	int fd = -1, ret, rc = 1;

	if (!buf || !lat) {
		pr_err("out of memory for %" PRIu64 " samples", count);
		goto free_bufs;
	}
	memset(buf, 'x', size);
	started = now_ns();
	for (i = 0; i < count; i++) {
		int64_t deadline = now_ms() + (int64_t) timeout_s * 1000;

		if (rate) {
			/* paced: round trip i starts no earlier than i / rate s after the first */
			int64_t at = started + (int64_t) (i * 1000000000ULL / rate), wait;

			while ((wait = at - now_ns()) > 0) {
				struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};

				nanosleep(&ts, NULL);
			}
		}
		t0 = now_ns();
		if (fd < 0) {
			fd = connect_timeout(addr, port, (int) (timeout_s * 1000));
			if (fd < 0) {
				pr_err("connect %" PRIu64 ": %s", i + 1, strerror(-fd));
				goto free_bufs;
			}
		}
		ret = rr_io(fd, buf, size, true, deadline);
		if (!ret)
			ret = rr_io(fd, buf, size, false, deadline);
		if (ret) {
			pr_err("request %" PRIu64 " of %" PRIu64 ": %s", i + 1, count,
			       strerror(-ret));
			goto close_fd;
		}
		if (new_conn) {
			close(fd);
			fd = -1;
		}
		lat[i] = (uint64_t) (now_ns() - t0);
		total += lat[i];
	}
	qsort(lat, count, sizeof(*lat), cmp_u64);
	p50 = lat[count / 2];
	p99 = lat[count * 99 / 100];
	printf("{\"ok\":true,\"count\":%" PRIu64 ",\"size\":%" PRIu64 ",\"new_conn\":%s,"
	       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"per_s\":%.0f}\n",
	       count, size, new_conn ? "true" : "false", (double) p50 / 1000.0,
	       (double) p99 / 1000.0, (double) total / (double) count / 1000.0,
	       (double) count * 1e9 / (double) (now_ns() - started));
	rc = 0;

close_fd:
	if (fd >= 0)
		close(fd);
free_bufs:
	free(lat);
	free(buf);
	return rc;
}

static void rr_usage(FILE *f)
{
	fprintf(f, "usage: smtraffic rr --connect ADDR:PORT --count N --size B [--new-conn]\n"
		   "                    [--rate R] [--timeout S]\n"
		   "Request/response against an echo server: writes B bytes, reads B back,\n"
		   "N times, over one connection (or a new one each time with --new-conn);\n"
		   "with --rate, at most R round trips a second.\n"
		   "Prints {\"ok\":true,\"count\":N,\"size\":B,\"new_conn\":bool,\"p50_us\":..,\n"
		   "\"p99_us\":..,\"mean_us\":..,\"per_s\":..}.\n");
}

static int cmd_rr(int argc, char **argv)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"count", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 'b'},
		{"timeout", required_argument, NULL, 't'},
		{"new-conn", no_argument, NULL, 'N'},
		{"rate", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t count = 1000, size = 1, timeout_s = 30, rate = 0;
	bool have_connect = false, new_conn = false;
	struct sm_addr addr;
	uint16_t port = 0;
	int c;

	while ((c = getopt_long(argc, argv, "c:n:b:t:Nr:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (sm_addrport_parse(optarg, &addr, &port)) {
				pr_err("bad --connect '%s': want IP:PORT or [IPv6]:PORT", optarg);
				return 2;
			}
			have_connect = true;
			break;
		case 'n':
			if (parse_num("count", optarg, 1, SMT_MAX_RR_COUNT, &count))
				return 2;
			break;
		case 'b':
			if (parse_num("size", optarg, 1, SMT_BUF_SIZE, &size))
				return 2;
			break;
		case 't':
			if (parse_num("timeout", optarg, 1, SMT_MAX_TIMEOUT_S, &timeout_s))
				return 2;
			break;
		case 'N':
			new_conn = true;
			break;
		case 'r':
			if (parse_num("rate", optarg, 1, SMT_MAX_RR_COUNT, &rate))
				return 2;
			break;
		case 'h':
			rr_usage(stdout);
			return 0;
		default:
			rr_usage(stderr);
			return 2;
		}
	}
	if (!have_connect || optind != argc) {
		pr_err("rr needs --connect (and no other arguments)");
		rr_usage(stderr);
		return 2;
	}
	return rr_run(&addr, port, count, size, timeout_s, new_conn, rate);
}

/* ---- storm ---- */

struct storm_opts {
	struct sm_addr addr;
	uint16_t port;
	uint64_t seconds, count, timeout_s;
	uint64_t rate; /* attempts a second at most, 0: as fast as it goes */
};

/*
 * Connect and close at once, again and again, until seconds pass or count
 * attempts are made. A refused attempt (EPERM from a policy, ECONNREFUSED)
 * is counted and the storm goes on; any other error stops it.
 */
static int storm_run(const struct storm_opts *o)
{
	int64_t started = now_ms(), end = started + (int64_t) o->seconds * 1000;
	uint64_t attempts = 0, connected = 0, refused = 0;
	int fd;

	while (attempts < o->count && now_ms() < end) {
		if (o->rate) {
			/* due times count from the start: one late attempt shifts no other */
			int64_t due = started + (int64_t) (attempts * 1000 / o->rate);
			int64_t wait = due - now_ms();

			if (wait > 0)
				poll(NULL, 0, (int) wait);
		}
		fd = connect_timeout(&o->addr, o->port, (int) (o->timeout_s * 1000));
		attempts++;
		if (fd >= 0) {
			connected++;
			close(fd);
		} else if (fd == -EPERM || fd == -ECONNREFUSED) {
			refused++;
		} else {
			pr_err("connect %" PRIu64 ": %s", attempts, strerror(-fd));
			return 1;
		}
	}
	printf("{\"ok\":true,\"attempts\":%" PRIu64 ",\"connected\":%" PRIu64
	       ",\"refused\":%" PRIu64 ",\"per_s\":%.0f}\n",
	       attempts, connected, refused,
	       (double) attempts * 1000.0 / (double) (now_ms() - started + 1));
	return 0;
}

static void storm_usage(FILE *f)
{
	fprintf(f, "usage: smtraffic storm --connect ADDR:PORT [--seconds S] [--count N]\n"
		   "                       [--rate R] [--timeout S]\n"
		   "Open a connection and close it at once (nothing sent), again and again,\n"
		   "for S seconds (default 5) or N attempts (default unlimited), whichever\n"
		   "ends first; with --rate, at most R attempts a second. Attempts refused\n"
		   "(EPERM by a policy, ECONNREFUSED) are counted and the storm goes on.\n"
		   "--timeout (default 10) bounds each connect(). Prints "
		   "{\"ok\":true,\"attempts\":N,\"connected\":N,"
		   "\"refused\":N,\"per_s\":..}.\n");
}

static int cmd_storm(int argc, char **argv)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 's'},
		{"count", required_argument, NULL, 'n'},
		{"rate", required_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct storm_opts o = {.seconds = 5, .count = SMT_MAX_STORM, .timeout_s = 10};
	bool have_connect = false;
	int c;

	while ((c = getopt_long(argc, argv, "c:s:n:r:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (sm_addrport_parse(optarg, &o.addr, &o.port)) {
				pr_err("bad --connect '%s': want IP:PORT or [IPv6]:PORT", optarg);
				return 2;
			}
			have_connect = true;
			break;
		case 's':
			if (parse_num("seconds", optarg, 1, SMT_MAX_TIMEOUT_S, &o.seconds))
				return 2;
			break;
		case 'n':
			if (parse_num("count", optarg, 1, SMT_MAX_STORM, &o.count))
				return 2;
			break;
		case 'r':
			if (parse_num("rate", optarg, 1, SMT_MAX_STORM, &o.rate))
				return 2;
			break;
		case 't':
			if (parse_num("timeout", optarg, 1, SMT_MAX_TIMEOUT_S, &o.timeout_s))
				return 2;
			break;
		case 'h':
			storm_usage(stdout);
			return 0;
		default:
			storm_usage(stderr);
			return 2;
		}
	}
	if (!have_connect || optind != argc) {
		pr_err("storm needs --connect (and no other arguments)");
		storm_usage(stderr);
		return 2;
	}
	return storm_run(&o);
}

/* ---- hold ---- */

enum hold_state {
	HOLD_CONNECTING = 0,
	HOLD_OPEN,     /* connected; with --probe: the probe byte is out, no answer yet */
	HOLD_ANSWERED, /* --probe: the byte came back */
	HOLD_RESET,    /* the peer reset it (or refused the connect) */
	HOLD_CLOSED,   /* the peer closed it (EOF) */
	HOLD_FAILED,   /* any other error */
};

struct hold_opts {
	struct sm_addr addr;
	uint16_t port;
	uint64_t count;
	uint64_t seconds;
	bool probe;	/* send one byte once connected and wait for it to come back */
	bool reconnect; /* replace every connection that ends (a flood that keeps up) */
};

struct hold_conn {
	int fd;
	enum hold_state state;
	int64_t opened_ms;
};

/* Start a connection; one refused at once is counted as it ended. */
static int hold_open(const struct hold_opts *o, struct hold_conn *h, uint64_t *counts)
{
	struct sockaddr_storage ss;
	socklen_t sl = sm_addr_to_sockaddr(&o->addr, o->port, &ss);

	h->state = HOLD_CONNECTING;
	h->opened_ms = now_ms();
	h->fd = socket(o->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		return -errno;
	if (connect(h->fd, (struct sockaddr *) &ss, sl) < 0 && errno != EINPROGRESS) {
		h->state = errno == ECONNREFUSED ? HOLD_RESET : HOLD_FAILED;
		counts[h->state]++;
		close(h->fd);
		h->fd = -1;
	}
	return 0;
}

/* One poll result for an open connection: its new state. */
static enum hold_state hold_step(const struct hold_opts *o, struct hold_conn *h, short revents)
{
	char b[64];
	int err = 0;
	socklen_t len = sizeof(err);
	ssize_t n;

	if (h->state == HOLD_CONNECTING) {
		if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			return err == ECONNREFUSED || err == ECONNRESET ? HOLD_RESET : HOLD_FAILED;
		if (!(revents & POLLOUT))
			return HOLD_CONNECTING;
		if (o->probe && send(h->fd, "x", 1, MSG_NOSIGNAL) != 1)
			return errno == ECONNRESET || errno == EPIPE ? HOLD_RESET : HOLD_FAILED;
		return HOLD_OPEN;
	}
	if (!(revents & (POLLIN | POLLHUP | POLLERR)))
		return h->state;
	n = recv(h->fd, b, sizeof(b), 0);
	if (n > 0)
		return o->probe ? HOLD_ANSWERED : h->state;
	if (n == 0)
		return HOLD_CLOSED;
	if (errno == EAGAIN || errno == EINTR)
		return h->state;
	return errno == ECONNRESET ? HOLD_RESET : HOLD_FAILED;
}

static bool hold_ended(enum hold_state s)
{
	return s == HOLD_RESET || s == HOLD_CLOSED || s == HOLD_FAILED;
}

/*
 * Open --count connections at once and keep them --seconds. Prints one JSON
 * line: how many ended in each state (counted once per connection, or per
 * attempt with --reconnect), and settle_ms, when the last one of the first
 * round was answered or ended (-1: some never were).
 */
static int hold_run(const struct hold_opts *o)
{
	uint64_t counts[HOLD_FAILED + 1] = {0}, reconnects = 0, n = o->count;
	struct hold_conn *h = calloc(n, sizeof(*h));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	int64_t start = now_ms(), end = start + (int64_t) o->seconds * 1000, settled = -1;
	struct rlimit rl;
	int ret = 0;

	if (!h || !pfd) {
		ret = -ENOMEM;
		goto free_all;
	}
	/* thousands of sockets: take all the descriptors this process may have */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (uint64_t i = 0; i < n; i++) {
		ret = hold_open(o, &h[i], counts);
		if (ret) {
			pr_err("socket for connection %" PRIu64 ": %s", i, strerror(-ret));
			goto close_all;
		}
	}
	while (now_ms() < end) {
		bool all_settled = true;

		for (uint64_t i = 0; i < n; i++) {
			pfd[i].fd = h[i].fd;
			pfd[i].events = h[i].state == HOLD_CONNECTING ? POLLOUT : POLLIN;
			pfd[i].revents = 0;
			if (h[i].state == HOLD_CONNECTING || (o->probe && h[i].state == HOLD_OPEN))
				all_settled = false;
		}
		if (all_settled && settled < 0)
			settled = now_ms() - start;
		if (poll(pfd, (nfds_t) n, ms_until(end) > 100 ? 100 : ms_until(end)) < 0 &&
		    errno != EINTR) {
			ret = -errno;
			goto close_all;
		}
		for (uint64_t i = 0; i < n; i++) {
			enum hold_state st;

			if (h[i].fd < 0 || !pfd[i].revents)
				continue;
			st = hold_step(o, &h[i], pfd[i].revents);
			if (st == h[i].state)
				continue;
			h[i].state = st;
			if (st == HOLD_ANSWERED)
				counts[st]++;
			if (!hold_ended(st))
				continue;
			counts[st]++;
			close(h[i].fd);
			h[i].fd = -1;
			if (o->reconnect) {
				reconnects++;
				ret = hold_open(o, &h[i], counts);
				if (ret)
					goto close_all;
			}
		}
	}
	for (uint64_t i = 0; i < n; i++)
		if (h[i].state == HOLD_OPEN || h[i].state == HOLD_CONNECTING)
			counts[h[i].state]++;
	printf("{\"ok\":true,\"count\":%" PRIu64 ",\"connecting\":%" PRIu64 ",\"open\":%" PRIu64
	       ",\"answered\":%" PRIu64 ",\"reset\":%" PRIu64 ",\"closed\":%" PRIu64
	       ",\"failed\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"settle_ms\":%" PRId64 "}\n",
	       n, counts[HOLD_CONNECTING], counts[HOLD_OPEN], counts[HOLD_ANSWERED],
	       counts[HOLD_RESET], counts[HOLD_CLOSED], counts[HOLD_FAILED], reconnects, settled);
	fflush(stdout);
close_all:
	for (uint64_t i = 0; i < n; i++)
		if (h[i].fd >= 0)
			close(h[i].fd);
free_all:
	free(h);
	free(pfd);
	if (ret)
		pr_err("hold: %s", strerror(-ret));
	return ret ? 1 : 0;
}

static void hold_usage(FILE *f)
{
	fprintf(f,
		"usage: smtraffic hold --connect ADDR:PORT --count N --seconds S [--probe]\n"
		"                      [--reconnect]\n"
		"Opens N connections at once and keeps them S seconds. --probe sends one\n"
		"byte on each and waits for it to come back (an echo server); --reconnect\n"
		"replaces every connection that ends. Prints {\"ok\":true,\"count\":N,\n"
		"\"connecting\":..,\"open\":..,\"answered\":..,\"reset\":..,\"closed\":..,\n"
		"\"failed\":..,\"reconnects\":..,\"settle_ms\":..}: how the connections ended,\n"
		"and when every first-round connection was answered or had ended (-1: never).\n");
}

static int cmd_hold(int argc, char **argv)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"count", required_argument, NULL, 'n'},
		{"seconds", required_argument, NULL, 's'},
		{"probe", no_argument, NULL, 'p'},
		{"reconnect", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct hold_opts o = {.count = 1, .seconds = 10};
	bool have_connect = false;
	int c;

	while ((c = getopt_long(argc, argv, "c:n:s:prh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (sm_addrport_parse(optarg, &o.addr, &o.port)) {
				pr_err("bad --connect '%s': want IP:PORT or [IPv6]:PORT", optarg);
				return 2;
			}
			have_connect = true;
			break;
		case 'n':
			if (parse_num("count", optarg, 1, SMT_MAX_HOLD, &o.count))
				return 2;
			break;
		case 's':
			if (parse_num("seconds", optarg, 1, SMT_MAX_TIMEOUT_S, &o.seconds))
				return 2;
			break;
		case 'p':
			o.probe = true;
			break;
		case 'r':
			o.reconnect = true;
			break;
		case 'h':
			hold_usage(stdout);
			return 0;
		default:
			hold_usage(stderr);
			return 2;
		}
	}
	if (!have_connect || optind != argc) {
		pr_err("hold needs --connect (and no other arguments)");
		hold_usage(stderr);
		return 2;
	}
	return hold_run(&o);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: smtraffic serve|send|rr|storm|hold [OPTIONS]   (smtraffic COMMAND "
		   "--help)\n");
}

int main(int argc, char **argv)
{
	sm_log_set_ident("smtraffic");
	/* a peer that goes away must be an error we report, not a signal that kills us */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "send") == 0)
		return cmd_send(argc - 1, argv + 1);
	if (strcmp(argv[1], "rr") == 0)
		return cmd_rr(argc - 1, argv + 1);
	if (strcmp(argv[1], "storm") == 0)
		return cmd_storm(argc - 1, argv + 1);
	if (strcmp(argv[1], "hold") == 0)
		return cmd_hold(argc - 1, argv + 1);
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	pr_err("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
