// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/sinks.c, the flow-log file sink: when writes
 * fail (a file size limit, RLIMIT_FSIZE with EFBIG past it, stands in for a
 * full disk, so a write can stop part way through a line, as on a full
 * disk), and which backups rotation leaves uncompressed for log shippers.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <json-c/json.h>

#include "check.h"
#include "config.h"
#include "flow_record.h"
#include "sinks.h"

/* The state of the test being run: freed by teardown even when a check fails. */
static struct sm_sinks *sinks;
static char dir[64], path[128];
static struct rlimit saved_fsize;

static int setup(void **state)
{
	strcpy(dir, "/tmp/sm-sinks-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/flows.jsonl", dir);
	getrlimit(RLIMIT_FSIZE, &saved_fsize);
	signal(SIGXFSZ, SIG_IGN); /* past the limit: EFBIG, not a signal */
	return 0;
}

static int teardown(void **state)
{
	setrlimit(RLIMIT_FSIZE, &saved_fsize);
	DIR *dh;
	struct dirent *de;
	char name[256];

	sm_sinks_free(sinks);
	sinks = NULL;
	dh = opendir(dir);
	while (dh && (de = readdir(dh))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "%s/%s", dir, de->d_name);
		unlink(name);
	}
	if (dh)
		closedir(dh);
	rmdir(dir);
	return 0;
}

static void limit_file_size(rlim_t bytes)
{
	struct rlimit rl = saved_fsize;

	rl.rlim_cur = bytes;
	ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0, "setrlimit(RLIMIT_FSIZE)");
}

/*
 * The sinks on path, rotating at max_size (0: never) into compressed backups,
 * each live file kept at least min_interval seconds.
 */
static void open_sinks_rotating_after(uint64_t max_size, uint32_t min_interval)
{
	struct sm_config cfg;
	struct sm_error err = {{0}};

	sm_config_defaults(&cfg);
	strcpy(cfg.node, "node1");
	strcpy(cfg.flowlog_file, path);
	cfg.flowlog_max_size = max_size;
	cfg.flowlog_max_backups = 10;
	cfg.flowlog_compress = true;
	cfg.flowlog_rotate_min_interval = min_interval;
	sinks = sm_sinks_new(&cfg, &err);
	if (!sinks)
		fail_msg("sm_sinks_new: %s", err.msg);
}

static void open_sinks_rotating(uint64_t max_size)
{
	open_sinks_rotating_after(max_size, 0);
}

static void open_sinks(void)
{
	open_sinks_rotating(0);
}

static void emit(uint64_t cookie)
{
	struct sm_flow_record r;
	struct timespec ts;

	memset(&r, 0, sizeof(r));
	clock_gettime(CLOCK_REALTIME, &ts);
	r.type = SM_REC_CONN_END;
	r.time_ns = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
	r.start_ns = r.time_ns;
	strcpy(r.node, "node1");
	r.verdict = SM_VERDICT_FORWARDED;
	r.direction = SM_DIR_EGRESS;
	sm_addr_parse("10.11.0.1", &r.source.addr);
	sm_addr_parse("10.11.0.2", &r.destination.addr);
	r.source.port = 40000;
	r.destination.port = 8080;
	r.source.spiffe_id = sm_intern("spiffe://example.org/ns/demo/sa/client");
	r.destination.spiffe_id = sm_intern("spiffe://example.org/ns/demo/sa/server");
	r.cookie = cookie;
	sm_sinks_write(sinks, &r, NULL);
}

/* What the file holds: whole lines, and whether a line is being written at its end. */
struct file_lines {
	unsigned int lines, lost_lines, bad_lines;
	uint64_t lost_write_failed, lost_ringbuf;
	bool unfinished;
};

static void read_lines(struct file_lines *fl)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f = fopen(path, "re");

	memset(fl, 0, sizeof(*fl));
	ASSERT_NOT_NULL(f, "the flow log");
	while ((n = getline(&line, &cap, f)) > 0) {
		struct sm_flow_record r;

		if (line[n - 1] != '\n') {
			fl->unfinished = true;
			break;
		}
		line[n - 1] = '\0';
		if (sm_flow_record_decode(line, &r) != 0) {
			fl->bad_lines++;
			continue;
		}
		fl->lines++;
		if (r.type == SM_REC_LOST) {
			fl->lost_lines++;
			fl->lost_write_failed += r.lost_write_failed;
			fl->lost_ringbuf += r.lost_ringbuf;
		}
	}
	free(line);
	fclose(f);
}

