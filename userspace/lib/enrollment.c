// SPDX-License-Identifier: Apache-2.0
/*
 * The enroll_paths map's contents, computed from the local workloads' paths
 * (enrollment.h). Node ids are a 64-bit FNV-1a hash of the parent's id and
 * the component's name, so a path has the same id in every daemon that
 * computes it, and a restarted daemon rewrites the map to the same keys. Ids
 * are made and followed only here and in the kernel: a cgroup's name is
 * compared whole, never hashed there, so no name can forge a path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "enrollment.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

uint64_t sm_enroll_node_id(uint64_t parent, const char *name, size_t len)
{
	uint64_t h = FNV_OFFSET;

	for (int i = 0; i < 8; i++) {
		h ^= (parent >> (8 * i)) & 0xff;
		h *= FNV_PRIME;
	}
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char) name[i];
		h *= FNV_PRIME;
	}
	return h ? h : 1; /* 0 is the enrollment root */
}

const char *sm_enroll_path_problem(const char *path)
{
	const char *seg = path;
	unsigned int depth = 0;

	if (!*path)
		return "it is the enrollment root itself";
	while (seg) {
		size_t len = strcspn(seg, "/");

		if (len == 0)
			return "it has an empty component ('//', or a '/' at either end)";
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return "it has a '.' or '..' component";
		if (len > SM_ENROLL_NAME_MAX)
			return "a component is longer than 246 bytes";
		if (++depth > SM_ENROLL_MAX_DEPTH)
			return "it is more than 16 levels below the enrollment root";
		seg = seg[len] ? seg + len + 1 : NULL;
	}
	return NULL;
}

const char *sm_enroll_relative(const char *root, const char *cgroup)
{
	size_t n = strlen(root);

	while (n > 1 && root[n - 1] == '/')
		n--;
	if (strncmp(root, cgroup, n) != 0 || cgroup[n] != '/')
		return NULL;
	while (cgroup[n] == '/')
		n++;
	return cgroup[n] ? cgroup + n : NULL;
}

/* One map entry while the tree is built, hashed by its key. */
struct enroll_ent {
	struct sm_enroll_key key;
	struct sm_enroll_node node;
	UT_hash_handle hh;
};

/* A node id given out, and the path it was given to: two paths, one id is refused. */
struct enroll_id {
	uint64_t id;
	char *path;
	UT_hash_handle hh;
};

struct enroll_build {
	struct enroll_ent *ents;
	struct enroll_id *ids;
};

static int claim_id(struct enroll_build *b, uint64_t id, const char *path, size_t len,
		    struct sm_error *err)
{
	struct enroll_id *e = NULL;

	HASH_FIND(hh, b->ids, &id, sizeof(id), e);
	if (e) {
		if (strlen(e->path) == len && memcmp(e->path, path, len) == 0)
			return 0;
		sm_error_set(err,
			     "cgroup paths '%.*s' and '%s' hash to one enrollment node id "
			     "(rename one of them)",
			     (int) len, path, e->path);
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->path = strndup(path, len);
	if (!e->path) {
		free(e);
		return -ENOMEM;
	}
	e->id = id;
	HASH_ADD(hh, b->ids, id, sizeof(e->id), e);
	return 0;
}

/* Add (or, for a workload's own component, mark) one component of path. */
static int add_component(struct enroll_build *b, const struct sm_enroll_key *key, uint64_t id,
			 const struct sm_enroll_workload *wl)
{
	struct enroll_ent *e = NULL;

	HASH_FIND(hh, b->ents, key, sizeof(*key), e);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->key = *key;
		e->node.node = id;
		HASH_ADD(hh, b->ents, key, sizeof(e->key), e);
	}
	if (wl) { /* a workload's own cgroup; the catalog has one workload per cgroup */
		e->node.wl.identity = wl->identity;
		e->node.wl.flags = wl->flags;
	}
	return 0;
}

static int add_path(struct enroll_build *b, const struct sm_enroll_workload *wl,
		    struct sm_error *err)
{
	const char *why = sm_enroll_path_problem(wl->path);
	const char *seg = wl->path;
	uint64_t parent = 0;
	int ret;

	if (why) {
		sm_error_set(err, "cgroup path '%s' cannot be enrolled: %s", wl->path, why);
		return -EINVAL;
	}
	if (wl->identity == 0) {
		sm_error_set(err, "cgroup path '%s': identity 0 is not a workload's", wl->path);
		return -EINVAL;
	}
	while (seg) {
		size_t len = strcspn(seg, "/");
		struct sm_enroll_key key;
		uint64_t id = sm_enroll_node_id(parent, seg, len);

		memset(&key, 0, sizeof(key));
		key.parent = parent;
		memcpy(key.name, seg, len);
		ret = claim_id(b, id, wl->path, (size_t) (seg + len - wl->path), err);
		if (!ret)
			ret = add_component(b, &key, id, seg[len] ? NULL : wl);
		if (ret)
			return ret;
		parent = id;
		seg = seg[len] ? seg + len + 1 : NULL;
	}
	return 0;
}

static void build_free(struct enroll_build *b)
{
	struct enroll_ent *e, *etmp;
	struct enroll_id *i, *itmp;

	HASH_ITER(hh, b->ents, e, etmp)
	{
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc): uthash's delete-while-iterating idiom
		HASH_DEL(b->ents, e);
		free(e);
	}
	HASH_ITER(hh, b->ids, i, itmp)
	{
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc): as above
		HASH_DEL(b->ids, i);
		free(i->path);
		free(i);
	}
}

int sm_enroll_build(const struct sm_enroll_workload *wl, size_t n, sm_enroll_emit_fn emit,
		    void *ctx, struct sm_error *err)
{
	struct enroll_build b = {NULL, NULL};
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++)
		ret = add_path(&b, &wl[i], err);
	for (struct enroll_ent *e = b.ents; e && !ret; e = e->hh.next)
		ret = emit(ctx, &e->key, &e->node);
	build_free(&b);
	return ret;
}
