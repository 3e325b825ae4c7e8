// SPDX-License-Identifier: Apache-2.0
/*
 * Upgrade in place (handoff.h). Why a spawner: the running daemon keeps only
 * CAP_BPF, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH (privileges.c), also in its
 * bounding set, so a binary it executed itself could not load and attach the
 * programs. At the start, before privileges drop, the daemon forks the
 * spawner, a small process that keeps the start's privileges, closes every
 * other descriptor and waits on a socket only the daemon holds (it dies with
 * the daemon: PR_SET_PDEATHSIG). On SIGUSR2 the daemon sends it, with
 * SCM_RIGHTS, its listening sockets (outbound, HBONE inbound, admin,
 * control), its instance locks and one end of a new handoff socket; the
 * spawner forks and executes the binary on disk with the daemon's command
 * line, those descriptors at 3, 4, ... and named in $SOCKMESH_HANDOFF
 * ("coord=3;locks=4,5,6;listen=7,8,...").
 *
 * The successor adopts the sockets (the same sockets, so not one connection
 * is refused while both run: the kernel queues for whichever accepts) and the
 * locks (the same open file descriptions, so held throughout), loads the
 * programs as any restart does, and says "ready" on the handoff socket; until
 * then it neither consumes the flow ring buffer nor opens the flow-log sinks
 * (records it makes wait in memory). The predecessor then names it the main
 * PID to systemd (MAINPID=), stops accepting, releases the ring buffer
 * ("ring": the successor consumes it from then on) and drains its own
 * connections up to daemon.drain_timeout; its flow records go to its sinks
 * until it exits. Its exit closes the handoff socket: only then does the
 * successor open the sinks, so one process at a time writes and rotates the
 * flow log. A successor that exits (or is not ready within
 * HANDOFF_READY_TIMEOUT_S) before "ready" changes nothing: the predecessor
 * serves on and logs why.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include "control.h"
#include "daemon.h"
#include "evloop.h"
#include "flowacct.h"
#include "handoff.h"
#include "log.h"
#include "metrics.h"
#include "sdnotify.h"
#include "util.h"
#include "worker.h"

#define HANDOFF_ENV		"SOCKMESH_HANDOFF"
#define HANDOFF_MAX_FDS		250 /* below SCM_MAX_FD (253): one message carries them all */
#define HANDOFF_READY_TIMEOUT_S 120
#define HANDOFF_MSG_MAX		4096
#define SPAWNER_FD		3 /* the spawner's socket, in the spawner */

/* Descriptors the successor inherited. */
struct inherited {
	int fd;
	bool taken;
};

enum pred_state {
	PRED_IDLE,	/* serving; SIGUSR2 starts a successor */
	PRED_SPAWNING,	/* a successor starts; not ready yet */
	PRED_HANDED_OFF /* the successor took over: draining */
};

static struct {
	/* successor */
	bool successor;
	int coord; /* the handoff socket to the predecessor, -1 = none */
	struct inherited locks[8], listen[HANDOFF_MAX_FDS];
	unsigned int nlocks, nlisten, group;
	bool ring_taken;
	struct sm_ev *coord_ev;
	/* predecessor */
	int spawner; /* socket to the spawner, -1 = none */
	pid_t spawner_pid;
	struct sm_ev *spawner_ev;
	enum pred_state state;
	pid_t succ_pid;
	struct sm_ev *ready_timer;
	const struct sm_handoff_ops *ops;
} hs = {.coord = -1, .spawner = -1};

/* ---- successor: what it inherited ---- */

