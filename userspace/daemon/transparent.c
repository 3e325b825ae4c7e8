// SPDX-License-Identifier: Apache-2.0
/* The routing for connections from a tunnelled caller's address (transparent.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>

#include "log.h"
#include "transparent.h"
#include "util.h"

/*
 * tcp_fwmark_accept: the service's accepted socket takes the SYN's mark;
 * fwmark_reflect: so do the resets the kernel sends for no socket (a port
 * nobody listens on), which would otherwise leave for the caller's node and
 * leave the daemon's connect() to time out instead of being refused.
 */
static const char *const sysctls[] = {
	"/proc/sys/net/ipv4/tcp_fwmark_accept",
	"/proc/sys/net/ipv4/fwmark_reflect",
	"/proc/sys/net/ipv6/fwmark_reflect",
};
#define NSYSCTLS (sizeof(sysctls) / sizeof(sysctls[0]))

static struct {
	uint32_t mark, table;
	bool active;
	bool rule[2], route[2]; /* [0] IPv4, [1] IPv6: set up by us */
	bool sysctl_was_off[NSYSCTLS];
	char saved[PATH_MAX]; /* the sysctls' values before the first daemon, "" = none */
} tp;

struct nl_req {
	struct nlmsghdr nh;
	union {
		struct fib_rule_hdr frh;
		struct rtmsg rtm;
	} u;
	char attrs[64];
};

static void nl_attr_u32(struct nl_req *r, unsigned short type, uint32_t v)
{
	struct rtattr *a = (struct rtattr *) ((char *) r + NLMSG_ALIGN(r->nh.nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(sizeof(v));
	memcpy(RTA_DATA(a), &v, sizeof(v));
	r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Send one request and wait for its acknowledgement: 0 or the kernel's -errno. */
static int nl_talk(struct nl_req *r)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	char buf[1024];
	int fd, err;
	ssize_t n;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	r->nh.nlmsg_seq = 1;
	if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
		err = -errno;
		goto close_fd;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		err = -errno;
		goto close_fd;
	}
	err = -EPROTO;
	for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n);
	     h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			err = e->error;
			break;
		}
	}
close_fd:
	close(fd);
	return err;
}

static void nl_init(struct nl_req *r, unsigned short type, bool add, size_t body)
{
	memset(r, 0, sizeof(*r));
	r->nh.nlmsg_len = NLMSG_LENGTH(body);
	r->nh.nlmsg_type = type;
	r->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
}

/* ip [-6] rule add|del fwmark MARK lookup TABLE pref SM_TRANSPARENT_RULE_PREF */
static int rule_change(int family, bool add)
{
	struct nl_req r;

	nl_init(&r, add ? RTM_NEWRULE : RTM_DELRULE, add, sizeof(r.u.frh));
	r.u.frh.family = (unsigned char) family;
	r.u.frh.action = FR_ACT_TO_TBL;
	r.u.frh.table = tp.table < 256 ? (unsigned char) tp.table : RT_TABLE_UNSPEC;
	nl_attr_u32(&r, FRA_FWMARK, tp.mark);
	nl_attr_u32(&r, FRA_FWMASK, 0xffffffffU);
	nl_attr_u32(&r, FRA_TABLE, tp.table);
	nl_attr_u32(&r, FRA_PRIORITY, SM_TRANSPARENT_RULE_PREF);
	return nl_talk(&r);
}

/* ip [-6] route add|del local 0.0.0.0/0 (::/0) dev lo table TABLE */
static int route_change(int family, bool add)
{
	unsigned int lo = if_nametoindex("lo");
	struct nl_req r;

	if (!lo)
		return -ENODEV;
	nl_init(&r, add ? RTM_NEWROUTE : RTM_DELROUTE, add, sizeof(r.u.rtm));
	r.u.rtm.rtm_family = (unsigned char) family;
	r.u.rtm.rtm_table = tp.table < 256 ? (unsigned char) tp.table : RT_TABLE_UNSPEC;
	r.u.rtm.rtm_protocol = RTPROT_STATIC;
	r.u.rtm.rtm_scope = RT_SCOPE_HOST;
	r.u.rtm.rtm_type = RTN_LOCAL;
	nl_attr_u32(&r, RTA_TABLE, tp.table);
	nl_attr_u32(&r, RTA_OIF, lo);
	return nl_talk(&r);
}

/* The sysctl's value ('0', '1', ...) or -errno. */
static int sysctl_read(const char *path)
{
	char c = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), n;

	if (fd < 0)
		return -errno;
	n = (int) read(fd, &c, 1);
	close(fd);
	return n == 1 ? c : -EIO;
}

static int sysctl_write(const char *path, char v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, &v, 1) != 1)
		err = -errno;
	close(fd);
	return err;
}

/*
 * The sysctls' values from before any daemon set them, one '0' or '1' each,
 * kept in STATE_DIR/transparent-sysctls from the first setup to the last
 * teardown: a daemon that starts after a SIGKILL, or an upgrade's successor,
 * finds them at 1 and must not take 1 for what the host had.
 */
