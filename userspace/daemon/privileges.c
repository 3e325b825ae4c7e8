// SPDX-License-Identifier: Apache-2.0
/*
 * Capabilities after start. Loading and attaching the programs, mounting
 * bpffs and pinning need CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON and more; the
 * running daemon needs few of them. Once everything is attached, and before
 * any thread exists (capabilities are per thread; a thread starts with its
 * creator's), the daemon keeps only these, in its effective, permitted and
 * bounding sets, and clears the inheritable and ambient ones:
 *
 *   CAP_BPF             each policy revision is new inner maps (BPF_MAP_CREATE)
 *   CAP_NET_ADMIN       SO_MARK on the daemon's own connections
 *   CAP_DAC_READ_SEARCH reading credential files that another user (the SVID
 *                       issuer) writes, across rotations
 *   CAP_NET_BIND_SERVICE only when a listener's port is below 1024 (the workers
 *                       bind theirs after the drop)
 *
 * Everything else it does works on descriptors it already holds or on files
 * it owns. A daemon started with fewer of these keeps what it had of them.
 */
#include <errno.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "daemon.h"
#include "log.h"
#include "privileges.h"
#include "util.h"

static const cap_value_t always[] = {CAP_BPF, CAP_NET_ADMIN, CAP_DAC_READ_SEARCH};

/* What this daemon keeps: always[], and the right to bind a port below 1024 if it has one. */
static size_t keep_set(const struct sm_daemon *d, cap_value_t *keep)
{
	size_t n = 0;

	for (size_t i = 0; i < SM_ARRAY_SIZE(always); i++)
		keep[n++] = always[i];
	if (d->cfg.inbound_port < 1024 || d->cfg.outbound_port < 1024 ||
	    d->cfg.outbound6_port < 1024)
		keep[n++] = CAP_NET_BIND_SERVICE;
	return n;
}

static bool kept(const cap_value_t *keep, size_t n, cap_value_t c)
{
	for (size_t i = 0; i < n; i++)
		if (keep[i] == c)
			return true;
	return false;
}

int sm_privileges_drop(struct sm_daemon *d)
{
	cap_t now = cap_get_proc(), next = cap_init();
	cap_value_t keep[SM_ARRAY_SIZE(always) + 1];
	size_t nkeep = keep_set(d, keep);
	cap_flag_value_t have;
	char *text = NULL;
	int err = 0;

	if (!now || !next) {
		err = -errno;
		pr_err("cannot read the capabilities: %s", strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < nkeep; i++) {
		if (cap_get_flag(now, keep[i], CAP_PERMITTED, &have) || have != CAP_SET)
			continue;
		if (cap_set_flag(next, CAP_PERMITTED, 1, &keep[i], CAP_SET) ||
		    cap_set_flag(next, CAP_EFFECTIVE, 1, &keep[i], CAP_SET)) {
			err = -errno;
			pr_err("cannot build the capability set: %s", strerror(-err));
			goto out;
		}
	}
	/* the bounding set first: dropping from it needs CAP_SETPCAP, which goes next */
	for (cap_value_t c = 0; cap_valid(c); c++) {
		if (kept(keep, nkeep, c) || prctl(PR_CAPBSET_READ, c) != 1)
			continue;
		if (cap_drop_bound(c)) {
			err = -errno;
			pr_err("cannot drop %s from the bounding set: %s", cap_to_name(c),
			       strerror(-err));
			goto out;
		}
	}
	if (cap_reset_ambient() && errno != EINVAL) { /* EINVAL: a kernel without ambient sets */
		err = -errno;
		pr_err("cannot clear the ambient capabilities: %s", strerror(-err));
		goto out;
	}
	if (cap_set_proc(next)) {
		err = -errno;
		pr_err("cannot reduce the capabilities: %s", strerror(-err));
		goto out;
	}
	text = cap_to_text(next, NULL);
	pr_info("capabilities from now on: %s", text ? text : "?");
out:
	cap_free(text);
	cap_free(next);
	cap_free(now);
	return err;
}