static int parse_fds(const char *list, struct inherited *out, unsigned int max, unsigned int *n)
{
	const char *p = list;

	while (*p && *p != ';') {
		char *end;
		long fd = strtol(p, &end, 10);

		if (end == p || fd < 3 || fd > INT_MAX || *n >= max || fcntl((int) fd, F_GETFD) < 0)
			return -EINVAL;
		/* named once: none leaks into a later successor or a child */
		fcntl((int) fd, F_SETFD, FD_CLOEXEC);
		out[(*n)++] = (struct inherited){.fd = (int) fd};
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/* Same address family, address and port as a:port. */
static bool bound_to(int fd, const struct sm_addr *a, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof(ss);
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;

	if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0 || ss.ss_family != a->family)
		return false;
	if (a->family == AF_INET) {
		memcpy(&sin, &ss, sizeof(sin));
		return ntohs(sin.sin_port) == port && memcmp(&sin.sin_addr, a->bytes, 4) == 0;
	}
	memcpy(&sin6, &ss, sizeof(sin6));
	return ntohs(sin6.sin6_port) == port && memcmp(&sin6.sin6_addr, a->bytes, 16) == 0;
}

/* Bound to the same address (a group of SO_REUSEPORT listeners). */
static bool same_bound(int a, int b)
{
	struct sockaddr_storage sa = {0}, sb = {0};
	socklen_t la = sizeof(sa), lb = sizeof(sb);

	return getsockname(a, (struct sockaddr *) &sa, &la) == 0 &&
	       getsockname(b, (struct sockaddr *) &sb, &lb) == 0 && la == lb &&
	       memcmp(&sa, &sb, la) == 0;
}

int sm_handoff_import(void)
{
	const char *env = getenv(HANDOFF_ENV), *p;
	char *end;
	long fd;

	if (!env)
		return 0;
	p = strstr(env, "coord=");
	if (!p)
		goto bad;
	fd = strtol(p + 6, &end, 10);
	if (end == p + 6 || fd < 3 || fd > INT_MAX || fcntl((int) fd, F_GETFD) < 0)
		goto bad;
	hs.coord = (int) fd;
	fcntl(hs.coord, F_SETFD, FD_CLOEXEC);
	p = strstr(env, "locks=");
	if (p && parse_fds(p + 6, hs.locks, SM_ARRAY_SIZE(hs.locks), &hs.nlocks))
		goto bad;
	p = strstr(env, "listen=");
	if (p && parse_fds(p + 7, hs.listen, SM_ARRAY_SIZE(hs.listen), &hs.nlisten))
		goto bad;
	for (unsigned int i = 0; i < hs.nlisten; i++) {
		unsigned int same = 0;

		for (unsigned int j = 0; j < hs.nlisten; j++)
			same += same_bound(hs.listen[i].fd, hs.listen[j].fd);
		if (same > hs.group)
			hs.group = same;
	}
	hs.successor = true;
	unsetenv(HANDOFF_ENV);
	pr_info("upgrade: started by pid %d with %u listening sockets and %u locks of it",
		(int) getppid(), hs.nlisten, hs.nlocks);
	return 0;
bad:
	pr_err("$%s=\"%s\" does not name this process's inherited descriptors (it is set by a "
	       "sockmeshd upgrade, not by hand: unset it)",
	       HANDOFF_ENV, env);
	return -EINVAL;
}

bool sm_handoff_successor(void)
{
	return hs.successor;
}

unsigned int sm_handoff_group_size(void)
{
	return hs.group;
}

int sm_handoff_take_tcp(const struct sm_addr *a, uint16_t port)
{
	for (unsigned int i = 0; i < hs.nlisten; i++) {
		if (!hs.listen[i].taken && bound_to(hs.listen[i].fd, a, port)) {
			hs.listen[i].taken = true;
			return hs.listen[i].fd;
		}
	}
	return -ENOENT;
}

int sm_handoff_take_unix(const char *path)
{
	for (unsigned int i = 0; i < hs.nlisten; i++) {
		struct sockaddr_un sun = {0};
		socklen_t len = sizeof(sun);

		if (hs.listen[i].taken ||
		    getsockname(hs.listen[i].fd, (struct sockaddr *) &sun, &len) < 0 ||
		    sun.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path))
			continue;
		if (strncmp(sun.sun_path, path, sizeof(sun.sun_path)) == 0) {
			hs.listen[i].taken = true;
			return hs.listen[i].fd;
		}
	}
	return -ENOENT;
}

int sm_handoff_take_lock(const char *path)
{
	struct stat want, have;

	if (!hs.nlocks || stat(path, &want) < 0)
		return -ENOENT;
	for (unsigned int i = 0; i < hs.nlocks; i++) {
		if (!hs.locks[i].taken && fstat(hs.locks[i].fd, &have) == 0 &&
		    have.st_dev == want.st_dev && have.st_ino == want.st_ino) {
			hs.locks[i].taken = true;
			return hs.locks[i].fd;
		}
	}
	return -ENOENT;
}

/* ---- successor: the handoff socket ---- */

