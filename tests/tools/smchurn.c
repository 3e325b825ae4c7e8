// SPDX-License-Identifier: Apache-2.0
/*
 * smchurn: remove and recreate a cgroup again and again, as systemd and
 * container runtimes do on every restart, and test each new cgroup from its
 * very first socket call. Used by tests/integration/enroll.bats to show that
 * a workload's recreated cgroup is captured and policed with no window.
 *
 * Each attempt: rmdir + mkdir the cgroup (and the nested path, if any), fork
 * a child that moves itself into it and at once
 *   --deny A:P     connect()s to A:P, which must fail with EPERM (policy);
 *   --capture A:P  connect()s to A:P, which must be rewritten to the outbound
 *                  listener (--via, default 127.0.0.1:15001): the socket's
 *                  real peer (the kernel's, by a sock_diag lookup:
 *                  getpeername() gives A:P back, by the mesh's design) is
 *                  the listener, or, with --listener-down, the connect is
 *                  refused by the listener's absent socket;
 *   --listen A:P   listens on A:P, and the parent connects to it from the
 *                  network namespace --probe-netns: a STRICT workload must
 *                  not complete that plaintext handshake (--probe-wait-ms).
 * --mark N sets SO_MARK N on the child's sockets first, as a workload process
 * with CAP_NET_ADMIN could (the daemon's own mark must not exempt it).
 * An escape is an attempt that reached its destination around the mesh.
 * Prints one JSON line; exit 0 when every attempt held, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>

#include "util.h"

#define CH_MAX_COUNT   1000000
#define CH_MAX_WAIT_MS 10000
#define CH_MSG_MAX     200

struct target {
	bool set;
	struct sm_addr addr;
	uint16_t port;
	char text[64];
};

struct opts {
	char cgroup[PATH_MAX];
	char nested[PATH_MAX]; /* relative to cgroup, or "" */
	uint64_t count;
	struct target deny, capture, via, listen;
	bool listener_down;
	char probe_netns[PATH_MAX];
	uint64_t probe_wait_ms;
	uint64_t timeout_s;
	uint64_t mark; /* 0: none */
};

/* What one attempt's child found: 0 = as expected, 1 = an escape, 2 = an error. */
struct verdict {
	int code;
	char msg[CH_MSG_MAX];
};

struct totals {
	uint64_t attempts, checks, escapes, errors;
	char first_escape[CH_MSG_MAX];
	char first_error[CH_MSG_MAX];
};