/*
 * The file stops growing part way through a line: no line is ever glued to
 * a half-written one, each record is either in the file whole or counted as
 * failed, and once writing works again the writer completes the line it
 * began and says in a lost record, first thing, how many it could not write
 * (with what a lost record that could not be written carried).
 */
static void test_full_then_space(void **state)
{
	struct sm_sinks_stats st;
	struct sm_flow_record lost = {.type = SM_REC_LOST, .lost_ringbuf = 7};
	struct file_lines fl;
	int i;

	open_sinks();
	limit_file_size(20000);
	for (i = 0; i < 100; i++)
		emit(1000 + (uint64_t) i);
	strcpy(lost.node, "node1");
	sm_sinks_write(sinks, &lost, NULL);
	for (; i < 200; i++)
		emit(1000 + (uint64_t) i);
	ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	sm_sinks_stats(sinks, &st);
	read_lines(&fl);
	ASSERT_EQ(fl.bad_lines, 0, "no line glued to a half-written one");
	ASSERT_GE(fl.lines, 10, "some records fit");
	ASSERT_EQ(fl.lost_lines, 0, "no room for a lost record yet");
	ASSERT_EQ(st.written, fl.lines, "written: the whole lines in the file");
	ASSERT_EQ(st.written + st.write_failed + fl.unfinished, 200,
		  "every record written, failed or (one) being written; the lost record carried");

	/* room again: the daemon notices by itself, no new record needed */
	setrlimit(RLIMIT_FSIZE, &saved_fsize);
	for (i = 0; i < 50; i++) {
		read_lines(&fl);
		if (fl.lost_lines)
			break;
		usleep(100000);
	}
	sm_sinks_stats(sinks, &st);
	ASSERT_EQ(fl.lost_lines, 1, "a lost record once writing works");
	ASSERT_EQ(fl.lost_write_failed, st.write_failed, "it counts every record not written");
	ASSERT_EQ(fl.lost_ringbuf, 7, "and what the unwritten lost record said");
	ASSERT_EQ(fl.unfinished, false, "the line being written was finished");
	ASSERT_EQ(fl.bad_lines, 0, "whole lines only");
	ASSERT_EQ(st.written + st.write_failed, 200 + 1, "each record once (and the lost line)");

	emit(5000);
	ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	read_lines(&fl);
	sm_sinks_stats(sinks, &st);
	ASSERT_EQ(fl.lines, st.written, "writing goes on");
	ASSERT_EQ(fl.lost_lines, 1, "nothing more to report");
}

/* A previous writer stopped mid-line: the unfinished end is removed before anything is appended. */
static void test_unfinished_line_at_open(void **state)
{
	static const char before[] = "{\"version\":1}\n{\"version\":1,\"type\":\"conn_e";
	struct file_lines fl;
	char buf[64];
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	ASSERT_EQ(fd >= 0, 1, "create the flow log");
	ASSERT_EQ(write(fd, before, strlen(before)), (long long) strlen(before), "write it");
	close(fd);
	open_sinks();
	emit(1);
	ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	read_lines(&fl);
	ASSERT_EQ(fl.unfinished, false, "ends with a whole line");
	ASSERT_EQ(fl.bad_lines, 1, "the first line (not a record) kept as it was");
	ASSERT_EQ(fl.lines, 1, "then the new record, whole");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_EQ(read(fd, buf, 15), 15, "read the start");
	close(fd);
	ASSERT_EQ(memcmp(buf, "{\"version\":1}\n{", 15), 0, "the complete line, then the record");
}

/* Whether PATH.seq (ext "") or PATH.seq.gz (ext ".gz") exists. */
static bool backup_exists(unsigned int seq, const char *ext)
{
	char name[192];

	snprintf(name, sizeof(name), "%s.%u%s", path, seq, ext);
	return access(name, F_OK) == 0;
}