/* The predecessor is gone: the sinks are ours now, and what it left unused goes. */
static void succ_complete(struct sm_daemon *d, const char *how)
{
	unsigned int unused = 0;

	if (!hs.ring_taken) {
		hs.ring_taken = true;
		hs.ops->took_over(d);
	}
	sm_evloop_del(d->loop, hs.coord_ev);
	hs.coord_ev = NULL;
	close(hs.coord);
	hs.coord = -1;
	hs.successor = false;
	sm_flowexp_open_sinks(d);
	for (unsigned int i = 0; i < hs.nlisten; i++) {
		if (!hs.listen[i].taken) {
			close(hs.listen[i].fd);
			unused++;
		}
	}
	/* /proc/locks names the process that last set a lock: make that this one */
	for (unsigned int i = 0; i < SM_ARRAY_SIZE(d->lock_fds); i++)
		if (d->lock_fds[i] >= 0 && (flock(d->lock_fds[i], LOCK_SH | LOCK_NB) ||
					    flock(d->lock_fds[i], LOCK_EX | LOCK_NB)))
			pr_warn("upgrade: cannot renew an instance lock: %s", strerror(errno));
	/* the earlier daemon's tunnel facts have their time from now on */
	d->instance_started_ns = sm_mono_ns();
	pr_info("upgrade complete: the previous daemon %s; this one (pid %d) writes the flow "
		"records%s",
		how, (int) getpid(),
		unused ? " (listeners the new config does not use closed)" : "");
}

/*
 * One message from a handoff or spawner socket into msg (size bytes, NUL-
 * terminated): its length, 0 when the other side is gone (or the socket
 * failed), -EAGAIN when there is nothing to read yet.
 */
static ssize_t msg_recv(struct sm_ev *ev, char *msg, size_t size)
{
	ssize_t n = recv(sm_ev_fd(ev), msg, size - 1, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -EAGAIN;
	if (n < 0)
		n = 0;
	msg[n] = '\0';
	return n;
}

static void on_coord_succ(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	char msg[64];
	ssize_t n;

	(void) loop;
	(void) events;
	n = msg_recv(ev, msg, sizeof(msg));
	if (n == -EAGAIN)
		return;
	if (n > 0) {
		if (strcmp(msg, "ring") == 0 && !hs.ring_taken) {
			hs.ring_taken = true;
			hs.ops->took_over(d);
		}
		return;
	}
	succ_complete(d, "exited");
}

int sm_handoff_announce(struct sm_daemon *d)
{
	char msg[64];

	if (!hs.successor)
		return 0;
	snprintf(msg, sizeof(msg), "ready %d", (int) getpid());
	if (send(hs.coord, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
		/* the predecessor is gone already: nobody to wait for */
		succ_complete(d, "was gone before this one was ready");
		return 0;
	}
	hs.coord_ev = sm_evloop_add(d->loop, hs.coord, EPOLLIN, on_coord_succ, d);
	return hs.coord_ev ? 0 : -errno;
}

/* ---- the spawner ---- */

/* In the spawner's child: the descriptors at 3.., the environment, the binary. */
static void __attribute__((noreturn))
exec_successor(const char *exe, char **argv, int *fds, unsigned int n, const char *env)
{
	sigset_t none;

	for (unsigned int i = 0; i < n; i++) {
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int) (3 + n));
		if (fds[i] < 0)
			_exit(126);
	}
	for (unsigned int i = 0; i < n; i++)
		if (dup2(fds[i], (int) (3 + i)) < 0) /* dup2 leaves the copy open across exec */
			_exit(126);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setenv(HANDOFF_ENV, env, 1);
	/* the watchdog follows the main PID, which this process becomes */
	if (getenv("WATCHDOG_PID")) {
		char pid[16];

		snprintf(pid, sizeof(pid), "%d", (int) getpid());
		setenv("WATCHDOG_PID", pid, 1);
	}
	execv(exe, argv);
	fprintf(stderr, "sockmeshd: upgrade: cannot execute %s: %s\n", exe, strerror(errno));
	_exit(127);
}

/* "KIND A B" to the daemon. */
static void spawner_reply(const char *kind, long a, long b)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "%s %ld %ld", kind, a, b);
	send(SPAWNER_FD, msg, strlen(msg), MSG_NOSIGNAL);
}

