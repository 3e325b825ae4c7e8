// SPDX-License-Identifier: Apache-2.0
/*
 * The kernel side's lifecycle: find cgroup v2 and bpffs, open the skeleton,
 * configure and load it, attach programs with BPF links pinned under the
 * bpffs directory, adopt the links and maps a previous daemon left, and
 * remove all of it on --cleanup.
 *
 * Pin layout under <bpffs>: maps/<map name> (libbpf pins by name),
 * links/cg<cgroup id>-<program> (one per program and cgroup),
 * progs/sk_msg_redirect (while attached to the sock_pairs map).
 * The workload programs (connect4/6, getpeername4/6, sockops, cgroup_skb) attach once, to the
 * node's enrollment root, and decide in the kernel which cgroups below it are
 * workloads (include/sockmesh/enroll.h); getsockopt, and sockops for the
 * redirect of the daemon's loopback hops, attach to the daemon's own cgroup.
 * Nothing is ever attached to the cgroup v2 root.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>

#include "config.h"
#include "daemon.h"
#include "datapath.h"
#include "log.h"
#include "transparent.h"
#include "sockmesh.skel.h"
#include "util.h"

#include "sockmesh/common.h"
#include "sockmesh/enroll.h"

int sm_find_cgroup2_mount(char *buf, size_t len)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int err = -ENOENT;

	if (!f)
		return -errno;
	/* "36 35 0:30 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw" */
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], *sep = strstr(line, " - ");

		if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		err = sm_strlcpy(buf, mnt, len);
		break;
	}
	fclose(f);
	return err;
}

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

/* bpffs is mounted at /sys/fs/bpf if nothing is; our directory must be on it. */
int sm_datapath_prepare(const char *dir)
{
	int err;

	if (!is_bpffs("/sys/fs/bpf") && strncmp(dir, "/sys/fs/bpf/", 12) == 0) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0) {
			err = -errno;
			pr_err("cannot mount bpffs on /sys/fs/bpf: %s (mount it: mount -t bpf bpf "
			       "/sys/fs/bpf)",
			       strerror(-err));
			return err;
		}
		pr_info("mounted bpffs on /sys/fs/bpf");
	}
	err = sm_mkdir_p(dir, 0700);
	if (err) {
		pr_err("cannot create %s: %s", dir, strerror(-err));
		return err;
	}
	if (!is_bpffs(dir)) {
		pr_err("%s is not on a bpffs mount (set paths.bpffs / --bpffs to a directory under "
		       "a bpf filesystem)",
		       dir);
		return -EINVAL;
	}
	return 0;
}

/* The pin subdirectories, when the daemon is sure it is the only one (main.c's lock). */
static int make_pin_dirs(const char *dir)
{
	static const char *const subdirs[] = {"maps", "links", "progs"};
	char sub[PATH_MAX];
	int err;

	for (size_t i = 0; i < SM_ARRAY_SIZE(subdirs); i++) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, subdirs[i]);
		if (mkdir(sub, 0700) < 0 && errno != EEXIST) {
			err = -errno;
			pr_err("cannot create %s: %s", sub, strerror(-err));
			return err;
		}
	}
	return 0;
}

static int set_map_size(struct bpf_map *map, uint32_t n)
{
	int err = bpf_map__set_max_entries(map, n);

	if (err)
		pr_err("cannot size map %s to %u: %s", bpf_map__name(map), n, strerror(-err));
	return err;
}