static void usage(FILE *f)
{
	fputs("Usage: smchurn --cgroup DIR --count N [--nested PATH]\n"
	      "               [--deny ADDR:PORT] [--capture ADDR:PORT [--via ADDR:PORT]\n"
	      "               [--listener-down]] [--listen ADDR:PORT --probe-netns FILE\n"
	      "               [--probe-wait-ms MS]] [--mark N] [--timeout SEC]\n"
	      "Recreates DIR (rmdir + mkdir) COUNT times and checks each new cgroup from its\n"
	      "first socket call; prints one JSON line; exit 0 when nothing escaped.\n",
	      f);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_target(const char *s, struct target *t)
{
	if (sm_addrport_parse(s, &t->addr, &t->port) || t->port == 0)
		return -EINVAL;
	sm_strlcpy(t->text, s, sizeof(t->text));
	t->set = true;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"cgroup", required_argument, NULL, 'g'},
		{"nested", required_argument, NULL, 'N'},
		{"count", required_argument, NULL, 'n'},
		{"deny", required_argument, NULL, 'd'},
		{"capture", required_argument, NULL, 'c'},
		{"via", required_argument, NULL, 'v'},
		{"listener-down", no_argument, NULL, 'D'},
		{"listen", required_argument, NULL, 'l'},
		{"probe-netns", required_argument, NULL, 'p'},
		{"probe-wait-ms", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'},
		{"mark", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, bad = 0;

	memset(o, 0, sizeof(*o));
	o->probe_wait_ms = 5;
	o->timeout_s = 600;
	parse_target("127.0.0.1:15001", &o->via);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'g':
			bad |= sm_strlcpy(o->cgroup, optarg, sizeof(o->cgroup));
			break;
		case 'N':
			bad |= sm_strlcpy(o->nested, optarg, sizeof(o->nested));
			break;
		case 'n':
			bad |= sm_parse_u64(optarg, 1, CH_MAX_COUNT, &o->count);
			break;
		case 'd':
			bad |= parse_target(optarg, &o->deny);
			break;
		case 'c':
			bad |= parse_target(optarg, &o->capture);
			break;
		case 'v':
			bad |= parse_target(optarg, &o->via);
			break;
		case 'D':
			o->listener_down = true;
			break;
		case 'l':
			bad |= parse_target(optarg, &o->listen);
			break;
		case 'p':
			bad |= sm_strlcpy(o->probe_netns, optarg, sizeof(o->probe_netns));
			break;
		case 'w':
			bad |= sm_parse_u64(optarg, 1, CH_MAX_WAIT_MS, &o->probe_wait_ms);
			break;
		case 't':
			bad |= sm_parse_u64(optarg, 1, 24 * 3600, &o->timeout_s);
			break;
		case 'm':
			bad |= sm_parse_u64(optarg, 1, UINT32_MAX, &o->mark);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			bad = 1;
		}
	}
	if (bad || optind != argc || !o->cgroup[0] || !o->count ||
	    (!o->deny.set && !o->capture.set && !o->listen.set) ||
	    (o->listen.set && !o->probe_netns[0])) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

static int join_path(const struct opts *o, char *buf, size_t len)
{
	int n = o->nested[0] ? snprintf(buf, len, "%s/%s", o->cgroup, o->nested)
			     : snprintf(buf, len, "%s", o->cgroup);

	return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

/* Remove the cgroup (deepest first) and make it anew: a new cgroup id each time. */
static int recreate(const struct opts *o)
{
	char path[PATH_MAX], sub[PATH_MAX];
	int64_t deadline = now_ms() + 5000;

	if (join_path(o, path, sizeof(path)))
		return -ENAMETOOLONG;
	/* the nested directories, deepest first */
	sm_strlcpy(sub, path, sizeof(sub));
	while (strlen(sub) > strlen(o->cgroup)) {
		char *slash;

		while (rmdir(sub) < 0 && errno == EBUSY && now_ms() < deadline)
			usleep(200); /* the last member's exit is still being processed */
		slash = strrchr(sub, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	while (rmdir(o->cgroup) < 0 && errno != ENOENT) {
		if (errno != EBUSY || now_ms() >= deadline)
			return -errno;
		usleep(200);
	}
	if (mkdir(o->cgroup, 0755) < 0)
		return -errno;
	if (o->nested[0]) {
		/* every level of the nested path */
		for (char *p = path + strlen(o->cgroup) + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(path, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

static int join_cgroup(const struct opts *o)
{
	char path[PATH_MAX + 16];
	int fd, n;

	if (join_path(o, path, sizeof(path) - 16))
		return -ENAMETOOLONG;
	strcat(path, "/cgroup.procs");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = (int) write(fd, "0", 1); /* "0": the writing process itself */
	close(fd);
	return n == 1 ? 0 : -errno;
}

/* Keep the first, worst finding (code 1 beats nothing, 2 beats 1). */
#define verdict_set(v, c, ...)                                                                     \
	do {                                                                                       \
		if ((v)->code < (c)) {                                                             \
			(v)->code = (c);                                                           \
			snprintf((v)->msg, sizeof((v)->msg), __VA_ARGS__);                         \
		}                                                                                  \
	} while (0)

static const char *outcome(int err)
{
	return err ? strerror(err) : "connected";
}

/*
 * A blocking connect() from this (the child's) cgroup, with SO_MARK mark when
 * non-zero; returns 0 or errno, fd in *fdp.
 */
static int try_connect(const struct target *t, uint64_t mark, int *fdp)
{
	struct sockaddr_storage ss;
	socklen_t len = sm_addr_to_sockaddr(&t->addr, t->port, &ss);
	struct timeval tv = {.tv_usec = 500000};
	unsigned int m = (unsigned int) mark;
	int fd = socket(t->addr.family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	*fdp = fd;
	if (fd < 0)
		return errno;
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) < 0)
		return errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return connect(fd, (struct sockaddr *) &ss, len) == 0 ? 0 : errno;
}

static void check_deny(const struct opts *o, struct verdict *v)
{
	int fd, err = try_connect(&o->deny, o->mark, &fd);

	/* anything but EPERM at once means no policy ran (a timeout: the far side dropped it) */
	if (err != EPERM)
		verdict_set(v, 1, "denied %s: %s, not EPERM", o->deny.text, outcome(err));
	if (fd >= 0)
		close(fd);
}

/*
 * Whether the kernel connected fd to via (whatever a cgroup/getpeername
 * program says): a sock_diag lookup of exactly fd's local address and port
 * and via's, which must find fd itself (its cookie). An exact lookup, not a
 * dump: 10,000 attempts leave as many TIME_WAIT sockets behind. 1 (yes),
 * 0 (no such connection: it went elsewhere) or -errno.
 */
static int connected_to(int fd, const struct target *via)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req = {0};
	union {
		struct nlmsghdr nh;
		char buf[1024];
	} resp;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct sm_addr la;
	uint16_t lport;
	uint64_t cookie = 0;
	socklen_t clen = sizeof(cookie);
	ssize_t n;
	int nl, ret;

	if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) < 0)
		return -errno;
	if (sm_addr_from_sockaddr((struct sockaddr *) &ss, &la, &lport))
		return -EAFNOSUPPORT;
	if (la.family != via->addr.family)
		return 0;
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = la.family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0U;
	req.r.id.idiag_sport = htons(lport);
	req.r.id.idiag_dport = htons(via->port);
	memcpy(req.r.id.idiag_src, la.bytes, la.family == AF_INET ? 4 : 16);
	memcpy(req.r.id.idiag_dst, via->addr.bytes, la.family == AF_INET ? 4 : 16);
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -errno;
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *) &kernel, sizeof(kernel)) < 0 ||
	    (n = recv(nl, &resp, sizeof(resp), 0)) < 0) {
		ret = -errno;
		goto out;
	}
	if (!NLMSG_OK(&resp.nh, (size_t) n)) {
		ret = -EPROTO;
	} else if (resp.nh.nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(&resp.nh);

		ret = e->error == -ENOENT ? 0 : (e->error ? e->error : -EPROTO);
	} else if (resp.nh.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
		const struct inet_diag_msg *m = NLMSG_DATA(&resp.nh);
		uint64_t found =
			(uint64_t) m->id.idiag_cookie[0] | ((uint64_t) m->id.idiag_cookie[1] << 32);

		ret = found == cookie;
	} else {
		ret = -EPROTO;
	}
out:
	close(nl);
	return ret;
}

static void check_capture(const struct opts *o, struct verdict *v)
{
	int fd, err = try_connect(&o->capture, o->mark, &fd);

	if (o->listener_down) {
		if (err == 0)
			verdict_set(v, 1, "captured %s: connected with the listener down",
				    o->capture.text);
		else if (err != ECONNREFUSED)
			verdict_set(v, 1, "captured %s: %s, not ECONNREFUSED", o->capture.text,
				    outcome(err));
		goto out;
	}
	if (err) {
		/* the listener is up: only a connect that went elsewhere fails */
		verdict_set(v, 1, "captured %s: %s", o->capture.text, outcome(err));
		goto out;
	}
	err = connected_to(fd, &o->via);
	if (err < 0)
		verdict_set(v, 2, "captured %s: sock_diag lookup: %s", o->capture.text,
			    outcome(-err));
	else if (err == 0)
		verdict_set(v, 1, "captured %s: connected around the outbound listener",
			    o->capture.text);
out:
	if (fd >= 0)
		close(fd);
}

/* The child of an outbound attempt: join, check, report, exit. */
static void child_outbound(const struct opts *o, int out)
{
	struct verdict v = {0};
	int err = join_cgroup(o);

	if (err)
		verdict_set(&v, 2, "join %s: %s", o->cgroup, outcome(-err));
	if (!err && o->deny.set)
		check_deny(o, &v);
	if (!err && o->capture.set)
		check_capture(o, &v);
	if (write(out, &v, sizeof(v)) != sizeof(v))
		_exit(3);
	_exit(0);
}

/* The child of an inbound attempt: join, listen, say so, wait for the parent. */
static void child_inbound(const struct opts *o, int out, int in)
{
	struct verdict v = {0};
	int err = join_cgroup(o), fd = -1;
	char c;

	if (err) {
		verdict_set(&v, 2, "join %s: %s", o->cgroup, outcome(-err));
	} else {
		fd = sm_tcp_listen(&o->listen.addr, o->listen.port, 16, false);
		if (fd < 0)
			verdict_set(&v, 2, "listen %s: %s", o->listen.text, outcome(-fd));
	}
	if (write(out, &v, sizeof(v)) != sizeof(v))
		_exit(3);
	(void) !read(in, &c, 1); /* until the parent's probe is done */
	_exit(0);
}

/* A non-blocking connect from the probe namespace; 1 when it completed (an escape). */
static int probe(const struct opts *o, int self_ns, int probe_ns, struct verdict *v)
{
	struct sockaddr_storage ss;
	socklen_t len = sm_addr_to_sockaddr(&o->listen.addr, o->listen.port, &ss);
	struct pollfd p;
	int fd, err = 0;
	socklen_t elen = sizeof(err);

	if (setns(probe_ns, CLONE_NEWNET) < 0) {
		verdict_set(v, 2, "setns %s: %s", o->probe_netns, outcome(errno));
		return -1;
	}
	fd = socket(o->listen.addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (setns(self_ns, CLONE_NEWNET) < 0) {
		fprintf(stderr, "smchurn: cannot return to the own network namespace: %s\n",
			strerror(errno));
		exit(2);
	}
	if (fd < 0) {
		verdict_set(v, 2, "probe socket: %s", outcome(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *) &ss, len) < 0 && errno != EINPROGRESS) {
		verdict_set(v, 2, "probe %s: %s", o->listen.text, outcome(errno));
		goto out;
	}
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, (int) o->probe_wait_ms) == 1) {
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
		if (err == 0)
			verdict_set(v, 1, "listener %s: connected in plaintext from another host",
				    o->listen.text);
		else
			verdict_set(v, 2, "probe %s: %s", o->listen.text, outcome(err));
	}
out:
	close(fd); /* still in SYN_SENT: nothing more is sent */
	return v->code;
}