static void __attribute__((noreturn)) spawner_main(const char *exe, char **argv)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOFF_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	char env[HANDOFF_MSG_MAX];

	for (;;) {
		struct pollfd p = {.fd = SPAWNER_FD, .events = POLLIN};
		struct iovec iov = {.iov_base = env, .iov_len = sizeof(env) - 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cm.buf,
				    .msg_controllen = sizeof(cm.buf)};
		int fds[HANDOFF_MAX_FDS], status, r = poll(&p, 1, 200);
		unsigned int n = 0;
		ssize_t len;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			spawner_reply("exit", pid, status);
		if (r <= 0)
			continue;
		len = recvmsg(SPAWNER_FD, &mh, MSG_CMSG_CLOEXEC);
		if (len <= 0)
			_exit(0); /* the daemon is gone */
		env[len] = '\0';
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			n = (unsigned int) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(c), n * sizeof(int));
		}
		pid = fork();
		if (pid == 0) {
			close(SPAWNER_FD);
			exec_successor(exe, argv, fds, n, env);
		}
		for (unsigned int i = 0; i < n; i++)
			close(fds[i]);
		if (pid < 0)
			spawner_reply("error", errno, 0);
		else
			spawner_reply("pid", pid, 0);
	}
}

/* ---- predecessor ---- */

static void pred_fail(struct sm_daemon *d, const char *why)
{
	pr_err("upgrade failed: %s; this daemon (pid %d) keeps serving, nothing changed", why,
	       (int) getpid());
	if (hs.coord_ev)
		sm_evloop_del(d->loop, hs.coord_ev);
	hs.coord_ev = NULL;
	if (hs.coord >= 0)
		close(hs.coord);
	hs.coord = -1;
	sm_evloop_timer_once(hs.ready_timer, 0);
	hs.state = PRED_IDLE;
}

static void pred_commit(struct sm_daemon *d, pid_t pid)
{
	char msg[128];

	hs.state = PRED_HANDED_OFF;
	hs.succ_pid = pid;
	sm_evloop_timer_once(hs.ready_timer, 0);
	d->handed_off = true;
	/* systemd follows the successor: its READY=1 and WATCHDOG=1 count from now on */
	snprintf(msg, sizeof(msg), "MAINPID=%d\nSTATUS=upgrade: pid %d took over, pid %d drains",
		 (int) pid, (int) pid, (int) getpid());
	sm_sd_notify(msg);
	pr_info("upgrade: pid %d took over the listeners; this daemon (pid %d) drains its "
		"connections for up to %u s (daemon.drain_timeout)",
		(int) pid, (int) getpid(), d->cfg.drain_timeout);
	sm_control_stop_accepting(d);
	sm_metrics_quiesce(d);
	hs.ops->drain(d);
	sm_flowexp_release_ring(d);
	if (send(hs.coord, "ring", 4, MSG_NOSIGNAL) < 0)
		pr_warn("upgrade: cannot tell pid %d to read the flow events: %s (it reads them "
			"once this daemon exits)",
			(int) pid, strerror(errno));
	/* the socket stays open: its close at our exit tells the successor the sinks are free */
}

static void on_coord_pred(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	char msg[64], why[160];
	ssize_t n;
	int pid;

	(void) loop;
	(void) events;
	n = msg_recv(ev, msg, sizeof(msg));
	if (n == -EAGAIN)
		return;
	if (n > 0) {
		if (hs.state == PRED_SPAWNING && sscanf(msg, "ready %d", &pid) == 1 && pid > 0)
			pred_commit(d, pid);
		return;
	}
	if (hs.state == PRED_SPAWNING) {
		snprintf(why, sizeof(why),
			 "the new sockmeshd (pid %d) quit before it was ready (its messages are "
			 "above)",
			 (int) hs.succ_pid);
		pred_fail(d, why);
	} else {
		sm_evloop_del(d->loop, hs.coord_ev);
		hs.coord_ev = NULL;
	}
}

