// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/evloop.c: dispatch, interest, removal in callbacks, timers, stop. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "evloop.h"

/* Every run is ended by a watchdog timer after this long; it counts as a failure. */
#define WATCHDOG_MS 2000
/* Last resort if the loop itself is broken: SIGALRM ends the test binary. */
#define HARD_LIMIT_S 10

struct fixture;

/* One watched socket: the callback's arg. */
struct watched {
	struct fixture *fx;
	int idx;
	struct sm_ev *ev; /* NULL once removed */
	unsigned int calls;
	uint32_t events;       /* of the last call */
	struct sm_ev *seen_ev; /* the ev the last call was given */
};

struct fixture {
	struct sm_evloop *loop;
	int sp[2][2]; /* two socketpairs: sp[i][0] is watched, sp[i][1] its peer */
	struct watched w[2];
	struct sm_ev *watchdog, *driver;
	bool watchdog_fired;
	unsigned int ticks;	/* driver timer calls */
	unsigned int quiet_ins; /* test_mod: fd calls seen while only EPOLLIN was wanted */
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	*state = fx; /* teardown undoes whatever got done, also after a failure here */
	alarm(HARD_LIMIT_S);
	for (int i = 0; i < 2; i++) {
		fx->sp[i][0] = fx->sp[i][1] = -1;
		fx->w[i].fx = fx;
		fx->w[i].idx = i;
	}
	fx->loop = sm_evloop_new();
	if (!fx->loop)
		return -1;
	for (int i = 0; i < 2; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fx->sp[i]))
			return -1;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (!fx)
		return 0;
	if (fx->loop) {
		for (int i = 0; i < 2; i++)
			sm_evloop_del(fx->loop, fx->w[i].ev);
		sm_evloop_del(fx->loop, fx->watchdog);
		sm_evloop_del(fx->loop, fx->driver);
		sm_evloop_free(fx->loop);
	}
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			if (fx->sp[i][j] >= 0)
				close(fx->sp[i][j]);
	free(fx);
	alarm(0);
	return 0;
}

static void on_watchdog(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fixture *fx = arg;

	fx->watchdog_fired = true;
	sm_evloop_stop(loop);
}

/* Run the loop until a callback stops it; fails the test if the watchdog had to. */
static void run_loop(struct fixture *fx)
{
	if (!fx->watchdog) {
		fx->watchdog = sm_evloop_timer(fx->loop, WATCHDOG_MS, on_watchdog, fx);
		ASSERT_NOT_NULL(fx->watchdog, "watchdog timer");
	}
	ASSERT_EQ(sm_evloop_run(fx->loop), 0, "sm_evloop_run");
	ASSERT_EQ(fx->watchdog_fired, false, "loop stopped by the test, not the watchdog");
}

/* Make sp[i][0] readable: one byte from its peer. */
static void make_readable(struct fixture *fx, int i)
{
	ASSERT_EQ(write(fx->sp[i][1], "x", 1), 1, "write to the peer");
}

static void record(struct watched *w, struct sm_ev *ev, uint32_t events)
{
	w->calls++;
	w->events = events;
	w->seen_ev = ev;
}

static void on_read_and_stop(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;
	char c = 0;

	record(w, ev, events);
	if (read(sm_ev_fd(ev), &c, 1) == 1 && c == 'x')
		sm_evloop_stop(loop);
}

static void test_fd_dispatch(void **state)
{
	struct fixture *fx = *state;

	fx->w[0].ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_read_and_stop, &fx->w[0]);
	fx->w[1].ev = sm_evloop_add(fx->loop, fx->sp[1][0], EPOLLIN, on_read_and_stop, &fx->w[1]);
	ASSERT_NOT_NULL(fx->w[0].ev, "add fd 0");
	ASSERT_NOT_NULL(fx->w[1].ev, "add fd 1");
	ASSERT_EQ(sm_ev_fd(fx->w[0].ev), fx->sp[0][0], "sm_ev_fd");
	ASSERT_EQ(sm_ev_events(fx->w[0].ev), EPOLLIN, "sm_ev_events");

	make_readable(fx, 0);
	run_loop(fx);
	ASSERT_EQ(fx->w[0].calls, 1, "readable fd dispatched once");
	ASSERT_EQ(!!(fx->w[0].events & EPOLLIN), 1, "callback given EPOLLIN");
	ASSERT_EQ(fx->w[0].seen_ev == fx->w[0].ev, 1, "callback given its own registration");
	ASSERT_EQ(fx->w[1].calls, 0, "fd with nothing to read not dispatched");

	/* an fd the kernel cannot watch is refused with errno set */
	errno = 0;
	ASSERT_EQ(sm_evloop_add(fx->loop, -1, EPOLLIN, on_read_and_stop, NULL) == NULL, 1,
		  "add of fd -1 fails");
	ASSERT_EQ(errno, EBADF, "errno of a failed add");
}

