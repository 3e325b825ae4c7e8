// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/pathlock.c: one holder at a time, the holder's
 * pid named to the one refused, the lock gone with its descriptor; /proc/locks
 * lines parsed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "pathlock.h"

/* In a child process (a second daemon): the lock's result, and the holder it names. */
static void try_in_child(const char *path, int *ret, pid_t *holder)
{
	int pipefd[2], status;
	struct {
		int ret;
		pid_t holder;
	} r = {0, 0};
	pid_t pid;

	if (pipe(pipefd))
		fail_msg("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		r.ret = sm_path_lock(path, &r.holder);
		(void) !write(pipefd[1], &r, sizeof(r));
		_exit(0);
	}
	if (read(pipefd[0], &r, sizeof(r)) != sizeof(r))
		fail_msg("no answer from the child");
	waitpid(pid, &status, 0);
	close(pipefd[0]);
	close(pipefd[1]);
	*ret = r.ret;
	*holder = r.holder;
}

static void test_one_holder(void **state)
{
	char dir[] = "/tmp/sm-pathlock-XXXXXX";
	pid_t holder = -1;
	int fd, ret;

	(void) state;
	if (!mkdtemp(dir))
		fail_msg("mkdtemp: %s", strerror(errno));
	fd = sm_path_lock(dir, &holder);
	ASSERT_GE(fd, 0, "the first lock");
	try_in_child(dir, &ret, &holder);
	ASSERT_EQ(ret, -EWOULDBLOCK, "a second process is refused");
	ASSERT_EQ(holder, getpid(), "and told who holds it");
	close(fd);
	try_in_child(dir, &ret, &holder);
	ASSERT_GE(ret, 0, "free again once the holder's descriptor is gone");
	ASSERT_EQ(sm_path_lock("/nonexistent/sockmesh", &holder), -ENOENT, "no such path");
	rmdir(dir);
}

static void test_locks_file(void **state)
{
	char path[] = "/tmp/sm-locks-XXXXXX";
	int fd = mkstemp(path);
	FILE *f;

	(void) state;
	if (fd < 0 || !(f = fdopen(fd, "w")))
		fail_msg("mkstemp: %s", strerror(errno));
	fputs("1: POSIX  ADVISORY  WRITE 111 00:28:77 0 EOF\n"
	      "2: FLOCK  ADVISORY  WRITE 222 00:1c:77 0 EOF\n"
	      "2: -> FLOCK  ADVISORY  WRITE 333 00:28:77 0 EOF\n"
	      "3: FLOCK  ADVISORY  WRITE 444 00:28:77 0 EOF\n"
	      "4: OFDLCK ADVISORY  READ  -1 00:28:78 0 EOF\n",
	      f);
	fclose(f);
	ASSERT_EQ(sm_path_lock_holder(path, makedev(0, 0x28), 77), 444,
		  "the flock on this device and inode (not a POSIX lock, a waiter or another "
		  "device)");
	ASSERT_EQ(sm_path_lock_holder(path, makedev(0, 0x1c), 77), 222, "the other device");
	ASSERT_EQ(sm_path_lock_holder(path, makedev(0, 0x28), 78), 0, "no flock on it");
	ASSERT_EQ(sm_path_lock_holder("/nonexistent", makedev(0, 0x28), 77), 0, "no file");
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_holder),
		cmocka_unit_test(test_locks_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
