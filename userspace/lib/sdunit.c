// SPDX-License-Identifier: Apache-2.0
/* systemd unit names and the cgroups systemd gives units (sdunit.h). */
#include "sdunit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* What a unit name may hold besides one '@' (systemd.unit(5)). */
#define UNIT_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\"
#define UNIT_FIX   "a unit name has letters, digits, ':', '-', '_', '.', '\\' and at most one '@'"
#define TYPES_FIX  "a workload's unit is a .service, .socket, .scope, .slice, .mount or .swap"

static const char *const cgroup_types[] = {"service", "socket", "scope", "slice", "mount", "swap"};
static const char *const other_types[] = {"target", "timer", "path", "device", "automount"};

/* The cgroup controllers whose "NAME." prefix systemd escapes in cgroup names. */
static const char *const controllers[] = {
	"cpu",
	"cpuacct",
	"cpuset",
	"io",
	"blkio",
	"memory",
	"devices",
	"pids",
	"bpf-firewall",
	"bpf-devices",
	"bpf-foreign",
	"bpf-socket-bind",
	"bpf-restrict-network-interfaces",
};

static bool in_list(const char *s, size_t n, const char *const *list, size_t nlist)
{
	for (size_t i = 0; i < nlist; i++)
		if (strlen(list[i]) == n && strncmp(s, list[i], n) == 0)
			return true;
	return false;
}

/* Why the bytes before ".TYPE" (prefix[@instance], n of them) are no unit name, or NULL. */
static const char *name_part_problem(const char *s, size_t n, char *why, size_t len)
{
	const char *at = memchr(s, '@', n);

	if (n == 0)
		return "nothing before the type";
	if (at == s)
		return "nothing before '@'";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c == '@' && s + i != at) /* a second '@' belongs to the instance */
			continue;
		if (c == '@' || strchr(UNIT_CHARS, c))
			continue;
		if (c == '/')
			snprintf(why, len,
				 "'/' is not allowed (%s; for a path write cgroup: instead)",
				 UNIT_FIX);
		else if (c > ' ' && c < 0x7f)
			snprintf(why, len, "'%c' is not allowed (%s)", c, UNIT_FIX);
		else if (c == ' ')
			snprintf(why, len, "' ' is not allowed (%s)", UNIT_FIX);
		else
			snprintf(why, len, "byte 0x%02x is not allowed (%s)", c, UNIT_FIX);
		return why;
	}
	return NULL;
}

/* Slice naming: "-.slice" is the root; else no '@', no '-' at either end, no "--". */
static const char *slice_prefix_problem(const char *s, size_t n)
{
	if (n == 1 && s[0] == '-')
		return "it is the root slice, the cgroup v2 root itself, which is never enrolled "
		       "(name a slice below it, e.g. web.slice)";
	if (memchr(s, '@', n))
		return "a slice has no instances ('@') (write NAME.slice, e.g. web.slice)";
	if (s[0] == '-' || s[n - 1] == '-')
		return "it starts or ends with '-' (each '-' nests a slice in the one named by "
		       "what comes before it: write e.g. system-web.slice)";
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '-' && s[i + 1] == '-')
			return "it has '--', an empty slice between them (write e.g. "
			       "system-web.slice)";
	return NULL;
}

/* The checks both kinds share; *dot set to the type's '.'. */
static int name_check(const char *name, char *why, size_t len, const char **dot)
{
	const char *problem;
	size_t n = strlen(name);

	if (n >= SM_UNIT_NAME_MAX) {
		snprintf(why, len, "it is longer than %d bytes (systemd's limit)",
			 SM_UNIT_NAME_MAX - 1);
		return -EINVAL;
	}
	*dot = strrchr(name, '.');
	if (!*dot) {
		snprintf(why, len, "it has no type (write the full name, e.g. %.*s.service)",
			 (int) (n > 200 ? 200 : n), name);
		return -EINVAL;
	}
	problem = name_part_problem(name, (size_t) (*dot - name), why, len);
	if (problem) {
		if (problem != why)
			snprintf(why, len, "%s (%s)", problem, UNIT_FIX);
		return -EINVAL;
	}
	return 0;
}

int sm_unit_check(const char *unit, char *why, size_t len)
{
	const char *dot, *type, *at, *problem;
	size_t n;

	if (name_check(unit, why, len, &dot))
		return -EINVAL;
	type = dot + 1;
	n = strlen(type);
	if (in_list(type, n, other_types, SM_ARRAY_SIZE(other_types))) {
		snprintf(why, len,
			 "a .%s unit has no cgroup of its own, its processes run in another "
			 "unit's (name that unit, e.g. the .service it starts)",
			 type);
		return -EINVAL;
	}
	if (!in_list(type, n, cgroup_types, SM_ARRAY_SIZE(cgroup_types))) {
		snprintf(why, len, "'.%.40s' is not a unit type (%s)", type, TYPES_FIX);
		return -EINVAL;
	}
	at = memchr(unit, '@', (size_t) (dot - unit));
	if (strcmp(type, "slice") == 0) {
		problem = slice_prefix_problem(unit, (size_t) (dot - unit));
		if (problem) {
			snprintf(why, len, "not a valid slice name: %s", problem);
			return -EINVAL;
		}
	} else if (at && at + 1 == dot) {
		snprintf(why, len,
			 "it is a template, which has no cgroup (name an instance: %.*s@NAME.%s)",
			 (int) (at - unit), unit, type);
		return -EINVAL;
	}
	return 0;
}