static void on_spawner(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	char msg[64];
	long a = 0, b = 0;
	ssize_t n;

	(void) loop;
	(void) events;
	n = msg_recv(ev, msg, sizeof(msg));
	if (n == -EAGAIN)
		return;
	if (n == 0) {
		pr_warn("upgrade: the spawner (pid %d) is gone: SIGUSR2 cannot upgrade this daemon "
			"any more (restart it instead)",
			(int) hs.spawner_pid);
		sm_evloop_del(d->loop, hs.spawner_ev);
		hs.spawner_ev = NULL;
		close(hs.spawner);
		hs.spawner = -1;
		return;
	}
	if (sscanf(msg, "pid %ld", &a) == 1) {
		hs.succ_pid = (pid_t) a;
		pr_info("upgrade: started the new sockmeshd, pid %ld", a);
	} else if (sscanf(msg, "error %ld", &a) == 1 && hs.state == PRED_SPAWNING) {
		pred_fail(d, strerror((int) a));
	} else if (sscanf(msg, "exit %ld %ld", &a, &b) == 2 && (pid_t) a == hs.succ_pid &&
		   hs.state != PRED_HANDED_OFF) {
		if (WIFEXITED((int) b))
			pr_warn("upgrade: the new sockmeshd (pid %ld) exited with status %d", a,
				WEXITSTATUS((int) b));
		else if (WIFSIGNALED((int) b))
			pr_warn("upgrade: the new sockmeshd (pid %ld) was killed by %s", a,
				strsignal(WTERMSIG((int) b)));
	}
}

static void on_ready_timeout(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	char why[160];

	(void) loop;
	(void) events;
	sm_evloop_timer_once(ev, 0);
	if (hs.state != PRED_SPAWNING)
		return;
	if (hs.succ_pid > 0)
		kill(hs.succ_pid, SIGKILL);
	snprintf(why, sizeof(why), "the new sockmeshd (pid %d) was not ready within %d s: killed",
		 (int) hs.succ_pid, HANDOFF_READY_TIMEOUT_S);
	pred_fail(arg, why);
}

int sm_handoff_start(struct sm_daemon *d, char **argv, const struct sm_handoff_ops *ops)
{
	static char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	pid_t parent = getpid();
	int sp[2];

	hs.ops = ops;
	hs.ready_timer = sm_evloop_timer(d->loop, 0, on_ready_timeout, d);
	if (!hs.ready_timer)
		return -errno;
	if (!argv) {
		pr_warn("upgrade: out of memory for the command line; SIGUSR2 will not upgrade");
		return 0;
	}
	if (n <= 0) {
		pr_warn("upgrade: cannot read /proc/self/exe: %s; SIGUSR2 will not upgrade",
			strerror(errno));
		return 0;
	}
	exe[n] = '\0';
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		pr_warn("upgrade: cannot make the spawner's socket: %s; SIGUSR2 will not upgrade",
			strerror(errno));
		return 0;
	}
	hs.spawner_pid = fork();
	if (hs.spawner_pid < 0) {
		pr_warn("upgrade: cannot fork the spawner: %s; SIGUSR2 will not upgrade",
			strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return 0;
	}
	if (hs.spawner_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		prctl(PR_SET_NAME, "sockmeshd-spawn");
		if (dup2(sp[1], SPAWNER_FD) < 0)
			_exit(1);
		/* nothing of the daemon's: no lock, socket or map outlives it through this process
		 */
		if (close_range(SPAWNER_FD + 1, ~0U, 0) < 0)
			for (int fd = SPAWNER_FD + 1; fd < 65536; fd++)
				close(fd);
		spawner_main(exe, argv);
	}
	close(sp[1]);
	hs.spawner = sp[0];
	hs.spawner_ev = sm_evloop_add(d->loop, hs.spawner, EPOLLIN, on_spawner, d);
	return hs.spawner_ev ? 0 : -errno;
}

/* Append ";NAME=a,b,..." naming the next n descriptors (3, 4, ... in the order sent). */
static int add_fds(char *env, size_t len, const char *name, unsigned int n, unsigned int *next)
{
	size_t off = strlen(env);

	off += (size_t) snprintf(env + off, len - off, "%s%s=", off ? ";" : "", name);
	for (unsigned int i = 0; i < n && off < len; i++)
		off += (size_t) snprintf(env + off, len - off, "%s%u", i ? "," : "", (*next)++);
	return off < len ? 0 : -ENOSPC;
}

