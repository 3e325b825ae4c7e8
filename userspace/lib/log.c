// SPDX-License-Identifier: Apache-2.0
/* The one logging module: levelled messages to stderr, libbpf routed through it. */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

static int log_level = SM_LOG_INFO;
static const char *log_ident = "sockmesh";
/* stderr is the journal: 1, it is not: 0, not decided yet: -1 (sm_log_journal_detect()) */
static int log_journal = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sm_log_set_level(int level)
{
	if (level < SM_LOG_ERROR)
		level = SM_LOG_ERROR;
	if (level > SM_LOG_DEBUG + 1)
		level = SM_LOG_DEBUG + 1; /* debug plus libbpf's own debug output */
	log_level = level;
}

int sm_log_get_level(void)
{
	return log_level;
}

int sm_log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int) i;
	return -EINVAL;
}

void sm_log_set_ident(const char *ident)
{
	log_ident = ident;
}

/* "DEVICE:INODE", both decimal, nothing else: 0 with the numbers, or -EINVAL. */
static int parse_dev_ino(const char *s, unsigned long long *dev, unsigned long long *ino)
{
	char *end;

	if (!isdigit((unsigned char) s[0]))
		return -EINVAL;
	errno = 0;
	*dev = strtoull(s, &end, 10);
	if (errno || *end != ':' || !isdigit((unsigned char) end[1]))
		return -EINVAL;
	*ino = strtoull(end + 1, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

bool sm_log_journal_detect(void)
{
	const char *val = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	bool journal;

	/* systemd.exec(5): compare with stderr's own st_dev:st_ino, it may be redirected */
	journal = val && parse_dev_ino(val, &dev, &ino) == 0 && fstat(STDERR_FILENO, &st) == 0 &&
		  (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
	__atomic_store_n(&log_journal, journal ? 1 : 0, __ATOMIC_RELAXED);
	return journal;
}

/* sd-daemon(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char journal_prio[] = {'3', '4', '6', '7'};

void sm_vlog(int level, const char *fmt, va_list ap)
{
	char buf[1024];
	struct timespec ts;
	struct tm tm;
	size_t len;
	int journal;

	if (level > log_level)
		return;
	if (level < SM_LOG_ERROR)
		level = SM_LOG_ERROR;
	if (level > SM_LOG_DEBUG)
		level = SM_LOG_DEBUG;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	len = strlen(buf);
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	journal = __atomic_load_n(&log_journal, __ATOMIC_RELAXED);
	if (journal < 0) /* the first message: two threads racing both find the same */
		journal = sm_log_journal_detect();
	if (journal) {
		/* the journal makes each line an entry: each needs its own priority */
		flockfile(stderr);
		for (char *line = buf, *nl; line; line = nl) {
			nl = strchr(line, '\n');
			if (nl)
				*nl++ = '\0';
			fprintf(stderr, "<%c>%s: %s\n", journal_prio[level], level_names[level],
				line);
		}
		funlockfile(stderr);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		log_ident, level_names[level], buf);
}

void sm_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sm_vlog(level, fmt, ap);
	va_end(ap);
}

/* The limited call sites that have logged: the summaries' list; all under limit_mu. */
static pthread_mutex_t limit_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sm_log_limit *limit_sites;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Caller holds limit_mu. The window is over: report what it suppressed, start afresh. */
static void limit_summary(struct sm_log_limit *l, int64_t now)
{
	if (l->suppressed)
		sm_log(l->level, "suppressed %llu more messages like this in %lld s: %s",
		       (unsigned long long) l->suppressed,
		       (long long) (now - l->window_ns) / 1000000000LL, l->last);
	l->window_ns = 0;
	l->printed = 0;
	l->suppressed = 0;
}

void sm_log_limited(struct sm_log_limit *l, int level, const char *fmt, ...)
{
	int64_t now = mono_ns();
	va_list ap;

	if (level > log_level)
		return;
	pthread_mutex_lock(&limit_mu);
	if (!l->listed) {
		l->listed = true;
		l->next = limit_sites;
		limit_sites = l;
	}
	l->level = level;
	if (l->window_ns && now - l->window_ns >= SM_LOG_LIMIT_WINDOW_S * 1000000000LL)
		limit_summary(l, now);
	if (!l->window_ns)
		l->window_ns = now;
	va_start(ap, fmt);
	if (l->printed < SM_LOG_LIMIT_BURST) {
		l->printed++;
		sm_vlog(level, fmt, ap);
	} else {
		l->suppressed++;
		// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug
		vsnprintf(l->last, sizeof(l->last), fmt, ap);
	}
	va_end(ap);
	pthread_mutex_unlock(&limit_mu);
}

void sm_log_limit_flush(void)
{
	int64_t now = mono_ns();

	pthread_mutex_lock(&limit_mu);
	for (struct sm_log_limit *l = limit_sites; l; l = l->next)
		if (l->window_ns && now - l->window_ns >= SM_LOG_LIMIT_WINDOW_S * 1000000000LL)
			limit_summary(l, now);
	pthread_mutex_unlock(&limit_mu);
}

/* libbpf's WARN is our WARN; its INFO our DEBUG, its DEBUG dropped unless -vv. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	int ours = level == LIBBPF_WARN ? SM_LOG_WARN : SM_LOG_DEBUG;

	if (level == LIBBPF_DEBUG && log_level <= SM_LOG_DEBUG)
		return 0;
	sm_vlog(ours, fmt, ap);
	return 0;
}

void sm_log_route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
