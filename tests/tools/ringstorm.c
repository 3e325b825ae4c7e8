// SPDX-License-Identifier: Apache-2.0
/*
 * ringstorm: a flow-event storm for the integration tests. Loads
 * ringstorm.bpf.o (built next to this binary) against the flow_events and
 * counters maps a daemon pinned under BPFFS/maps, and runs its program again
 * and again for S seconds: far more events than the daemon's reader can
 * take, the overflow counted in ringbuf_reserve_fail as the datapath counts
 * its own. Real connections cannot outrun the reader on a small test
 * machine; this can, on any.
 *
 *   ringstorm --bpffs DIR [--seconds S]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "util.h"

#define STORM_MAX_SECONDS 3600

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Point the object's map at the daemon's pinned one. 0 or -errno. */
static int reuse_pinned(struct bpf_object *obj, const char *bpffs, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
	char path[PATH_MAX];
	int fd, err;

	if (!map)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/maps/%s", bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		err = -errno;
		pr_err("cannot open the pinned map %s: %s (is a daemon running on %s?)", path,
		       strerror(-err), bpffs);
		return err;
	}
	err = bpf_map__reuse_fd(map, fd);
	close(fd);
	if (err)
		pr_err("cannot use the pinned map %s: %s", path, strerror(-err));
	return err;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ringstorm --bpffs DIR [--seconds S]\n"
		   "Offer the flow_events ring buffer of the daemon whose maps are pinned\n"
		   "under DIR/maps far more events than it can read, for S seconds (default\n"
		   "5). Prints {\"ok\":true,\"runs\":N,\"events_offered\":N}.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bpffs", required_argument, NULL, 'b'},
		{"seconds", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char self[PATH_MAX], objpath[PATH_MAX + 32];
	const char *bpffs = NULL;
	uint64_t seconds = 5, runs = 0;
	struct bpf_object *obj;
	struct bpf_program *prog;
	int64_t end;
	ssize_t n;
	int c, err, rc = 1;

	sm_log_set_ident("ringstorm");
	while ((c = getopt_long(argc, argv, "b:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			bpffs = optarg;
			break;
		case 's':
			if (sm_parse_u64(optarg, 1, STORM_MAX_SECONDS, &seconds)) {
				pr_err("bad --seconds '%s': want 1..%d", optarg, STORM_MAX_SECONDS);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!bpffs || optind != argc) {
		pr_err("ringstorm needs --bpffs (and no other arguments)");
		usage(stderr);
		return 2;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		pr_err("cannot find this program's own path: %s", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	snprintf(objpath, sizeof(objpath), "%s/ringstorm.bpf.o", dirname(self));
	obj = bpf_object__open_file(objpath, NULL);
	if (!obj) {
		pr_err("cannot open %s: %s (build it: make)", objpath, strerror(errno));
		return 1;
	}
	err = reuse_pinned(obj, bpffs, "flow_events");
	err = err ?: reuse_pinned(obj, bpffs, "counters");
	if (err)
		goto close_obj;
	err = bpf_object__load(obj);
	if (err) {
		pr_err("cannot load %s: %s", objpath, strerror(-err));
		goto close_obj;
	}
	prog = bpf_object__find_program_by_name(obj, "ringstorm");
	if (!prog) {
		pr_err("%s has no program 'ringstorm'", objpath);
		goto close_obj;
	}
	end = now_ms() + (int64_t) seconds * 1000;
	while (now_ms() < end) {
		LIBBPF_OPTS(bpf_test_run_opts, topts);

		err = bpf_prog_test_run_opts(bpf_program__fd(prog), &topts);
		if (err) {
			pr_err("cannot run the storm program: %s", strerror(errno));
			goto close_obj;
		}
		runs++;
	}
	printf("{\"ok\":true,\"runs\":%" PRIu64 ",\"events_offered\":%" PRIu64 "}\n", runs,
	       runs * 4096);
	rc = 0;
close_obj:
	bpf_object__close(obj);
	return rc;
}