void sm_handoff_begin(struct sm_daemon *d)
{
	int fds[HANDOFF_MAX_FDS + 8], sp[2] = {-1, -1}, locks[8], lfds[HANDOFF_MAX_FDS + 1];
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} cm;
	unsigned int nlocks = 0, nlisten = 0, nfds = 0, next = 3;
	char env[HANDOFF_MSG_MAX] = "";
	struct iovec iov;
	struct msghdr mh = {0};
	struct cmsghdr *c;
	int fd;

	if (hs.spawner < 0) {
		pr_warn("SIGUSR2: cannot upgrade: no spawner (see the messages at the start); "
			"restart the daemon instead");
		return;
	}
	if (hs.state != PRED_IDLE || d->draining || hs.successor) {
		pr_warn("SIGUSR2: ignored: %s",
			hs.successor ? "this daemon's own upgrade is not complete yet"
			: hs.state == PRED_SPAWNING ? "an upgrade is under way"
						    : "the daemon is stopping");
		return;
	}
	for (unsigned int i = 0; i < SM_ARRAY_SIZE(d->lock_fds); i++)
		if (d->lock_fds[i] >= 0)
			locks[nlocks++] = d->lock_fds[i];
	fd = sm_control_listen_fd(d);
	if (fd >= 0)
		lfds[nlisten++] = fd;
	fd = sm_metrics_listen_fd(d);
	if (fd >= 0)
		lfds[nlisten++] = fd;
	/* one more than fits: a full buffer means too many */
	nlisten += sm_workers_listen_fds(d, lfds + nlisten, HANDOFF_MAX_FDS + 1 - nlisten);
	if (nlisten + nlocks + 1 > HANDOFF_MAX_FDS) {
		pr_err("upgrade failed: more than %d sockets and locks to hand over: lower "
		       "listeners.workers, or restart instead",
		       HANDOFF_MAX_FDS);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		pr_err("upgrade failed: cannot make the handoff socket: %s", strerror(errno));
		return;
	}
	fds[nfds++] = sp[1];
	memcpy(fds + nfds, locks, nlocks * sizeof(int));
	nfds += nlocks;
	memcpy(fds + nfds, lfds, nlisten * sizeof(int));
	nfds += nlisten;
	if (add_fds(env, sizeof(env), "coord", 1, &next) ||
	    add_fds(env, sizeof(env), "locks", nlocks, &next) ||
	    add_fds(env, sizeof(env), "listen", nlisten, &next)) {
		pr_err("upgrade failed: too many descriptors to name");
		goto close_sp;
	}
	iov = (struct iovec){.iov_base = env, .iov_len = strlen(env)};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	if (sendmsg(hs.spawner, &mh, MSG_NOSIGNAL) < 0) {
		pr_err("upgrade failed: cannot reach the spawner (pid %d): %s",
		       (int) hs.spawner_pid, strerror(errno));
		goto close_sp;
	}
	close(sp[1]);
	hs.coord = sp[0];
	hs.coord_ev = sm_evloop_add(d->loop, hs.coord, EPOLLIN, on_coord_pred, d);
	if (!hs.coord_ev) {
		pr_err("upgrade failed: cannot watch the handoff socket: %s", strerror(errno));
		close(hs.coord);
		hs.coord = -1;
		return;
	}
	hs.state = PRED_SPAWNING;
	hs.succ_pid = 0;
	sm_evloop_timer_once(hs.ready_timer, HANDOFF_READY_TIMEOUT_S * 1000);
	pr_info("SIGUSR2: upgrading: starting the binary on disk with %u listening sockets and "
		"%u locks of this daemon",
		nlisten, nlocks);
	return;
close_sp:
	close(sp[0]);
	close(sp[1]);
}

void sm_handoff_stop(struct sm_daemon *d)
{
	/* stopped while a successor starts: the operator stops the service, not half of it */
	if (hs.state == PRED_SPAWNING && hs.succ_pid > 0) {
		pr_warn("upgrade: stopping the new sockmeshd (pid %d) too: this daemon stops "
			"before "
			"it was ready",
			(int) hs.succ_pid);
		kill(hs.succ_pid, SIGKILL);
		hs.state = PRED_IDLE;
	}
	if (hs.coord_ev)
		sm_evloop_del(d->loop, hs.coord_ev);
	hs.coord_ev = NULL;
	if (hs.spawner_ev)
		sm_evloop_del(d->loop, hs.spawner_ev);
	hs.spawner_ev = NULL;
	if (hs.ready_timer)
		sm_evloop_del(d->loop, hs.ready_timer);
	hs.ready_timer = NULL;
	/* hs.coord stays open until exit: its close tells a successor the sinks are free */
}
