/* SPDX-License-Identifier: Apache-2.0 */
/*
 * datapath.c: find cgroup v2 and bpffs; load the programs, attach or adopt
 * them, read their counters and maps; clean up. A leaf: it calls no other
 * module of the daemon.
 */
#ifndef SOCKMESHD_DATAPATH_H
#define SOCKMESHD_DATAPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bpf_link;
struct bpf_map;
struct sm_daemon;

/* The cgroup v2 mount point (from /proc/self/mountinfo) into buf. 0 or -errno. */
int sm_find_cgroup2_mount(char *buf, size_t len);
/* The cgroup id of the cgroup directory at path (its inode number), or 0 when there is none. */
uint64_t sm_cgroup_id_of(const char *path);
/* Mount bpffs on /sys/fs/bpf if nothing is there, and make dir (on bpffs). 0 or -errno. */
int sm_datapath_prepare(const char *dir);
/* Make the pin subdirectories and load the programs (after sm_datapath_prepare()). */
int sm_datapath_open(struct sm_daemon *d);
/*
 * Attach (or adopt) the programs: the workload programs once, to the
 * enrollment root, and the daemon's own two to its cgroup. Call after
 * sm_intercept_sync(), so no program runs before the maps know the catalog.
 */
int sm_datapath_attach(struct sm_daemon *d);
/* Drop the daemon's link handles; the links stay pinned and attached. */
void sm_datapath_release_links(struct sm_daemon *d);
/*
 * Close the skeleton; the links stay pinned. keep_routing: leave the real
 * addresses' routing in place for the other daemon of an upgrade.
 */
void sm_datapath_close(struct sm_daemon *d, bool keep_routing);
/* Detach and unpin everything under a bpffs directory. 0 or -errno. */
int sm_datapath_cleanup(const char *bpffs);
/* Sum a per-CPU counter array into out[SM_CNT_MAX]. 0 or -errno. */
int sm_datapath_counters(struct sm_daemon *d, uint64_t *out);
/* One pinned map of the loaded programs and how full it is. */
struct sm_map_fill {
	const char *name;  /* libbpf's: valid while the programs are loaded */
	unsigned int type; /* enum bpf_map_type */
	/*
	 * Entries of a map with a fill level (hash, LPM), by walking its keys,
	 * at most max_entries; -1 for the maps that have none (arrays, ring
	 * buffers, socket storage, map-in-map).
	 */
	long long entries;
	long long max_entries;
};
/*
 * Call fn for each pinned map (.rodata and the like are not), with its fill:
 * the one count `status` and the metrics' map pressure both show.
 */
void sm_datapath_map_fill(struct sm_daemon *d, void (*fn)(const struct sm_map_fill *f, void *arg),
			  void *arg);
/* Run the flow-update iterator once. */
void sm_datapath_run_iter(struct sm_daemon *d);
/* Create an iterator on link and read it to the end, which runs its program once. */
void sm_datapath_drive_iter(struct bpf_link *link, const char *what);

#endif /* SOCKMESHD_DATAPATH_H */