int sm_datapath_open(struct sm_daemon *d)
{
	const struct sm_config *c = &d->cfg;
	char pin_root[PATH_MAX];
	struct sockmesh_bpf *skel;
	int err;

	err = make_pin_dirs(c->bpffs);
	if (err)
		return err;
	snprintf(pin_root, sizeof(pin_root), "%s/maps", c->bpffs);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);

	// NOLINTNEXTLINE(clang-analyzer-unix.Malloc): generated code; destroy_skeleton() frees s
	skel = sockmesh_bpf__open_opts(&opts);
	if (!skel) {
		err = -errno;
		pr_err("cannot open the BPF object: %s", strerror(-err));
		return err;
	}
	err = set_map_size(skel->maps.enroll_paths, c->max_workloads) ?:
	      set_map_size(skel->maps.services, c->max_services) ?:
	      set_map_size(skel->maps.cidrs, c->max_cidrs) ?:
	      set_map_size(skel->maps.orig_dst, c->max_orig_dst) ?:
	      set_map_size(skel->maps.tunnel_facts, c->max_orig_dst) ?:
	      set_map_size(skel->maps.sock_pairs, c->max_sockhash) ?:
	      set_map_size(skel->maps.redirect_rx, c->max_sockhash) ?:
	      set_map_size(skel->maps.flow_events, c->ringbuf_size);
	if (err)
		goto destroy;

	skel->rodata->cfg_daemon_mark = c->daemon_mark;
	skel->rodata->cfg_transparent_mark = c->transparent_mark;
	skel->rodata->cfg_enroll_root_id = d->enroll_root_id;
	memcpy((void *) &skel->rodata->cfg_outbound_ip4, c->outbound_addr.bytes, 4);
	skel->rodata->cfg_outbound_port = htons(c->outbound_port);
	memcpy((void *) skel->rodata->cfg_outbound_ip6, c->outbound6_addr.bytes, 16);
	skel->rodata->cfg_outbound6_port = htons(c->outbound6_port);
	skel->rodata->cfg_fail_open = c->fail_open;
	skel->rodata->cfg_redirect = c->redirect;
	skel->rodata->cfg_update_interval_ns = (uint64_t) c->flow_update_interval * 1000000000ULL;
	/*
	 * Woken early once this much waits (else by the SM_FLOW_DRAIN_MS timer):
	 * a quarter of a small ring, at most 256 KiB (about 1,500 events) of a
	 * big one, so the rest of it stays free for a burst.
	 */
	skel->rodata->cfg_ringbuf_wakeup_bytes =
		c->ringbuf_size / 4 < (256U << 10) ? c->ringbuf_size / 4 : (256U << 10);

	err = sockmesh_bpf__load(skel);
	if (err) {
		pr_err("cannot load the BPF programs: %s (see the libbpf messages above; if a "
		       "pinned map "
		       "under %s/maps does not match this build or its datapath.max_* sizes, stop "
		       "the "
		       "daemon and run `sockmeshd --cleanup --bpffs %s`, which drops live sockets' "
		       "state)",
		       strerror(-err), c->bpffs, c->bpffs);
		goto destroy;
	}
	d->skel = skel;
	return 0;
destroy:
	sockmesh_bpf__destroy(skel);
	return err;
}

uint64_t sm_cgroup_id_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? (uint64_t) st.st_ino : 0;
}

static uint32_t link_id_of(struct bpf_link *link)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len))
		return 0;
	return info.id;
}

/*
 * Attach prog to the cgroup at path, or adopt the pinned link from a previous
 * daemon by swapping its program atomically (no moment without a program).
 */
static int attach_one(struct sm_daemon *d, struct bpf_program *prog, const char *path,
		      uint64_t cgid)
{
	struct sm_attachment *a, *grown;
	char pin[PATH_MAX];
	struct bpf_link *link = NULL;
	int cgfd, err;

	if (cgid == 0 || strcmp(path, d->cgroup_root) == 0 ||
	    cgid == sm_cgroup_id_of(d->cgroup_root)) {
		pr_err("refusing to attach %s to %s: that is the cgroup v2 root (or not a cgroup)",
		       bpf_program__name(prog), path);
		return -EPERM;
	}
	snprintf(pin, sizeof(pin), "%s/links/cg%llu-%s", d->cfg.bpffs, (unsigned long long) cgid,
		 bpf_program__name(prog));

	if (access(pin, F_OK) == 0) {
		link = bpf_link__open(pin);
		if (link && bpf_link__update_program(link, prog) == 0) {
			pr_debug("adopted %s on %s", bpf_program__name(prog), path);
			goto record;
		}
		pr_warn("pinned link %s cannot be adopted (%s); attaching anew", pin,
			strerror(errno));
		if (link) {
			bpf_link__unpin(link);
			bpf_link__destroy(link);
			link = NULL;
		} else {
			unlink(pin);
		}
	}

	cgfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0) {
		err = -errno;
		pr_err("cannot open cgroup %s: %s", path, strerror(-err));
		return err;
	}
	link = bpf_program__attach_cgroup(prog, cgfd);
	err = link ? 0 : -errno;
	close(cgfd);
	if (err) {
		pr_err("cannot attach %s to %s: %s (run as root or grant CAP_BPF+CAP_NET_ADMIN)",
		       bpf_program__name(prog), path, strerror(-err));
		return err;
	}
	err = bpf_link__pin(link, pin);
	if (err) {
		pr_err("cannot pin link %s: %s", pin, strerror(-err));
		bpf_link__destroy(link);
		return err;
	}
	pr_info("attached %s to %s", bpf_program__name(prog), path);
