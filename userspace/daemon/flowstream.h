/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_FLOWSTREAM_H
#define SOCKMESHD_FLOWSTREAM_H

struct sm_daemon;
struct sm_flow_record;
struct sm_error;
struct json_object;

/*
 * flowstream.c: the live stream behind `sockmesh flows`, a ring of the last
 * flowlog.ring_size records and the control clients reading it.
 */
/* Before anything emits records; the loop must exist. 0 or -errno. */
int sm_flowstream_start(struct sm_daemon *d);
/* After every publisher stopped (workers, sm_flowexp_stop()): closes the clients. */
void sm_flowstream_stop(struct sm_daemon *d);
/*
 * Offer a record and its encoded line to the stream. Any thread; copies both
 * and returns at once (no I/O, a short lock), the main loop does the rest.
 */
void sm_flowstream_publish(struct sm_daemon *d, const struct sm_flow_record *r, const char *json);
/*
 * The control command "flows" on the client socket fd (its request read).
 * 0: the stream answers and owns fd from now on. -errno with err set: the
 * caller answers {"ok":false} and closes fd.
 */
int sm_flowstream_command(struct sm_daemon *d, int fd, struct json_object *args,
			  struct sm_error *err);
/* The stream's part of `status` (flows.stream). */
struct json_object *sm_flowstream_status(struct sm_daemon *d);

#endif /* SOCKMESHD_FLOWSTREAM_H */
