// SPDX-License-Identifier: Apache-2.0
/*
 * sockmeshd: the node daemon. Reads config and catalog, loads and attaches
 * (or adopts) the kernel programs, fills their maps, runs the outbound
 * capture listener, exports flow records and serves the control socket, all
 * on one event loop. `--cleanup` removes everything it ever attached.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "catalog.h"
#include "cluster.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "datapath.h"
#include "enrollment.h"
#include "evloop.h"
#include "flowacct.h"
#include "flowstream.h"
#include "handoff.h"
#include "hbone.h"
#include "intercept.h"
#include "log.h"
#include "metrics.h"
#include "pathlock.h"
#include "policyd.h"
#include "privileges.h"
#include "proxy.h"
#include "reload.h"
#include "sdnotify.h"
#include "tunnelfacts.h"
#include "util.h"
#include "worker.h"
#include "workloads.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

static const char usage_text[] =
	"Usage: sockmeshd [OPTIONS]\n"
	"\n"
	"The sockmesh node daemon: attaches the eBPF programs to this node's workloads,\n"
	"captures their cross-node connections, and exports flow records.\n"
	"\n"
	"Options (each also a config key, see docs/configuration.md):\n"
	"  -c, --config FILE           YAML config (default " SM_DEFAULT_CONFIG_PATH ")\n"
	"  -n, --node NAME             this node's name in the catalog            (node)\n"
	"  -C, --catalog FILE          catalog file                               (catalog)\n"
	"      --bpffs DIR             pin directory                              (paths.bpffs)\n"
	"      --cgroup-root DIR       cgroup v2 mount                            "
	"(paths.cgroup_root)\n"
	"      --daemon-cgroup DIR     the daemon's own cgroup                    "
	"(paths.daemon_cgroup)\n"
	"      --enrollment-root DIR   the cgroup holding this node's workloads   "
	"(paths.enrollment_root)\n"
	"  -S, --control-socket PATH   control socket                             "
	"(paths.control_socket)\n"
	"      --state-dir DIR         state directory                            "
	"(paths.state_dir)\n"
	"      --outbound ADDR:PORT    IPv4 outbound capture listener             "
	"(listeners.outbound)\n"
	"      --outbound6 ADDR:PORT   IPv6 outbound capture listener             "
	"(listeners.outbound6)\n"
	"      --admin ADDR:PORT       admin HTTP (metrics, health), \"\" = off     "
	"(listeners.admin)\n"
	"      --flow-log FILE         write flow records to FILE                 (flowlog.file)\n"
	"      --flow-stdout           write flow records to stdout               "
	"(flowlog.stdout)\n"
	"      --redirect              sk_msg redirect (same-node, tunnel hops)   "
	"(datapath.redirect)\n"
	"      --flow-update-interval SEC  seconds between conn_update records    "
	"(datapath.flow_update_interval)\n"
	"      --workers N             worker threads, 0 = one per CPU            "
	"(listeners.workers)\n"
	"      --set KEY=VALUE         set any config key (repeatable)\n"
	"      --check                 validate config and catalog, attach nothing, exit\n"
	"      --cleanup               detach and unpin everything under the bpffs directory, "
	"exit\n"
	"  -v, --verbose               more logging (repeat for libbpf debug)\n"
	"  -q, --quiet                 warnings and errors only\n"
	"  -h, --help                  this text\n"
	"      --version               print the version\n"
	"\n"
	"Exit status: 0 ok, 1 runtime failure, 2 bad usage, config or catalog.\n"
	"\n"
	"Cluster mode: with cluster.etcd.endpoints set (--set or the config file), the\n"
	"catalog and the policies come from etcd, not from files (docs/cluster.md).\n"
	"\n"
	"Examples:\n"
	"  sockmeshd -c /etc/sockmesh/sockmesh.yaml\n"
	"  sockmeshd --node node1 --catalog catalog.yaml --flow-log /var/log/sockmesh/flows.json\n"
	"  sockmeshd --check -c /etc/sockmesh/sockmesh.yaml\n"
	"  sockmeshd --cleanup --bpffs /sys/fs/bpf/sockmesh\n";

enum {
	OPT_BPFFS = 256,
	OPT_CGROUP_ROOT,
	OPT_DAEMON_CGROUP,
	OPT_ENROLL_ROOT,
	OPT_STATE_DIR,
	OPT_OUTBOUND,
	OPT_OUTBOUND6,
	OPT_FLOW_LOG,
	OPT_FLOW_STDOUT,
	OPT_REDIRECT,
	OPT_UPDATE_INTERVAL,
	OPT_WORKERS,
	OPT_SET,
	OPT_CHECK,
	OPT_CLEANUP,
	OPT_VERSION,
	OPT_ADMIN,
};

static const struct option long_opts[] = {
	{"config", required_argument, NULL, 'c'},
	{"node", required_argument, NULL, 'n'},
	{"catalog", required_argument, NULL, 'C'},
	{"bpffs", required_argument, NULL, OPT_BPFFS},
	{"cgroup-root", required_argument, NULL, OPT_CGROUP_ROOT},
	{"daemon-cgroup", required_argument, NULL, OPT_DAEMON_CGROUP},
	{"enrollment-root", required_argument, NULL, OPT_ENROLL_ROOT},
	{"control-socket", required_argument, NULL, 'S'},
	{"state-dir", required_argument, NULL, OPT_STATE_DIR},
	{"outbound", required_argument, NULL, OPT_OUTBOUND},
	{"outbound6", required_argument, NULL, OPT_OUTBOUND6},
	{"flow-log", required_argument, NULL, OPT_FLOW_LOG},
	{"flow-stdout", no_argument, NULL, OPT_FLOW_STDOUT},
	{"redirect", no_argument, NULL, OPT_REDIRECT},
	{"flow-update-interval", required_argument, NULL, OPT_UPDATE_INTERVAL},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"set", required_argument, NULL, OPT_SET},
	{"check", no_argument, NULL, OPT_CHECK},
	{"cleanup", no_argument, NULL, OPT_CLEANUP},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{"admin", required_argument, NULL, OPT_ADMIN},
	{NULL, 0, NULL, 0},
};

/* A flag → its config key; flags without a value set "true". */
static const char *flag_key(int opt)
{
	switch (opt) {
	case 'n':
		return "node";
	case 'C':
		return "catalog";
	case 'S':
		return "paths.control_socket";
	case OPT_BPFFS:
		return "paths.bpffs";
	case OPT_CGROUP_ROOT:
		return "paths.cgroup_root";
	case OPT_DAEMON_CGROUP:
		return "paths.daemon_cgroup";
	case OPT_ENROLL_ROOT:
		return "paths.enrollment_root";
	case OPT_STATE_DIR:
		return "paths.state_dir";
	case OPT_OUTBOUND:
		return "listeners.outbound";
	case OPT_OUTBOUND6:
		return "listeners.outbound6";
	case OPT_FLOW_LOG:
		return "flowlog.file";
	case OPT_FLOW_STDOUT:
		return "flowlog.stdout";
	case OPT_REDIRECT:
		return "datapath.redirect";
	case OPT_UPDATE_INTERVAL:
		return "datapath.flow_update_interval";
	case OPT_WORKERS:
		return "listeners.workers";
	case OPT_ADMIN:
		return "listeners.admin";
	default:
		return NULL;
	}
}