static void tally(struct totals *t, const struct verdict *v)
{
	t->attempts++;
	if (v->code == 1) {
		if (!t->escapes++)
			sm_strlcpy(t->first_escape, v->msg, sizeof(t->first_escape));
	} else if (v->code == 2) {
		if (!t->errors++)
			sm_strlcpy(t->first_error, v->msg, sizeof(t->first_error));
	}
}

static int attempt(const struct opts *o, int self_ns, int probe_ns, struct totals *t)
{
	struct verdict v = {0};
	int up[2], down[2] = {-1, -1}, err, status;
	pid_t pid;

	err = recreate(o);
	if (err) {
		fprintf(stderr, "smchurn: cannot recreate %s: %s\n", o->cgroup, strerror(-err));
		return err;
	}
	if (pipe2(up, O_CLOEXEC) < 0 || (o->listen.set && pipe2(down, O_CLOEXEC) < 0))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* only the parent's ends close the pipes: EOF is how the child learns it is done */
		close(up[0]);
		if (o->listen.set) {
			close(down[1]);
			child_inbound(o, up[1], down[0]);
		}
		child_outbound(o, up[1]);
	}
	close(up[1]);
	if (down[0] >= 0)
		close(down[0]);
	if (read(up[0], &v, sizeof(v)) != sizeof(v))
		verdict_set(&v, 2, "child exited early");
	else if (o->listen.set && v.code == 0)
		probe(o, self_ns, probe_ns, &v);
	close(up[0]);
	if (down[1] >= 0)
		close(down[1]); /* the child's read returns: it exits */
	waitpid(pid, &status, 0);
	tally(t, &v);
	t->checks += (o->deny.set ? 1 : 0) + (o->capture.set ? 1 : 0) + (o->listen.set ? 1 : 0);
	return 0;
}