record:
	grown = realloc(d->att, (d->natt + 1) * sizeof(*d->att));
	if (!grown) {
		bpf_link__destroy(link); /* stays pinned: the next start adopts it */
		return -ENOMEM;
	}
	d->att = grown;
	a = &d->att[d->natt++];
	memset(a, 0, sizeof(*a));
	sm_strlcpy(a->prog, bpf_program__name(prog), sizeof(a->prog));
	sm_strlcpy(a->cgroup, path, sizeof(a->cgroup));
	a->cgroup_id = cgid;
	a->link = link;
	a->link_id = link_id_of(link);
	return 0;
}

static bool attachment_wanted(const struct sm_daemon *d, const char *pin_name)
{
	char want[128];

	for (unsigned int i = 0; i < d->natt; i++) {
		snprintf(want, sizeof(want), "cg%llu-%s", (unsigned long long) d->att[i].cgroup_id,
			 d->att[i].prog);
		if (strcmp(want, pin_name) == 0)
			return true;
	}
	return false;
}

/* Links pinned by an earlier daemon for cgroups that are no longer ours. */
static void detach_stale_links(struct sm_daemon *d)
{
	char dir[PATH_MAX], pin[PATH_MAX + 256];
	struct dirent *de;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/links", d->cfg.bpffs);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((de = readdir(dp))) {
		int fd;

		if (de->d_name[0] == '.' || attachment_wanted(d, de->d_name))
			continue;
		snprintf(pin, sizeof(pin), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(pin);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		unlink(pin);
		pr_info("detached stale link %s", de->d_name);
	}
	closedir(dp);
}

/* sk_msg hangs off the sock_pairs map, not a cgroup; its program is pinned so
 * that a later daemon (or --cleanup) can detach it. */
static int redirect_sync(struct sm_daemon *d)
{
	char pin[PATH_MAX];
	int map_fd = bpf_map__fd(d->skel->maps.sock_pairs);
	int prog_fd = bpf_program__fd(d->skel->progs.sk_msg_redirect);
	int old, err;

	snprintf(pin, sizeof(pin), "%s/progs/sk_msg_redirect", d->cfg.bpffs);
	old = bpf_obj_get(pin);
	if (old >= 0) {
		bpf_prog_detach2(old, map_fd, BPF_SK_MSG_VERDICT);
		close(old);
		unlink(pin);
	}
	if (!d->cfg.redirect)
		return 0;
	err = bpf_prog_attach(prog_fd, map_fd, BPF_SK_MSG_VERDICT, 0);
	if (err) {
		pr_err("cannot attach sk_msg_redirect to sock_pairs: %s", strerror(-err));
		return err;
	}
	err = bpf_obj_pin(prog_fd, pin);
	if (err)
		pr_warn("cannot pin %s: %s (--cleanup will not find it)", pin, strerror(-err));
	d->redirect_attached = true;
	pr_info("sk_msg redirect is on (same-node connections and the tunnel's loopback hops)");
	return 0;
}

/*
 * Pins of maps this build no longer has (an earlier version's, e.g. the
 * cgroup-id "workloads" map): nothing of ours uses them once the links that
 * held their programs are gone.
 */
static void unpin_stale_maps(struct sm_daemon *d)
{
	char dir[PATH_MAX], pin[PATH_MAX + 256];
	struct dirent *de;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/maps", d->cfg.bpffs);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((de = readdir(dp))) {
		if (de->d_name[0] == '.' || bpf_object__find_map_by_name(d->skel->obj, de->d_name))
			continue;
		snprintf(pin, sizeof(pin), "%s/%s", dir, de->d_name);
		if (unlink(pin) == 0)
			pr_info("removed the pin of map %s, which this version no longer has",
				de->d_name);
	}
	closedir(dp);
}