int sm_slice_check(const char *slice, char *why, size_t len)
{
	const char *dot = strrchr(slice, '.'), *problem;

	if (!dot || strcmp(dot, ".slice") != 0) {
		snprintf(why, len,
			 "not a valid slice name: it is not a .slice (write NAME.slice, "
			 "e.g. web.slice)");
		return -EINVAL;
	}
	if (name_check(slice, why, len, &dot))
		return -EINVAL;
	problem = slice_prefix_problem(slice, (size_t) (dot - slice));
	if (problem) {
		snprintf(why, len, "not a valid slice name: %s", problem);
		return -EINVAL;
	}
	return 0;
}

bool sm_unit_is_slice(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot && strcmp(dot, ".slice") == 0;
}

/* Append n bytes of s to out (at *pos); -ENAMETOOLONG when it does not fit. */
static int put(char *out, size_t len, size_t *pos, const char *s, size_t n)
{
	if (*pos + n >= len)
		return -ENAMETOOLONG;
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = '\0';
	return 0;
}

/*
 * One cgroup name for a unit name (n bytes): systemd prefixes '_' where the
 * name could be mistaken for a cgroupfs file: a leading '_' or '.', "cgroup.",
 * or a controller's name followed by '.' ("io.service" is "_io.service").
 */
static int put_cg_name(char *out, size_t len, size_t *pos, const char *s, size_t n)
{
	bool escape = s[0] == '_' || s[0] == '.' || (n > 7 && strncmp(s, "cgroup.", 7) == 0);

	for (size_t i = 0; i < SM_ARRAY_SIZE(controllers) && !escape; i++) {
		size_t c = strlen(controllers[i]);

		escape = n > c && strncmp(s, controllers[i], c) == 0 && s[c] == '.';
	}
	if (escape && put(out, len, pos, "_", 1))
		return -ENAMETOOLONG;
	return put(out, len, pos, s, n);
}

/* "a-b-c.slice" as a.slice/a-b.slice/a-b-c.slice/, each a cgroup name. */
static int put_slice_path(char *out, size_t len, size_t *pos, const char *slice)
{
	size_t n = strlen(slice) - strlen(".slice");
	char comp[SM_UNIT_NAME_MAX + 8];
	int ret = 0;

	for (size_t i = 0; i <= n && !ret; i++) {
		if (i < n && slice[i] != '-')
			continue;
		snprintf(comp, sizeof(comp), "%.*s.slice", (int) i, slice);
		ret = put_cg_name(out, len, pos, comp, strlen(comp));
		if (!ret)
			ret = put(out, len, pos, "/", 1);
	}
	return ret;
}

/* systemd's escape of a template's prefix in its instances' default slice name. */
static int put_escaped_prefix(char *out, size_t len, size_t *pos, const char *s, size_t n)
{
	char hex[5];
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		if (s[i] == '-' || s[i] == '\\' || (i == 0 && s[i] == '.')) {
			snprintf(hex, sizeof(hex), "\\x%02x", (unsigned char) s[i]);
			ret = put(out, len, pos, hex, 4);
		} else {
			ret = put(out, len, pos, s + i, 1);
		}
	}
	return ret;
}

int sm_unit_cgroup(const char *unit, const char *slice, char *out, size_t len)
{
	const char *dot = strrchr(unit, '.'), *at = memchr(unit, '@', (size_t) (dot - unit));
	char def[2 * SM_UNIT_NAME_MAX + 32];
	size_t pos = 0, dpos = 0;
	int ret;

	if (len == 0)
		return -ENAMETOOLONG;
	out[0] = '\0';
	if (sm_unit_is_slice(unit)) { /* its place is its name */
		ret = put_slice_path(out, len, &pos, unit);
		if (!ret)
			out[--pos] = '\0'; /* no trailing '/' */
		return ret;
	}
	if (!slice && at) { /* systemd puts instances of PREFIX@ in system-PREFIX.slice */
		def[0] = '\0';
		ret = put(def, sizeof(def), &dpos, "system-", 7);
		ret = ret
			      ?: put_escaped_prefix(def, sizeof(def), &dpos, unit,
						    (size_t) (at - unit));
		ret = ret ?: put(def, sizeof(def), &dpos, ".slice", 6);
		if (ret)
			return ret;
		slice = def;
	}
	ret = put_slice_path(out, len, &pos, slice ? slice : "system.slice");
	return ret ?: put_cg_name(out, len, &pos, unit, strlen(unit));
}