static void json_str(const char *key, const char *s)
{
	printf(",\"%s\":\"", key);
	for (; *s; s++)
		if (*s != '"' && *s != '\\' && (unsigned char) *s >= 0x20)
			putchar(*s);
	putchar('"');
}

int main(int argc, char **argv)
{
	struct totals t = {0};
	struct opts o;
	int self_ns = -1, probe_ns = -1, err = 0;
	int64_t deadline;

	if (parse_opts(argc, argv, &o))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (o.listen.set) {
		self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		probe_ns = open(o.probe_netns, O_RDONLY | O_CLOEXEC);
		if (self_ns < 0 || probe_ns < 0) {
			fprintf(stderr, "smchurn: cannot open the network namespaces: %s\n",
				strerror(errno));
			return 2;
		}
	}
	deadline = now_ms() + (int64_t) o.timeout_s * 1000;
	for (uint64_t i = 0; i < o.count && !err; i++) {
		if (now_ms() >= deadline) {
			fprintf(stderr, "smchurn: timed out after %llu attempts\n",
				(unsigned long long) i);
			err = -ETIMEDOUT;
			break;
		}
		err = attempt(&o, self_ns, probe_ns, &t);
	}
	printf("{\"attempts\":%llu,\"checks\":%llu,\"escapes\":%llu,\"errors\":%llu",
	       (unsigned long long) t.attempts, (unsigned long long) t.checks,
	       (unsigned long long) t.escapes, (unsigned long long) t.errors);
	json_str("first_escape", t.first_escape);
	json_str("first_error", t.first_error);
	printf(",\"ok\":%s}\n", !err && !t.escapes && !t.errors ? "true" : "false");
	return !err && !t.escapes && !t.errors ? 0 : 1;
}