/* test_mod: wants out only after the driver asked; then only in again. */
static void on_mod_fd(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;

	record(w, ev, events);
	if (w->fx->ticks == 0)
		w->fx->quiet_ins++;
	/* level-triggered EPOLLOUT would fire every round if this did not take */
	ASSERT_EQ(sm_evloop_mod(loop, ev, EPOLLIN), 0, "mod back to EPOLLIN");
}

static void on_mod_driver(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fixture *fx = arg;

	if (++fx->ticks == 1)
		ASSERT_EQ(sm_evloop_mod(loop, fx->w[0].ev, EPOLLOUT), 0, "mod to EPOLLOUT");
	if (fx->ticks == 4)
		sm_evloop_stop(loop);
}

static void test_mod_changes_interest(void **state)
{
	struct fixture *fx = *state;
	struct watched *w = &fx->w[0];

	/* a fresh socket is writable at once but has nothing to read */
	w->ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_mod_fd, w);
	ASSERT_NOT_NULL(w->ev, "add");
	fx->driver = sm_evloop_timer(fx->loop, 20, on_mod_driver, fx);
	ASSERT_NOT_NULL(fx->driver, "driver timer");
	run_loop(fx);
	ASSERT_EQ(fx->quiet_ins, 0, "no call while only EPOLLIN was wanted and nothing came");
	ASSERT_EQ(w->calls, 1, "one call after mod to EPOLLOUT, none after mod back");
	ASSERT_EQ(!!(w->events & EPOLLOUT), 1, "callback given EPOLLOUT");
	ASSERT_EQ(sm_ev_events(w->ev), EPOLLIN, "sm_ev_events after mod back");
	ASSERT_EQ(sm_evloop_mod(fx->loop, w->ev, EPOLLIN), 0, "mod to the same events");
}

/* test_del_own: removes itself without reading, so the fd stays readable. */
static void on_del_own(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;

	record(w, ev, events);
	sm_evloop_del(loop, ev);
	w->ev = NULL;
}

static void on_stop_after_ticks(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events,
				void *arg)
{
	struct fixture *fx = arg;

	if (++fx->ticks == 3)
		sm_evloop_stop(loop);
}

static void test_del_own_in_callback(void **state)
{
	struct fixture *fx = *state;

	for (int i = 0; i < 2; i++) {
		fx->w[i].ev = sm_evloop_add(fx->loop, fx->sp[i][0], EPOLLIN, on_del_own, &fx->w[i]);
		ASSERT_NOT_NULL(fx->w[i].ev, "add");
		make_readable(fx, i);
	}
	fx->driver = sm_evloop_timer(fx->loop, 20, on_stop_after_ticks, fx);
	ASSERT_NOT_NULL(fx->driver, "driver timer");
	run_loop(fx);
	/* both were ready in the first round; each removed only itself */
	ASSERT_EQ(fx->w[0].calls, 1, "fd 0: one call, none after removing itself");
	ASSERT_EQ(fx->w[1].calls, 1, "fd 1: one call, none after removing itself");
}

/* test_del_other: whichever runs first removes both; the other must not run. */
static void on_del_both(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;
	struct watched *other = &w->fx->w[1 - w->idx];

	record(w, ev, events);
	sm_evloop_del(loop, ev);
	w->ev = NULL;
	sm_evloop_del(loop, other->ev);
	other->ev = NULL;
	sm_evloop_stop(loop);
}