struct args {
	const char *config;
	bool config_named;
	bool check, cleanup;
	int verbose; /* -1 quiet */
	/* flag settings, applied over the file in command-line order */
	struct {
		const char *key;
		char *value;
	} set[64];
	int nset;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	int opt;

	memset(a, 0, sizeof(*a));
	a->config = SM_DEFAULT_CONFIG_PATH;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:n:C:S:vqh", long_opts, NULL)) != -1) {
		const char *key = flag_key(opt);

		if (key) {
			if (a->nset == (int) SM_ARRAY_SIZE(a->set)) {
				fprintf(stderr,
					"sockmeshd: too many settings on the command line\n");
				return -EINVAL;
			}
			a->set[a->nset].key = key;
			a->set[a->nset++].value = optarg ? optarg : (char *) "true";
			continue;
		}
		switch (opt) {
		case 'c':
			a->config = optarg;
			a->config_named = true;
			break;
		case OPT_SET: {
			// --set is required_argument: getopt_long sets optarg or returns ':'
			// NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
			char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg) {
				fprintf(stderr,
					"sockmeshd: --set %s: expected KEY=VALUE, e.g. --set "
					"datapath.redirect=true\n",
					optarg);
				return -EINVAL;
			}
			if (a->nset == (int) SM_ARRAY_SIZE(a->set))
				return -EINVAL;
			*eq = '\0';
			a->set[a->nset].key = optarg;
			a->set[a->nset++].value = eq + 1;
			break;
		}
		case OPT_CHECK:
			a->check = true;
			break;
		case OPT_CLEANUP:
			a->cleanup = true;
			break;
		case 'v':
			if (a->verbose >= 0)
				a->verbose++;
			break;
		case 'q':
			a->verbose = -1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case OPT_VERSION:
			printf("sockmeshd %s\n", SOCKMESH_VERSION);
			exit(0);
		case ':':
			fprintf(stderr,
				"sockmeshd: option %s needs a value (see sockmeshd --help)\n",
				argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "sockmeshd: unknown option %s (see sockmeshd --help)\n",
				argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sockmeshd: unexpected argument '%s' (see sockmeshd --help)\n",
			argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* Defaults, then the file, then flags. err->msg names file, line and fix. */
static int load_config(struct sm_config *cfg, const struct args *a, struct sm_error *err)
{
	char msg[sizeof(err->msg)];
	int rc;

	sm_config_defaults(cfg);
	rc = sm_config_load(cfg, a->config, err);
	if (rc == -ENOENT && !a->config_named) {
		pr_debug("no config file %s: built-in defaults", a->config);
	} else if (rc) {
		return rc;
	}
	for (int i = 0; i < a->nset; i++) {
		rc = sm_config_set(cfg, a->set[i].key, a->set[i].value, err);
		if (rc) {
			sm_strlcpy(msg, err->msg, sizeof(msg));
			sm_error_set(err, "command line: %s", msg);
			return rc;
		}
	}
	if (a->verbose > 0)
		cfg->log_level = a->verbose > 1 ? SM_LOG_DEBUG + 1 : SM_LOG_DEBUG;
	else if (a->verbose < 0)
		cfg->log_level = SM_LOG_WARN;
	return 0;
}

/* The command line, for reading the config again on SIGHUP. */
static const struct args *daemon_args;
/* ... and as given, for an upgrade's successor (handoff.c). */
static char **daemon_argv;

/*
 * SIGHUP, sinks: read the config file again (with the same flags over it)
 * and apply its flowlog section. A file that does not load, or a flowlog
 * section the sinks refuse, changes nothing; other sections' changes are
 * named and wait for a restart.
 */
static void reload_flowlog(struct sm_daemon *d)
{
	struct sm_config *next = malloc(sizeof(*next));
	struct sm_error err = {{0}};
	char changed[256];

	if (!next)
		return;
	if (load_config(next, daemon_args, &err)) {
		pr_warn("SIGHUP: %s; keeping the current flowlog settings", err.msg);
		goto free_next;
	}
	if (sm_config_changed_keys(&d->cfg, next, "flowlog", changed, sizeof(changed)))
		pr_warn("SIGHUP: %s changed %s: not applied (a restart applies them)",
			daemon_args->config, changed);
	if (!sm_config_changed_keys(&d->cfg, next, NULL, changed, sizeof(changed)))
		goto free_next;
	if (sm_flowexp_reconfigure(d, next, &err)) {
		pr_warn("SIGHUP: flowlog: %s; keeping the current flowlog settings", err.msg);
		goto free_next;
	}
	sm_config_copy_section(&d->cfg, next, "flowlog");
	pr_info("SIGHUP: flowlog settings reloaded");
free_next:
	free(next);
}

/* The catalog, this node in it, the cgroup v2 mount and the daemon's cgroup. */
static int resolve_node(struct sm_daemon *d, bool check_only)
{
	struct sm_error err = {{0}};
	char line[PATH_MAX + 8];
	FILE *f;
	int rc;

	if (!d->cfg.node[0]) {
		pr_err("no node name: set `node:` in the config or pass --node NAME (a node of the "
		       "catalog)");
		return -EINVAL;
	}
	if (sm_cluster_enabled(&d->cfg)) {
		/* the catalog from etcd (or the state saved from it), not from a file */
		d->cluster_mode = true;
		rc = sm_cluster_prepare(d, check_only);
		if (rc)
			return rc == -EINVAL ? -EINVAL : -EHOSTUNREACH;
		if (check_only)
			return 0;
	} else {
		if (!d->cfg.catalog[0]) {
			pr_err("no catalog: set `catalog:` in the config or pass --catalog FILE");
			return -EINVAL;
		}
		rc = sm_catalog_load(&d->cat, d->cfg.catalog, &err);
		if (rc) {
			pr_err("%s", err.msg);
			return -EINVAL; /* a missing or bad catalog is a usage error (exit 2) */
		}
	}
	d->node_idx = sm_catalog_node_index(&d->cat, d->cfg.node);
	if (d->node_idx < 0) {
		if (d->cluster_mode)
			pr_err("node '%s' is not in the cluster catalog (add it: sockmesh catalog "
			       "apply, under nodes:, or fix --node)",
			       d->cfg.node);
		else
			pr_err("%s: node '%s' is not in the catalog (add it under nodes: or fix "
			       "--node)",
			       d->cfg.catalog, d->cfg.node);
		return -EINVAL;
	}
	d->wl = sm_workloads_new(&d->cat);
	if (!d->wl)
		return -errno;

	if (d->cfg.cgroup_root[0]) {
		sm_strlcpy(d->cgroup_root, d->cfg.cgroup_root, sizeof(d->cgroup_root));
	} else if (sm_find_cgroup2_mount(d->cgroup_root, sizeof(d->cgroup_root))) {
		pr_err("no cgroup v2 mount in /proc/self/mountinfo (mount one: mount -t cgroup2 "
		       "none /sys/fs/cgroup, or set paths.cgroup_root; under `ip netns exec`, "
		       "which mounts a fresh /sys, start it with `nsenter --net=/run/netns/NAME` "
		       "instead)");
		return -ENOENT;
	}

	if (check_only)
		return 0; /* where the daemon runs matters only when it attaches */
	if (d->cfg.daemon_cgroup[0]) {
		sm_strlcpy(d->daemon_cgroup, d->cfg.daemon_cgroup, sizeof(d->daemon_cgroup));
		return 0;
	}
	/* "0::/path" is our cgroup v2 membership */
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -errno;
	rc = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line + 3, "/") == 0) {
			pr_err("sockmeshd runs in the root cgroup, where it will not attach "
			       "programs; run "
			       "it in its own cgroup (e.g. a systemd unit) or set "
			       "paths.daemon_cgroup");
			rc = -EPERM;
			break;
		}
		snprintf(d->daemon_cgroup, sizeof(d->daemon_cgroup), "%s%s", d->cgroup_root,
			 line + 3);
		rc = 0;
		break;
	}
	fclose(f);
	if (rc == -ENOENT)
		pr_err("cannot find this process's cgroup v2 membership in /proc/self/cgroup");
	return rc;
}

