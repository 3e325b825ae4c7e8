/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An exclusive lock on a path for as long as a process lives, and the pid of
 * whoever holds one: how sockmeshd keeps a second copy of itself off a bpffs
 * directory, state directory or enrollment root that one already runs on.
 * flock(2) on the path itself, so it works for directories (also on bpffs and
 * cgroupfs, where no lock file could be written) and goes when the holder
 * exits, however it exits.
 */
#ifndef SOCKMESH_PATHLOCK_H
#define SOCKMESH_PATHLOCK_H

#include <sys/types.h>

/*
 * Take the lock on path (an existing file or directory) without waiting.
 * Returns the descriptor that holds it (close-on-exec; closing it releases
 * the lock), -EWOULDBLOCK when another open file holds it (*holder: that
 * process's pid, 0 when /proc/locks does not say), or another -errno.
 */
int sm_path_lock(const char *path, pid_t *holder);

/*
 * The pid /proc/locks names for a flock on the file at (dev, ino), 0 when none
 * (or when the holder is not visible in this pid namespace). locks_file:
 * "/proc/locks", or another file of that format (tests).
 */
pid_t sm_path_lock_holder(const char *locks_file, dev_t dev, ino_t ino);

#endif /* SOCKMESH_PATHLOCK_H */
