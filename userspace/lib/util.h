/* SPDX-License-Identifier: Apache-2.0 */
/* Small shared helpers: addresses, range-checked number parsing, errors with a place. */
#ifndef SOCKMESH_UTIL_H
#define SOCKMESH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A counter one thread writes and others read: relaxed atomics, no lock. */
#define SM_STAT_ADD(f, n)                                                                          \
	__atomic_store_n(&(f), __atomic_load_n(&(f), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define SM_STAT_INC(f) SM_STAT_ADD(f, 1)
#define SM_STAT_DEC(f) SM_STAT_ADD(f, -1)
#define SM_STAT_GET(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

/* An IPv4 or IPv6 address, network order, IPv4 in the first 4 bytes. */
struct sm_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* A user-facing error: "file:line: what is wrong; how to fix it". */
struct sm_error {
	char msg[512];
};

void sm_error_set(struct sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse a numeric IPv4 or IPv6 address. 0 or -EINVAL. */
int sm_addr_parse(const char *s, struct sm_addr *out);
/* Format an address (no brackets). Returns buf. */
const char *sm_addr_format(const struct sm_addr *a, char *buf, size_t len);
/* "1.2.3.4:80" or "[::1]:80". 0 or -EINVAL. port in host order. */
int sm_addrport_parse(const char *s, struct sm_addr *addr, uint16_t *port);
/* "10.0.0.0/8" or "fc00::/7"; host bits must be zero. 0 or -EINVAL. */
int sm_cidr_parse(const char *s, struct sm_addr *addr, uint8_t *prefix);
/* Fill a sockaddr_storage; returns its length. */
socklen_t sm_addr_to_sockaddr(const struct sm_addr *a, uint16_t port, struct sockaddr_storage *ss);
/* The reverse; 0 or -EAFNOSUPPORT. port in host order. */
int sm_addr_from_sockaddr(const struct sockaddr *sa, struct sm_addr *a, uint16_t *port);
bool sm_addr_equal(const struct sm_addr *a, const struct sm_addr *b);
/* iaddr/iprefix lies within oaddr/oprefix (equal counts); families never mix. */
bool sm_cidr_contains(const struct sm_addr *oaddr, uint8_t oprefix, const struct sm_addr *iaddr,
		      uint8_t iprefix);

/*
 * A non-blocking, close-on-exec TCP listener on a:port (SO_REUSEADDR; IPv6
 * listeners are IPv6-only). reuseport: join a SO_REUSEPORT group, so several
 * threads can each listen on the same address (the kernel spreads
 * connections among them). Returns the fd, or -errno from socket/bind/listen.
 */
int sm_tcp_listen(const struct sm_addr *a, uint16_t port, int backlog, bool reuseport);

/* Decimal or 0x-hex unsigned integer within [min, max]. 0, -EINVAL or -ERANGE. */
int sm_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "true/false/yes/no/on/off/1/0". 0 or -EINVAL. */
int sm_parse_bool(const char *s, bool *out);

/* Copy with truncation check: 0 or -ENAMETOOLONG. */
int sm_strlcpy(char *dst, const char *src, size_t size);
/*
 * Sockets the daemon holds for a workload (a captured client, a connection
 * to a local service) are closed abortively unless the relay ends in order:
 * sm_sock_abort_on_close() at creation makes any close, including the
 * kernel's when the process dies, reset the connection, so the workload sees
 * ECONNRESET and never a clean end of a stream that was cut short;
 * sm_sock_close_orderly() undoes it for a relay that finished, so what is
 * still queued is delivered; sm_sock_close_reset() resets now.
 */
void sm_sock_abort_on_close(int fd);
void sm_sock_close_orderly(int fd);
void sm_sock_close_reset(int fd);
/* mkdir -p: every missing directory of path, with mode. 0 or -errno. */
int sm_mkdir_p(const char *path, mode_t mode);

/*
 * The daemon's clocks, one place: CLOCK_MONOTONIC (the kernel's
 * bpf_ktime_get_ns() clock) for timeouts and ages, in ns, ms or whole
 * seconds; CLOCK_REALTIME in ns for the times records carry.
 */
int64_t sm_mono_ns(void);
int64_t sm_mono_ms(void);
int64_t sm_mono_s(void);
int64_t sm_real_ns(void);
/* CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: converts bpf_ktime_get_ns() to wall time. */
int64_t sm_mono_to_real_offset_ns(void);
/* RFC 3339 UTC with microseconds, e.g. "2026-11-29T20:01:02.123456Z". */
const char *sm_format_time_ns(int64_t realtime_ns, char *buf, size_t len);

/*
 * Raise this process's soft RLIMIT_NOFILE to its hard limit (each tunnelled
 * connection holds a descriptor or two; the common soft default of 1,024
 * runs out first) and log what it got. Returns the soft limit in force, or
 * -errno when it cannot be read.
 */
long sm_raise_fd_limit(void);

/*
 * Replace path with len bytes of data and a newline, atomically: written to
 * path.tmp, fsync'ed, renamed over path (mode for a new file). A failure
 * leaves path as it was and removes the temp file. 0 or -errno.
 */
int sm_write_file_atomic(const char *path, const char *data, size_t len, unsigned int mode);

#endif /* SOCKMESH_UTIL_H */