/*
 * The enrollment root (paths.enrollment_root, else the parent of the daemon's
 * cgroup: system.slice for a systemd service), and that this node's workloads
 * can be enrolled under it. With --check and no root configured there is
 * nothing to check against (the daemon's cgroup is not known then).
 */
static int resolve_enrollment(struct sm_daemon *d, bool check_only)
{
	struct sm_error err = {{0}};
	const char *rel;
	char *slash;
	size_t n;

	if (d->cfg.enrollment_root[0]) {
		sm_strlcpy(d->enroll_root, d->cfg.enrollment_root, sizeof(d->enroll_root));
	} else if (d->daemon_cgroup[0]) {
		sm_strlcpy(d->enroll_root, d->daemon_cgroup, sizeof(d->enroll_root));
		slash = strrchr(d->enroll_root, '/');
		if (slash)
			*slash = '\0';
	} else {
		return 0;
	}
	for (n = strlen(d->enroll_root); n > 1 && d->enroll_root[n - 1] == '/'; n--)
		d->enroll_root[n - 1] = '\0';
	rel = sm_enroll_relative(d->cgroup_root, d->enroll_root);
	if (!rel) {
		pr_err("the enrollment root %s is %s; set paths.enrollment_root "
		       "(--enrollment-root) "
		       "to the cgroup that holds this node's workloads, e.g. %s/system.slice%s%s",
		       d->enroll_root,
		       strcmp(d->enroll_root, d->cgroup_root) == 0
			       ? "the cgroup v2 root"
			       : "not below the cgroup v2 mount",
		       d->cgroup_root,
		       d->cfg.enrollment_root[0] ? ""
						 : " (by default it is the parent of the "
						   "daemon's own cgroup, ",
		       d->cfg.enrollment_root[0] ? "" : d->daemon_cgroup);
		return -EINVAL;
	}
	if (sm_intercept_check(d, &d->cat, d->node_idx, &err)) {
		pr_err("%s: %s", d->cfg.catalog, err.msg);
		return -EINVAL;
	}
	if (check_only)
		return 0;
	d->enroll_root_id = sm_cgroup_id_of(d->enroll_root);
	if (!d->enroll_root_id) {
		pr_err("the enrollment root %s does not exist (create that cgroup, or set "
		       "paths.enrollment_root)",
		       d->enroll_root);
		return -ENOENT;
	}
	pr_info("enrollment root %s (cgroup id %llu)", d->enroll_root,
		(unsigned long long) d->enroll_root_id);
	return 0;
}