int sm_datapath_attach(struct sm_daemon *d)
{
	struct sockmesh_bpf *s = d->skel;
	struct bpf_program *progs[] = {s->progs.sock4_connect,	   s->progs.sock6_connect,
				       s->progs.sock4_getpeername, s->progs.sock6_getpeername,
				       s->progs.sockops_flow,	   s->progs.skb_ingress_mode};
	const struct sm_config *c = &d->cfg;
	int err;

	if (c->transparent_mark &&
	    (c->transparent_mark == c->daemon_mark || c->transparent_table == 0 ||
	     (c->transparent_table >= 253 && c->transparent_table <= 255))) {
		pr_err("datapath.transparent_mark %#x / transparent_table %u: the mark must differ "
		       "from datapath.daemon_mark (%#x) and the table must be one no other route "
		       "uses, not 0, 253 (default), 254 (main) or 255 (local); e.g. 0x5ec0df and "
		       "15006, or transparent_mark: 0 to turn real addresses off",
		       c->transparent_mark, c->transparent_table, c->daemon_mark);
		return -EINVAL;
	}

	/* before the per-workload links of an earlier version go (detach_stale_links) */
	for (size_t p = 0; p < SM_ARRAY_SIZE(progs); p++) {
		err = attach_one(d, progs[p], d->enroll_root, d->enroll_root_id);
		if (err)
			return err;
	}
	/*
	 * sockops_daemon is attached whether redirect is on or not (it then
	 * does nothing), so turning redirect on or off is a restart, never a
	 * link to add or remove.
	 */
	err = attach_one(d, d->skel->progs.sockopt_orig_dst, d->daemon_cgroup,
			 sm_cgroup_id_of(d->daemon_cgroup));
	if (err)
		return err;
	err = attach_one(d, d->skel->progs.sockops_daemon, d->daemon_cgroup,
			 sm_cgroup_id_of(d->daemon_cgroup));
	if (err)
		return err;
	detach_stale_links(d);
	unpin_stale_maps(d);

	d->iter_link = bpf_program__attach_iter(d->skel->progs.iter_tcp_flows, NULL);
	if (!d->iter_link) {
		err = -errno;
		pr_err("cannot create the TCP socket iterator: %s", strerror(-err));
		return err;
	}
	/* a failure turns real addresses off, with a warning: nothing else depends on them */
	(void) sm_transparent_setup(c->transparent_mark, c->transparent_table, c->state_dir);
	return redirect_sync(d);
}

static long long map_entries(struct bpf_map *map)
{
	/* the largest key of our maps that have a fill level (enroll_paths') */
	uint8_t key[sizeof(struct sm_enroll_key)], next[sizeof(struct sm_enroll_key)];
	enum bpf_map_type t = bpf_map__type(map);
	long long n = 0, max = bpf_map__max_entries(map);
	void *prev = NULL;
	int fd = bpf_map__fd(map);

	/* arrays are always full (map-in-map slots too: each inner map is made to fit) */
	if (t == BPF_MAP_TYPE_RINGBUF || t == BPF_MAP_TYPE_SK_STORAGE || t == BPF_MAP_TYPE_ARRAY ||
	    t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_ARRAY_OF_MAPS ||
	    t == BPF_MAP_TYPE_HASH_OF_MAPS || bpf_map__key_size(map) > sizeof(key) || max <= 0)
		return -1;
	/* a walk that restarts (its key deleted meanwhile) stops at max: never over full */
	while (n < max && bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, bpf_map__key_size(map));
		prev = key;
		n++;
	}
	return n;
}

void sm_datapath_map_fill(struct sm_daemon *d, void (*fn)(const struct sm_map_fill *f, void *arg),
			  void *arg)
{
	struct bpf_map *map;

	bpf_object__for_each_map (map, d->skel->obj) {
		struct sm_map_fill f = {
			.name = bpf_map__name(map),
			.type = bpf_map__type(map),
			.max_entries = bpf_map__max_entries(map),
		};

		if (!bpf_map__is_pinned(map))
			continue;
		f.entries = map_entries(map);
		fn(&f, arg);
	}
}