static void originals_load_or_save(void)
{
	char buf[NSYSCTLS + 2];
	int fd = open(tp.saved, O_RDONLY | O_CLOEXEC), v;
	ssize_t n = -1;

	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf));
		close(fd);
	}
	if (n == (ssize_t) NSYSCTLS + 1 && buf[NSYSCTLS] == '\n') {
		bool ok = true;

		for (size_t i = 0; i < NSYSCTLS; i++)
			ok = ok && (buf[i] == '0' || buf[i] == '1');
		if (ok) {
			for (size_t i = 0; i < NSYSCTLS; i++)
				tp.sysctl_was_off[i] = buf[i] == '0';
			return;
		}
	}
	for (size_t i = 0; i < NSYSCTLS; i++) {
		v = sysctl_read(sysctls[i]);
		buf[i] = v == '0' ? '0' : '1';
	}
	/* sm_write_file_atomic() ends the file with the newline */
	if (sm_write_file_atomic(tp.saved, buf, NSYSCTLS, 0600))
		pr_warn("cannot save the routing sysctls' values to %s: after a crash or an "
			"upgrade they may stay 1 when the daemon stops",
			tp.saved);
}

void sm_transparent_leave(void)
{
	memset(&tp, 0, sizeof(tp));
}

void sm_transparent_teardown(void)
{
	static const int fam[2] = {AF_INET, AF_INET6};
	int err;

	for (int i = 0; i < 2; i++) {
		if (tp.rule[i] && (err = rule_change(fam[i], false)) != 0)
			pr_warn("cannot remove the routing rule fwmark %#x lookup %u (%s): %s",
				tp.mark, tp.table, i ? "IPv6" : "IPv4", strerror(-err));
		if (tp.route[i] && (err = route_change(fam[i], false)) != 0)
			pr_warn("cannot remove the local route of table %u (%s): %s", tp.table,
				i ? "IPv6" : "IPv4", strerror(-err));
		tp.rule[i] = tp.route[i] = false;
	}
	for (size_t i = 0; i < NSYSCTLS; i++) {
		if (tp.sysctl_was_off[i] && (err = sysctl_write(sysctls[i], '0')) != 0)
			pr_warn("cannot set %s back to 0: %s", sysctls[i], strerror(-err));
		tp.sysctl_was_off[i] = false;
	}
	if (tp.saved[0])
		(void) unlink(tp.saved);
	tp.saved[0] = '\0';
	tp.active = false;
}

int sm_transparent_setup(uint32_t mark, uint32_t table, const char *state_dir)
{
	static const int fam[2] = {AF_INET, AF_INET6};
	const char *what;
	int err, v;

	if (!mark)
		return 0;
	tp.mark = mark;
	tp.table = table;
	if (snprintf(tp.saved, sizeof(tp.saved), "%s/transparent-sysctls", state_dir) >=
	    (int) sizeof(tp.saved))
		tp.saved[0] = '\0';
	if (tp.saved[0])
		originals_load_or_save();
	for (size_t i = 0; i < NSYSCTLS; i++) {
		what = sysctls[i];
		v = sysctl_read(what);
		if (v < 0) {
			err = v;
			goto fail;
		}
		if (v == '0') {
			err = sysctl_write(what, '1');
			if (err)
				goto fail;
			tp.sysctl_was_off[i] = true;
		}
	}
	for (int i = 0; i < 2; i++) {
		/*
		 * An existing rule or route (a daemon that was killed left it)
		 * is taken as ours: this stop removes it.
		 */
		what = i ? "the IPv6 routing rule" : "the IPv4 routing rule";
		err = rule_change(fam[i], true);
		/* a node without IPv6 has no IPv6 routing to set up */
		if (err == -EAFNOSUPPORT && i == 1)
			break;
		if (err && err != -EEXIST)
			goto fail;
		tp.rule[i] = true;
		what = i ? "the IPv6 local route" : "the IPv4 local route";
		err = route_change(fam[i], true);
		/* a node without IPv6 has no IPv6 routing to set up */
		if (err == -EAFNOSUPPORT && i == 1)
			break;
		if (err && err != -EEXIST)
			goto fail;
		tp.route[i] = true;
	}
	tp.active = true;
	pr_info("real addresses: tunnelled callers reach local services from their node's "
		"address (fwmark %#x lookup %u pref %u, local default route in table %u, "
		"net.ipv4.tcp_fwmark_accept=1, net.ipv4/ipv6.fwmark_reflect=1)",
		mark, table, SM_TRANSPARENT_RULE_PREF, table);
	return 0;
fail:
	pr_warn("real addresses are off: cannot set up %s (fwmark %#x, table %u): %s; local "
		"services see tunnelled callers as 127.0.0.1 (the daemon needs CAP_NET_ADMIN "
		"and a writable /proc/sys; datapath.transparent_mark: 0 turns this off)",
		what, mark, table, strerror(-err));
	sm_transparent_teardown();
	return err;
}

uint32_t sm_transparent_mark(void)
{
	return tp.active ? tp.mark : 0;
}
