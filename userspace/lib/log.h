/* SPDX-License-Identifier: Apache-2.0 */
/* The one logging module: levelled messages to stderr, libbpf routed through it. */
#ifndef SOCKMESH_LOG_H
#define SOCKMESH_LOG_H

#include <stdarg.h>

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

void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Route libbpf's messages through sm_log, one level lower than libbpf's own. */
void sm_log_route_libbpf(void);

#define pr_err(...)   sm_log(SM_LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  sm_log(SM_LOG_WARN, __VA_ARGS__)
#define pr_info(...)  sm_log(SM_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

#endif /* SOCKMESH_LOG_H */
