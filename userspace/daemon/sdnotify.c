// SPDX-License-Identifier: Apache-2.0
/*
 * The notify protocol is one datagram of newline-separated assignments to
 * the AF_UNIX socket named by $NOTIFY_SOCKET ('@' first: an abstract
 * address). systemd documents it as a stable interface that daemons may
 * speak without libsystemd; a sender is a dozen lines, where linking
 * libsystemd would add a library (and its own dependencies) to every host
 * and to the build for one sendto().
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sdnotify.h"

int sm_sd_notify(const char *msg)
{
	static bool warned;
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	ssize_t n;
	int fd, err = 0;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
		err = -EINVAL;
		goto warn;
	}
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto warn;
	}
	n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *) &sa,
		   (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len));
	if (n < 0)
		err = -errno;
	close(fd);
	if (!err)
		return 1;
warn:
	if (!warned)
		pr_warn("cannot notify the service manager at NOTIFY_SOCKET=%s: %s (systemd "
			"will not see this daemon's state; check the unit's NotifyAccess= and "
			"that the socket exists)",
			path, strerror(-err));
	warned = true;
	return err;
}

void sm_sd_ready(const char *status)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	sm_sd_notify(msg);
}

static uint64_t monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void sm_sd_reloading(void)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
		 (unsigned long long) monotonic_usec());
	sm_sd_notify(msg);
}

void sm_sd_stopping(void)
{
	sm_sd_notify("STOPPING=1\nSTATUS=draining");
}

static uint64_t watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (!usec || !*usec)
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno || *end || v == 0) {
		pr_warn("WATCHDOG_USEC=%s is not a positive number of microseconds: no "
			"watchdog notifications",
			usec);
		return 0;
	}
	if (pid && *pid && strtol(pid, NULL, 10) != (long) getpid())
		return 0; /* the watchdog is another process's */
	if (v < 2000000)
		pr_warn("WATCHDOG_USEC=%llu: the main loop beats once a second, so a watchdog "
			"under 2 s may fire on a healthy daemon (set WatchdogSec=2s or more)",
			v);
	return v;
}

uint64_t sm_sd_watchdog(void)
{
	static bool read;
	static uint64_t usec, last;
	uint64_t now;

	if (!read) {
		usec = watchdog_usec();
		read = true;
	}
	if (!usec)
		return 0;
	now = monotonic_usec();
	/* a tenth of slack: a tick a little early must not skip a beat of a 2 s watchdog */
	if (last && now - last < usec / 2 - usec / 20)
		return usec;
	if (sm_sd_notify("WATCHDOG=1") > 0)
		last = now;
	return usec;
}
