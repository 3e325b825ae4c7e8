// SPDX-License-Identifier: Apache-2.0
/* Exclusive locks on paths for a process's life (pathlock.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pathlock.h"

pid_t sm_path_lock_holder(const char *locks_file, dev_t dev, ino_t ino)
{
	char line[256], kind[16];
	unsigned int maj, min;
	unsigned long long file_ino;
	pid_t pid = 0;
	int holder;
	FILE *f = fopen(locks_file, "re");

	if (!f)
		return 0;
	/* "1: FLOCK  ADVISORY  WRITE 1234 00:28:4749593 0 EOF"; waiters' lines have "->" */
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "->"))
			continue;
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", kind, &holder, &maj, &min,
			   &file_ino) != 5)
			continue;
		if (strcmp(kind, "FLOCK") == 0 && file_ino == (unsigned long long) ino &&
		    makedev(maj, min) == dev && holder > 0) {
			pid = holder;
			break;
		}
	}
	fclose(f);
	return pid;
}

int sm_path_lock(const char *path, pid_t *holder)
{
	struct stat st;
	int fd, err;

	*holder = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	err = -errno;
	if (err == -EWOULDBLOCK && fstat(fd, &st) == 0)
		*holder = sm_path_lock_holder("/proc/locks", st.st_dev, st.st_ino);
	close(fd);
	return err;
}
