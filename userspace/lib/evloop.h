/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one event loop: epoll for file descriptors, timerfd for periodic timers.
 * Single-threaded; callbacks run on the loop's thread. A callback may remove
 * any registration, including its own, at any time.
 */
#ifndef SOCKMESH_EVLOOP_H
#define SOCKMESH_EVLOOP_H

#include <stdint.h>

struct sm_evloop;
struct sm_ev;

/* events: EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits as returned by epoll. */
typedef void (*sm_ev_fn)(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg);

/* NULL and errno set on failure. */
struct sm_evloop *sm_evloop_new(void);
/* Free the loop. Registrations still active are not freed: remove each first. */
void sm_evloop_free(struct sm_evloop *loop);

/* Watch fd for events (EPOLLIN | EPOLLOUT ...). Returns NULL + errno on failure. */
struct sm_ev *sm_evloop_add(struct sm_evloop *loop, int fd, uint32_t events, sm_ev_fn fn,
			    void *arg);
/* Change the events watched. 0 or -errno. */
int sm_evloop_mod(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events);
/* Stop watching (the fd is not closed). Safe inside a callback. */
void sm_evloop_del(struct sm_evloop *loop, struct sm_ev *ev);
uint32_t sm_ev_events(const struct sm_ev *ev);
int sm_ev_fd(const struct sm_ev *ev);

/* A periodic timer every interval_ms (first run after interval_ms); 0: disarmed. */
struct sm_ev *sm_evloop_timer(struct sm_evloop *loop, unsigned int interval_ms, sm_ev_fn fn,
			      void *arg);
/*
 * Re-arm a timer of sm_evloop_timer() to run once, after_ms from now (0:
 * disarm it). A timer armed this way needs no descriptor then, so it can be
 * set when descriptors have run out. 0 or -errno.
 */
int sm_evloop_timer_once(struct sm_ev *ev, unsigned int after_ms);

/*
 * Busy polling: for us microseconds after each round of events, poll without
 * blocking (sched_yield() between polls) before sleeping in epoll_wait().
 * A message that comes back within the window is picked up without a wakeup
 * of this thread. 0 (the default): always block.
 */
void sm_evloop_set_busy_poll(struct sm_evloop *loop, unsigned int us);
/* Rounds of events a non-blocking poll of the busy-poll window found; any thread. */
uint64_t sm_evloop_busy_hits(const struct sm_evloop *loop);
/* Run until sm_evloop_stop(). Returns 0 or -errno (epoll failure). */
int sm_evloop_run(struct sm_evloop *loop);
void sm_evloop_stop(struct sm_evloop *loop);

#endif /* SOCKMESH_EVLOOP_H */