/*
 * One daemon per node, and nothing touched before that is sure: a lock on the
 * state directory, the bpffs directory and the enrollment root, each held
 * until the process exits (however it exits). A second sockmeshd that shares
 * any of them, e.g. started with the same --bpffs, stops here and names the
 * one that runs. Making the two directories first, if missing, changes
 * nothing a running daemon has.
 */
static int lock_instance(struct sm_daemon *d)
{
	const struct {
		const char *path, *what;
	} locks[] = {
		{d->cfg.state_dir, "state directory (paths.state_dir)"},
		{d->cfg.bpffs, "bpffs directory (paths.bpffs)"},
		{d->enroll_root, "enrollment root (paths.enrollment_root)"},
	};
	pid_t holder;
	int err;

	_Static_assert(SM_ARRAY_SIZE(locks) == SM_ARRAY_SIZE(d->lock_fds), "one fd per lock");
	err = sm_mkdir_p(d->cfg.state_dir, 0700);
	if (err) {
		pr_err("cannot create the state directory %s: %s (set paths.state_dir)",
		       d->cfg.state_dir, strerror(-err));
		return err;
	}
	err = sm_datapath_prepare(d->cfg.bpffs);
	if (err)
		return err;
	for (size_t i = 0; i < SM_ARRAY_SIZE(locks); i++) {
		/* an upgrade: the predecessor's lock, held all along (the same open file) */
		err = sm_handoff_take_lock(locks[i].path);
		if (err < 0)
			err = sm_path_lock(locks[i].path, &holder);
		if (err >= 0) {
			d->lock_fds[i] = err;
			continue;
		}
		if (err == -EWOULDBLOCK && holder > 0)
			pr_err("another sockmeshd (pid %d) runs with the %s %s; stop it first, or "
			       "give this one its own paths (one daemon per node)",
			       (int) holder, locks[i].what, locks[i].path);
		else if (err == -EWOULDBLOCK)
			pr_err("another process holds the lock on the %s %s (one daemon per node; "
			       "see /proc/locks)",
			       locks[i].what, locks[i].path);
		else
			pr_err("cannot lock the %s %s: %s", locks[i].what, locks[i].path,
			       strerror(-err));
		return err;
	}
	return 0;
}