static void test_del_other_in_same_round(void **state)
{
	struct fixture *fx = *state;

	/* both readable before the loop starts: one epoll_wait returns both */
	for (int i = 0; i < 2; i++) {
		fx->w[i].ev =
			sm_evloop_add(fx->loop, fx->sp[i][0], EPOLLIN, on_del_both, &fx->w[i]);
		ASSERT_NOT_NULL(fx->w[i].ev, "add");
		make_readable(fx, i);
	}
	run_loop(fx);
	ASSERT_EQ(fx->w[0].calls + fx->w[1].calls, 1, "the removed one is not called");
	/* removing nothing, and removing outside a dispatch, are fine too */
	sm_evloop_del(fx->loop, NULL);
}

static void on_tick_count(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fixture *fx = arg;

	if (++fx->ticks == 2)
		sm_evloop_stop(loop);
}

static void test_timer_periodic(void **state)
{
	struct fixture *fx = *state;
	int fd;

	fx->driver = sm_evloop_timer(fx->loop, 10, on_tick_count, fx);
	ASSERT_NOT_NULL(fx->driver, "timer");
	/* the watchdog stops the loop after WATCHDOG_MS (2 s) if the timer fires less */
	run_loop(fx);
	ASSERT_GE(fx->ticks, 2, "periodic timer fired at least twice within 2 s");

	/* a timer owns its timerfd: removing it closes the fd */
	fd = sm_ev_fd(fx->driver);
	sm_evloop_del(fx->loop, fx->driver);
	fx->driver = NULL;
	errno = 0;
	ASSERT_EQ(fcntl(fd, F_GETFD), -1, "timer fd closed on removal");
	ASSERT_EQ(errno, EBADF, "errno of F_GETFD on the closed timer fd");
}

/* test_timer_once: the one-shot timer counts in w[1].calls; the driver stops every 10 ticks. */
static void on_once(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fixture *fx = arg;

	fx->w[1].calls++;
}

static void on_ten_ticks(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct fixture *fx = arg;

	if (++fx->ticks % 10 == 0)
		sm_evloop_stop(loop);
}

static void test_timer_once(void **state)
{
	struct fixture *fx = *state;
	struct sm_ev *once = sm_evloop_timer(fx->loop, 0, on_once, fx);

	ASSERT_NOT_NULL(once, "a timer made disarmed");
	fx->driver = sm_evloop_timer(fx->loop, 10, on_ten_ticks, fx);
	ASSERT_NOT_NULL(fx->driver, "driver");
	run_loop(fx);
	ASSERT_EQ(fx->w[1].calls, 0, "interval 0: never fires");

	ASSERT_EQ(sm_evloop_timer_once(once, 5), 0, "arm once");
	run_loop(fx); /* 100 ms: the one-shot is due after 5 */
	ASSERT_EQ(fx->w[1].calls, 1, "fired once, not again");

	ASSERT_EQ(sm_evloop_timer_once(once, 5), 0, "arm again");
	ASSERT_EQ(sm_evloop_timer_once(once, 0), 0, "disarm");
	run_loop(fx);
	ASSERT_EQ(fx->w[1].calls, 1, "disarmed before it was due");
	sm_evloop_del(fx->loop, once);

	fx->w[0].ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_once, fx);
	ASSERT_NOT_NULL(fx->w[0].ev, "a socket");
	ASSERT_EQ(sm_evloop_timer_once(fx->w[0].ev, 5), -EINVAL, "only timers are armed");
}

/* test_stop: the fd stays readable; only stop ends the run. */
static void on_count_and_stop(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;

	record(w, ev, events);
	sm_evloop_stop(loop);
}

static void test_stop_from_callback(void **state)
{
	struct fixture *fx = *state;
	struct watched *w = &fx->w[0];

	w->ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_count_and_stop, w);
	ASSERT_NOT_NULL(w->ev, "add");
	make_readable(fx, 0);
	run_loop(fx);
	ASSERT_EQ(w->calls, 1, "run returned after the callback that stopped it");
	/* a stopped loop runs again */
	run_loop(fx);
	ASSERT_EQ(w->calls, 2, "second run dispatched again");
}