void sm_datapath_drive_iter(struct bpf_link *link, const char *what)
{
	char buf[256];
	int fd = bpf_iter_create(bpf_link__fd(link));

	if (fd < 0) {
		pr_warn_limited("cannot run the %s iterator: %s", what, strerror(errno));
		return;
	}
	/* the programs print nothing; reading drives them over every TCP socket */
	for (int i = 0; i < 1024 && read(fd, buf, sizeof(buf)) > 0; i++)
		;
	close(fd);
}

void sm_datapath_run_iter(struct sm_daemon *d)
{
	if (d->iter_link)
		sm_datapath_drive_iter(d->iter_link, "flow-update");
}

int sm_datapath_counters(struct sm_daemon *d, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals;
	int fd, err = 0;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	vals = calloc((size_t) ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	fd = bpf_map__fd(d->skel->maps.counters);
	for (uint32_t k = 0; k < SM_CNT_MAX; k++) {
		out[k] = 0;
		if (bpf_map_lookup_elem(fd, &k, vals)) {
			err = -errno;
			break;
		}
		for (int c = 0; c < ncpu; c++)
			out[k] += vals[c];
	}
	free(vals);
	return err;
}

/* Our handles on the links go; the links stay pinned and attached. */
void sm_datapath_release_links(struct sm_daemon *d)
{
	for (unsigned int i = 0; i < d->natt; i++)
		bpf_link__destroy(d->att[i].link);
	free(d->att);
	d->att = NULL;
	d->natt = 0;
	bpf_link__destroy(d->iter_link);
	d->iter_link = NULL;
}

/*
 * Links stay pinned (and attached): the next daemon adopts them. So does the
 * routing when the other daemon of an upgrade goes on using it (keep_routing).
 */
void sm_datapath_close(struct sm_daemon *d, bool keep_routing)
{
	if (keep_routing)
		sm_transparent_leave();
	else
		sm_transparent_teardown();
	sm_datapath_release_links(d);
	sockmesh_bpf__destroy(d->skel);
	d->skel = NULL;
}

static int remove_dir_entries(const char *dir, bool detach_links)
{
	char path[PATH_MAX + 256];
	struct dirent *de;
	int n = 0;
	DIR *dp = opendir(dir);

	if (!dp)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dp))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (detach_links) {
			/* force the detach even if a running daemon still holds the link */
			int fd = bpf_obj_get(path);

			if (fd >= 0) {
				bpf_link_detach(fd);
				close(fd);
			}
		}
		if (unlink(path) == 0)
			n++;
		else
			pr_warn("cannot remove %s: %s", path, strerror(errno));
	}
	closedir(dp);
	rmdir(dir);
	return n;
}

int sm_datapath_cleanup(const char *bpffs)
{
	char maps[PATH_MAX], links[PATH_MAX], progs[PATH_MAX], pin[PATH_MAX];
	int nl, nm, np, map_fd, prog_fd;

	if (access(bpffs, F_OK) < 0) {
		pr_info("nothing to clean up: %s does not exist", bpffs);
		return 0;
	}
	snprintf(maps, sizeof(maps), "%s/maps", bpffs);
	snprintf(links, sizeof(links), "%s/links", bpffs);
	snprintf(progs, sizeof(progs), "%s/progs", bpffs);

	snprintf(pin, sizeof(pin), "%s/sk_msg_redirect", progs);
	prog_fd = bpf_obj_get(pin);
	snprintf(pin, sizeof(pin), "%s/sock_pairs", maps);
	map_fd = bpf_obj_get(pin);
	if (prog_fd >= 0 && map_fd >= 0)
		bpf_prog_detach2(prog_fd, map_fd, BPF_SK_MSG_VERDICT);
	if (prog_fd >= 0)
		close(prog_fd);
	if (map_fd >= 0)
		close(map_fd);

	nl = remove_dir_entries(links, true);
	np = remove_dir_entries(progs, false);
	nm = remove_dir_entries(maps, false);
	if (rmdir(bpffs) < 0 && errno != ENOENT) {
		pr_err("cannot remove %s: %s (something else lives there; remove it by hand)",
		       bpffs, strerror(errno));
		return -errno;
	}
	pr_info("cleaned up %s: %d links detached, %d programs and %d maps unpinned", bpffs,
		nl < 0 ? 0 : nl, np < 0 ? 0 : np, nm < 0 ? 0 : nm);
	return 0;
}
