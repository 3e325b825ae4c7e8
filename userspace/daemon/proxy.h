/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_PROXY_H
#define SOCKMESHD_PROXY_H

#include <stdint.h>

struct sm_daemon;
struct sm_worker;
struct sm_worker_part;
struct sm_addr;

/* proxy.c: outbound capture listeners and plaintext relays, per worker. */
/* What the outbound side runs on every worker (register after the tunnel's). */
extern const struct sm_worker_part sm_proxy_worker_part;
int sm_proxy_start(struct sm_worker *w);
/* Stop accepting; relays go on. */
void sm_proxy_stop_accepting(struct sm_worker *w);
void sm_proxy_free(struct sm_worker *w);
/* Listeners that rested for lack of descriptors watch their sockets again. */
void sm_proxy_resume_accepting(struct sm_worker *w);
struct sm_proxy_stats {
	uint64_t active, accepted, upstream_errors, orig_dst_errors;
	uint64_t tunnelled;    /* handed to the HBONE tunnel */
	uint64_t accept_no_fd; /* reset at accept: the daemon was out of descriptors */
};
/* Summed over the workers (any thread). */
void sm_proxy_stats(const struct sm_daemon *d, struct sm_proxy_stats *st);
void sm_proxy_worker_stats(const struct sm_worker *w, struct sm_proxy_stats *st);

#endif /* SOCKMESHD_PROXY_H */
