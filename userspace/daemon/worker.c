// SPDX-License-Identifier: Apache-2.0
/*
 * Worker threads: each runs its own event loop with its own outbound and
 * HBONE listeners (one SO_REUSEPORT group per address, so the kernel spreads
 * new connections over the workers), relays and tunnel connections. The main
 * thread talks to a worker only through bits in sm_worker.cmds and an
 * eventfd; shared state changes only while all workers are paused. Work that
 * must run on each worker's own thread (its connections, its SSL objects)
 * goes through sm_workers_call(), which waits until every worker did it.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "daemon.h"
#include "evloop.h"
#include "handoff.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define WORKERS_MAX    256
#define CALL_TIMEOUT_S 10 /* sm_workers_call(): a worker busier than this is reported */

static void pause_here(struct sm_worker *w)
{
	struct sm_daemon *d = w->d;

	pthread_mutex_lock(&d->pause_mu);
	d->paused++;
	pthread_cond_broadcast(&d->pause_cv);
	while (d->pause_req)
		pthread_cond_wait(&d->pause_cv, &d->pause_mu);
	d->paused--;
	pthread_mutex_unlock(&d->pause_mu);
}

/* This worker finished the current sm_workers_call() round: tell the main thread. */
static void call_done(struct sm_worker *w)
{
	struct sm_daemon *d = w->d;

	pthread_mutex_lock(&d->pause_mu);
	/* two rounds whose bits arrived together are both answered by this one run */
	w->call_done = d->call_gen;
	pthread_cond_broadcast(&d->pause_cv);
	pthread_mutex_unlock(&d->pause_mu);
}

/* The hooks of struct sm_worker_part that take only the worker. */
enum part_hook {
	PART_STOP_ACCEPTING,
	PART_RESUME_ACCEPTING,
	PART_TICK,
	PART_POLICY_RECHECK,
	PART_FREE,
};

/* Run one hook of every part on w, last registered first. */
static void parts_run(struct sm_worker *w, enum part_hook hook)
{
	for (unsigned int i = w->d->nworker_parts; i-- > 0;) {
		const struct sm_worker_part *p = w->d->worker_parts[i];
		void (*fn)(struct sm_worker * w) = NULL;

		switch (hook) {
		case PART_STOP_ACCEPTING:
			fn = p->stop_accepting;
			break;
		case PART_RESUME_ACCEPTING:
			fn = p->resume_accepting;
			break;
		case PART_TICK:
			fn = p->tick;
			break;
		case PART_POLICY_RECHECK:
			fn = p->policy_recheck;
			break;
		case PART_FREE:
			fn = p->free;
			break;
		}
		if (fn)
			fn(w);
	}
}

int sm_workers_add_part(struct sm_daemon *d, const struct sm_worker_part *part)
{
	if (d->nworker_parts >= SM_WORKER_PARTS_MAX)
		return -ENOSPC;
	d->worker_parts[d->nworker_parts++] = part;
	return 0;
}