/*
 * Busy polling: a peer thread answers each byte the loop sends at once; with
 * a window far longer than a round trip, the answers are found by the
 * non-blocking polls (busy hits), not by sleeping in epoll_wait(). Without
 * a window there are none.
 */
#define PINGS 200

static void *echo_peer(void *arg)
{
	int fd = *(int *) arg;
	char c;

	for (int i = 0; i < PINGS; i++) {
		if (read(fd, &c, 1) != 1 || write(fd, &c, 1) != 1)
			break;
	}
	return NULL;
}

static void on_pong(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;
	char c;

	record(w, ev, events);
	if (read(w->fx->sp[0][0], &c, 1) != 1 || w->calls == PINGS ||
	    write(w->fx->sp[0][0], &c, 1) != 1)
		sm_evloop_stop(loop);
}

static uint64_t ping_pong(struct fixture *fx, unsigned int busy_us)
{
	struct watched *w = &fx->w[0];
	int peer = fx->sp[0][1];
	pthread_t t;

	ASSERT_EQ(fcntl(peer, F_SETFL, 0), 0, "the peer blocks");
	w->calls = 0;
	w->ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_pong, w);
	ASSERT_NOT_NULL(w->ev, "add");
	sm_evloop_set_busy_poll(fx->loop, busy_us);
	ASSERT_EQ(pthread_create(&t, NULL, echo_peer, &peer), 0, "peer thread");
	ASSERT_EQ(write(fx->sp[0][0], "p", 1), 1, "first ping");
	run_loop(fx);
	pthread_join(t, NULL);
	ASSERT_EQ(w->calls, PINGS, "every pong dispatched");
	sm_evloop_del(fx->loop, w->ev);
	w->ev = NULL;
	return sm_evloop_busy_hits(fx->loop);
}

static void test_busy_poll_finds_answers(void **state)
{
	struct fixture *fx = *state;
	uint64_t hits = ping_pong(fx, 0);

	ASSERT_EQ(hits, 0, "no window: every round waited in epoll_wait");
	/* 200 ms: a loaded machine may deschedule the peer now and then, not half the time */
	hits = ping_pong(fx, 200000);
	ASSERT_GE(hits, PINGS / 2, "answers found by polling, not by a wakeup");
}

/* After the window the loop sleeps: an idle loop burns no CPU. */
static void on_read_one(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct watched *w = arg;
	char c;

	(void) loop;
	record(w, ev, events);
	ASSERT_EQ(read(w->fx->sp[w->idx][0], &c, 1), 1, "read the byte");
}

static void on_stop_timer(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	(void) ev;
	(void) events;
	(void) arg;
	sm_evloop_stop(loop);
}

static void test_busy_poll_then_sleeps(void **state)
{
	struct fixture *fx = *state;
	struct timespec a, b;
	double cpu_ms;

	sm_evloop_set_busy_poll(fx->loop, 10000); /* 10 ms */
	fx->driver = sm_evloop_timer(fx->loop, 0, on_stop_timer, fx);
	ASSERT_NOT_NULL(fx->driver, "stop timer");
	ASSERT_EQ(sm_evloop_timer_once(fx->driver, 600), 0, "stop after 600 ms");
	make_readable(fx, 0); /* one event opens the window, then nothing comes */
	fx->w[0].ev = sm_evloop_add(fx->loop, fx->sp[0][0], EPOLLIN, on_read_one, &fx->w[0]);
	ASSERT_NOT_NULL(fx->w[0].ev, "add");
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	run_loop(fx);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	ASSERT_EQ(fx->w[0].calls, 1, "the byte was dispatched");
	cpu_ms = (double) (b.tv_sec - a.tv_sec) * 1e3 + (double) (b.tv_nsec - a.tv_nsec) / 1e6;
	ASSERT_GE(200.0, cpu_ms, "CPU ms over 600 ms after a 10 ms window: the loop slept");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fd_dispatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mod_changes_interest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_own_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_other_in_same_round, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_periodic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_poll_finds_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_poll_then_sleeps, setup, teardown),
	};

	return cmocka_run_group_tests_name("evloop", tests, NULL, NULL);
}
