// SPDX-License-Identifier: Apache-2.0
/* The one event loop: epoll for file descriptors, timerfd for periodic timers. */
#include "evloop.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct sm_ev {
	int fd;
	uint32_t events;
	bool is_timer; /* owns fd */
	bool dead;     /* removed; freed after the current dispatch round */
	sm_ev_fn fn;
	void *arg;
	struct sm_ev *next_dead;
};

struct sm_evloop {
	int epfd;
	bool stop;
	bool dispatching;
	unsigned int busy_poll_us; /* see sm_evloop_set_busy_poll() */
	uint64_t busy_hits;	   /* event rounds a non-blocking poll found */
	struct sm_ev *dead;	   /* removed during dispatch, freed after it */
};

struct sm_evloop *sm_evloop_new(void)
{
	struct sm_evloop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = errno;

		free(loop);
		errno = err;
		return NULL;
	}
	return loop;
}

static void free_dead(struct sm_evloop *loop)
{
	while (loop->dead) {
		struct sm_ev *ev = loop->dead;

		loop->dead = ev->next_dead;
		free(ev);
	}
}

void sm_evloop_free(struct sm_evloop *loop)
{
	if (!loop)
		return;
	free_dead(loop);
	close(loop->epfd);
	free(loop);
}

struct sm_ev *sm_evloop_add(struct sm_evloop *loop, int fd, uint32_t events, sm_ev_fn fn, void *arg)
{
	struct epoll_event ee = {.events = events};
	struct sm_ev *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->fd = fd;
	ev->events = events;
	ev->fn = fn;
	ev->arg = arg;
	ee.data.ptr = ev;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
		int err = errno;

		free(ev);
		errno = err;
		return NULL;
	}
	return ev;
}

int sm_evloop_mod(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events)
{
	struct epoll_event ee = {.events = events, .data.ptr = ev};

	if (ev->events == events)
		return 0;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, ev->fd, &ee) < 0)
		return -errno;
	ev->events = events;
	return 0;
}

int sm_ev_fd(const struct sm_ev *ev)
{
	return ev->fd;
}

uint32_t sm_ev_events(const struct sm_ev *ev)
{
	return ev->events;
}

void sm_evloop_del(struct sm_evloop *loop, struct sm_ev *ev)
{
	if (!ev || ev->dead)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
	if (ev->is_timer)
		close(ev->fd);
	ev->dead = true;
	if (loop->dispatching) {
		ev->next_dead = loop->dead;
		loop->dead = ev;
	} else {
		free(ev);
	}
}

struct sm_ev *sm_evloop_timer(struct sm_evloop *loop, unsigned int interval_ms, sm_ev_fn fn,
			      void *arg)
{
	struct itimerspec its = {
		.it_interval = {interval_ms / 1000, (long) (interval_ms % 1000) * 1000000L},
		.it_value = {interval_ms / 1000, (long) (interval_ms % 1000) * 1000000L},
	};
	struct sm_ev *ev;
	int fd, err;

	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (timerfd_settime(fd, 0, &its, NULL) < 0)
		goto close_fd;
	ev = sm_evloop_add(loop, fd, EPOLLIN, fn, arg);
	if (!ev)
		goto close_fd;
	ev->is_timer = true;
	return ev;
close_fd:
	err = errno;
	close(fd);
	errno = err;
	return NULL;
}

int sm_evloop_timer_once(struct sm_ev *ev, unsigned int after_ms)
{
	struct itimerspec its = {
		.it_value = {after_ms / 1000, (long) (after_ms % 1000) * 1000000L},
	};

	if (!ev->is_timer)
		return -EINVAL;
	return timerfd_settime(ev->fd, 0, &its, NULL) < 0 ? -errno : 0;
}

void sm_evloop_set_busy_poll(struct sm_evloop *loop, unsigned int us)
{
	loop->busy_poll_us = us;
}

uint64_t sm_evloop_busy_hits(const struct sm_evloop *loop)
{
	return __atomic_load_n(&loop->busy_hits, __ATOMIC_RELAXED);
}

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/*
 * How long the next epoll_wait() may block: not at all while the busy-poll
 * window after the last event is open (yielding the CPU to anything
 * runnable between polls), else until an event comes.
 */
static int next_timeout(struct sm_evloop *loop, uint64_t last_event_us)
{
	if (!loop->busy_poll_us || !last_event_us ||
	    mono_us() - last_event_us >= loop->busy_poll_us)
		return -1;
	sched_yield();
	return 0;
}

int sm_evloop_run(struct sm_evloop *loop)
{
	struct epoll_event evs[64];
	uint64_t last_event_us = 0;

	loop->stop = false;
	while (!loop->stop) {
		int timeout = next_timeout(loop, last_event_us);
		int n = epoll_wait(loop->epfd, evs, (int) (sizeof(evs) / sizeof(evs[0])), timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			continue;
		if (loop->busy_poll_us) {
			last_event_us = mono_us();
			if (timeout == 0) /* read by other threads: sm_evloop_busy_hits() */
				__atomic_store_n(&loop->busy_hits, loop->busy_hits + 1,
						 __ATOMIC_RELAXED);
		}
		loop->dispatching = true;
		for (int i = 0; i < n; i++) {
			struct sm_ev *ev = evs[i].data.ptr;

			if (ev->dead)
				continue;
			if (ev->is_timer) {
				uint64_t ticks;

				if (read(ev->fd, &ticks, sizeof(ticks)) != sizeof(ticks))
					continue;
			}
			ev->fn(loop, ev, evs[i].events, ev->arg);
		}
		loop->dispatching = false;
		free_dead(loop);
	}
	return 0;
}

void sm_evloop_stop(struct sm_evloop *loop)
{
	loop->stop = true;
}