static time_t drain_deadline;
/*
 * This process is the service's main PID: systemd (NotifyAccess=main) takes
 * its notifications. An upgrade's successor becomes it when the predecessor
 * sends MAINPID=; the predecessor stops being it then (d->handed_off).
 */
static bool main_pid = true;

/* The service manager's READY=1: at the start and when a reload has ended. */
static void notify_ready(struct sm_daemon *d)
{
	char status[256], etcd[64] = "";
	struct sm_cluster_info ci;

	sm_cluster_info(d, &ci);
	if (ci.enabled)
		snprintf(etcd, sizeof(etcd), ", etcd revision %lld", (long long) ci.revision);
	snprintf(status, sizeof(status), "ready: %s, %u programs, policy revision %u%s, %s",
		 d->cfg.node, d->natt, sm_policy_revision(d), etcd,
		 d->hbone ? "tunnel credentials loaded" : "no tunnel (plaintext)");
	sm_sd_ready(status);
}

/* Connections the daemon itself carries: plaintext relays and tunnel streams. */
static uint64_t active_connections(const struct sm_daemon *d)
{
	struct sm_proxy_stats ps;
	struct sm_hbone_stats hs;

	sm_proxy_stats(d, &ps);
	sm_hbone_stats(d, &hs);
	return ps.active + hs.streams_open;
}

