/* SPDX-License-Identifier: Apache-2.0 */
/* The one logging module: levelled messages to stderr, libbpf routed through it. */
#ifndef SOCKMESH_LOG_H
#define SOCKMESH_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum sm_log_level {
	SM_LOG_ERROR = 0,
	SM_LOG_WARN = 1,
	SM_LOG_INFO = 2,
	SM_LOG_DEBUG = 3,
};

/* Messages above this level are dropped. Default SM_LOG_INFO. */
void sm_log_set_level(int level);
int sm_log_get_level(void);
/* Parse "error|warn|info|debug"; returns the level or -EINVAL. */
int sm_log_level_parse(const char *name);
/* Prefix every line with this program name (not copied; keep it alive). */
void sm_log_set_ident(const char *ident);

/*
 * Whether stderr is the journal: JOURNAL_STREAM (set by systemd for a unit
 * whose stdout or stderr goes to the journal) is "DEVICE:INODE" and names the
 * file stderr is open on now. Then every line carries a priority prefix ("<3>"
 * error, "<4>" warning, "<6>" info, "<7>" debug, sd-daemon(3)) and no time of
 * our own: the journal stamps each entry. Otherwise lines are
 * "TIME IDENT LEVEL: message". Decided on the first message; call this again
 * after stderr or the variable changes. Returns the decision.
 */
bool sm_log_journal_detect(void);

void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * A message that a flood can repeat (one per refused connection, one per
 * failed accept) goes through a limit of its own, one per call site: at most
 * SM_LOG_LIMIT_BURST lines per SM_LOG_LIMIT_WINDOW_S seconds; the rest are
 * counted, and once the window is over one line says how many were
 * suppressed and repeats the last one. Use pr_warn_limited() and friends;
 * the struct is the call site's state (zero-initialised, static).
 */
#define SM_LOG_LIMIT_BURST    5
#define SM_LOG_LIMIT_WINDOW_S 10

struct sm_log_limit {
	int64_t window_ns; /* monotonic start of the current window, 0 = none */
	unsigned int printed;
	uint64_t suppressed;
	int level;
	bool listed;
	char last[256]; /* the last suppressed message, for the summary line */
	struct sm_log_limit *next;
};

void sm_log_limited(struct sm_log_limit *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * Write the summary line of every limited call site whose window is over and
 * that suppressed something. Thread-safe; call it now and then (the daemon's
 * workers do, once a second), so a count is reported even when the flood has
 * stopped.
 */
void sm_log_limit_flush(void);

/* Route libbpf's messages through sm_log, one level lower than libbpf's own. */
void sm_log_route_libbpf(void);

#define pr_err(...)   sm_log(SM_LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  sm_log(SM_LOG_WARN, __VA_ARGS__)
#define pr_info(...)  sm_log(SM_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

#define sm_log_limited_at(level, ...)                                                              \
	do {                                                                                       \
		static struct sm_log_limit sm_log_limit_site;                                      \
		sm_log_limited(&sm_log_limit_site, level, __VA_ARGS__);                            \
	} while (0)
#define pr_err_limited(...)  sm_log_limited_at(SM_LOG_ERROR, __VA_ARGS__)
#define pr_warn_limited(...) sm_log_limited_at(SM_LOG_WARN, __VA_ARGS__)
#define pr_info_limited(...) sm_log_limited_at(SM_LOG_INFO, __VA_ARGS__)

#endif /* SOCKMESH_LOG_H */
