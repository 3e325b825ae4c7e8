/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flowjoin.c: what the tunnel knows of each of its streams (tls block, trace
 * id, the verified caller, a failure), kept for the kernel's flow records of
 * the stream's plain socket, by that socket's far end (address, port).
 *
 * Data goes one way: the tunnel puts what it learns into its worker's table
 * as it learns it; the flow export (main thread) takes it out when a record
 * of that socket comes, and fills the record itself. Neither calls the
 * other, and this module calls nothing of the daemon's.
 *
 * Threads: one table per worker, written by that worker, read by the main
 * thread; each table has its own lock, so no lock is shared between workers.
 */
#ifndef SOCKMESHD_FLOWJOIN_H
#define SOCKMESHD_FLOWJOIN_H

#include <stdbool.h>
#include <stdint.h>

#include "flow_record.h"

struct sm_addr;
struct sm_flowjoins;

/* What a tunnelled socket's records get. */
struct sm_flowjoin {
	struct sm_flow_tls tls;
	char trace[64];
	bool inbound;
	uint32_t peer_identity; /* inbound: the verified calling workload */
	char peer_workload[64];
	char failure[64]; /* a handshake or stream failure: the record is DROPPED */
	/* failure policy_revoked: the revision and the rule that did it */
	struct sm_flow_policy policy;
};

/* An empty table; NULL with errno set. */
struct sm_flowjoins *sm_flowjoins_new(void);
void sm_flowjoins_free(struct sm_flowjoins *t);
/*
 * Lock t and return the entry of the socket whose far end is a:port, made
 * empty first when there is none and create is set; NULL when there is none
 * (or no memory for it). Either way t stays locked: change the entry, then
 * sm_flowjoins_unlock(t), which keeps the changes (the entry is stored in a
 * compact form and the pointer is to t's expanded copy of it, valid until
 * then). The writer's side (the tunnel).
 */
struct sm_flowjoin *sm_flowjoins_lock(struct sm_flowjoins *t, const struct sm_addr *a,
				      uint16_t port, bool create);
void sm_flowjoins_unlock(struct sm_flowjoins *t);
/*
 * A new socket takes the key a:port: forget what an earlier socket with it
 * left (an entry that lingers, with its failure and its expiry time). The
 * writer's side, before its first sm_flowjoins_lock() for the new socket.
 */
void sm_flowjoins_forget(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port);
/* The stream is gone: its entry stays until expires (monotonic s) for the socket's last records. */
void sm_flowjoins_linger(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port,
			 int64_t expires);
/* Forget the entries that lingered past now (monotonic s). */
void sm_flowjoins_expire(struct sm_flowjoins *t, int64_t now);
/*
 * The writer's promise, around a connect() whose socket's entry it writes
 * as soon as connect() returns (begin), and its end, once the entry is
 * written or the connect failed (!begin): every begin has one end. The
 * kernel may report the far side's socket before connect() even returns,
 * and the reader must not take "no entry" for "not tunnelled" then.
 */
void sm_flowjoins_expect(struct sm_flowjoins *t, bool begin);
/*
 * The reader's side (the flow export): copy the entry of a:port into out,
 * and forget it when final (the socket's conn_end). False when there is
 * none; then *expected (if not NULL) says whether an entry may yet come:
 * a connect of the writer's is between its begin and end. Both are read
 * under one lock, so an entry written before its end is never missed.
 */
bool sm_flowjoins_take(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port, bool final,
		       struct sm_flowjoin *out, bool *expected);

#endif /* SOCKMESHD_FLOWJOIN_H */