static void on_tick(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;

	(void) ev;
	(void) events;
	/* the main loop runs: this beat proves it (after an upgrade, the successor's do) */
	if (main_pid && !d->handed_off)
		sm_sd_watchdog();
	/* losses first: the iterator can take long while the ring overflows */
	sm_flowexp_check_lost(d);
	/* its events are the ring's: the process that reads them makes them (an upgrade) */
	if (sm_flowexp_owns_ring(d))
		sm_datapath_run_iter(d);
	sm_hbone_tick(d); /* credential rotation; connections are the workers' */
	sm_workloads_refresh(d->wl, &d->cat, d->node_idx,
			     d->cgroup_root); /* the cgroup ids status and flow records show */
	if (!d->facts_swept && !sm_handoff_successor())
		sm_tunnel_facts_sweep(d);
	if (!d->draining)
		return;
	if (active_connections(d) == 0 || time(NULL) >= drain_deadline) {
		if (active_connections(d))
			pr_warn("drain deadline reached: closing %llu relayed or tunnelled "
				"connections",
				(unsigned long long) active_connections(d));
		sm_evloop_stop(loop);
	}
}

/* Stop accepting and let the relays and tunnel streams finish, up to daemon.drain_timeout. */
static void start_drain(struct sm_daemon *d)
{
	d->draining = true;
	d->ready = false;
	drain_deadline = time(NULL) + d->cfg.drain_timeout;
	sm_workers_post(d, SM_WCMD_STOP_ACCEPTING);
	if (active_connections(d) == 0)
		sm_evloop_stop(d->loop);
}

/* Successor of an upgrade: the ring buffer and the main PID are ours now. */
static void took_over(struct sm_daemon *d)
{
	if (sm_flowexp_take_ring(d))
		pr_err("upgrade: flow events are not read (see above); restart the daemon");
	main_pid = true;
	notify_ready(d);
	sm_sd_watchdog();
}

static const struct sm_handoff_ops handoff_ops = {.drain = start_drain, .took_over = took_over};

