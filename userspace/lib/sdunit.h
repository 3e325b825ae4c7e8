/* SPDX-License-Identifier: Apache-2.0 */
/*
 * systemd units as workloads: the unit-name rules (systemd.unit(5)) and the
 * cgroup systemd gives a unit, relative to the cgroup v2 mount. Pure string
 * work: nothing asks systemd, so a unit that does not run yet (or a host
 * without systemd) is named all the same. Format in docs/catalog.md.
 */
#ifndef SOCKMESH_SDUNIT_H
#define SOCKMESH_SDUNIT_H

#include <stdbool.h>
#include <stddef.h>

/* systemd's limit on a unit name, the NUL included (UNIT_NAME_MAX). */
#define SM_UNIT_NAME_MAX 256

/*
 * Whether unit can be a workload: a valid plain or instance unit name
 * ("NAME.TYPE", "NAME@INSTANCE.TYPE") of a type that has a cgroup (service,
 * socket, scope, slice, mount, swap), not a template, and for a slice a valid
 * slice name other than the root slice. 0, or -EINVAL with why = "what is
 * wrong (what to write)".
 */
int sm_unit_check(const char *unit, char *why, size_t len);

/* Whether slice is a slice a unit can be put in (slice_check with the same contract). */
int sm_slice_check(const char *slice, char *why, size_t len);

/* Whether name (checked by sm_unit_check) is a slice unit. */
bool sm_unit_is_slice(const char *name);

/*
 * The cgroup of unit (checked) in slice (checked, or NULL: systemd's default:
 * system.slice, and system-PREFIX.slice for an instance PREFIX@INSTANCE),
 * relative to the cgroup v2 mount: each slice "a-b-c.slice" nested as
 * a.slice/a-b.slice/a-b-c.slice, each name escaped as systemd does for
 * cgroupfs. 0, or -ENAMETOOLONG when it does not fit in len.
 */
int sm_unit_cgroup(const char *unit, const char *slice, char *out, size_t len);

#endif /* SOCKMESH_SDUNIT_H */
