// SPDX-License-Identifier: Apache-2.0
/* Small shared helpers: addresses, range-checked number parsing, errors with a place. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

void sm_error_set(struct sm_error *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug, ap is va_start'ed
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

int sm_addr_parse(const char *s, struct sm_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->bytes) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->bytes) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

const char *sm_addr_format(const struct sm_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family == AF_INET6 ? AF_INET6 : AF_INET, a->bytes, buf, len))
		snprintf(buf, len, "?");
	return buf;
}

int sm_addrport_parse(const char *s, struct sm_addr *addr, uint16_t *port)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *p;
	uint64_t v;
	size_t n;

	if (s[0] == '[') {
		p = strchr(s, ']');
		if (!p || p[1] != ':')
			return -EINVAL;
		n = (size_t) (p - s - 1);
		colon = p + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL;
		n = (size_t) (colon - s);
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (sm_addr_parse(host, addr))
		return -EINVAL;
	if (sm_parse_u64(colon + 1, 1, 65535, &v))
		return -EINVAL;
	*port = (uint16_t) v;
	return 0;
}

int sm_cidr_parse(const char *s, struct sm_addr *addr, uint8_t *prefix)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	uint64_t v, max;
	size_t n;

	if (!slash)
		return -EINVAL;
	n = (size_t) (slash - s);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (sm_addr_parse(host, addr))
		return -EINVAL;
	max = addr->family == AF_INET ? 32 : 128;
	if (sm_parse_u64(slash + 1, 0, max, &v))
		return -EINVAL;
	/* host bits must be zero: 10.1.2.3/8 is almost always a typo */
	for (unsigned int bit = (unsigned int) v; bit < max; bit++)
		if (addr->bytes[bit / 8] & (0x80 >> (bit % 8)))
			return -EINVAL;
	*prefix = (uint8_t) v;
	return 0;
}

socklen_t sm_addr_to_sockaddr(const struct sm_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->bytes, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *) ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	memcpy(&s4->sin_addr, a->bytes, 4);
	return sizeof(*s4);
}

int sm_addr_from_sockaddr(const struct sockaddr *sa, struct sm_addr *a, uint16_t *port)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;

		a->family = AF_INET;
		memcpy(a->bytes, &s4->sin_addr, 4);
		if (port)
			*port = ntohs(s4->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;

		a->family = AF_INET6;
		memcpy(a->bytes, &s6->sin6_addr, 16);
		if (port)
			*port = ntohs(s6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

bool sm_addr_equal(const struct sm_addr *a, const struct sm_addr *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && memcmp(a->bytes, b->bytes, n) == 0;
}

bool sm_cidr_contains(const struct sm_addr *oaddr, uint8_t oprefix, const struct sm_addr *iaddr,
		      uint8_t iprefix)
{
	unsigned int full = oprefix / 8, rest = oprefix % 8;

	if (oaddr->family != iaddr->family || iprefix < oprefix)
		return false;
	if (memcmp(oaddr->bytes, iaddr->bytes, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t) (0xff << (8 - rest));

		return (oaddr->bytes[full] & mask) == (iaddr->bytes[full] & mask);
	}
	return true;
}

int sm_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int sm_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < SM_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int sm_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (n >= size) {
		if (size) {
			memcpy(dst, src, size - 1);
			dst[size - 1] = '\0';
		}
		return -ENAMETOOLONG;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sm_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int64_t sm_mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000LL;
}

int64_t sm_mono_s(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000000LL;
}

int64_t sm_real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t sm_mono_to_real_offset_ns(void)
{
	struct timespec mono, real;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	return ((int64_t) real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
}

const char *sm_format_time_ns(int64_t realtime_ns, char *buf, size_t len)
{
	/*
	 * Flow records come by the thousand within one second, two times each:
	 * the date and time of day are worked out once a second per thread, and
	 * only the microseconds for every call.
	 */
	static __thread int64_t cached_sec = INT64_MIN;
	static __thread char cached[32]; /* "YYYY-MM-DDTHH:MM:SS" */
	int64_t sec = realtime_ns / 1000000000LL;
	long usec = (long) ((realtime_ns % 1000000000LL) / 1000);

	if (sec != cached_sec) {
		time_t t = (time_t) sec;
		struct tm tm;

		gmtime_r(&t, &tm);
		snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		cached_sec = sec;
	}
	snprintf(buf, len, "%s.%06ldZ", cached, usec);
	return buf;
}

int sm_tcp_listen(const struct sm_addr *a, uint16_t port, int backlog, bool reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len = sm_addr_to_sockaddr(a, port, &ss);
	int one = 1, fd, err;

	fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (a->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, backlog) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int sm_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	if (sm_strlcpy(tmp, path, sizeof(tmp)))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The kernel's ceiling for a descriptor limit (fs.nr_open), for a hard limit of "unlimited". */
static rlim_t nr_open(void)
{
	unsigned long long n = 1048576; /* the kernel's default */
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");

	if (f) {
		if (fscanf(f, "%llu", &n) != 1)
			n = 1048576;
		fclose(f);
	}
	return (rlim_t) n;
}

long sm_raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t before;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		pr_warn("cannot read the file descriptor limit: %s", strerror(errno));
		return -errno;
	}
	before = rl.rlim_cur;
	if (rl.rlim_cur == rl.rlim_max) {
		pr_info("file descriptor limit: %llu (the hard limit already)",
			(unsigned long long) rl.rlim_cur);
		return (long) rl.rlim_cur;
	}
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? nr_open() : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		pr_warn("cannot raise the file descriptor limit from %llu to %llu: %s (raise it "
			"with LimitNOFILE= or ulimit -n; each tunnelled connection needs one or "
			"two)",
			(unsigned long long) before, (unsigned long long) rl.rlim_cur,
			strerror(errno));
		return (long) before;
	}
	pr_info("file descriptor limit raised from %llu to %llu (the hard limit)",
		(unsigned long long) before, (unsigned long long) rl.rlim_cur);
	return (long) rl.rlim_cur;
}

void sm_sock_abort_on_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void sm_sock_close_orderly(int fd)
{
	struct linger lg = {.l_onoff = 0, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void sm_sock_close_reset(int fd)
{
	sm_sock_abort_on_close(fd);
	close(fd);
}

int sm_write_file_atomic(const char *path, const char *data, size_t len, unsigned int mode)
{
	char tmp[PATH_MAX + 8];
	int fd, err = 0;

	if ((size_t) snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t) mode);
	if (fd < 0)
		return -errno;
	errno = 0;
	if (write(fd, data, len) != (ssize_t) len || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}