static void on_signal(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct signalfd_siginfo si;

	(void) events;
	(void) ev;
	if (read(sm_ev_fd(ev), &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGHUP) {
		sm_sd_reloading();
		reload_flowlog(d);
		/* read on a thread, applied here when read: READY=1 comes then */
		if (!sm_reload_request(d) && !d->draining)
			notify_ready(d);
		return;
	}
	if (si.ssi_signo == SIGUSR2) {
		sm_handoff_begin(d);
		return;
	}
	if (d->draining) {
		sm_evloop_stop(loop);
		return;
	}
	pr_info("%s: draining (no new connections; relays get %u s, daemon.drain_timeout)",
		strsignal((int) si.ssi_signo), d->cfg.drain_timeout);
	sm_sd_stopping();
	start_drain(d);
}

/* What every worker runs: the tunnel, then the outbound side that hands it connections. */
static int add_worker_parts(struct sm_daemon *d)
{
	int err = 0;

	if (d->hbone)
		err = sm_workers_add_part(d, &sm_hbone_worker_part);
	return err ?: sm_workers_add_part(d, &sm_proxy_worker_part);
}

static int run(struct sm_daemon *d)
{
	struct sm_ev *sig_ev = NULL, *tick = NULL;
	sigset_t mask;
	int sfd = -1, err;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	d->loop = sm_evloop_new();
	if (!d->loop)
		return -errno;
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		err = -errno;
		goto free_loop;
	}
	sig_ev = sm_evloop_add(d->loop, sfd, EPOLLIN, on_signal, d);
	/* before anything is loaded or dropped: the spawner keeps the start's privileges */
	err = sm_handoff_start(d, daemon_argv, &handoff_ops);
	if (err)
		goto close_sig;
	/* the admin port first: a taken port stops the start before anything is loaded */
	err = sm_metrics_start(d);
	if (err)
		goto close_sig;

	err = sm_datapath_open(d);
	if (err)
		goto close_sig;
	/* maps first (services before workloads), then programs: nothing runs half-configured */
	sm_workloads_refresh(d->wl, &d->cat, d->node_idx, d->cgroup_root);
	d->nworkers = sm_workers_count(d); /* the credential sets hold an SSL_CTX per worker */
	/* the policy too: a restored policy is in force before any program is attached */
	/* privileges drop once attached and before the first thread (sinks, workers, HTTP) */
	err = sm_tunnel_facts_start(d) ?: sm_intercept_sync(d) ?: sm_policy_start(d) ?:
	      sm_cluster_restore_policy(d) ?: sm_datapath_attach(d) ?:
	      sm_privileges_drop(d) ?: sm_flowstream_start(d) ?: sm_flowexp_start(d) ?:
	      sm_hbone_start(d) ?: add_worker_parts(d) ?: sm_workers_start(d) ?: sm_control_start(d) ?:
	      sm_reload_start(d, notify_ready) ?: sm_metrics_serve(d);
	if (err)
		goto stop;
	tick = sm_evloop_timer(d->loop, 1000, on_tick, d);
	if (!tick) {
		err = -errno;
		goto stop;
	}
	d->ready = true;
	/* registers as ready: only now that everything above is in place */
	err = sm_cluster_start(d);
	if (err)
		goto stop;
	pr_info("ready: node %s, %u programs attached (workloads enrolled below %s), control "
		"socket %s",
		d->cfg.node, d->natt, d->enroll_root, d->cfg.control_socket);
	/* an upgrade's successor: READY=1 once the predecessor made it the main PID */
	if (sm_handoff_successor()) {
		main_pid = false;
		err = sm_handoff_announce(d);
	} else {
		notify_ready(d);
		sm_sd_watchdog(); /* the first beat now: the next tick is a second away */
	}
	if (!err)
		err = sm_evloop_run(d->loop);
stop:
	sm_handoff_stop(d);
	sm_cluster_stop(d); /* a state being read is dropped; the registration goes */
	sm_evloop_del(d->loop, tick);
	sm_reload_stop(d);  /* a catalog being read is dropped; nothing is half-applied */
	sm_metrics_stop(d); /* its thread reads the workers' counters and the maps */
	sm_workers_stop(d);
	sm_control_stop(d);
	sm_hbone_free(d);
	sm_flowexp_stop(d);
	sm_flowstream_stop(d); /* after every publisher */
	sm_policy_stop(d);
	/*
	 * An upgrade's two daemons share the routing of real addresses: the one
	 * that handed over, or a successor that never took over, leaves it.
	 */
	sm_datapath_close(d, d->handed_off || sm_handoff_successor());
close_sig:
	sm_metrics_free(d); /* after the last flow record, which it counts */
	sm_evloop_del(d->loop, sig_ev);
	close(sfd);
free_loop:
	sm_evloop_free(d->loop);
	return err;
}

