/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_WORKER_H
#define SOCKMESHD_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct sm_daemon;
struct sm_evloop;
struct sm_ev;
struct sm_proxy;
struct sm_hbone_worker;
struct sm_flowjoins;
struct sm_addr;

/* worker.c: worker threads. */

/* Requests from the main thread to a worker (bits of sm_worker.cmds). */
enum {
	SM_WCMD_PAUSE = 1,	    /* wait at a safe point until sm_workers_resume() */
	SM_WCMD_STOP_ACCEPTING = 2, /* drain: close listeners, GOAWAY to peers */
	SM_WCMD_STOP = 4,	    /* leave the event loop */
	/* re-check the inbound tunnel streams against the live policy (sm_workers_call()) */
	SM_WCMD_POLICY_RECHECK = 8,
};

/*
 * What a module runs on every worker (listeners, connections), which the
 * worker drives on its own thread without knowing the module: main.c
 * registers the parts (sm_workers_add_part()) before the workers start.
 * Started in the order registered, so register a part after the ones it
 * hands work to; stopped, resumed and freed in the reverse order. A NULL
 * member is skipped.
 */
struct sm_worker_part {
	int (*start)(struct sm_worker *w);	       /* its listeners; 0 or -errno */
	void (*stop_accepting)(struct sm_worker *w);   /* drain: close listeners */
	void (*resume_accepting)(struct sm_worker *w); /* after SM_ACCEPT_BACKOFF_MS */
	void (*tick)(struct sm_worker *w);	       /* every second */
	void (*policy_recheck)(struct sm_worker *w);   /* SM_WCMD_POLICY_RECHECK */
	void (*free)(struct sm_worker *w);	       /* after the thread ended */
	/* its listening sockets, for an upgrade (handoff.c): up to max into fds, how many */
	unsigned int (*listen_fds)(struct sm_worker *w, int *fds, unsigned int max);
};
#define SM_WORKER_PARTS_MAX 4

/* One worker thread and everything it owns. */
struct sm_worker {
	struct sm_daemon *d;
	unsigned int id;
	pthread_t thread;
	bool started;
	struct sm_evloop *loop;
	int wake_fd; /* eventfd: the main thread posted cmds */
	struct sm_ev *wake_ev;
	struct sm_ev *tick;
	struct sm_ev *backoff; /* one-shot: listeners that ran out of descriptors resume */
	bool backing_off;
	unsigned int cmds; /* SM_WCMD_* bits, atomic */
	bool draining;	   /* this worker stopped accepting */
	int spare_fd;	   /* held in reserve for sm_worker_accept(), -1 = none */
	struct sm_proxy *proxy;
	struct sm_hbone_worker *hb; /* NULL unless tunnel.hbone */
	/* flowjoin.c: the tunnel's facts for flow records; NULL unless tunnel.hbone */
	struct sm_flowjoins *joins;
	unsigned int call_done; /* the last sm_workers_call() round it finished (pause_mu) */
};

/* How many: listeners.workers, or one per online CPU (at most 256). */
unsigned int sm_workers_count(const struct sm_daemon *d);
/* Add part to what every worker runs; before sm_workers_start(). 0 or -ENOSPC. */
int sm_workers_add_part(struct sm_daemon *d, const struct sm_worker_part *part);
/* Make the workers and their listeners (errors reported here), then start the threads. */
int sm_workers_start(struct sm_daemon *d);
/* Post cmds (SM_WCMD_*) to every worker. */
void sm_workers_post(struct sm_daemon *d, unsigned int cmds);
/* Stop and join the threads, then free what each worker owns. */
void sm_workers_stop(struct sm_daemon *d);
/*
 * Hold every running worker at a safe point (between events) so the main
 * thread may change shared state; sm_workers_resume() lets them go on. Both
 * only from the main thread; no-ops before the threads run.
 */
void sm_workers_pause(struct sm_daemon *d);
void sm_workers_resume(struct sm_daemon *d);
/*
 * Post cmd (a command a worker acknowledges: SM_WCMD_POLICY_RECHECK) and wait
 * until every running worker has run it on its own thread, for work that
 * needs a worker's own loop, sockets and SSL objects. Main thread only, and
 * never while the workers are paused (they could not answer): -EDEADLK.
 * -ETIMEDOUT when a worker did not answer within 10 s (it runs cmd later).
 */
int sm_workers_call(struct sm_daemon *d, unsigned int cmd);
/*
 * Every worker's listening sockets (up to max into fds; how many), read while
 * the workers are paused: what an upgrade hands to the next daemon.
 */
unsigned int sm_workers_listen_fds(struct sm_daemon *d, int *fds, unsigned int max);
/*
 * A listener of worker w on a:port: one the previous daemon handed over
 * (handoff.c) if it has one, else a new one; the first worker's probe reports
 * a taken port.
 */
int sm_worker_listen(struct sm_worker *w, const struct sm_addr *a, uint16_t port, int backlog);
/*
 * accept4() on listener lfd (non-blocking, close-on-exec; the peer in *ss).
 * Out of descriptors (EMFILE/ENFILE), the worker's spare descriptor makes
 * room for one accept, so a pending connection is reset at once instead of
 * waiting in the backlog while the listener's event fires in a loop: then
 * *no_fd is set and the caller must name the refusal (count, record) and
 * hand the fd to sm_worker_refuse(), which resets it and takes the spare
 * back. Returns the fd, or -EAGAIN when nothing is pending, or -EMFILE /
 * -ENFILE when no spare was left either (the caller stops accepting for a
 * while), or another accept4() -errno.
 */
int sm_worker_accept(struct sm_worker *w, int lfd, struct sockaddr_storage *ss, socklen_t *sl,
		     bool *no_fd);
void sm_worker_refuse(struct sm_worker *w, int fd);
/*
 * A listener of w stopped watching its descriptor for lack of descriptors:
 * in SM_ACCEPT_BACKOFF_MS the worker calls every part's resume_accepting(),
 * so what waits in the backlog is taken (or
 * reset) then, not in a loop now.
 */
#define SM_ACCEPT_BACKOFF_MS 100
void sm_worker_backoff(struct sm_worker *w);

#endif /* SOCKMESHD_WORKER_H */