/* The main thread posted something: this runs between events, a safe point. */
static void on_wake(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_worker *w = arg;
	unsigned int cmds;
	uint64_t n;

	(void) ev;
	(void) events;
	if (read(w->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn("worker %u: reading its eventfd: %s", w->id, strerror(errno));
	cmds = __atomic_exchange_n(&w->cmds, 0, __ATOMIC_ACQ_REL);
	if (cmds & SM_WCMD_POLICY_RECHECK) {
		parts_run(w, PART_POLICY_RECHECK);
		call_done(w);
	}
	if (cmds & SM_WCMD_PAUSE)
		pause_here(w);
	if ((cmds & SM_WCMD_STOP_ACCEPTING) && !w->draining) {
		w->draining = true;
		parts_run(w, PART_STOP_ACCEPTING);
	}
	if (cmds & SM_WCMD_STOP)
		sm_evloop_stop(loop);
}

/* Hold the descriptor sm_worker_accept() gives up when descriptors run out. */
static void spare_take(struct sm_worker *w)
{
	if (w->spare_fd < 0)
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_tick(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	(void) loop;
	(void) ev;
	(void) events;
	/* another thread may have taken the spare's slot when it was given back: try again */
	spare_take(arg);
	parts_run(arg, PART_TICK);
	/*
	 * Give freed heap back to the system once a second: glibc keeps it
	 * resident otherwise (the TLS buffers an idle connection released, what
	 * a burst of connections left). One call trims every arena, so the
	 * first worker does it for all.
	 */
	if (((struct sm_worker *) arg)->id == 0)
		malloc_trim(0);
	/* a flood that stopped still gets its "suppressed N" line */
	sm_log_limit_flush();
}

static void on_backoff(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_worker *w = arg;

	(void) loop;
	(void) events;
	sm_evloop_timer_once(ev, 0);
	w->backing_off = false;
	spare_take(w);
	parts_run(w, PART_RESUME_ACCEPTING);
}

void sm_worker_backoff(struct sm_worker *w)
{
	if (w->backing_off)
		return;
	w->backing_off = true;
	if (sm_evloop_timer_once(w->backoff, SM_ACCEPT_BACKOFF_MS)) {
		/* cannot happen with a valid timer; never leave a listener unwatched */
		w->backing_off = false;
		parts_run(w, PART_RESUME_ACCEPTING);
	}
}

static void *worker_main(void *arg)
{
	struct sm_worker *w = arg;
	int err;

	sm_evloop_set_busy_poll(w->loop, w->d->cfg.busy_poll);
	err = sm_evloop_run(w->loop);
	if (err)
		pr_err("worker %u: event loop failed: %s", w->id, strerror(-err));
	return NULL;
}

int sm_worker_listen(struct sm_worker *w, const struct sm_addr *a, uint16_t port, int backlog)
{
	int fd = sm_handoff_take_tcp(a, port);

	if (fd >= 0)
		return fd; /* the previous daemon's, already listening: nothing refused meanwhile */
	if (w->id == 0 && w->d->nworkers > 1) {
		/*
		 * SO_REUSEPORT would let a second daemon (same user) join our
		 * group and take half the connections: bind once without it
		 * first, so a port someone holds fails here, as it would
		 * without workers. A later daemon's probe fails on our group.
		 */
		fd = sm_tcp_listen(a, port, 1, false);
		if (fd < 0)
			return fd;
		close(fd);
	}
	return sm_tcp_listen(a, port, backlog, w->d->nworkers > 1);
}

int sm_worker_accept(struct sm_worker *w, int lfd, struct sockaddr_storage *ss, socklen_t *sl,
		     bool *no_fd)
{
	socklen_t len = *sl;
	int fd;

	*no_fd = false;
	for (;;) {
		fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		/* the client gave up before we took it: try the next one */
		if (errno != EINTR && errno != ECONNABORTED)
			break;
		*sl = len;
	}
	if (errno == EAGAIN)
		return -EAGAIN;
	if ((errno != EMFILE && errno != ENFILE) || w->spare_fd < 0)
		return -errno;
	/* its slot is free now; another thread may take it first (then this accept fails too) */
	close(w->spare_fd);
	w->spare_fd = -1;
	*sl = len;
	fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int err = errno;

		spare_take(w);
		return -err;
	}
	*no_fd = true;
	return fd;
}

void sm_worker_refuse(struct sm_worker *w, int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	spare_take(w);
}

unsigned int sm_workers_count(const struct sm_daemon *d)
{
	long n = d->cfg.workers ? (long) d->cfg.workers : sysconf(_SC_NPROCESSORS_ONLN);

	/*
	 * After an upgrade, at least one worker per inherited listener of a
	 * group: one left without a worker would hold connections nobody takes.
	 */
	if (n < (long) sm_handoff_group_size())
		n = (long) sm_handoff_group_size();
	if (n < 1)
		n = 1;
	return n > WORKERS_MAX ? WORKERS_MAX : (unsigned int) n;
}

/* Everything but the thread: the loop, the eventfd, the listeners. */
static int worker_init(struct sm_daemon *d, struct sm_worker *w, unsigned int id)
{
	int err;

	w->d = d;
	w->id = id;
	w->wake_fd = -1;
	w->spare_fd = -1;
	w->loop = sm_evloop_new();
	if (!w->loop)
		return -errno;
	spare_take(w);
	if (w->spare_fd < 0)
		return -errno;
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	w->wake_ev = sm_evloop_add(w->loop, w->wake_fd, EPOLLIN, on_wake, w);
	w->tick = sm_evloop_timer(w->loop, 1000, on_tick, w);
	w->backoff = sm_evloop_timer(w->loop, 0, on_backoff, w); /* armed by sm_worker_backoff() */
	if (!w->wake_ev || !w->tick || !w->backoff)
		return -errno;
	/* in the order registered: the tunnel before the outbound side that hands it connections */
	for (unsigned int i = 0; i < w->d->nworker_parts; i++) {
		const struct sm_worker_part *p = w->d->worker_parts[i];

		err = p->start ? p->start(w) : 0;
		if (err)
			return err;
	}
	return 0;
}

int sm_workers_start(struct sm_daemon *d)
{
	unsigned int n = d->nworkers ? d->nworkers : sm_workers_count(d);
	int err;

	d->nworkers = n;
	d->workers = calloc(n, sizeof(*d->workers));
	if (!d->workers)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		err = worker_init(d, &d->workers[i], i);
		if (err)
			return err;
	}
	for (unsigned int i = 0; i < n; i++) {
		err = -pthread_create(&d->workers[i].thread, NULL, worker_main, &d->workers[i]);
		if (err) {
			pr_err("cannot start worker thread %u: %s", i, strerror(-err));
			return err;
		}
		d->workers[i].started = true;
	}
	pr_info("%u worker thread%s", n, n == 1 ? "" : "s");
	return 0;
}

unsigned int sm_workers_listen_fds(struct sm_daemon *d, int *fds, unsigned int max)
{
	unsigned int n = 0;

	sm_workers_pause(d);
	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		for (unsigned int j = 0; j < d->nworker_parts; j++) {
			const struct sm_worker_part *p = d->worker_parts[j];

			if (p->listen_fds)
				n += p->listen_fds(&d->workers[i], fds + n, max - n);
		}
	}
	sm_workers_resume(d);
	return n;
}