/*
 * --cleanup, but never from under a running daemon: it holds the bpffs
 * directory's lock (lock_instance()), and so does this while it works.
 */
static int cleanup(const struct sm_config *c)
{
	pid_t holder;
	int fd = sm_path_lock(c->bpffs, &holder), err;

	if (fd == -EWOULDBLOCK) {
		pr_err("a running sockmeshd (pid %d) uses %s: stop it first (--cleanup would "
		       "detach its programs from under it)",
		       (int) holder, c->bpffs);
		return EXIT_RUNTIME;
	}
	err = sm_datapath_cleanup(c->bpffs);
	if (fd >= 0)
		close(fd);
	return err ? EXIT_RUNTIME : 0;
}

int main(int argc, char **argv)
{
	struct sm_daemon d = {
		.lock_fds = {-1, -1, -1},
		.pause_mu = PTHREAD_MUTEX_INITIALIZER,
		.pause_cv = PTHREAD_COND_INITIALIZER,
	};
	struct sm_error cfg_err = {{0}};
	struct args a;
	int err;

	sm_log_set_ident("sockmeshd");
	sm_log_route_libbpf();
	/* the descriptors an upgrade handed over: before anything opens one */
	if (sm_handoff_import())
		return EXIT_RUNTIME;
	/* as given: parse_args() cuts --set KEY=VALUE apart in place */
	daemon_argv = calloc((size_t) argc + 1, sizeof(char *));
	for (int i = 0; daemon_argv && i < argc; i++)
		daemon_argv[i] = strdup(argv[i]);
	if (parse_args(argc, argv, &a))
		return EXIT_USAGE;
	if (load_config(&d.cfg, &a, &cfg_err)) {
		pr_err("%s", cfg_err.msg);
		return EXIT_USAGE;
	}
	daemon_args = &a;
	sm_log_set_level(d.cfg.log_level);

	if (a.cleanup)
		return cleanup(&d.cfg);

	err = resolve_node(&d, a.check) ?: resolve_enrollment(&d, a.check);
	if (err) {
		sm_catalog_free(&d.cat);
		sm_workloads_free(d.wl);
		sm_cluster_free(&d);
		return err == -EPERM || err == -ENOENT || err == -EHOSTUNREACH ? EXIT_RUNTIME
									       : EXIT_USAGE;
	}
	if (a.check && d.cluster_mode) {
		printf("config is valid: node %s, cluster mode (the catalog and policies come from "
		       "etcd, %u endpoints)\n",
		       d.cfg.node, d.cfg.etcd_endpoints.n);
		sm_cluster_free(&d);
		return 0;
	}
	if (a.check) {
		printf("config and catalog are valid: node %s, %u nodes, %u workloads, %u "
		       "services\n",
		       d.cfg.node, d.cat.nnodes, d.cat.nworkloads, d.cat.nservices);
		sm_catalog_free(&d.cat);
		sm_workloads_free(d.wl);
		return 0;
	}
	err = lock_instance(&d);
	if (err) {
		sm_catalog_free(&d.cat);
		sm_workloads_free(d.wl);
		return EXIT_RUNTIME;
	}
	d.started = time(NULL);
	sm_raise_fd_limit();
	d.mono_to_real_ns = sm_mono_to_real_offset_ns();
	err = run(&d);
	sm_cluster_free(&d);
	sm_catalog_free(&d.cat);
	sm_workloads_free(d.wl);
	if (err) {
		pr_err("exiting: %s", strerror(-err));
		return EXIT_RUNTIME;
	}
	pr_info("stopped");
	return 0;
}