/* Records, one at a time, until the sinks have rotated want times since they opened. */
static void emit_until_rotations(uint64_t want, uint64_t *cookie)
{
	struct sm_sinks_stats st;

	for (int i = 0; i < 1000; i++) {
		sm_sinks_stats(sinks, &st);
		if (st.rotations >= want)
			break;
		emit((*cookie)++);
		ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	}
	ASSERT_EQ(st.rotations, want, "rotated as often as wanted");
}

/*
 * A log shipper that follows the file by name (rsyslog imfile, Vector,
 * Fluent Bit) still reads the newest backup after a rotation: it stays
 * PATH.N, uncompressed, until the next rotation (logrotate's delaycompress),
 * also across a restart; the older ones are gzipped.
 */
static void test_newest_backup_uncompressed(void **state)
{
	struct sm_sinks_stats st;
	uint64_t cookie = 1;

	open_sinks_rotating(4096);
	emit_until_rotations(1, &cookie);
	ASSERT_EQ(backup_exists(1, ""), true, "after one rotation PATH.1 is there for a shipper");
	ASSERT_EQ(backup_exists(1, ".gz"), false, "and not compressed yet");

	emit_until_rotations(3, &cookie);
	ASSERT_EQ(backup_exists(3, ""), true, "the newest backup, PATH.3, stays uncompressed");
	ASSERT_EQ(backup_exists(3, ".gz"), false, "PATH.3 has no .gz yet");
	for (unsigned int seq = 1; seq <= 2; seq++) {
		ASSERT_EQ(backup_exists(seq, ".gz"), true, "an older backup is gzipped");
		ASSERT_EQ(backup_exists(seq, ""), false, "and its plain file gone");
	}
	sm_sinks_stats(sinks, &st);
	ASSERT_EQ(st.compressed, 2, "all backups but the newest compressed");

	/* a restarted daemon finds PATH.3 plain and leaves it for the shipper */
	sm_sinks_free(sinks);
	sinks = NULL;
	open_sinks_rotating(4096);
	ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	ASSERT_EQ(backup_exists(3, ""), true, "after a restart PATH.3 is still plain");
	ASSERT_EQ(backup_exists(3, ".gz"), false, "and not compressed");

	/* the next rotation compresses it */
	emit_until_rotations(1, &cookie);
	ASSERT_EQ(backup_exists(4, ""), true, "the new newest backup PATH.4 plain");
	ASSERT_EQ(backup_exists(3, ".gz"), true, "PATH.3 gzipped at the next rotation");
	ASSERT_EQ(backup_exists(3, ""), false, "PATH.3's plain file gone");
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * rotate_min_interval: a burst past max_size does not rotate the live file
 * before it has been open that long (so a shipper following the file by name
 * has time to open each one); the file grows meanwhile, and the first record
 * after that rotates it.
 */
static void test_rotate_min_interval(void **state)
{
	struct sm_sinks_stats st;
	struct stat sb;
	int64_t opened = now_ms();
	uint64_t cookie = 1;
	int i;

	open_sinks_rotating_after(4096, 1);
	for (i = 0; i < 30; i++)
		emit(cookie++);
	ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
	sm_sinks_stats(sinks, &st);
	if (now_ms() - opened < 1000) {
		ASSERT_EQ(st.rotations, 0, "no rotation within the first second");
		ASSERT_EQ(stat(path, &sb), 0, "stat the live file");
		ASSERT_GE(sb.st_size, 3 * 4096, "the live file grew past max_size meanwhile");
	}
	for (i = 0; i < 1000 && st.rotations == 0; i++) {
		emit(cookie++);
		ASSERT_EQ(sm_sinks_flush(sinks, 10000), 0, "flush");
		sm_sinks_stats(sinks, &st);
		if (!st.rotations)
			usleep(10000);
	}
	ASSERT_EQ(st.rotations, 1, "rotated once the second had passed");
	ASSERT_GE(now_ms() - opened, 1000, "not before");
	ASSERT_EQ(backup_exists(1, ""), true, "PATH.1 holds the burst");
	ASSERT_EQ(st.written, cookie - 1, "every record written");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_then_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unfinished_line_at_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newest_backup_uncompressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_min_interval, setup, teardown),
	};

	return cmocka_run_group_tests_name("sinks", tests, NULL, NULL);
}