void sm_workers_post(struct sm_daemon *d, unsigned int cmds)
{
	uint64_t one = 1;

	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		struct sm_worker *w = &d->workers[i];

		if (!w->started)
			continue;
		__atomic_fetch_or(&w->cmds, cmds, __ATOMIC_ACQ_REL);
		if (write(w->wake_fd, &one, sizeof(one)) < 0)
			pr_warn("worker %u: cannot wake it: %s", i, strerror(errno));
	}
}

static unsigned int workers_running(const struct sm_daemon *d)
{
	unsigned int n = 0;

	for (unsigned int i = 0; d->workers && i < d->nworkers; i++)
		n += d->workers[i].started;
	return n;
}

void sm_workers_pause(struct sm_daemon *d)
{
	unsigned int n = workers_running(d);

	/* nested pauses (a reload that also reloads credentials) hold until the outermost resume */
	if (d->pause_depth++ > 0 || !n)
		return;
	pthread_mutex_lock(&d->pause_mu);
	d->pause_req = true;
	pthread_mutex_unlock(&d->pause_mu);
	sm_workers_post(d, SM_WCMD_PAUSE);
	pthread_mutex_lock(&d->pause_mu);
	while (d->paused < n)
		pthread_cond_wait(&d->pause_cv, &d->pause_mu);
	pthread_mutex_unlock(&d->pause_mu);
}

void sm_workers_resume(struct sm_daemon *d)
{
	if (d->pause_depth == 0 || --d->pause_depth > 0)
		return;
	pthread_mutex_lock(&d->pause_mu);
	d->pause_req = false;
	pthread_cond_broadcast(&d->pause_cv);
	pthread_mutex_unlock(&d->pause_mu);
}

/* Has every running worker finished round gen? Caller holds pause_mu. */
static bool calls_answered(const struct sm_daemon *d, unsigned int gen)
{
	for (unsigned int i = 0; i < d->nworkers; i++)
		if (d->workers[i].started && d->workers[i].call_done != gen)
			return false;
	return true;
}

int sm_workers_call(struct sm_daemon *d, unsigned int cmd)
{
	struct timespec deadline;
	unsigned int gen;
	int err = 0;

	if (d->pause_depth > 0)
		return -EDEADLK;
	if (!workers_running(d))
		return 0;
	/* pause_cv's clock is CLOCK_REALTIME (main.c initialises it with the defaults) */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CALL_TIMEOUT_S;
	pthread_mutex_lock(&d->pause_mu);
	gen = ++d->call_gen;
	pthread_mutex_unlock(&d->pause_mu);
	sm_workers_post(d, cmd);
	pthread_mutex_lock(&d->pause_mu);
	while (!calls_answered(d, gen) && !err)
		err = -pthread_cond_timedwait(&d->pause_cv, &d->pause_mu, &deadline);
	if (err && calls_answered(d, gen))
		err = 0;
	pthread_mutex_unlock(&d->pause_mu);
	return err;
}

void sm_workers_stop(struct sm_daemon *d)
{
	if (!d->workers)
		return;
	sm_workers_post(d, SM_WCMD_STOP);
	for (unsigned int i = 0; i < d->nworkers; i++) {
		if (d->workers[i].started)
			pthread_join(d->workers[i].thread, NULL);
		d->workers[i].started = false;
	}
	/* single-threaded from here on */
	for (unsigned int i = 0; i < d->nworkers; i++) {
		struct sm_worker *w = &d->workers[i];

		if (!w->loop)
			continue;
		parts_run(w, PART_FREE);
		sm_evloop_del(w->loop, w->tick);
		sm_evloop_del(w->loop, w->backoff);
		sm_evloop_del(w->loop, w->wake_ev);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		if (w->spare_fd >= 0)
			close(w->spare_fd);
		sm_evloop_free(w->loop);
	}
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
}
